"""``archsim estimate`` end to end: JSON keys, reports on disk, the README's hand-checked example,
and a torch-free start-up."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from archsim.cli import main

from conftest import REPO, WORKLOADS

REQUIRED = ["time_per_step_s", "time_per_epoch_s", "energy_per_step_J", "energy_per_epoch_J",
            "energy_breakdown_J", "phase_breakdown", "utilization", "ops_per_step", "baselines"]


def test_json_has_required_keys(capsys):
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in REQUIRED:
        assert key in data
    for phase in ("forward", "backward", "update"):
        assert set(data["phase_breakdown"][phase]) == {"time_s", "energy_J"}
    b = data["baselines"][0]
    for key in ("name", "time_per_step_s", "energy_per_step_J", "speedup", "energy_ratio"):
        assert key in b
    assert b["speedup"] == pytest.approx(b["time_per_step_s"] / data["time_per_step_s"])


def test_overrides_change_the_answer(capsys):
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json"])
    base = json.loads(capsys.readouterr().out)
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--batch", "4", "--arch",
          "shared_adc256_nominal"])
    other = json.loads(capsys.readouterr().out)
    assert other["batch_size"] == 4 and other["architecture"] == "shared_adc256_nominal"
    assert other["time_per_step_s"] != base["time_per_step_s"]


def test_out_writes_reports(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--out", str(out)]) == 0
    assert "Energy per step by component" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["workload"] == "tiny"
    assert "## Energy per step by component" in (out / "report.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_exact_epoch_matches_extrapolated(capsys):
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--exact", "--baselines", ""])
    exact = json.loads(capsys.readouterr().out)
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--baselines", ""])
    fast = json.loads(capsys.readouterr().out)
    assert exact["epoch_method"] == "exact" and fast["epoch_method"] == "extrapolated"
    assert fast["time_per_epoch_s"] == pytest.approx(exact["time_per_epoch_s"], rel=1e-3)


def test_readme_hand_example(capsys):
    """README: one LSTM layer (h=256, n=64: a 1024 x 321 matrix) alone on one rpu2016 tile, batch
    1, T=100; BPTT state (576 KB) in the global buffer, the MVM inputs read from the tile buffer.
    Every stage of every timestep written out from the preset's numbers."""
    assert main(["estimate", str(WORKLOADS / "one_tile_example.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cycle = 1 / 1.2e9                                      # bus and digital clock
    gbuf, tbuf = 2457.6e9, 307.2e9                         # bit/s of the global and tile buffer
    words = lambda n, bw: n * 16 / bw                      # noqa: E731  16-bit words moved
    bus = lambda bits: math.ceil(bits / 1024) * cycle      # noqa: E731  1024-bit bus
    fwd = (words(321, tbuf) + bus(321 * 7 + 1024 * 9) + 80e-9 + 80e-9 + 8 * cycle
           + words(321 + 6 * 256, gbuf))
    corner = words(6 * 256, gbuf) + 16 * cycle + words(1024, gbuf)   # no transposed MVM at t=0
    bwd = corner + bus(1024 * 7 + 321 * 9) + 80e-9 + 80e-9 + 1 * cycle
    upd = words(321, gbuf) + words(1024, gbuf) + 6 * cycle + bus((1024 + 321) * 16) + 10 * 1e-9
    by_hand = 100 * (fwd + upd) + 99 * bwd + corner
    assert by_hand == pytest.approx(44.504e-6, rel=1e-4)
    assert data["time_per_step_s"] == pytest.approx(by_hand, rel=1e-9)
    assert data["tiles"] == 1
    assert data["memory"]["placement"] == {"lstm1.working": "buffer",
                                           "lstm1.activations": "global_buffer",
                                           "lstm1.errors": "global_buffer"}
    kept = data["memory"]["levels"]["global_buffer"]["peak_bytes"]
    assert kept == 100 * (321 + 6 * 256 + 1024) * 2


def test_start_up_does_not_import_torch():
    code = ("import sys; from archsim.cli import main; "
            "rc = main(['estimate', sys.argv[1], '--json', '--baselines', 'v100']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code, str(WORKLOADS / "tiny.yaml")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
