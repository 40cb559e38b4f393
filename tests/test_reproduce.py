"""`archsim reproduce`: claim registry, the macs count, the analyses on synthetic sweep rows, the CLI."""
from __future__ import annotations

import json
import math
import textwrap
import types
from pathlib import Path

import pytest

from archsim.cli import main
from conftest import FakeTrainResult, install_fake_train
from archsim.reproduce import (
    BUDGETS, CLAIMS, MNIST_TRAIN_IMAGES, PLOTS, RESOLUTION_TOLERANCE, Stats, analyse_asymmetry,
    analyse_macs, analyse_overfitting, analyse_resolution, budget_flag, check_claims, compare,
    corpus_chars, default_out_dir, fmt_change, fmt_stats, macs_workloads, mlp_weights, plot_asymmetry,
    render_report, resolution_threshold, row_loss, sweep_paths,
)
from archsim.reproduce.analysis import level
from archsim.errors import SpecError
from archsim.specs import load_workload
from archsim.sweep import expand, load_sweep

REPO = Path(__file__).resolve().parent.parent


def row(result=None, done=True, **resolved):
    """A sweep row as archsim.sweep.SweepOutcome.rows has it (resolved axis values, flat result)."""
    return {"resolved": resolved, "values": resolved, "result": result or {}, "done": done,
            "seed": 0, "kind": "train"}


def losses(test, train=None, valid=None, **extra):
    out = {"test_loss": test, "train_loss": test - 0.05 if train is None else train,
           "valid_loss": test if valid is None else valid}
    out.update(extra)
    return out


# -- registry ---------------------------------------------------------------------------------------
def test_registry_names_and_shipped_sweep_files():
    assert list(CLAIMS) == ["asymmetry", "resolution", "overfitting", "macs"]
    assert check_claims(None) == list(CLAIMS)
    assert check_claims(["macs", "asymmetry"]) == ["asymmetry", "macs"]   # registry order
    with pytest.raises(SpecError, match="allowed: asymmetry, resolution, overfitting, macs"):
        check_claims(["asymetry"])
    for claim in CLAIMS.values():
        default = sweep_paths(claim)
        full = sweep_paths(claim, budget="full")
        mid = sweep_paths(claim, budget="mid")
        assert len(default) == len(full) == (0 if claim.name == "macs" else 1)
        assert len(mid) == (1 if claim.name == "overfitting" else 0)
        for path in default + full + mid:
            sweep = load_sweep(path)
            assert sweep.spec.kind == "train" and expand(sweep)
        for path in default:   # default budgets: three seeds, whole epochs (two over War and Peace)
            spec = load_sweep(path).spec
            assert len(spec.seeds) >= 3
            assert spec.train.epochs and spec.train.max_chars is None
            if not claim.prefix_data:
                assert spec.train.epochs == 2
        for path in full + mid:      # paper scale or intermediate: whole epochs and several seeds
            spec = load_sweep(path).spec
            assert spec.train.max_chars is None and len(spec.seeds) >= 3


def test_budgets_select_claims_sweeps_and_report_folders():
    assert BUDGETS == ("default", "mid", "full")
    assert check_claims(None, "mid") == ["overfitting", "macs"]     # macs trains nothing: any budget
    assert check_claims(None, "full") == list(CLAIMS)
    with pytest.raises(SpecError, match="claims with a --mid budget: overfitting"):
        check_claims(["asymmetry"], "mid")
    assert [default_out_dir(b).as_posix() for b in BUDGETS] == \
        ["reports/reproduce", "reports/reproduce/mid", "reports/reproduce/full"]
    assert [budget_flag(b) for b in BUDGETS] == [[], ["--mid"], ["--full"]]
    mid = load_sweep(sweep_paths(CLAIMS["overfitting"], budget="mid")[0]).spec
    assert mid.axes["workload.model.hidden_size"] == [256] * 4 and mid.train.epochs == 20
    assert mid.axes["device"][0] == "rpu_baseline"     # the slowest point starts first, and decides
    assert mid.axes["device"][-1] == "rpu_symmetric"   # a reference point
    full = load_sweep(sweep_paths(CLAIMS["overfitting"], budget="full")[0]).spec
    assert full.axes["device"][0] == "rpu_baseline" and full.train.epochs == 30
    # one learning rate and error clip for every point (at 0.05 without a clip it diverged at once)
    assert set(full.axes["workload.training.learning_rate"]) == {0.01}
    assert set(full.axes["workload.training.grad_clip"]) == {0.05}


def test_cli_refuses_a_budget_the_claim_lacks_and_mid_with_full(capsys):
    assert main(["reproduce", "asymmetry", "--mid", "--list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "claims with a --mid budget: overfitting" in err
    assert main(["reproduce", "--mid", "--full", "--list"]) == 2
    assert "argument --full: not allowed with argument --mid" in capsys.readouterr().err
    assert main(["reproduce", "--mid", "--list"]) == 0
    assert "overfitting_mid.yaml" in capsys.readouterr().out


def test_asymmetry_sweep_scans_up_to_ten_percent_against_floating_point():
    sweep = load_sweep(sweep_paths(CLAIMS["asymmetry"])[0])
    devices = sweep.spec.axes["device"]
    ups = sweep.spec.axes["device.up_down"]
    assert "ideal" in devices and max(ups) == pytest.approx(0.1) and 0.0 in ups
    assert sorted(load_sweep(sweep_paths(CLAIMS["resolution"])[0]).spec.axes["architecture.dac.bits"]) \
        == [4, 5, 6, 7, 8]


# -- macs --------------------------------------------------------------------------------------------
def test_mlp_weight_count():
    assert mlp_weights((784, 256, 128, 10), biases=False) == 784 * 256 + 256 * 128 + 128 * 10
    assert mlp_weights((784, 256, 128, 10)) == 784 * 256 + 256 * 128 + 128 * 10 + 256 + 128 + 10
    assert mlp_weights((3, 2)) == 8


def test_macs_ratio_is_about_1500_and_computed_from_the_workloads():
    workloads = macs_workloads(REPO)
    w = workloads["lstm2x512"]
    # 2 layers x 4*512 rows, inputs [x; h; 1] (98 + 512 + 1, then 512 + 512 + 1), softmax 98 x 513.
    assert w.model.n_weights() == 4 * 512 * (98 + 513) + 4 * 512 * 1025 + 98 * 513
    assert corpus_chars(w) == 6_153_338
    a = analyse_macs(workloads)
    ratio = a.metrics["ratios"]["lstm2x512"]
    assert ratio == pytest.approx(w.model.n_weights() * 6_153_338 / (mlp_weights() * MNIST_TRAIN_IMAGES))
    assert 1400 < ratio < 1600 and a.verdict == "holds"
    assert "1483x" in a.sentence and "holds" in a.sentence.lower()
    # A different workload gives a different ratio: nothing is hard-coded.
    small = load_workload(REPO / "workloads" / "lstm2x512.yaml", {"model.hidden_size": 64})
    b = analyse_macs({"lstm2x512": small})
    assert b.metrics["ratios"]["lstm2x512"] < 100 and b.verdict == "does not hold"


# -- asymmetry ---------------------------------------------------------------------------------------
def asym_rows(fp, by_u):
    rows = [row(losses(fp), device="ideal", **{"device.up_down": 0.0})]
    for u, test in by_u.items():
        result = {"diverged": True} if test is None else losses(test)
        rows.append(row(result, device="rpu_baseline", **{"device.up_down": u}))
    return rows


def test_asymmetry_holds_when_a_few_percent_raise_the_loss():
    a = analyse_asymmetry(asym_rows(2.00, {0.0: 2.03, 0.01: 2.04, 0.02: 2.09, 0.05: 2.30, 0.1: 2.70}))
    assert a.verdict == "holds"
    assert a.metrics["onset"] == 0.02 and a.metrics["excess"][0.1] == pytest.approx(0.67)
    assert "strongly" in a.sentence and "2 % asymmetry raises the test loss by +0.060" in a.sentence
    assert len(a.table) == 6 and a.table[0]["device"].startswith("floating point")
    assert "not monotone" not in a.sentence and a.metrics["drops"] == []


def test_asymmetry_names_a_non_monotone_scan():
    a = analyse_asymmetry(asym_rows(2.00, {0.0: 2.05, 0.01: 2.00, 0.02: 2.30, 0.05: 2.10, 0.1: 2.70}))
    assert a.verdict == "holds"
    assert a.metrics["drops"] == [(0.01, 0.0, pytest.approx(0.05)), (0.05, 0.02, pytest.approx(0.2))]
    assert "not monotone: 1 % is 0.050 below 0 %, 5 % is 0.200 below 2 %" in a.sentence
    assert a.sentence.endswith("Single-seed verdict: one seed per point, so changes are judged against "
                               "the fixed thresholds alone.")


def test_asymmetry_partly_and_does_not_hold_and_divergence():
    late = analyse_asymmetry(asym_rows(2.00, {0.0: 2.02, 0.02: 2.02, 0.05: 2.03, 0.1: 2.20}))
    assert late.verdict == "partly" and "only at 10 %" in late.sentence
    far = analyse_asymmetry(asym_rows(2.00, {0.0: 2.30, 0.02: 2.40}))
    assert far.verdict == "partly" and "more than 0.1" in far.sentence
    flat = analyse_asymmetry(asym_rows(2.00, {0.0: 2.02, 0.05: 2.03, 0.1: 2.01}))
    assert flat.verdict == "does not hold" and "+0.010" in flat.sentence
    diverged = analyse_asymmetry(asym_rows(2.00, {0.0: 2.02, 0.05: 2.03, 0.1: None}))
    assert diverged.verdict == "partly" and "10 % asymmetry diverges (least-squares" in diverged.sentence
    missing = analyse_asymmetry(asym_rows(2.00, {0.05: 2.2}))
    assert missing.verdict == "not tested"


# -- resolution --------------------------------------------------------------------------------------
def test_resolution_threshold_is_the_fewest_bits_from_which_all_are_within_tolerance():
    assert resolution_threshold({4: 2.5, 5: 2.2, 6: 2.1, 7: 2.02, 8: 2.0}, 2.0, 0.03) == 7
    # a noisy dip below the threshold does not count: every resolution above b must be within
    assert resolution_threshold({4: 2.01, 5: 2.2, 6: 2.02, 7: 2.0, 8: 2.0}, 2.0, 0.03) == 6
    assert resolution_threshold({4: 2.0, 5: 2.0}, 2.0, 0.03) == 4
    assert resolution_threshold({4: 2.0, 8: 2.1}, 2.0, 0.03) is None
    assert resolution_threshold({4: 2.0, 8: math.inf}, 2.0, 0.03) is None


def res_rows(det, sto):
    rows = []
    for rounding, curve in ((False, det), (True, sto)):
        for bits, test in curve.items():
            rows.append(row({"diverged": True} if test is None else losses(test), **{
                "architecture.dac.bits": bits, "architecture.periphery.inp_sto_round": rounding}))
    return rows


def test_resolution_verdicts():
    det = {4: 2.9, 5: 2.6, 6: 2.2, 7: 2.02, 8: 2.00}
    a = analyse_resolution(res_rows(det, {4: 2.3, 5: 2.02, 6: 2.01, 7: 2.0, 8: 1.99}))
    assert a.verdict == "holds"
    assert (a.metrics["threshold_det"], a.metrics["threshold_sto"]) == (7, 5)
    assert "from 7 bits up (6 bits: +0.200)" in a.sentence and "from 5 bits up (4 bits: +0.300)" in a.sentence
    assert f"within {RESOLUTION_TOLERANCE}" in a.sentence
    b = analyse_resolution(res_rows(det, {4: 2.01, 5: 2.0, 6: 2.0, 7: 2.0, 8: 2.0}))
    assert b.verdict == "partly" and b.metrics["threshold_sto"] == 4 and "lowest scanned" in b.sentence
    c = analyse_resolution(res_rows({4: 2.5, 5: 2.01, 6: 2.0, 7: 2.0, 8: 2.0},
                                    {4: 2.6, 5: 2.3, 6: 2.01, 7: 2.0, 8: 2.0}))
    assert c.verdict == "does not hold" and (c.metrics["threshold_det"], c.metrics["threshold_sto"]) == (5, 6)
    d = analyse_resolution(res_rows(det, {4: None, 5: 2.0, 6: 2.0, 7: 2.0, 8: 2.0}))
    assert d.verdict == "holds" and d.table[0]["test loss, stochastic"] == "diverged"
    assert analyse_resolution(res_rows(det, {})).verdict == "not tested"


# -- overfitting -------------------------------------------------------------------------------------
def of_rows(fp0, fpd, rpu):
    def r(device, dropout, train, test):
        return row({"train_loss": train, "valid_loss": test, "test_loss": test, "valid_best": test - 0.1,
                    "epochs": 10.0}, device=device, **{"workload.training.dropout": dropout})
    return [r("ideal", 0.0, *fp0), r("ideal", 0.5, *fpd), r("rpu_baseline", 0.0, *rpu)]


def test_overfitting_verdicts():
    a = analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.70), (1.65, 1.72)))
    assert a.verdict == "holds" and a.metrics["gap_fp"] == pytest.approx(0.6)
    assert a.metrics["gap_rpu"] == pytest.approx(0.07) and "strongly" in a.sentence
    b = analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0)))
    assert b.verdict == "partly" and "mostly slower learning" in b.sentence
    between = analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.60), (1.4, 1.7)))
    assert between.verdict == "partly" and "less than dropout does (+0.100" in between.sentence
    assert "-0.100 against floating point without dropout" in between.sentence
    c = analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.70), (1.2, 1.81)))
    assert c.verdict == "does not hold"
    d = analyse_overfitting(of_rows((1.8, 1.82), (1.9, 1.9), (1.9, 1.9)))
    assert d.verdict == "not tested" and "does not overfit" in d.sentence
    assert len(a.table) == 3 and a.table[1]["run"] == "floating point, dropout 0.5"
    # no finished dropout run (still running, or not in the sweep): "needs no dropout" falls back to
    # floating point without dropout, and an RPU model that tests worse than that fits less
    for dropout_row in ({**of_rows((0, 0), (0, 0), (0, 0))[1], "result": {}, "done": False}, None):
        def rows(fp0, rpu):
            r = of_rows(fp0, (0, 0), rpu)
            return [r[0], r[2]] + ([dropout_row] if dropout_row else [])
        slow = analyse_overfitting(rows((1.2, 1.8), (1.9, 2.0)))
        assert slow.verdict == "partly" and "mostly slower learning" in slow.sentence
        assert "no dropout run to compare with" in slow.sentence and "(fp + dropout)" not in slow.sentence
        assert "+0.200" in slow.sentence                       # 2.0 - 1.8, RPU against fp
        even = analyse_overfitting(rows((1.2, 1.8), (1.7, 1.81)))
        assert even.verdict == "holds" and "no dropout run to compare with" in even.sentence
        assert "no dropout run" not in a.sentence


