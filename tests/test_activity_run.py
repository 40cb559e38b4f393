"""One step program, two engines: the functional run's op counts equal the schedule's for every op
kind the program generates, and measured activity moves time and energy the way the physics says
it should."""
from __future__ import annotations

import json
import random

import pytest

from archsim.activity_run import COUNT_ACTIONS, activity_run
from archsim.cli import main
from archsim.program import OP_KINDS
from archsim.specs import load_architecture, load_device, load_workload

from conftest import WORKLOADS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    rng = random.Random(0)
    words = ["the", "array", "pulse", "device", "update", "noise", "tile", "lstm"]
    path.write_text(" ".join(rng.choice(words) for _ in range(2500)))
    return path


def _specs(layers=1, hidden=8, arrays=None, arch_over=None, train_over=None, device="rpu_baseline"):
    over = {"model.layers": layers, "model.hidden_size": hidden, **(train_over or {})}
    w = load_workload(WORKLOADS / "tiny.yaml", overrides=over)
    a_over = dict(arch_over or {})
    if arrays:
        a_over.update({"array.rows": arrays[0], "array.cols": arrays[1]})
    return w, load_architecture("rpu2016", overrides=a_over), load_device(device)


CASES = {
    "one layer + output": dict(),
    "two layers, split tiles": dict(layers=2, hidden=6, arrays=(8, 8)),
    "bound management active": dict(layers=2, hidden=8, arrays=(16, 12),
                                    arch_over={"periphery.out_bound": 0.3}),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_functional_counts_equal_schedule_counts(case, text):
    w, a, d = _specs(**CASES[case])
    r = activity_run(w, a, d, steps=2, data_path=text)
    fun, sch = r.counts["functional"], r.counts["schedule"]
    assert set(fun) == set(sch) == set(COUNT_ACTIONS)
    # every op kind the step program generates is counted by both engines, and it happened
    generated = list(dict.fromkeys(k.counter for k in OP_KINDS.values() if k.generated))
    assert generated == ["forward_mvms", "backward_mvms", "updates", "transfer_reads",
                         "transfer_updates"]
    assert all(fun[c] > 0 for c in generated[:3])     # SGD: no transfers (tests/test_tiki_taka.py)
    assert fun["transfer_reads"] == fun["transfer_updates"] == 0
    for key in fun:
        assert fun[key] == pytest.approx(sch[key], rel=1e-9, abs=1e-9), key
    if case == "bound management active":
        assert fun["bm_repeats"] > 0
    if case == "two layers, split tiles":
        assert len([k for k in r.activity.per_matrix if k.startswith("lstm2[")]) > 1


def test_saturation_raises_repeats_and_forward_time(text):
    w, a, d = _specs(layers=1, hidden=8)
    normal = activity_run(w, a, d, steps=2, data_path=text)
    w, a_sat, d = _specs(layers=1, hidden=8, arch_over={"periphery.out_bound": 0.2})
    sat = activity_run(w, a_sat, d, steps=2, data_path=text)
    assert sat.activity.bm_repeats_per_mvm > normal.activity.bm_repeats_per_mvm
    assert sat.activity.adc_saturation_rate > normal.activity.adc_saturation_rate
    fwd = lambda r: r.phase_breakdown["forward"]["time_s"]  # noqa: E731
    assert fwd(sat.measured) > fwd(sat.nominal)
    assert fwd(sat.measured) > fwd(normal.measured)


def test_lower_learning_rate_lowers_pulses_and_update_energy(text):
    res = {}
    for lr in (0.5, 0.005):
        w, a, d = _specs(train_over={"training.learning_rate": lr})
        res[lr] = activity_run(w, a, d, steps=2, data_path=text)
    hi, lo = res[0.5], res[0.005]
    assert lo.activity.coincidence_prob < hi.activity.coincidence_prob
    assert lo.activity.x_fire_prob < hi.activity.x_fire_prob
    upd = lambda r: r.measured.phase_breakdown["update"]["energy_J"]  # noqa: E731
    assert upd(lo) < upd(hi)
    # Measured activity is below the nominal upper bound: update energy drops.
    assert upd(hi) < hi.nominal.phase_breakdown["update"]["energy_J"]


def test_run_cli_saves_profile_that_estimate_reprices(tmp_path, text, capsys):
    out = tmp_path / "run"
    assert main(["run", str(WORKLOADS / "tiny.yaml"), "--steps", "2", "--data", str(text),
                 "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activity"]["spec_hash"] == data["spec_hash"] and data["seed"] == 0
    assert data["activity"]["source"].startswith("measured")
    profile = out / "activity.json"
    assert profile.is_file() and (out / "report.md").is_file()
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--activity", str(profile),
                 "--arch", "shared_adc256_nominal", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["activity"]["source"].startswith("measured")
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--activity", str(tmp_path / "nope.json")]) == 2


def test_run_on_the_ideal_device_is_one_line_before_training(text, capsys):
    # The ideal device makes no pulses: nothing to measure, refused before any training.
    assert main(["run", str(WORKLOADS / "tiny.yaml"), "--device", "ideal", "--steps", "2",
                 "--data", str(text)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kind" in err[0] and "ideal" in err[0] and "archsim train" in err[0]
