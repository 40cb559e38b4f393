"""The acceleration curves of `archsim compare`: best GPU precision per point, SimPy where the chip is
small enough (contention), the carried contention factor beyond, crossovers, and monotonicity where
the physics fixes it."""
from __future__ import annotations

import json

import pytest

from archsim import compare as cmp
from archsim.baselines import gpu_training_step, load_gpu, workload_shapes
from archsim.cli import main
from archsim.specs import load_architecture, load_workload

from conftest import WORKLOADS

ARCHS = ["rpu2016", "shared_adc256_nominal"]
BATCHES = [1, 4, 16, 64, 256]


@pytest.fixture(scope="module")
def batch_sweep():
    archs = [load_architecture(a) for a in ARCHS]
    return cmp.scaling_sweep(WORKLOADS / "tiny.yaml", "batch_size", BATCHES, archs, ["v100", "h100"],
                             check=False)


def test_every_point_is_against_the_fastest_precision(batch_sweep):
    s = batch_sweep
    assert s.baseline_names == ["v100", "h100"]
    for v in BATCHES:
        wl = load_workload(WORKLOADS / "tiny.yaml", overrides={**cmp.SWEEP_BASE_OVERRIDES,
                                                               "training.batch_size": v})
        shapes, output = workload_shapes(wl.model)
        for gpu in s.baseline_names:
            times = {p: gpu_training_step(gpu, shapes, output, v, 100, p).time_per_step_s
                     for p in load_gpu(gpu).available_precisions()}
            for p in (q for q in s.points if q["value"] == v):
                best = p["vs"][gpu]
                assert times[best["precision"]] == min(times.values())
                if times[load_gpu(gpu).default_precision] == min(times.values()):
                    assert best["precision"] == load_gpu(gpu).default_precision  # ties: default
                assert best["speedup"] == pytest.approx(min(times.values()) / p["time_per_step_s"])


def test_small_chips_are_timed_with_simpy_and_contention_only_slows(batch_sweep):
    for p in batch_sweep.points:
        assert p["timing"] == "simpy"  # tiny: 2 tiles, far below the SimPy limit
        closed = p["vs_closed_form"]["h100"]["speedup"]
        # Contention can only add waiting: the contended speedup is not above the closed form's
        # (1 % slack: SimPy drops the one transposed MVM nobody needs, the closed form keeps it).
        assert p["vs"]["h100"]["speedup"] <= closed * 1.01


def test_speedup_and_energy_ratio_fall_with_batch(batch_sweep):
    """Physics: the RPU's time and energy per step grow in proportion to the batch (each sample is
    its own MVMs and pulse trains), while the GPU amortises its fixed costs over the batch -- so both
    ratios can only fall as the batch grows, for every architecture and GPU."""
    for arch in ARCHS:
        pts = [p for p in batch_sweep.points if p["architecture"] == arch]
        for gpu in ("v100", "h100"):
            for metric in ("speedup", "energy_ratio", "energy_ratio_bound"):
                ys = [p["vs"][gpu][metric] for p in pts]
                assert all(b < a for a, b in zip(ys, ys[1:])), (arch, gpu, metric, ys)


def test_the_bound_is_never_below_the_modelled_energy_ratio(batch_sweep):
    for p in batch_sweep.points:
        for v in p["vs"].values():
            assert v["energy_ratio_bound"] >= v["energy_ratio"]


def test_crossovers_are_interpolated_where_a_ratio_crosses_one():
    points = [{"architecture": "a", "value": x, "vs": {"g": {"speedup": y}}}
              for x, y in ((1, 8.0), (4, 2.0), (16, 0.5), (64, 0.25))]
    (entry,) = cmp.crossovers(points, ["g"], ["a"], metrics=["speedup"])
    (cross,) = entry["crossings"]
    # log-log interpolation between (4, 2) and (16, 0.5): crosses 1 at 8.
    assert cross["at"] == pytest.approx(8.0) and cross["between"] == [4, 16]
    assert cross["direction"] == "RPU stops winning"
    flat = [{"architecture": "a", "value": x, "vs": {"g": {"speedup": 3.0}}} for x in (1, 2)]
    (none,) = cmp.crossovers(flat, ["g"], ["a"], metrics=["speedup"])
    assert none["crossings"] == [] and none["min"] == 3.0
    assert "RPU wins everywhere" in cmp.crossover_text(none, "batch size")