def test_a_second_rpu_device_is_an_overfitting_reference_outside_the_verdict():
    """The sweep's first RPU device without dropout decides; another (rpu_symmetric) is a marked
    table row and a note with its differences, whatever it shows."""
    rows = of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0))
    ref = of_rows((1.2, 1.8), (1.6, 1.70), (1.3, 1.6))[2]
    ref["values"]["device"] = "rpu_symmetric"
    alone = analyse_overfitting(rows)
    both = analyse_overfitting(rows + [ref])
    assert (both.verdict, both.sentence) == (alone.verdict, alone.sentence) == ("partly", alone.sentence)
    assert both.table[-1]["run"] == "RPU (rpu_symmetric), dropout 0 (reference)"
    note = both.notes[-1]
    # gap 0.3 against fp's 0.6 and rpu_baseline's 0.1; test 1.6 against 1.8, 1.7 and 2.0 (one seed each)
    assert note.startswith("Reference point RPU (rpu_symmetric), dropout 0 (not part of the verdict)")
    for part in ("+0.300", "-0.300 against floating point without dropout",
                 "+0.200 against RPU (rpu_baseline)", "test loss 1.600",
                 "-0.200 against floating point without dropout",
                 "-0.100 against floating point with dropout", "-0.400 against RPU (rpu_baseline)"):
        assert part in note, part
    # Listed first, it would decide instead.
    assert analyse_overfitting([rows[0], rows[1], ref, rows[2]]).verdict == "holds"


def test_the_overfitting_training_loss_is_the_last_epochs_mean_off_the_curve():
    from archsim.functional.curves import last_epoch_train_loss

    per_epoch = [{"epoch": 1.0, "train_loss": 2.0}, {"epoch": 2.0, "train_loss": 1.5}]
    assert last_epoch_train_loss({"curve": per_epoch, "train_loss": 1.4}) == 1.5
    halves = [{"epoch": e / 2, "train_loss": 3.0 - e / 4} for e in range(1, 7)]   # 2.75 .. 1.5
    assert last_epoch_train_loss({"curve": halves}) == pytest.approx((1.75 + 1.5) / 2)
    # A point whose span straddles the epoch's start counts by the share inside it.
    uneven = [{"epoch": 0.6, "train_loss": 9.0}, {"epoch": 1.8, "train_loss": 2.0},
              {"epoch": 2.0, "train_loss": 1.0}]
    assert last_epoch_train_loss({"curve": uneven}) == pytest.approx((0.8 * 2.0 + 0.2 * 1.0) / 1.0)
    assert last_epoch_train_loss({"curve": [{"epoch": 0.5, "train_loss": 2.0}]}) is None
    assert last_epoch_train_loss({}) is None
    # A stored result's own field is read, not recomputed; without it, the curve answers.
    from archsim.functional.curves import result_last_epoch_train_loss
    assert result_last_epoch_train_loss({"curve": per_epoch, "train_loss_last_epoch": 1.25}) == 1.25
    assert result_last_epoch_train_loss({"curve": per_epoch}) == 1.5
    rows = of_rows((1.2, 1.8), (1.6, 1.70), (1.65, 1.72))
    rows[0]["result"]["curve"] = [{"epoch": 9.0, "train_loss": 1.4}, {"epoch": 10.0, "train_loss": 1.3}]
    a = analyse_overfitting(rows)
    assert a.table[0]["train loss"].startswith("1.300 ") and a.metrics["gap_fp"] == pytest.approx(0.5)
    rows[0]["result"] = {"diverged": True, "curve": rows[0]["result"]["curve"]}
    assert "diverged" in analyse_overfitting(rows).table[0]["train loss"]


def half_epoch_curve(train, valid, epochs):
    """A stored curve at half-epoch points: each point's training loss the mean of ``train`` over
    the half epoch it ends (``train`` linear: its value a quarter epoch back), validation at it."""
    return [{"epoch": e / 2, "train_loss": train(e / 2 - 0.25), "valid_loss": valid(e / 2)}
            for e in range(1, 2 * epochs + 1)]


def test_the_fit_curve_pairs_an_epochs_mean_training_loss_with_its_mean_validation_loss():
    """A run still learning: training loss 3 - 0.4 t, validation 0.1 above it at every instant. Its
    gap is 0.1 throughout; the epoch's mean training loss against validation at the epoch's end
    would say -0.1 (the mean lags the model by half an epoch's fall)."""
    from archsim.functional.curves import fit_curve

    curve = half_epoch_curve(lambda t: 3 - 0.4 * t, lambda t: 3.1 - 0.4 * t, 4)
    pts = fit_curve(curve)
    # the first epoch is left out: validation starts at 0.5, so the curve does not span (0, 1]
    assert [e for e, _, _ in pts] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert [v - t for _, t, v in pts] == pytest.approx([0.1] * 6)
    assert curve[-1]["valid_loss"] - pts[-1][1] == pytest.approx(-0.1)
    # A ripple of +-0.01 between whole and half epochs (as War and Peace's validation loss has)
    # averages out: validation read at the epoch's middle instead would swing the gap by 0.02.
    rippled = [{**p, "valid_loss": p["valid_loss"] + (-0.01 if p["epoch"] % 1 == 0 else 0.01)} for p in curve]
    assert [v - t for _, t, v in fit_curve(rippled)] == pytest.approx([0.1] * 6)
    # Validation is averaged as linear between curve points; an epoch it does not span is left out.
    sparse = [{"epoch": 0.0, "valid_loss": 3.5}, {"epoch": 1.0, "train_loss": 2.0, "valid_loss": 2.5},
              {"epoch": 2.0, "train_loss": 1.0}]    # no validation after 1.0: epoch 2 is left out
    assert fit_curve(sparse) == [(0.5, 2.0, pytest.approx(3.0))]
    assert fit_curve([{"epoch": 0.5, "train_loss": 2.0, "valid_loss": 2.0}]) == []
    assert fit_curve(None) == []


