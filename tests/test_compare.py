"""``archsim compare``: rows, ratios, table formats, area, peak table, plots, determinism, bad input."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from archsim import compare as cmp
from archsim.cli import main
from archsim.estimate import estimate, run_baseline
from archsim.specs import load_architecture, load_workload

from conftest import REPO, WORKLOADS

ARCHS = ["rpu2016", "shared_adc256_nominal"]


@pytest.fixture(scope="module")
def small():
    """tiny + lstm2x64 on two architectures against V100 and H100 (closed form: fast)."""
    wls = [load_workload(WORKLOADS / "tiny.yaml"), load_workload(WORKLOADS / "lstm2x64.yaml")]
    archs = [load_architecture(a) for a in ARCHS]
    return wls, archs, cmp.compare(wls, archs, baselines=["v100", "h100"], fidelity="analytic")


def test_one_row_per_workload_and_architecture(small):
    wls, archs, c = small
    assert len(c.rows) == len(wls) * len(archs)
    assert [(r.workload, r.architecture) for r in c.rows] == [
        (w.name, a.name) for w in wls for a in archs]
    # Bare GPU names are the presets' default precisions (what practitioners use), and say so.
    assert c.baseline_names == ["v100:fp16", "h100:bf16"]
    assert len(c.baselines) == len(wls) * 2  # baselines run once per workload, not per architecture
    assert {b.precision for b in c.baselines} == {"fp16", "bf16"}


def test_speedup_is_baseline_time_over_rpu_time(small):
    wls, archs, c = small
    for w in wls:
        for a in archs:
            row = next(r for r in c.rows if r.workload == w.name and r.architecture == a.name)
            ref = estimate(w, a, fidelity="analytic", baselines=[])
            assert row.time_per_step_s == pytest.approx(ref.time_per_step_s, rel=1e-12)
            for name in ("v100:fp16", "h100:bf16"):
                gpu = run_baseline(name, w)
                assert row.vs[name]["speedup"] == pytest.approx(gpu.time_per_step_s / ref.time_per_step_s)
                assert row.vs[name]["energy_ratio"] == pytest.approx(
                    gpu.energy_per_step_J / ref.energy_per_step_J)
                # The bound: board TDP x time, never below the modelled energy.
                assert row.vs[name]["energy_ratio_bound"] == pytest.approx(
                    gpu.energy_bound_J / ref.energy_per_step_J)
                assert row.vs[name]["energy_ratio_bound"] >= row.vs[name]["energy_ratio"]


def test_default_baselines_are_the_union_of_the_workloads_own():
    wls = [load_workload(WORKLOADS / "tiny.yaml"), load_workload(WORKLOADS / "lstm2x512.yaml")]
    assert wls[0].baselines == ["v100"]
    assert cmp.default_baselines(wls) == ["v100"] + [b for b in wls[1].baselines if b != "v100"]
    assert cmp.gpu_baseline_names()[0] == "v100" and "cpu_host" not in cmp.gpu_baseline_names()


def test_csv_parses_and_matches_rows(small):
    _, _, c = small
    rows = list(csv.reader(io.StringIO(cmp.comparison_csv(c))))
    header, body = rows[0], rows[1:]
    assert len(body) == len(c.rows)
    assert {"speedup_v100:fp16", "energy_ratio_h100:bf16", "energy_ratio_bound_h100:bf16",
            "time_per_step_s", "area_m2"} <= set(header)
    for line, r in zip(body, c.rows):
        rec = dict(zip(header, line))
        assert rec["workload"] == r.workload and rec["architecture"] == r.architecture
        assert float(rec["speedup_h100:bf16"]) == pytest.approx(r.vs["h100:bf16"]["speedup"], rel=1e-5)
        assert float(rec["energy_ratio_bound_h100:bf16"]) == pytest.approx(
            r.vs["h100:bf16"]["energy_ratio_bound"], rel=1e-5)
        assert float(rec["time_per_step_s"]) == pytest.approx(r.time_per_step_s, rel=1e-5)
    for text in (cmp.baselines_csv(c), cmp.peak_csv(c), cmp.energy_breakdown_csv(c)):
        parsed = list(csv.reader(io.StringIO(text)))
        assert len({len(p) for p in parsed}) == 1  # rectangular


def test_latex_and_github_tables(small):
    _, _, c = small
    tex = cmp.main_table(c, "latex")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "µ" not in tex and "²" not in tex
    assert "shared\\_adc256\\_nominal" in tex  # underscores escaped
    md = cmp.main_table(c, "github").splitlines()
    assert len(md) == 2 + len(c.rows) and md[1].startswith("|--")
    assert "speedup v100" in md[0] and "peak" not in md[0]


def test_peak_table_is_separate_and_follows_the_formula(small):
    _, archs, c = small
    for arch in archs:
        p = next(p for p in c.peak if p["name"] == arch.name)
        t = max(arch.array.t_forward_s, arch.adc.cols_per_adc / arch.adc.sample_rate_Hz)
        assert p["peak_ops_per_s"] == pytest.approx(
            2 * arch.array.rows * arch.array.cols / t * arch.system.n_tiles)
    assert {"v100 fp32", "h100 tensor"} <= {p["name"] for p in c.peak}
    titles = [t for t, _ in cmp.comparison_tables(c)]
    assert any("peak vs peak" in t for t in titles) and "peak" not in titles[0]


def test_area_is_the_chips_and_says_what_is_missing():
    """The area column is the chip's (archsim.hw.chip), listing parts without an area."""
    from archsim.hw.chip import chip_budget

    arch = load_architecture("shared_adc256_nominal")
    w = load_workload(WORKLOADS / "tiny.yaml")
    c = cmp.compare([w], [arch], baselines=["v100"], fidelity="analytic")
    assert c.rows[0].area_m2 == pytest.approx(chip_budget(arch).chip_area_m2)
    assert "update" in c.rows[0].area_missing and "adc" not in c.rows[0].area_missing
    zero = {f"{p}.area_m2": 0 for p in ("array", "dac", "integrator", "adc", "digital", "buffer",
                                        "bus", "global_buffer")}
    bare = load_architecture("shared_adc256_nominal", overrides=zero)
    c = cmp.compare([w], [bare], baselines=["v100"], fidelity="analytic")
    assert c.rows[0].area_m2 == 0
    assert "| n/a " in cmp.main_table(c)
    assert list(csv.reader(io.StringIO(cmp.comparison_csv(c))))[1][11] == ""