def test_contention_factor_is_carried_beyond_the_simpy_limit():
    """Past simpy_max_tiles the closed form is scaled by the last simulated point's SimPy factor."""
    arch = load_architecture("shared_adc256_nominal")
    s = cmp.scaling_sweep(WORKLOADS / "tiny.yaml", "hidden_size", [8, 64, 128], [arch], ["h100"],
                          simpy_max_tiles=3, check=False)
    by_value = {p["value"]: p for p in s.points}
    assert by_value[8]["timing"] == "simpy" and by_value[8]["tiles"] <= 3
    carried = by_value[128]
    assert carried["tiles"] > 3 and "SimPy factor" in carried["timing"]
    last_sim = max((p for p in s.points if p["timing"] == "simpy"), key=lambda p: p["value"])
    factor = last_sim["time_per_step_s"] / last_sim["closed_form_time_per_step_s"]
    assert carried["time_per_step_s"] == pytest.approx(carried["closed_form_time_per_step_s"] * factor)
    none = cmp.scaling_sweep(WORKLOADS / "tiny.yaml", "hidden_size", [8], [arch], ["h100"],
                             simpy_max_tiles=0, check=False)
    assert none.points[0]["timing"] == "closed form"


def test_cli_precision_names_and_all_precisions(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compare", str(WORKLOADS / "tiny.yaml"), "--arch", "rpu2016", "--baselines",
                 "h100:fp32,v100", "--all-precisions", "--no-plots", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    # Named precisions stay as named; a bare name expands to every precision with --all-precisions.
    for name in ("h100:fp32", "v100:fp32", "v100:fp16"):
        assert f"speedup {name}" in text
    assert "h100:bf16" not in text
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "--all-precisions" in readme and "modelled / bound" in readme
    assert main(["compare", str(WORKLOADS / "tiny.yaml"), "--baselines", "v100:bf16",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "v100:bf16" in err and "fp32, fp16" in err
    assert not (tmp_path / "bad").exists()


def test_workload_curves_keep_the_workload_as_it_is():
    """The curves `archsim estimate` can print: the workload's own layers, T and batch (no sweep
    overrides), one sweep per parameter, crossovers for every GPU and metric."""
    curves = cmp.workload_curves(WORKLOADS / "tiny.yaml", load_architecture("rpu2016"), ["h100"],
                                 hidden_sizes=[8, 16], batch_sizes=[1, 2])
    assert [c.parameter for c in curves] == ["hidden_size", "batch_size"]
    tiny = load_workload(WORKLOADS / "tiny.yaml")
    assert curves[1].base["layers"] == tiny.model.layers and curves[1].base["seq_len"] == tiny.training.seq_len
    assert curves[0].base["batch_size"] == tiny.training.batch_size
    assert all(p["timing"] == "closed form" for c in curves for p in c.points)
    assert len(curves[0].crossovers) == 3  # one GPU x speedup, energy ratio, energy ratio bound


def test_estimate_carries_modelled_and_bound_energy_per_precision():
    from archsim.estimate import estimate

    r = estimate(load_workload(WORKLOADS / "tiny.yaml"), load_architecture("rpu2016"),
                 fidelity="analytic", baselines=["v100:fp32", "h100"])
    assert [b["name"] for b in r.baselines] == ["v100:fp32", "h100:bf16"]
    for b in r.baselines:
        assert b["energy_bound_J"] >= b["energy_per_step_J"] > 0
        assert b["energy_ratio_bound"] == pytest.approx(b["energy_bound_J"] / r.energy_per_step_J)
        assert b["precision"] in ("fp32", "bf16") and b["power_W"] <= b["power_bound_W"]


def test_estimate_prints_the_curves_of_its_workload(capsys):
    """`archsim estimate --curves`: hidden-size and batch-size sweeps of the workload against each
    GPU baseline in its best precision, with crossovers, in the text and the JSON."""
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--curves", "--baselines", "v100,h100:fp32",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["parameter"] for c in data["curves"]] == ["hidden_size", "batch_size"]
    for curve in data["curves"]:
        assert {"v100", "h100"} <= {e["baseline"] for e in curve["crossovers"]}
        assert all(set(p["vs"]) == {"v100", "h100"} for p in curve["points"])
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--curves"]) == 0
    text = capsys.readouterr().out
    assert "Acceleration vs hidden size" in text and "Crossovers" in text
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--curves", "--baselines", "cpu_host"]) == 2