def test_overfitting_gaps_are_also_compared_at_the_same_fit():
    """fp learns at 0.2 nats/char an epoch and its gap grows 0.02 an epoch; the RPU run learns at 0.1
    an epoch, so at the end of 10 epochs it stands (training loss 2.05) where fp stood at epoch 4.75
    with a gap of 0.095. The RPU gap there decides the note's word; the verdict is untouched."""
    from archsim.reproduce.overfitting import gap_at_fit

    fp_curve = half_epoch_curve(lambda t: 3 - 0.2 * t, lambda t: 3 - 0.18 * t, 10)
    assert gap_at_fit(fp_curve, 2.05) == pytest.approx((4.75, 0.095))
    assert gap_at_fit(fp_curve, 0.5) is None                 # never got that low
    assert gap_at_fit(fp_curve, 2.95) is None                # already there at its first point

    def rows(rpu_growth):
        out = of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0))
        out[0]["result"]["curve"] = fp_curve
        out[2]["result"]["curve"] = half_epoch_curve(lambda t: 3 - 0.1 * t,
                                                     lambda t: 3 - (0.1 - rpu_growth) * t, 10)
        return out

    plain = analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0)))
    assert "matched_fit" not in plain.metrics and not any("matched fit" in n for n in plain.notes)
    verdicts = set()
    for growth, gap_rpu, word in ((0.01, 0.095, "no change"), (0.02, 0.19, "larger"), (0.005, 0.0475, "smaller")):
        a = analyse_overfitting(rows(growth))
        m = a.metrics["matched_fit"]
        assert (m["slow"], m["fast"]) == ("RPU (rpu_baseline), dropout 0", "floating point, dropout 0")
        assert m["target"] == pytest.approx(2.05) and m["epoch_fast"].mean == pytest.approx(4.75)
        assert m["gap_fast"].mean == pytest.approx(0.095) and m["gap_slow"].mean == pytest.approx(gap_rpu)
        note = next(n for n in a.notes if n.startswith("At matched fit"))
        assert f"gap: {word} at the same fit" in note and "reached it at epoch 4.8" in note, note
        verdicts.add((a.verdict, a.sentence))
    assert len(verdicts) == 1      # the curves' shapes differ, the final losses the verdict reads do not
    # A reference device gets the same reading, in its own note, against fp without dropout.
    ref = of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0))[2]
    ref["values"]["device"] = "rpu_symmetric"
    ref["result"]["curve"] = half_epoch_curve(lambda t: 3 - 0.1 * t, lambda t: 3 - 0.08 * t, 10)
    a = analyse_overfitting(rows(0.01) + [ref])
    label = "RPU (rpu_symmetric), dropout 0"
    m = a.metrics["matched_fit_references"][label]
    assert m["fast"] == "floating point, dropout 0" and m["gap_slow"].mean == pytest.approx(0.19)
    note = a.notes[-1]
    assert note.startswith(f"Reference point {label}") and "At matched fit (validation rather" in note
    assert f"({label}'s gap: larger at the same fit" in note
    assert "gap: no change at the same fit" in a.notes[-2]    # the verdict's pair, as before
    assert sum("the mean over an epoch" in n for n in a.notes) == 1
    assert analyse_overfitting(rows(0.01)).metrics["matched_fit_references"] == {}
    # The side that fits less sets the fit, whichever it is; a seed that diverged is left out.
    swapped = rows(0.01)
    swapped[0]["result"]["curve"], swapped[2]["result"]["curve"] = swapped[2]["result"]["curve"], fp_curve
    assert analyse_overfitting(swapped).metrics["matched_fit"]["slow"] == "floating point, dropout 0"
    # Far apart: the RPU run ends above fp's fit at fp's first epoch, so fp's curve never crosses it.
    apart = rows(0.01)
    apart[2]["result"]["curve"] = half_epoch_curve(lambda t: 3.5 - 0.01 * t, lambda t: 3.6, 10)
    far = analyse_overfitting(apart)
    assert far.metrics["matched_fit"]["reached"] == 0 and far.metrics["matched_fit"]["change"] is None
    assert "curves never cross it" in next(n for n in far.notes if n.startswith("At matched fit"))
    diverged = rows(0.01)
    diverged[2]["result"] = {"diverged": True, "curve": diverged[2]["result"]["curve"]}
    assert "matched_fit" not in analyse_overfitting(diverged).metrics


def test_part_way_overfitting_runs_are_drawn_as_curves_so_far_outside_the_table(monkeypatch, tmp_path):
    """A paper-scale run trains for hours before it has a final loss: the plot shows the curve it
    has so far (its own, labelled part way with its seed and epoch), the table and verdict do not."""
    from archsim.reproduce import overfitting
    from archsim.reproduce.overfitting import add_partway_curves, plot_overfitting

    rows = of_rows((1.2, 1.8), (1.6, 1.70), (1.65, 1.72))
    rows[0]["result"]["curve"] = [{"epoch": 1.0, "train_loss": 2.0, "valid_loss": 2.1}]
    for i, r in enumerate(rows):
        r["key"] = f"k{i}"
    unfinished = {"key": "k9", "values": dict(rows[2]["values"]), "seed": 1}   # RPU, a second seed
    curve = [{"step": 400, "epoch": 0.5, "train_loss": 3.0, "valid_loss": 2.9},
             {"step": 800, "epoch": 1.0, "train_loss": 2.5, "valid_loss": 2.4},
             {"step": 810, "chars": 1, "train_loss": 2.4}]                 # no validation: not drawn
    a = analyse_overfitting(rows)
    add_partway_curves(a, rows + [unfinished], [{"key": "k9", "curve": curve}, {"key": "k0", "curve": []},
                                               {"key": "gone", "curve": curve}])
    assert a.metrics["partway_curves"] == {"RPU (rpu_baseline), dropout 0": [(1, curve)]}
    assert a.table == analyse_overfitting(rows).table        # not in the table
    drawn = []
    monkeypatch.setattr(overfitting, "_save",
                        lambda fig, ax, path: drawn.append((ax.get_legend_handles_labels()[1],
                                                            [list(line.get_xdata()) for line in ax.lines]))
                        or path)
    plot_overfitting(a, tmp_path / "o.png")
    labels, xs = drawn[0]
    assert "RPU (rpu_baseline), dropout 0, part way (seed 1, epoch 1 so far)" in labels \
        and "floating point, dropout 0: valid (mean ± sd)" in labels
    assert [0.5, 1.0] in xs                                   # the part-way run's validation points



def test_the_overfitting_plot_draws_each_runs_gap_against_its_fit_beside_the_curves(monkeypatch, tmp_path):
    """Beside the losses by epoch: each run without dropout as validation - training over its fit
    (fit_curve), a part-way run dotted, the matched fit marked. The dropout run stays out of that
    panel (its training loss is measured with dropout active); without any curve, one panel."""
    from archsim.reproduce import overfitting
    from archsim.functional.curves import fit_curve
    from archsim.reproduce.overfitting import add_partway_curves, plot_overfitting

    rows = of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0))
    fp_curve = half_epoch_curve(lambda t: 3 - 0.2 * t, lambda t: 3 - 0.18 * t, 10)
    rows[0]["result"]["curve"] = fp_curve
    rows[1]["result"]["curve"] = fp_curve                       # dropout: not in the fit panel
    rows[2]["result"]["curve"] = half_epoch_curve(lambda t: 3 - 0.1 * t, lambda t: 3 - 0.09 * t, 10)
    for i, r in enumerate(rows):
        r["key"] = f"k{i}"
    unfinished = {"key": "k9", "values": dict(rows[2]["values"]), "seed": 1}
    partway = half_epoch_curve(lambda t: 3 - 0.1 * t, lambda t: 3 - 0.08 * t, 3)
    a = analyse_overfitting(rows)
    add_partway_curves(a, rows + [unfinished], [{"key": "k9", "curve": partway}])
    figures = []
    monkeypatch.setattr(overfitting, "_save", lambda fig, ax, path: figures.append(fig) or path)
    plot_overfitting(a, tmp_path / "o.png")
    fit_ax = figures[0].axes[1]
    lines = {line.get_label(): line for line in fit_ax.lines}
    assert set(lines) == {"floating point, dropout 0", "RPU (rpu_baseline), dropout 0",
                          "RPU (rpu_baseline), dropout 0, part way (seed 1)", "matched fit (2.050)"}
    fp_fit = fit_curve(fp_curve)
    assert list(lines["floating point, dropout 0"].get_xdata()) == [t for _, t, _ in fp_fit]
    assert list(lines["floating point, dropout 0"].get_ydata()) == pytest.approx([v - t for _, t, v in fp_fit])
    assert lines["RPU (rpu_baseline), dropout 0, part way (seed 1)"].get_linestyle() == ":"
    assert list(lines["matched fit (2.050)"].get_xdata()) == pytest.approx([2.05, 2.05])
    assert fit_ax.xaxis_inverted()
    # a point's seeds: one legend entry between them
    second = {**rows[0], "seed": 1, "key": "k8"}
    figures.clear()
    plot_overfitting(analyse_overfitting(rows + [second]), tmp_path / "q.png")
    named = [line.get_label() for line in figures[0].axes[1].lines]
    assert named.count("floating point, dropout 0") == 1 and named.count("_nolegend_") == 1
    figures.clear()
    plot_overfitting(analyse_overfitting(of_rows((1.2, 1.8), (1.6, 1.70), (1.9, 2.0))), tmp_path / "p.png")
    assert len(figures[0].axes) == 1

def test_row_loss_reads_divergence_and_missing_values():
    assert row_loss(row({"diverged": True})) == math.inf
    assert row_loss(row({"test_loss": "nan"})) == math.inf
    assert row_loss(row({"test_loss": 1.5})) == 1.5
    assert row_loss(row({}, done=False)) is None