def test_sweep_raises_tiles_to_fit_and_checks_against_simpy():
    arch = load_architecture("shared_adc256_nominal", overrides={"system.n_tiles": 4})
    s = cmp.scaling_sweep(WORKLOADS / "tiny.yaml", "hidden_size", [8, 128], [arch], ["v100"])
    assert s.base["layers"] == 2 and s.base["seq_len"] == 100 and s.base["batch_size"] == 32
    big = next(p for p in s.points if p["value"] == 128)
    assert big["n_tiles_raised"] and big["n_tiles"] == big["tiles"] > 4
    assert s.fidelity_check and s.fidelity_check[0]["simpy_over_analytic"] >= 1 - 1e-9
    with pytest.raises(ValueError):
        cmp.scaling_sweep(WORKLOADS / "tiny.yaml", "seq_len", [1], [arch], ["v100"])


def _run_set(tmp_path: Path, name: str, monkeypatch) -> dict[str, bytes]:
    where = tmp_path / name
    where.mkdir()
    monkeypatch.chdir(where)
    status = main(["compare", str(WORKLOADS / "tiny.yaml"), str(WORKLOADS / "lstm2x64.yaml"),
                   "--arch", ",".join(ARCHS), "--baselines", "v100,h100", "--hidden-sizes", "16,64",
                   "--batch-sizes", "1,8", "--out", "out", "--no-progress"])
    assert status == 0
    return {p.name: p.read_bytes() for p in sorted((where / "out").iterdir())}


