"""Spec layer: unit strings, presets with sources, and one-line errors (exit 2) for bad input."""
from __future__ import annotations

import math
import re

import pytest

from archsim.cli import main
from archsim.errors import SpecError
from archsim.specs import load_architecture, load_device, load_workload, preset_names
from archsim.specs.loader import read_yaml, models_dirs
from archsim.units import parse_quantity

from conftest import REPO, WORKLOADS

GOOD = (WORKLOADS / "tiny.yaml").read_text()


@pytest.mark.parametrize("text,dim,expected", [
    ("80 ns", "time", 80e-9), ("1.5 pJ", "energy", 1.5e-12), ("1.2 GHz", "frequency", 1.2e9),
    ("0.0012 mm2", "area", 1.2e-9), ("0.08 pJ/bit", "energy", 8e-14), ("900 GB/s", "bandwidth", 7.2e12),
    (3e-9, "time", 3e-9), ("20.7 mW", "power", 20.7e-3), ("24 MOhm", "resistance", 24e6),
])
def test_units(text, dim, expected):
    assert math.isclose(parse_quantity(text, dim), expected, rel_tol=1e-12)


def test_shipped_specs_load():
    for name in ("lstm2x512", "lstm2x64", "lstm3x512", "tiny", "one_tile_example"):
        load_workload(WORKLOADS / f"{name}.yaml")
    for name in preset_names("architectures"):
        load_architecture(name)
    for name in preset_names("devices"):
        load_device(name)


def test_presets_override_and_cite():
    nominal = load_architecture("shared_adc256_nominal")
    optimistic = load_architecture("shared_adc256_optimistic")
    conservative = load_architecture("shared_adc256_conservative")
    assert optimistic.array == nominal.array
    assert conservative.adc.e_conv_J / optimistic.adc.e_conv_J > 10  # sources disagree by >10x
    assert "NeuroSim" in optimistic.sources["adc.e_conv_J"]


def _numeric_leaves(node, path=""):
    if isinstance(node, dict):
        if set(node) <= {"value", "source", "note"} and "value" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _numeric_leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def test_every_number_in_models_has_a_source():
    from ruamel.yaml import YAML

    missing = []
    for d in models_dirs()[:1]:
        for f in sorted(d.rglob("*.yaml")):
            data = YAML(typ="safe").load(f.read_text())
            for path, leaf in _numeric_leaves(data):
                if not (isinstance(leaf, dict) and str(leaf.get("source", "")).strip()):
                    missing.append(f"{f.relative_to(d)}:{path}")
    assert not missing, f"numbers without source: {missing}"


BAD = [
    # (description, how to break the file, expected field path, expected fragment of "allowed")
    ("unknown field", lambda t: t.replace("hidden_size:", "hiden_size:"), "model.hiden_size", "unknown field"),
    ("missing field", lambda t: t.replace("  seq_len: 10\n", ""), "training.seq_len", "required"),
    ("wrong type", lambda t: t.replace("hidden_size: 8", "hidden_size: eight"), "model.hidden_size", "integer"),
    ("zero size", lambda t: t.replace("hidden_size: 8", "hidden_size: 0"), "model.hidden_size", "greater than 0"),
    ("negative size", lambda t: t.replace("batch_size: 2", "batch_size: -3"), "training.batch_size", "greater than 0"),
    ("unknown preset", lambda t: t.replace("architecture: rpu2016", "architecture: rpu2061"), "architecture", "allowed: rpu2016"),
    ("unknown device", lambda t: t.replace("device: rpu_baseline", "device: rpu_basline"), "device", "allowed:"),
    ("malformed", lambda t: t + "\n  : [\n", "", "malformed YAML"),
    ("not a mapping", lambda t: "- 1\n- 2\n", "", "mapping"),
]


@pytest.mark.parametrize("desc,breaker,path,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_workload_one_line(tmp_path, capsys, desc, breaker, path, allowed):
    f = tmp_path / "bad.yaml"
    f.write_text(breaker(GOOD))
    out_dir = tmp_path / "out"
    rc = main(["estimate", str(f), "--out", str(out_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(f) in err and allowed in err
    if path:
        assert f" {path}:" in err
    assert not out_dir.exists()  # nothing written


def test_bad_unit_in_architecture(tmp_path, capsys):
    text = (REPO / "models/architectures/rpu2016.yaml").read_text()
    f = tmp_path / "arch.yaml"
    f.write_text(text.replace('t_forward_s: {value: "80 ns"', 't_forward_s: {value: "80 kg"'))
    rc = main(["estimate", str(WORKLOADS / "tiny.yaml"), "--arch", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and "array.t_forward_s" in err and "80 kg" in err and "time" in err
    assert re.search(rf"{re.escape(str(f))}:\d+:", err)  # line number of the bad field


def test_missing_file_and_bad_flag(capsys, tmp_path):
    assert main(["estimate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_overrides_are_validated():
    with pytest.raises(SpecError, match="training.batch_size"):
        load_workload(WORKLOADS / "tiny.yaml", overrides={"training.batch_size": 0})


def test_schema_command(capsys):
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert '"workload"' in out and "dw_min" in out and "t_forward_s" in out


def test_read_yaml_records_sources():
    loaded = read_yaml(REPO / "models/architectures/rpu2016.yaml")
    assert "Gokmen" in loaded.sources["array.rows"]
    assert loaded.data["array"]["t_forward_s"] == "80 ns"