# -- seeds -------------------------------------------------------------------------------------------
def seed_rows(tests, **axes):
    """One point's rows, one per seed: a test loss, None (diverged) or "missing" (not run yet)."""
    rows = []
    for seed, test in enumerate(tests):
        if test == "missing":
            r = row({}, done=False, **axes)
        else:
            r = row({"diverged": True} if test is None else losses(test), **axes)
        r["seed"] = seed
        rows.append(r)
    return rows


def spread(mean, sd):
    """Three seeds with this mean and sample standard deviation."""
    return [mean - sd, mean, mean + sd]


def test_stats_over_seeds_mean_sd_range_divergence_and_missing_seeds():
    s = Stats.of([2.0, 2.1, 2.2])
    assert (s.n, s.expected, s.diverged) == (3, 3, 0)
    assert s.mean == pytest.approx(2.1) and s.sd == pytest.approx(0.1)
    assert (s.min, s.max) == (2.0, 2.2) and s.value == pytest.approx(2.1)
    assert fmt_stats(s) == "2.100 ± 0.100 (3)" and fmt_stats(s, table=False) == "2.100 ± 0.100"
    one = Stats.of([2.5])
    assert one.sd is None and fmt_stats(one) == "2.500 (1)"
    # (b) a diverged seed: counted, not averaged; the point counts as diverged only when most of
    # its finished seeds diverged, else the verdicts use the others' mean
    d = Stats.of_rows(seed_rows([2.0, None, 2.1]))
    assert (d.n, d.diverged, d.values) == (3, 1, (2.0, 2.1)) and d.value == pytest.approx(2.05)
    assert d.mean == pytest.approx(2.05)
    assert fmt_stats(d) == "diverged in 1 of 3 seeds (the other 2: 2.050 ± 0.071)"
    assert Stats.of_rows(seed_rows([None, None, 2.1])).value == math.inf
    assert Stats.of_rows(seed_rows([None, 2.1])).value == math.inf   # a tie counts as diverged
    assert fmt_stats(Stats.of([math.inf] * 3)) == "diverged in 3 of 3 seeds"
    # (c) missing seeds (a run still going): the n it has
    m = Stats.of_rows(seed_rows([2.0, 2.2, "missing"]))
    assert (m.n, m.expected) == (2, 3) and fmt_stats(m) == "2.100 ± 0.141 (2 of 3)"
    assert fmt_stats(Stats.of_rows(seed_rows(["missing"] * 3))) == "- (0 of 3)"


def test_a_difference_counts_as_a_change_only_beyond_the_seed_spread():
    tight, noisy = Stats.of(spread(2.00, 0.01)), Stats.of(spread(2.05, 0.10))
    c = compare(noisy, tight)
    two_se = 2 * math.sqrt(0.10 ** 2 / 3 + 0.01 ** 2 / 3)
    assert c.diff == pytest.approx(0.05) and c.se2 == pytest.approx(two_se) and c.seeds == 3
    assert c.threshold(0.02) == pytest.approx(two_se) and not c.rises(0.02) and not c.exceeds(0.02)
    assert fmt_change(c) == f"+0.050 ± {two_se:.3f}"
    far = compare(Stats.of(spread(2.15, 0.10)), tight)   # larger than the spread: a change
    assert far.rises(0.02) and not far.falls(0.02) and compare(tight, Stats.of(spread(2.15, 0.10))).falls()
    # a tight pair: the floor decides (0.015 apart is below 0.02 even though it is far beyond 2 SE)
    close = compare(Stats.of(spread(2.015, 0.001)), tight)
    assert close.se2 < 0.015 and close.threshold(0.02) == 0.02 and not close.rises(0.02)
    assert compare(Stats.of(spread(2.03, 0.001)), tight).rises(0.02)
    # one seed on a side: no spread, the floor alone, a single-seed judgement
    single = compare(Stats.of([2.03]), tight)
    assert single.se2 is None and single.single_seed and single.rises(0.02) and fmt_change(single) == "+0.030"
    assert compare(2.01, 2.0).single_seed and not compare(2.01, 2.0).exceeds(0.02)
    # a diverged side is a change of infinite size; two diverged sides are not comparable
    assert compare(Stats.of([2.0, math.inf, math.inf]), tight).rises(10.0)
    assert not compare(Stats.of([2.0, math.inf, 2.0]), Stats.of([2.0, 2.0, 2.0])).exceeds()
    assert compare(Stats.of([math.inf]), Stats.of([math.inf])) is None
    assert compare(Stats.of([None, None]), tight) is None
    # one point's per-seed difference against zero: 2 sd / sqrt(n)
    gap = level(Stats.of(spread(0.10, 0.10)))
    assert gap.se2 == pytest.approx(2 * 0.10 / math.sqrt(3)) and not gap.rises(0.05)
    assert level(Stats.of(spread(0.30, 0.10))).rises(0.05)


def asym_seed_rows(fp, by_u):
    rows = seed_rows(fp, device="ideal", **{"device.up_down": 0.0})
    for u, tests in by_u.items():
        rows += seed_rows(tests, device="rpu_baseline", **{"device.up_down": u})
    return rows


def test_asymmetry_verdict_follows_the_seed_spread():
    fp, sym = spread(2.00, 0.01), spread(2.02, 0.01)
    tight = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.02: spread(2.10, 0.01),
                                                  0.05: spread(2.20, 0.01), 0.1: spread(2.60, 0.1)}))
    assert tight.verdict == "holds" and tight.metrics["onset"] == 0.02
    two_se = 2 * math.sqrt(2 * 0.01 ** 2 / 3)
    assert f"2 % asymmetry raises the test loss by +0.080 ± {two_se:.3f} nats/char" in tight.sentence
    assert "the symmetric device ends at 2.020 ± 0.010 nats/char" in tight.sentence
    assert "Seeds per point: 3;" in tight.sentence and "Single-seed" not in tight.sentence
    assert tight.table[2]["test loss"] == "2.100 ± 0.010 (3)"
    assert tight.table[2]["vs symmetric"] == f"+0.080 ± {two_se:.3f}"
    assert "max(0.02 nats/char, 2 SE)" in tight.notes[0]
    # the same means with a wide spread at 2 % and 5 %: no change there, the first is at 10 %
    noisy = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.02: spread(2.10, 0.15),
                                                  0.05: spread(2.20, 0.25), 0.1: spread(2.60, 0.1)}))
    assert [r["test loss"] for r in noisy.table][2:4] == ["2.100 ± 0.150 (3)", "2.200 ± 0.250 (3)"]
    assert noisy.verdict == "partly" and noisy.metrics["onset"] == 0.1 and "only at 10 %" in noisy.sentence
    # ... and without the seeds (one value per point: the means) the fixed threshold calls it a change
    assert analyse_asymmetry(asym_rows(2.00, {0.0: 2.02, 0.02: 2.10, 0.05: 2.20, 0.1: 2.60})).verdict == "holds"
    # with a wide spread everywhere: no change at all
    flat = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.05: spread(2.10, 0.15)}))
    assert flat.verdict == "does not hold" and "largest difference +0.080 ±" in flat.sentence
    # the symmetric device "close to floating point": a gap of 0.12 is not above 0.1 by a change
    # when the spread is wide, and is when it is tight
    wide_sym = analyse_asymmetry(asym_seed_rows(spread(2.00, 0.1), {0.0: spread(2.12, 0.1),
                                                                    0.02: spread(2.30, 0.01)}))
    assert wide_sym.verdict == "holds" and "+0.120 ± 0.163 from floating point" in wide_sym.sentence
    tight_sym = analyse_asymmetry(asym_seed_rows(fp, {0.0: spread(2.12, 0.01), 0.02: spread(2.30, 0.01)}))
    assert tight_sym.verdict == "partly" and "more than 0.1 nats/char" in tight_sym.sentence


def test_asymmetry_monotone_judgement_uses_the_spread():
    fp, sym = spread(2.00, 0.01), spread(2.02, 0.01)
    rest = {0.02: spread(2.10, 0.01), 0.05: spread(2.20, 0.01)}
    noisy_dip = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.01: spread(1.97, 0.07), **rest}))
    assert noisy_dip.metrics["drops"] == [] and "not monotone" not in noisy_dip.sentence
    real_dip = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.01: spread(1.97, 0.01), **rest}))
    assert real_dip.metrics["drops"] == [(0.01, 0.0, pytest.approx(0.05))]
    assert "not monotone: 1 % is 0.050 ± 0.016 below 0 %" in real_dip.sentence


def test_asymmetry_with_a_diverged_seed_and_missing_seeds():
    fp, sym = spread(2.00, 0.01), spread(2.02, 0.01)
    a = analyse_asymmetry(asym_seed_rows(fp, {0.0: sym, 0.02: [2.09, 2.11, "missing"],
                                              0.1: [None, None, 2.6]}))
    assert a.verdict == "holds" and a.metrics["onset"] == 0.02
    assert a.table[2]["test loss"] == "2.100 ± 0.014 (2 of 3)"
    assert a.table[3]["test loss"] == "diverged in 2 of 3 seeds (the other 1: 2.600)"
    assert a.table[3]["vs symmetric"] == "diverged" and a.metrics["loss"][0.1] == math.inf
    assert "10 % diverges in 2 of 3 seeds" in a.sentence and "Seeds per point: 2 to 3;" in a.sentence
    assert "strongly" in a.sentence


def res_seed_rows(det, sto):
    rows = []
    for rounding, curve in ((False, det), (True, sto)):
        for bits, tests in curve.items():
            rows += seed_rows(tests, **{"architecture.dac.bits": bits,
                                        "architecture.periphery.inp_sto_round": rounding})
    return rows