def test_cli_writes_tables_and_plots_deterministically(tmp_path, monkeypatch, capsys):
    first = _run_set(tmp_path, "a", monkeypatch)
    out = capsys.readouterr().out
    assert "speedup v100" in out and "peak vs peak" in out
    second = _run_set(tmp_path, "b", monkeypatch)
    assert set(first) == set(cmp.SET_FILES)
    for name in ("energy_breakdown.png", "scaling_hidden.png", "scaling_batch.png"):
        assert first[name][:8] == b"\x89PNG\r\n\x1a\n" and len(first[name]) > 10_000
    different = [n for n in first if first[n] != second[n]]
    assert not different, f"regeneration changed {different}"
    readme = first["README.md"].decode()
    assert "archsim compare " in readme and "--out out" in readme and "speedup vs V100" in readme


def test_cpu_baseline_is_labelled_measured_and_scaled(monkeypatch):
    """--cpu routes to the CPU measurement (replaced here: timing torch is the baselines' tests' job)."""
    from archsim import baselines as bl

    calls = []

    def fake_cpu(shapes, output, batch, seq_len, **kw):
        calls.append((shapes, output, batch, seq_len))
        return bl.BaselineResult(name="cpu_host", time_per_step_s=0.5, energy_per_step_J=2.0,
                                 utilization=None, flops_per_step=1.0, kind="measured",
                                 scaled_from={"seq_len": [1, 2], "batch": 2}, note="fake")

    monkeypatch.setattr(bl, "cpu_training_step", fake_cpu)
    w = load_workload(WORKLOADS / "tiny.yaml")
    c = cmp.compare([w], [load_architecture("rpu2016")], baselines=["v100"], cpu=True,
                    fidelity="analytic")
    assert calls == [([(16, 8)], (16, 8), 2, 10)]
    cpu = next(b for b in c.baselines if b.name == cmp.CPU_BASELINE)
    assert cpu.label == "measured here, scaled"
    assert c.rows[0].vs[cmp.CPU_BASELINE]["speedup"] == pytest.approx(0.5 / c.rows[0].time_per_step_s)
    assert c.baseline_names == ["v100:fp16", cmp.CPU_BASELINE]
    assert all(not p["name"].startswith("cpu") for p in c.peak)
    assert "measured here, scaled" in cmp.baselines_table(c)


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "no/such/workload.yaml"], "no such file"),
    (["compare", str(WORKLOADS / "tiny.yaml"), "--arch", "nope"], "nope"),
    (["compare", str(WORKLOADS / "tiny.yaml"), "--baselines", "nope"], "nope"),
    (["compare", str(WORKLOADS / "tiny.yaml"), "--hidden-sizes", "8,x"], "--hidden-sizes"),
    (["compare", "--reports", str(WORKLOADS / "tiny.yaml")], "--reports"),
    (["compare"], "WORKLOAD.yaml"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, fragment):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_committed_reports_are_up_to_date(tmp_path):
    """`archsim compare --reports` reproduces the committed reports/compare/ byte for byte."""
    assert main(["compare", "--reports", "--out", str(tmp_path), "--no-progress"]) == 0
    committed = REPO / "reports" / "compare"
    stale = [n for n in cmp.SET_FILES
             if not (committed / n).is_file() or (tmp_path / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"reports/compare is stale ({stale}): run `archsim compare --reports`"


def test_recorded_command_keeps_a_folder_glob(tmp_path):
    from archsim.commands.compare import _workload_args

    for name in ("b.yaml", "a.yaml"):
        (tmp_path / name).write_text("name: x\n")
    every = [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    assert _workload_args(every) == [f"{tmp_path}/*.yaml"]
    assert _workload_args(every[:1]) == every[:1]
    assert _workload_args(every[::-1]) == every[::-1]  # not the glob's order: kept as given