def test_resolution_verdict_follows_the_seed_spread():
    det = {4: 2.9, 5: 2.6, 6: 2.08, 7: 2.02, 8: 2.00}
    sto = {4: 2.3, 5: 2.02, 6: 2.01, 7: 2.0, 8: 1.99}
    tight = {b: spread(v, 0.01) for b, v in det.items()}
    a = analyse_resolution(res_seed_rows(tight, {b: spread(v, 0.01) for b, v in sto.items()}))
    assert a.verdict == "holds" and (a.metrics["threshold_det"], a.metrics["threshold_sto"]) == (7, 5)
    two_se = 2 * math.sqrt(2 * 0.01 ** 2 / 3)
    assert f"from 7 bits up (6 bits: +0.080 ± {two_se:.3f})" in a.sentence
    assert "within max(0.03, 2 SE) nats/char" in a.sentence
    assert "reference: 8-bit deterministic, 2.000 ± 0.010" in a.sentence
    assert a.table[2]["test loss, deterministic"] == "2.080 ± 0.010 (3)"
    assert a.table[2]["vs ref, deterministic"] == f"+0.080 ± {two_se:.3f}"
    # 6 bits deterministic as far above the reference on average, but within its spread
    sto_tight = {b: spread(v, 0.01) for b, v in sto.items()}
    b = analyse_resolution(res_seed_rows({**tight, 6: spread(2.08, 0.15)}, sto_tight))
    assert b.verdict == "partly" and b.metrics["threshold_det"] == 6 and b.metrics["threshold_sto"] == 5
    # the threshold function itself, on Stats
    assert resolution_threshold({6: Stats.of(spread(2.08, 0.15)), 8: Stats.of(spread(2.0, 0.01))},
                                Stats.of(spread(2.0, 0.01)), 0.03) == 6
    assert resolution_threshold({6: Stats.of(spread(2.08, 0.01)), 8: Stats.of(spread(2.0, 0.01))},
                                Stats.of(spread(2.0, 0.01)), 0.03) == 8
    # most seeds diverged at 4 bits: that resolution counts as diverged (it cannot be within)
    c = analyse_resolution(res_seed_rows(tight, {**sto_tight, 4: [2.0, None, None]}))
    assert c.table[0]["test loss, stochastic"] == "diverged in 2 of 3 seeds (the other 1: 2.000)"
    assert c.metrics["threshold_sto"] == 5 and c.verdict == "holds"


def of_seed_rows(fp0, fpd, rpu):
    """Three seeds per run: (train, test) per seed."""
    rows = []
    for device, dropout, seeds in (("ideal", 0.0, fp0), ("ideal", 0.5, fpd), ("rpu_baseline", 0.0, rpu)):
        for seed, (train, test) in enumerate(seeds):
            r = row({"train_loss": train, "valid_loss": test, "test_loss": test, "valid_best": test - 0.1,
                     "epochs": 10.0, "curve": [{"epoch": e, "train_loss": train + 0.1 * (2.0 - e),
                                               "valid_loss": test + 0.01 * seed} for e in (1.0, 2.0)]},
                    device=device, **{"workload.training.dropout": dropout})
            r["seed"] = seed
            rows.append(r)
    return rows


def test_overfitting_verdict_follows_the_seed_spread():
    def runs(train, gaps):
        return [(train, train + g) for g in gaps]
    fpd, rpu = runs(1.6, [0.09, 0.10, 0.11]), runs(1.2, [0.49, 0.50, 0.51])
    tight = analyse_overfitting(of_seed_rows(runs(1.1, [0.59, 0.60, 0.61]), fpd, rpu))
    assert tight.verdict == "holds" and tight.metrics["gap_reduction"] == pytest.approx(0.1)
    assert "test - train is +0.500 ± 0.010 nats/char for the RPU device" in tight.sentence
    assert "a reduction of +0.100 ± 0.016" in tight.sentence and "Seeds per point: 3;" in tight.sentence
    assert tight.table[0]["test - train"] == "+0.600 ± 0.010 (3)"
    # the same mean gap of floating point, spread wide: the reduction is within the spread
    noisy = analyse_overfitting(of_seed_rows(runs(1.1, [0.4, 0.6, 0.8]), fpd, rpu))
    assert noisy.verdict == "does not hold" and "no reduction larger than 0.02 and the seed spread" in noisy.sentence
    # floating point "overfits" only where its gap is above 0.05 and its own spread
    unclear = analyse_overfitting(of_seed_rows(runs(1.1, [-0.2, 0.1, 0.4]), fpd, rpu))
    assert unclear.verdict == "not tested" and "not above 0.05 and its spread" in unclear.sentence
    single = analyse_overfitting(of_rows((1.1, 1.2), (1.6, 1.7), (1.2, 1.21)))
    assert single.verdict == "holds" and "Single-seed verdict" in single.sentence
    # (b) a diverged seed of the RPU run: the run counts as diverged
    div = analyse_overfitting(of_seed_rows(runs(1.1, [0.59, 0.60, 0.61]), fpd, rpu[:1] + [(1.2, math.inf)] * 2))
    assert div.verdict == "does not hold" and div.sentence.endswith("diverged in 2 of 3 seeds.")
    assert div.table[2]["test - train"] == "diverged in 2 of 3 seeds (the other 1: +0.490)"
    # the curves of all seeds are kept for the plot
    assert [len(c) for c in tight.metrics["curves"].values()] == [3, 3, 3]


def test_plots_draw_error_bars_over_seeds(tmp_path):
    fp, sym = spread(2.00, 0.01), spread(2.02, 0.01)
    rows = asym_seed_rows(fp, {0.0: sym, 0.02: [2.09, 2.11, "missing"], 0.1: [2.5, None, 2.6]})
    res = res_seed_rows({b: spread(2.0 + 0.1 * (8 - b), 0.02) for b in (5, 6, 7, 8)},
                        {5: [2.1, None, 2.2], 8: spread(2.0, 0.02)})
    of = of_seed_rows([(1.1, 1.7)] * 3, [(1.6, 1.7)] * 3, [(1.2, 1.7)] * 3)
    for name, a in (("asymmetry", analyse_asymmetry(rows)), ("resolution", analyse_resolution(res)),
                    ("overfitting", analyse_overfitting(of))):
        path = PLOTS[name](a, tmp_path / f"{name}.png")
        assert path.read_bytes()[:4] == b"\x89PNG"
        fig_bytes = path.read_bytes()
        assert PLOTS[name](a, tmp_path / f"{name}2.png").read_bytes() == fig_bytes   # deterministic


def test_report_states_seeds_per_point_and_the_rule(tmp_path):
    sweep = load_sweep(sweep_paths(CLAIMS["asymmetry"])[0])
    assert len(sweep.spec.seeds) == 3
    rows = asym_seed_rows(spread(2.0, 0.01), {0.0: spread(2.02, 0.01), 0.02: [2.09, 2.11, "missing"]})
    outcome = types.SimpleNamespace(rows=rows, points=9, name=sweep.name)
    a = analyse_asymmetry(rows)
    text = render_report(CLAIMS["asymmetry"], a, [sweep], [outcome], "asymmetry.png", "archsim reproduce", tmp_path)
    assert "Seeds: 3 per point." in text and "one seed per point" not in text.lower()
    assert "|mean_a - mean_b| > max(threshold, 2 SE), 2 SE = 2*sqrt(sd_a^2/n_a + sd_b^2/n_b)" in text
    assert "1 point has fewer finished seeds than that" in text
    assert "9 runs (3 points x 3 seeds)" in text and "| 2.100 ± 0.014 (2 of 3) " in text
    one = types.SimpleNamespace(spec=types.SimpleNamespace(**{**vars(sweep.spec), "seeds": [0]}),
                                file=sweep.file, name=sweep.name)
    single = render_report(CLAIMS["asymmetry"], analyse_asymmetry(asym_rows(2.0, {0.0: 2.02, 0.02: 2.1})),
                           [one], [types.SimpleNamespace(rows=[], points=3, name=sweep.name)],
                           "asymmetry.png", "archsim reproduce", tmp_path)
    assert "One seed per point: the verdicts are single-seed" in single and "Seeds: " not in single


# -- CLI ---------------------------------------------------------------------------------------------
def test_unknown_claim_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    assert main(["reproduce", "asymetry", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archsim: error: command line: CLAIM: got 'asymetry'; allowed:")
    assert "\n" not in err and not (tmp_path / "r").exists()


def test_macs_claim_through_the_cli_writes_report_and_plot(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "macs", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("macs: holds.") and "1483x" in printed
    text = (out / "macs.md").read_text()
    assert "**Verdict: holds.**" in text and "| MNIST MLP 784-256-128-10" in text
    assert "archsim reproduce macs" in text and "![macs](macs.png)" in text
    assert (out / "macs.png").read_bytes()[:4] == b"\x89PNG"
    first = (out / "macs.png").read_bytes()
    assert main(["reproduce", "macs", "--out", str(out), "--no-progress"]) == 0
    assert (out / "macs.png").read_bytes() == first   # regeneration is deterministic


def test_list_prints_claims_and_runs_nothing(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{name}:" in printed for name in CLAIMS) and "asymmetry.yaml" in printed


TEXT_WORKLOAD = """\
name: tiny_text
model: {{layers: 1, hidden_size: 8, vocab_size: 16}}
training: {{seq_len: 10, batch_size: 2, train_chars: {train_chars}, data: {data}, train_fraction: 0.8,
           learning_rate: 0.1, epochs: 2}}
architecture: rpu2016
device: rpu_baseline
baselines: []
"""


def tiny_sweeps(tmp_path: Path, seeds: str = "[0]") -> Path:
    """The three training claims' sweeps on a 1x8 LSTM and a 1,500-character text (seconds)."""
    text = tmp_path / "text.txt"
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    text.write_text(" ".join(words[(i * 7 + i // 3) % len(words)] for i in range(400))[:1500])
    (tmp_path / "tiny.yaml").write_text(TEXT_WORKLOAD.format(train_chars=1200, data=text))
    (tmp_path / "small.yaml").write_text(TEXT_WORKLOAD.format(train_chars=400, data=text))
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    common = f"kind: train\nseeds: {seeds}\ntrain: {{max_chars: 200}}\n"
    (sweeps / "asymmetry.yaml").write_text(textwrap.dedent("""\
        base: ../tiny.yaml
        mode: zip
        axes:
          device: [ideal, rpu_baseline, rpu_baseline]
          device.up_down: [0.0, 0.0, 0.05]
        """) + common)
    (sweeps / "resolution.yaml").write_text(textwrap.dedent("""\
        base: ../tiny.yaml
        axes:
          architecture.periphery.inp_sto_round: [false, true]
          architecture.dac.bits: [5, 7]
        """) + common)
    (sweeps / "overfitting.yaml").write_text(textwrap.dedent("""\
        base: ../small.yaml
        mode: zip
        axes:
          device: [ideal, ideal, rpu_baseline]
          workload.training.dropout: [0.0, 0.5, 0.0]
        kind: train
        seeds: SEEDS
        train: {epochs: 2}
        """).replace("SEEDS", seeds))
    return sweeps


def _install_fake_train(monkeypatch) -> list[dict]:
    """A stand-in trainer (in-process: --jobs 1) whose losses follow the specs, so the verdicts of
    the whole CLI flow are known: asymmetry, resolution and overfitting all hold."""
    calls = []

    def train(workload, arch, device, **kwargs):
        calls.append({"device": device.name, **kwargs})
        fp = device.kind == "ideal"
        bits, sto = arch.dac.bits, arch.periphery.inp_sto_round
        test = 2.0 if fp else 2.02 + 2 * device.up_down + (0.2 if bits < (5 if sto else 7) else 0.0)
        train_loss = test - 0.05
        if "corpus" in kwargs:   # the overfitting claim: fp overfits, dropout and the device do not
            dropout = workload.training.dropout
            test, train_loss = {(True, 0.0): (2.0, 1.5), (True, 0.5): (1.95, 1.9)}.get(
                (fp, dropout), (1.96, 1.8))
        test += 0.002 * kwargs.get("seed", 0)   # a small seed spread
        curve = [{"epoch": 1.0, "train_loss": train_loss + 0.2, "valid_loss": test - 0.01},
                 {"epoch": 2.0, "train_loss": train_loss, "valid_loss": test, "final": True}]
        return FakeTrainResult(train_loss, test, test, 200, 0.01, curve, epochs=2.0)

    install_fake_train(monkeypatch, train)
    return calls


def test_cli_runs_the_claims_writes_reports_and_resumes(tmp_path, monkeypatch, capsys):
    calls = _install_fake_train(monkeypatch)
    sweeps, out = tiny_sweeps(tmp_path), tmp_path / "r"
    argv = ["reproduce", "asymmetry", "resolution", "overfitting", "--sweeps", str(sweeps),
            "--out", str(out), "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert len(calls) == 3 + 4 + 3
    assert {c["max_chars"] for c in calls if "corpus" not in c} == {200}
    prefix = [c for c in calls if "corpus" in c]
    assert [c["epochs"] for c in prefix] == [2, 2, 2]
    assert {len(c["corpus"].train) for c in prefix} == {400}   # the prefix corpus: train_chars
    for name in ("asymmetry", "resolution", "overfitting"):
        assert f"{name}: holds." in printed
        text = (out / f"{name}.md").read_text()
        assert "**Verdict: holds.**" in text
        assert f"archsim reproduce {name} --jobs 1" in text
        assert ("max_chars 200 per run" if name != "overfitting" else "2 epochs per run") in text
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "runs" / name / "results.jsonl").is_file()
    records = [json.loads(x) for x in (out / "runs" / "overfitting" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(len(r["result"]["curve"]) == 1 for r in records)
    assert sorted(r["result"]["valid_best"] for r in records) == pytest.approx([1.94, 1.95, 1.99])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(argv) == 0   # resume: nothing computed, the same reports
    assert len(calls) == 10 and "(0 points computed" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_incomplete_claim_adds_what_its_stored_points_say_only_when_they_say_something(
        tmp_path, monkeypatch):
    """Points still to run: no verdict. The analysis of the points stored so far follows when it
    judged them, not when all it can say is which rows it lacks (the "Incomplete" clause says so)."""
    _install_fake_train(monkeypatch)
    sweeps, out = tiny_sweeps(tmp_path), tmp_path / "r"
    argv = ["reproduce", "overfitting", "--sweeps", str(sweeps), "--out", str(out), "--no-progress"]
    assert main(argv + ["--jobs", "1"]) == 0
    store = out / "runs" / "overfitting" / "results.jsonl"
    records = [json.loads(x) for x in store.read_text().splitlines()]
    kept = [r for r in records if r["point"]["workload.training.dropout"] == 0.0]
    assert len(kept) == 2   # the dropout point not run yet; fp and the RPU run without it stored
    store.write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(argv + ["--stored"]) == 0
    text = (out / "overfitting.md").read_text()
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict"))
    assert verdict.startswith("**Verdict: not tested.** Incomplete: 1 of 3 points have no finished")
    assert "no verdict until then. On the points stored so far: Holds" in verdict
    store.write_text("".join(json.dumps(r) + "\n" for r in kept if r["point"]["device"] == "ideal"))
    assert main(argv + ["--stored"]) == 0
    text = (out / "overfitting.md").read_text()
    assert "Incomplete: 2 of 3 points" in text and "no verdict until then.\n" in text
    assert "On the points stored so far" not in text and "the sweep lacks" not in text


def test_cli_mid_budget_writes_its_own_report_folder(tmp_path, monkeypatch, capsys):
    calls = _install_fake_train(monkeypatch)
    sweeps, out = tiny_sweeps(tmp_path), tmp_path / "r"
    (sweeps / "overfitting_mid.yaml").write_text((sweeps / "overfitting.yaml").read_text())
    assert main(["reproduce", "overfitting", "--mid", "--sweeps", str(sweeps), "--out", str(out),
                 "--jobs", "1", "--no-progress"]) == 0
    assert len(calls) == 3 and "overfitting: holds." in capsys.readouterr().out
    text = (out / "overfitting.md").read_text()
    assert "archsim reproduce overfitting --mid --jobs 1" in text
    assert "Budgets: intermediate (the `--mid` sweeps)" in text
    # The fake trainer's floating point ends at 1.95 and 2.0 (one seed): the report says that this
    # is not the mid budget.
    assert "**Here it does not: the best floating-point point's mean test loss is 1.950, not below 1.8;" in text
    assert (out / "runs" / "overfitting_mid" / "results.jsonl").is_file()


def test_a_mid_report_checks_that_floating_point_ends_below_the_ceiling():
    from types import SimpleNamespace

    from archsim.reproduce.render import _mid_check

    def row(device, dropout, seed, loss, diverged=False):
        return {"values": {"device": device, "workload.training.dropout": dropout}, "seed": seed,
                "done": True, "result": {"test_loss": loss, "diverged": diverged}}

    rows = [row("ideal", 0.0, s, v) for s, v in enumerate((1.70, 1.80, 1.90))]        # mean 1.80
    rows += [row("ideal", 0.5, s, v) for s, v in enumerate((1.41, 1.43))]             # mean 1.42
    rows += [row("ideal", 0.5, 2, float("nan"), diverged=True)]                      # not averaged
    rows += [row("rpu_baseline", 0.0, s, 1.2) for s in range(3)]                      # not floating point
    outcome = SimpleNamespace(name="overfitting_mid", rows=rows)
    assert _mid_check([outcome]) == "Here it does: the best floating-point point's mean test loss is 1.420. "
    assert "does not: the best floating-point point's mean test loss is 1.800, not below 1.8" in \
        _mid_check([SimpleNamespace(name="x", rows=rows[:3] + rows[6:])])
    assert _mid_check([SimpleNamespace(name="x", rows=rows[6:])]).startswith("**No floating-point point")


def test_cli_with_three_seeds_reports_the_spread(tmp_path, monkeypatch, capsys):
    calls = _install_fake_train(monkeypatch)
    sweeps, out = tiny_sweeps(tmp_path, seeds="[0, 1, 2]"), tmp_path / "r"
    assert main(["reproduce", "asymmetry", "resolution", "overfitting", "--sweeps", str(sweeps),
                 "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert len(calls) == 3 * (3 + 4 + 3) and sorted({c["seed"] for c in calls}) == [0, 1, 2]
    for name in ("asymmetry", "resolution", "overfitting"):
        assert f"{name}: holds." in printed
        text = (out / f"{name}.md").read_text()
        assert "Seeds per point: 3;" in text and "Seeds: 3 per point." in text
        assert "single-seed verdict)" in text and "Single-seed verdict" not in text
        assert " ± 0.002 (3) " in text   # mean ± sd (n) of the test losses
    asym = (out / "asymmetry.md").read_text()
    assert "| rpu_baseline           | 5 %       |" in asym and "9 runs (3 points x 3 seeds)" in asym


def test_an_overfitting_point_checkpoints_and_continues_where_it_stopped(tmp_path):
    """The overfitting claim's worker (a prefix of the text) keeps a checkpoint in its point's
    folder and continues from it: a point stopped after one epoch and rerun for two ends as the
    uninterrupted run does, curve included; ``train.eval_every`` sets its curve's cadence."""
    pytest.importorskip("torch")
    from archsim.reproduce.prefix import prefix_train_task
    from archsim.sweep.expand import point_key, resolve_point, resolve_task

    sweep = load_sweep(tiny_sweeps(tmp_path) / "overfitting.yaml")
    task, _ = resolve_point(sweep, expand(sweep)[2])          # rpu_baseline, dropout 0

    def run(folder, **options):
        t = {**task, "checkpoint_dir": str(tmp_path / folder), "options": {**task["options"], **options}}
        t["key"] = point_key(t, resolve_task(t))    # a budget is part of a point's key
        out = prefix_train_task(t)
        assert "result" in out, out
        meta = json.loads((tmp_path / folder / "checkpoint.json").read_text())
        return out["result"], meta

    whole, meta = run("whole")
    per_epoch = meta["steps_per_epoch"]
    assert meta["step"] == 2 * per_epoch and meta["eval_every"] == per_epoch   # a point per epoch
    first, meta = run("stopped", epochs=1)
    assert meta["step"] == per_epoch
    again, meta = run("stopped")                                  # rerun: the second epoch only
    assert meta["step"] == 2 * per_epoch and meta["previous"]["step"] < 2 * per_epoch
    for name in ("train_loss", "valid_loss", "test_loss", "valid_best", "curve"):
        assert again[name] == whole[name], name
    assert [p["epoch"] for p in whole["curve"]] == [1.0, 2.0] and len(first["curve"]) == 1
    fine, meta = run("fine", eval_every=1)
    assert meta["eval_every"] == 1 and len(fine["curve"]) == 2 * per_epoch
    assert fine["test_loss"] == whole["test_loss"]   # the cadence changes no trained number


@pytest.mark.slow
def test_cli_runs_tiny_claims_for_real(tmp_path, capsys):
    """The real trainer on a 1x8 LSTM (about a minute on a loaded 2-core machine)."""
    sweeps, out = tiny_sweeps(tmp_path), tmp_path / "r"
    argv = ["reproduce", "asymmetry", "resolution", "overfitting", "--sweeps", str(sweeps),
            "--out", str(out), "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("asymmetry", "resolution", "overfitting"):
        text = (out / f"{name}.md").read_text()
        verdict = text.split("**Verdict: ", 1)[1].split(".**", 1)[0]
        assert verdict in ("holds", "partly", "does not hold", "not tested")
        assert f"{name}: {verdict}." in printed
    records = [json.loads(x) for x in (out / "runs" / "overfitting" / "results.jsonl").read_text().splitlines()]
    for rec in records:   # the prefix corpus: 400 training characters, two epochs, a curve per epoch
        assert rec["result"]["train_text_chars"] == 400 and rec["result"]["epochs"] == pytest.approx(2.0)
        assert len(rec["result"]["curve"]) == 2 and "valid_best" in rec["result"]
    assert main(argv) == 0
    assert "(0 points computed" in capsys.readouterr().out


def test_stored_renders_a_partial_reproduction_without_computing(tmp_path, monkeypatch, capsys):
    """``--stored``: a long run's partial state as a report; nothing is trained, missing seeds show."""
    calls = _install_fake_train(monkeypatch)
    sweeps, out = tiny_sweeps(tmp_path, seeds="[0, 1, 2]"), tmp_path / "r"
    argv = ["reproduce", "asymmetry", "--sweeps", str(sweeps), "--out", str(out), "--no-progress"]
    assert main(argv + ["--stored"]) == 0 and calls == []   # nothing stored, nothing computed
    text = (out / "asymmetry.md").read_text()
    assert "(0 of 3)" in text and "**Verdict: not tested.** Incomplete: 3 of 3 points" in text
    assert "no verdict until then." in text and "On the points stored so far" not in text
    assert main(argv + ["--jobs", "1"]) == 0 and len(calls) == 9
    store = out / "runs" / "asymmetry" / "results.jsonl"
    assert "Progress:" not in (out / "asymmetry.md").read_text()   # all runs finished
    # each finished run took 600 s by its own clock (the pace of what is left)
    lines = [json.dumps({**rec, "result": {**rec["result"], "seconds": 600.0}})
             for rec in map(json.loads, store.read_text().splitlines())]
    store.write_text("\n".join(lines[:-1]) + "\n")           # one seed of one point not run yet
    # ... and part way: a checkpoint of it (as a killed run leaves one)
    ckpt = out / "runs" / "asymmetry" / "checkpoints" / json.loads(lines[-1])["key"]
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.json").write_text(json.dumps({"step": 1234, "total_steps": 18000}))
    capsys.readouterr()
    assert main(argv + ["--stored"]) == 0 and len(calls) == 9
    text = (out / "asymmetry.md").read_text()
    assert "(2 of 3)" in text and "Incomplete" not in text   # every point has a seed: judged
    progress = next(line for line in text.splitlines() if line.startswith("- Progress:"))
    assert progress.startswith("- Progress: 8 of 9 runs finished; part way")
    assert "`runs/asymmetry/checkpoints/`" in progress and "at step 1,234 of 18,000. Left:" in progress
    # what is left: 1 - 1234/18000 = 0.93 runs at the 600 s of its point's finished seeds = 559 s
    assert "Left: about 9 minutes of run time (0.93 runs, each at its own point's pace" in progress
    assert "0.93 runs of device=rpu_baseline, device.up_down=0.05 at 600 s a run (its finished runs);" \
        in progress
    assert progress.count(" at step ") == 1 and "kind=train" not in progress
    assert "(0 points computed" in capsys.readouterr().out


def test_the_time_left_is_not_guessed_for_populations(tmp_path):
    """A population's members share one clock (each row holds the whole population's seconds), so
    the finished runs' mean is no pace for what is left."""
    from types import SimpleNamespace

    from archsim.reproduce.progress import progress_line
    from archsim.sweep.expand import Point

    def rows(options):
        return [{"done": i < 2, "key": f"k{i}", "label": f"p{i}", "seconds": 600.0, "result": {},
                 "point": Point(i, {}, i, "train", options)} for i in range(4)]

    single = progress_line(SimpleNamespace(rows=rows({}), points=4), tmp_path)
    assert single.startswith("- Progress: 2 of 4 runs finished. Left: about 20 minutes")
    grouped = progress_line(SimpleNamespace(rows=rows({"population_seeds": [0, 1, 2, 3]}), points=4),
                             tmp_path)
    assert grouped == "- Progress: 2 of 4 runs finished."


def test_progress_shows_where_part_way_runs_stand_and_their_own_pace_before_any_finishes(tmp_path):
    """A paper-scale sweep runs for hours before its first run ends: each part-way run's latest
    validation loss (from the curve beside its checkpoint) shows how far it has got, and with no
    finished run the time left comes from the part-way runs' own pace."""
    from types import SimpleNamespace

    from archsim.reproduce.progress import progress_line

    rows = [{"done": False, "key": f"k{i}", "label": f"p{i}"} for i in range(3)]
    rows[0]["label"] = "device=a, lr=0.01, seed=0, kind=train"
    ckpt = tmp_path / "checkpoints"
    for key, step, seconds in (("k0", 6000, 3600.0), ("k1", 2000, 3600.0)):
        (ckpt / key).mkdir(parents=True)
        (ckpt / key / "checkpoint.json").write_text(json.dumps({"step": step, "total_steps": 24000}))
        curve = [{"step": step - 400, "epoch": (step - 400) / 800, "train_loss": 2.0, "valid_loss": 2.5,
                  "seconds": seconds * (step - 400) / step},
                 {"step": step, "epoch": step / 800, "train_loss": 1.9, "valid_loss": 1.75,
                  "seconds": seconds},
                 {"step": step + 7, "chars": 1, "train_loss": 1.8}]    # a later point without validation
        (ckpt / key / "curve.json").write_text(json.dumps({"run": {}, "curve": curve}))
    line = progress_line(SimpleNamespace(rows=rows, points=3), tmp_path)
    assert line.startswith("- Progress: 0 of 3 runs finished; part way")
    # rows with their axis values: only the axes that vary, and the seed
    valued = [{**r, "values": {"device": d, "lr": 0.01}, "seed": 0} for r, d in zip(rows, "abb")]
    short = progress_line(SimpleNamespace(rows=valued, points=3), tmp_path)
    assert "device=a, seed=0 at step 6,000" in short and "device=b, seed=0 at step 2,000" in short
    assert "lr=" not in short
    # each point's runs at that point's own pace: a's part-way run (4 h a run) for what is left of
    # it, b's (12 h) for itself and b's unstarted seed; 0.75 x 4 h + 1.917 x 12 h = 26.0 h
    assert ("Left: about 26.0 hours of run time (2.67 runs, each at its own point's pace where a seed "
            "of that point has finished, is part way or was lost part way, else at the nearest such "
            "point's (most axis values in common), else at the part-way runs' pace so far carried to "
            "their ends: 0.75 runs of device=a at 14,400 s a run (its part-way runs' pace so far); 1.92 runs "
            "of device=b at 43,200 s a run (its part-way runs' pace so far); the command runs --jobs of "
            "them at once).") in short
    # a finished seed of b sets b's pace; a point with no seed finished or part way (c) goes at the
    # finished runs' mean
    more = valued + [{"done": True, "key": "k3", "label": "p3", "values": {"device": "b", "lr": 0.01},
                      "seed": 1, "seconds": 36000.0, "result": {}},
                     {"done": False, "key": "k4", "label": "p4", "values": {"device": "c", "lr": 0.01},
                      "seed": 0}]
    mixed = progress_line(SimpleNamespace(rows=more, points=5), tmp_path)
    assert ("0.75 runs of device=a at 14,400 s a run (its part-way runs' pace so far); 1.92 runs of "
            "device=b at 36,000 s a run (its finished runs); 1.00 runs of device=c at 36,000 s a run "
            "(the finished runs' mean)") in mixed
    assert "Left: about 32.2 hours of run time (3.67 runs" in mixed     # 3 h + 19.17 h + 10 h
    assert ("device=a, lr=0.01, seed=0 at step 6,000 of 24,000 (validation 1.750 nats/char at epoch 7.5, "
            "after 1.0 hours of run time)") in line
    assert "p1 at step 2,000 of 24,000 (validation 1.750 nats/char at epoch 2.5, after 1.0 hours" in line
    # whole runs at their own pace: 4 h (p0) and 12 h (p1), mean 8 h; left: 0.75 + 0.917 + 1 runs
    assert "Left: about 21.3 hours of run time (2.67 runs at 28,800 s a run, the part-way runs' pace" in line
    # the curves so far go to a small file beside the results, committed with the report
    from archsim.reproduce.progress import PARTWAY_CURVES, write_partway_curves

    written = write_partway_curves(SimpleNamespace(rows=rows, points=3), tmp_path)
    assert written == tmp_path / PARTWAY_CURVES
    stored = json.loads(written.read_text())["runs"]
    assert [(r["key"], r["step"], r["total_steps"], len(r["curve"])) for r in stored] == \
        [("k0", 6000, 24000, 3), ("k1", 2000, 24000, 3)]
    line = progress_line(SimpleNamespace(rows=rows, points=3), tmp_path)
    assert f"(their curves so far: `runs/{tmp_path.name}/{PARTWAY_CURVES}`)" in line
    # a checkpoint without a curve beside it (a killed run's first segment): no loss, no pace
    (ckpt / "k0" / "curve.json").unlink()
    (ckpt / "k1" / "curve.json").write_text("not json")
    line = progress_line(SimpleNamespace(rows=rows, points=3), tmp_path)
    assert "seed=0 at step 6,000 of 24,000;" in line and "p1 at step 2,000 of 24,000 (their" in line
    # every run finished: the file goes
    assert write_partway_curves(SimpleNamespace(rows=[{**r, "done": True} for r in rows], points=3),
                                tmp_path) is None
    assert not (tmp_path / PARTWAY_CURVES).exists()


def test_a_point_without_a_pace_borrows_the_nearest_points(tmp_path):
    """Before any seed of a point has run, its time is guessed from the point that shares the most
    axis values with it: floating point with dropout at floating point's pace, not at the mean of
    floating point and a device twice as slow; tied points are averaged; a point sharing no varying
    value goes at the pooled pace."""
    from types import SimpleNamespace

    from archsim.reproduce.progress import progress_line

    ckpt = tmp_path / "checkpoints"
    # whole-run pace so far: rpu 4 h (6,000 of 24,000 steps in 1 h), ideal 2 h (12,000 in 1 h)
    for key, step in (("k0", 6000), ("k1", 12000)):
        (ckpt / key).mkdir(parents=True)
        (ckpt / key / "checkpoint.json").write_text(json.dumps({"step": step, "total_steps": 24000}))
        curve = [{"step": step, "epoch": step / 800, "train_loss": 1.9, "valid_loss": 2.0, "seconds": 3600.0}]
        (ckpt / key / "curve.json").write_text(json.dumps({"run": {}, "curve": curve}))
    points = [("rpu", 0.0), ("ideal", 0.0), ("ideal", 0.5), ("rpu", 0.5), ("sym", 0.0), ("sym", 0.9)]
    rows = [{"done": False, "key": f"k{i}", "label": f"p{i}", "seed": 0, "values": {"device": d, "dropout": x}}
            for i, (d, x) in enumerate(points)]
    line = progress_line(SimpleNamespace(rows=rows, points=len(rows)), tmp_path)
    assert ("0.75 runs of device=rpu, dropout=0.0 at 14,400 s a run (its part-way runs' pace so far); "
            "0.50 runs of device=ideal, dropout=0.0 at 7,200 s a run (its part-way runs' pace so far); "
            "1.00 runs of device=ideal, dropout=0.5 at 7,200 s a run (the pace of the nearest "
            "started point, device=ideal, dropout=0.0); "
            "1.00 runs of device=rpu, dropout=0.5 at 14,400 s a run (the pace of the nearest started point, "
            "device=rpu, dropout=0.0); "
            "1.00 runs of device=sym, dropout=0.0 at 10,800 s a run (the pace of the nearest started point, "
            "device=rpu, dropout=0.0 and device=ideal, dropout=0.0); "
            "1.00 runs of device=sym, dropout=0.9 at 10,800 s a run (the part-way runs' pace so far carried "
            "to their ends)") in line
    # 0.75 x 4 h + 0.5 x 2 h + 2 h + 4 h + 3 h + 3 h
    assert "Left: about 16.0 hours of run time (5.25 runs, each at its own point's pace" in line


def test_a_run_whose_checkpoint_was_lost_keeps_its_curve_and_is_checked_against_the_restart(tmp_path,
                                                                                          monkeypatch):
    """A checkpoint newer than the one committed is lost with its machine: on a fresh machine the
    run starts again from the committed checkpoint, or from step 0. The curve the lost attempt had
    reached (committed in the curves file) is kept as "lost" until the run finishes, named in the
    Progress line and the plot, and the new attempt's losses are compared with it at the steps both
    reached (the same seed gives the same curve on one machine, not necessarily on another)."""
    from types import SimpleNamespace

    from archsim.reproduce.progress import PARTWAY_CURVES, lost_attempts, progress_line, write_partway_curves

    def point(step, valid):
        return {"step": step, "epoch": step / 800, "train_loss": valid + 0.1, "valid_loss": valid,
                "seconds": step * 1.0}

    old = {"k0": [point(400, 3.0), point(800, 2.5), point(1200, 2.2)],
           "k1": [{**point(400, 3.1), "seconds": 800.0}]}           # twice k0's pace
    rows = [{"done": False, "key": k, "label": f"device={d}, seed=0, kind=train"} for k, d in (("k0", "a"),
                                                                                            ("k1", "b"))]
    outcome = SimpleNamespace(rows=rows, points=2)
    there = {"cpu": "Old CPU", "cpu_capability": "AVX2", "torch": "2.13.0"}
    here = {**there, "cpu": "New CPU", "cpu_capability": "AVX512"}
    (tmp_path / PARTWAY_CURVES).write_text(json.dumps({"runs": [
        {"label": f"device={d}, seed=0", "key": k, "step": len(old[k]) * 400, "total_steps": 24000,
         "curve": old[k], "machine": there} for k, d in (("k0", "a"), ("k1", "b"))]}))

    def checkpoint(key, curve, machine=here):
        (tmp_path / "checkpoints" / key).mkdir(parents=True, exist_ok=True)
        (tmp_path / "checkpoints" / key / "checkpoint.json").write_text(
            json.dumps({"step": curve[-1]["step"], "total_steps": 24000}))
        (tmp_path / "checkpoints" / key / "curve.json").write_text(
            json.dumps({"run": {"machine": machine}, "curve": curve}))

    # a fresh machine: no checkpoint yet, both attempts are lost
    assert [r["key"] for r in lost_attempts(outcome, tmp_path)] == ["k0", "k1"]
    line = progress_line(outcome, tmp_path)
    assert ("lost with their machine (a checkpoint newer than any committed; the run started again "
            "from the checkpoint found here, else from step 0): device=a, seed=0 had reached step 1,200 of "
            "24,000 (validation 2.200 nats/char at epoch 1.5, after 20 minutes of run time), no checkpoint "
            "here yet") in line
    # with no pace here yet, the time left goes at the lost attempts' (24,000 and 48,000 s a run)
    assert ("Left: about 20.0 hours of run time (2.00 runs at 36,000 s a run, the lost attempts' pace, "
            "on their machine;") in line
    valued = SimpleNamespace(rows=[{**r, "values": {"device": d}, "seed": 0} for r, d in zip(rows, "ab")],
                             points=2)
    assert ("1.00 runs of device=a at 24,000 s a run (its lost attempts' pace, on their machine); 1.00 runs "
            "of device=b at 48,000 s a run (its lost attempts' pace, on their machine)") in \
        progress_line(valued, tmp_path)
    # k0 restarted and reproduces the lost curve; k1 resumed from its own checkpoint beyond it
    checkpoint("k0", old["k0"][:2])
    checkpoint("k1", old["k1"] + [point(800, 2.7)])
    write_partway_curves(outcome, tmp_path)
    stored = json.loads((tmp_path / PARTWAY_CURVES).read_text())
    assert [(r["key"], r["step"]) for r in stored["runs"]] == [("k0", 800), ("k1", 800)]
    assert [(r["key"], r["step"], r["curve"], r["machine"]) for r in stored["lost"]] == \
        [("k0", 1200, old["k0"], there)]
    assert stored["runs"][0]["machine"] == here
    line = progress_line(outcome, tmp_path)
    assert ("device=a, seed=0 had reached step 1,200 of 24,000 (validation 2.200 nats/char at epoch 1.5, "
            "after 20 minutes of run time), now at step 800; its losses equal the lost attempt's exactly "
            "at the 2 curve points both reached (the lost attempt ran on Old CPU (AVX2, torch 2.13.0), "
            "this one on New CPU (AVX512, torch 2.13.0))") in line
    assert "device=b, seed=0 had reached" not in line
    # a restart that computes differently (another machine's arithmetic) says by how much
    checkpoint("k0", [old["k0"][0], {**old["k0"][1], "valid_loss": 2.503}, point(1600, 2.0)], there)
    write_partway_curves(outcome, tmp_path)     # now past the lost step: the lost entry stays
    line = progress_line(outcome, tmp_path)
    assert ("now at step 1,600; its losses differ from the lost attempt's by up to 0.003 nats/char at "
            "the 2 curve points both reached (both on Old CPU (AVX2, torch 2.13.0))") in line
    # the plot draws it apart from the part-way runs
    from archsim.reproduce import overfitting
    from archsim.reproduce.overfitting import add_partway_curves, plot_overfitting

    frows = of_rows((1.2, 1.8), (1.6, 1.70), (1.65, 1.72))
    frows[2]["key"] = "k0"
    a = analyse_overfitting(frows)
    add_partway_curves(a, frows, [], lost_attempts(outcome, tmp_path))
    assert a.metrics["lost_curves"] == {"RPU (rpu_baseline), dropout 0": [(frows[2]["seed"], old["k0"])]}
    drawn = []
    monkeypatch.setattr(overfitting, "_save",
                        lambda fig, ax, path: drawn.append(ax.get_legend_handles_labels()[1]) or path)
    plot_overfitting(a, tmp_path / "o.png")
    assert f"RPU (rpu_baseline), dropout 0, lost attempt (seed {frows[2]['seed']}, to epoch 1.5)" in drawn[0]
    # the run finishes: its lost attempt goes, and with nothing left part way, the file
    done = SimpleNamespace(rows=[{**r, "done": True} for r in rows], points=2)
    assert lost_attempts(done, tmp_path) == []
    assert write_partway_curves(done, tmp_path) is None and not (tmp_path / PARTWAY_CURVES).exists()


def test_asymmetry_shows_other_devices_as_references_outside_the_verdict(tmp_path):
    fp, sym = spread(2.00, 0.01), spread(2.30, 0.01)
    rows = asym_seed_rows(fp, {0.0: sym, 0.02: spread(2.40, 0.01), 0.05: spread(2.60, 0.01)})
    plain = analyse_asymmetry(rows)
    rows += seed_rows(spread(2.05, 0.01), device="rpu_symmetric", **{"device.up_down": 0.0})
    a = analyse_asymmetry(rows)
    # the scan and its verdict are rpu_baseline's alone
    assert a.metrics["scanned"] == "rpu_baseline" and a.verdict == plain.verdict == "partly"
    assert a.sentence == plain.sentence and a.metrics["symmetric"] == pytest.approx(2.30)
    ref = a.table[-1]
    assert ref["device"] == "rpu_symmetric (reference)" and ref["up_down"] == "0 %"
    assert ref["vs fp"].startswith("+0.050") and ref["vs symmetric"].startswith("-0.250")
    assert any(n.startswith("Reference point rpu_symmetric (not part of the verdict): test loss 2.050")
               for n in a.notes)
    assert len(a.table) == len(plain.table) + 1
    assert plot_asymmetry(a, tmp_path / "a.png").is_file()
