"""Claim ``overfitting``: device noise regularises, so an RPU model without dropout overfits less than
a floating-point model without dropout (analysis and plot; its sweeps run through
:mod:`archsim.reproduce.prefix`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.functional.curves import curve_points, fit_curve, result_last_epoch_train_loss
from archsim.reproduce.analysis import (
    DELTA, SPREAD_SE, Analysis, Stats, _axis, _fmt, _is_fp, _strength, change_rule, compare, diverged_in,
    fmt_change, fmt_stats, level, paired, row_loss, spread_clause,
)
from archsim.reproduce.figures import _figure, _save, seed_errorbars

#: Test minus training loss of the unregularised floating-point model that counts as overfitting.
OVERFIT_GAP = 0.05


def _overfit_label(row: dict) -> str:
    dropout = float(_axis(row, "workload.training.dropout", 0.0) or 0.0)
    who = "floating point" if _is_fp(row) else f"RPU ({_axis(row, 'device')})"
    return f"{who}, dropout {dropout:g}"


def _with_epoch_train_loss(row: dict) -> dict:
    result = row.get("result") or {}
    loss = result_last_epoch_train_loss(result)
    own = row_loss(row, "train_loss")
    if loss is None or own is None or math.isinf(own):
        return row      # no curve, not run, or diverged (its own losses say so)
    return {**row, "result": {**result, "train_loss": loss}}


def analyse_overfitting(rows: list[dict], *, delta: float = DELTA,
                        overfit_gap: float = OVERFIT_GAP) -> Analysis:
    """Generalisation gaps (test minus train loss, per seed) of fp without dropout, fp with dropout,
    and an RPU device without dropout, each over its seeds; changes by the rule of
    :mod:`~archsim.reproduce.analysis`.

    not tested: fp without dropout does not overfit (its gap is not above ``overfit_gap`` and its
    spread). holds: the RPU gap is smaller than the fp-without-dropout gap by a change (floor
    ``delta``) and the RPU test loss is not above the fp-with-dropout test loss by a change (it needs
    no dropout; without a finished dropout run, not above the fp-without-dropout test loss). partly:
    the gap is smaller but the RPU test loss is worse (part of the smaller gap is slower learning).
    does not hold: the gap is not smaller by a change.

    The verdict's RPU device is the sweep's first device without dropout (``rpu_baseline`` in the
    shipped sweeps); the rows of other devices (e.g. ``rpu_symmetric``, without its device-to-device
    up/down imbalance) are reference points: a table row and a note each, outside the verdict.
    """
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_overfit_label(r), []).append(_with_epoch_train_loss(r))
    rpu_label = next((k for k in groups if k.startswith("RPU") and k.endswith("dropout 0")), None)
    reference_labels = [k for k in groups if k.startswith("RPU") and k != rpu_label]
    stats: dict[str, dict[str, Stats]] = {}
    for label, rs in groups.items():
        s = {k: Stats.of_rows(rs, k) for k in ("train_loss", "valid_loss", "test_loss", "valid_best", "epochs")}
        per_seed = {k: [row_loss(r, k) for r in rs] for k in ("train_loss", "valid_loss", "test_loss", "valid_best")}
        s["gap"] = paired(per_seed["test_loss"], per_seed["train_loss"])
        s["valid_rise"] = paired(per_seed["valid_loss"], per_seed["valid_best"])
        stats[label] = s
    table = [{"run": label + (" (reference)" if label in reference_labels else ""),
              "epochs": _fmt(s["epochs"].value, 1), "train loss": fmt_stats(s["train_loss"]),
              "valid loss (best)": fmt_stats(s["valid_best"]), "valid loss (final)": fmt_stats(s["valid_loss"]),
              "test loss": fmt_stats(s["test_loss"]), "test - train": fmt_stats(s["gap"], signed=True)}
             for label, s in stats.items()]
    curves = {label: [c for c in ((r.get("result") or {}).get("curve") for r in rs) if c]
              for label, rs in groups.items()}
    metrics: dict[str, Any] = {"stats": stats, "curves": curves, "delta": delta, "overfit_gap": overfit_gap}
    notes = [f"\"test - train\" is taken per seed. Overfitting: test minus training loss of floating point "
             f"without dropout above max({overfit_gap} nats/char, {SPREAD_SE:g} SE). A change is "
             f"{change_rule(f'{delta} nats/char')}. The training loss is the mean over the run's last "
             "epoch (read off its curve), measured on the training batches as trained (with dropout "
             "active for the dropout run, and through the noisy analog tiles for the RPU run), so it "
             "overstates the dropout model's fit of the training set."]
    fp0_label = next((k for k in stats if k.startswith("floating point") and k.endswith("dropout 0")), None)
    fp0 = stats.get(fp0_label)
    fpd = next((s for k, s in stats.items() if k.startswith("floating point") and not k.endswith("dropout 0")), None)
    rpu = stats.get(rpu_label)
    metrics["references"] = {k: stats[k] for k in reference_labels}
    # Each RPU point against floating point without dropout at the same fit, beside their gaps at the
    # budget's end: the verdict's in a note of its own, a reference point's in its note.
    fits = {label: m for label in (rpu_label, *reference_labels)
            if label and fp0_label and (m := matched_fit(groups, label, fp0_label))}
    metrics["matched_fit_references"] = {k: m for k, m in fits.items() if k != rpu_label}
    explain = True     # the reading is explained once, in the first note that has it
    if rpu_label in fits:
        metrics["matched_fit"] = fits[rpu_label]
        notes.append(_matched_fit_note(fits[rpu_label], delta))
        explain = False
    for label in reference_labels:
        note = _reference_note(label, stats[label], rpu_label, rpu, fp0, fpd)
        if label in fits:
            note += " " + _matched_fit_note(fits[label], delta, lead=_REFERENCE_FIT_LEAD, explain=explain)
            explain = False
        notes.append(note)
    if fp0 is None or rpu is None or fp0["gap"].value is None or rpu["gap"].value is None:
        return Analysis("not tested", "Not tested: the sweep lacks the floating-point or the RPU run "
                        "without dropout, or they have no results.", table, metrics, notes,
                        lacks_rows=True)
    metrics.update(gap_fp=fp0["gap"].value, gap_rpu=rpu["gap"].value,
                   gap_fp_dropout=fpd["gap"].value if fpd else None)
    seeds = spread_clause(s["gap"] for s in stats.values())
    overfits = level(fp0["gap"])
    if math.isinf(overfits.diff):
        return Analysis("not tested", f"Not tested: floating point without dropout {diverged_in(fp0['gap'])}.",
                        table, metrics, notes)
    if not overfits.rises(overfit_gap):
        return Analysis("not tested", f"Not tested at this budget: floating point without dropout does "
                        f"not overfit (test - train {fmt_change(overfits)} nats/char, not above "
                        f"{overfit_gap} and its spread), so there is nothing for device noise to "
                        f"regularise.{seeds}", table, metrics, notes)
    if math.isinf(rpu["gap"].value):
        return Analysis("does not hold", "Does not hold in our runs: the RPU run without dropout "
                        f"{diverged_in(rpu['gap'])}.", table, metrics, notes)
    reduction = compare(fp0["gap"], rpu["gap"])
    test = {k: s["test_loss"] for k, s in (("rpu", rpu), ("fp0", fp0), ("fpd", fpd)) if s is not None}
    best_fp = min(v for v in (test["fp0"].value, test["fpd"].value if fpd else None) if v is not None)
    gaps = (f"test - train is {fmt_stats(rpu['gap'], signed=True, table=False)} nats/char for the RPU "
            f"device without dropout against {fmt_stats(fp0['gap'], signed=True, table=False)} for "
            "floating point without dropout"
            + (f" and {fmt_stats(fpd['gap'], signed=True, table=False)} with dropout"
               if fpd and fpd["gap"].n else "")
            + f" (a reduction of {fmt_change(reduction)})")
    vs_fpd = compare(test["rpu"], test["fpd"]) if fpd else None
    tests = (f"test loss {fmt_stats(test['rpu'], table=False)} (RPU) vs "
             f"{fmt_stats(test['fp0'], table=False)} (fp)"
             + (f" and {fmt_stats(test['fpd'], table=False)} (fp + dropout)" if vs_fpd is not None else ""))
    metrics.update(gap_reduction=reduction.diff, best_fp_test=best_fp)
    if not reduction.rises(delta):
        return Analysis("does not hold", f"Does not hold in our runs: {gaps}, no reduction larger than "
                        f"{delta} and the seed spread; {tests}.{seeds}", table, metrics, notes)
    strength = _strength(reduction.diff, reduction.threshold(delta))
    vs_fp0 = compare(test["rpu"], test["fp0"])
    # "needs no dropout" is judged against the dropout run; where none has finished (or the sweep
    # has none), floating point without dropout is the only bar, and an RPU model that tests worse
    # than it got its smaller gap from fitting less, not from needing no dropout
    if vs_fpd is None and vs_fp0 is not None and vs_fp0.rises(delta):
        return Analysis("partly", f"Holds partly in our runs: {gaps}, but the RPU model's test loss is "
                        f"worse than floating point without dropout ({tests}: {fmt_change(vs_fp0)}; no "
                        f"dropout run to compare with), so the smaller gap is mostly slower learning, "
                        f"not regularisation.{seeds}", table, metrics, notes)
    if vs_fpd is None or not vs_fpd.rises(delta):
        return Analysis("holds", f"Holds {strength} in our runs: {gaps}, and without dropout the RPU "
                        f"model reaches {tests}"
                        + ("" if vs_fpd is not None else " (no dropout run to compare with)") + f".{seeds}",
                        table, metrics, notes)
    if vs_fp0 is not None and vs_fp0.falls(delta):
        return Analysis("partly", f"Holds partly in our runs: the RPU device regularises ({gaps}; "
                        f"{tests}: {fmt_change(vs_fp0)} against floating point without dropout), but "
                        f"less than dropout does ({fmt_change(vs_fpd)} against floating point with "
                        f"dropout).{seeds}", table, metrics, notes)
    return Analysis("partly", f"Holds partly in our runs: {gaps}, but the RPU model's test loss is no "
                    f"better than floating point without dropout ({tests}), so the smaller gap is "
                    f"mostly slower learning, not regularisation.{seeds}", table, metrics, notes)


def _reference_note(label: str, ref: dict[str, Stats], rpu_label: str | None,
                    rpu: dict[str, Stats] | None, fp0: dict[str, Stats] | None,
                    fpd: dict[str, Stats] | None) -> str:
    """A reference point's sentence: its generalisation gap and test loss against the verdict's
    runs (differences of means ± 2 SE)."""
    def vs(key: str, other: dict[str, Stats] | None, name: str) -> str | None:
        c = None if other is None else compare(ref[key], other[key])
        return None if c is None else f"{fmt_change(c)} against {name}"

    gap = [t for t in (vs("gap", fp0, "floating point without dropout"),
                       vs("gap", rpu, rpu_label or "the RPU device")) if t]
    test = [t for t in (vs("test_loss", fp0, "floating point without dropout"),
                        vs("test_loss", fpd, "floating point with dropout"),
                        vs("test_loss", rpu, rpu_label or "the RPU device")) if t]
    return (f"Reference point {label} (not part of the verdict): test - train "
            f"{fmt_stats(ref['gap'], signed=True, table=False)} nats/char"
            + (f" ({'; '.join(gap)})" if gap else "")
            + f", test loss {fmt_stats(ref['test_loss'], table=False)}"
            + (f" ({'; '.join(test)})" if test else "") + ".")


def gap_at_fit(curve: list[dict] | None, target: float) -> tuple[float, float] | None:
    """Where a run's fit first reached the training loss ``target``: ``(epoch, validation minus
    training loss there)``, linear between the two points of
    :func:`~archsim.functional.curves.fit_curve` around the crossing. None when the run never got
    that low, or was already there at its first such point (no crossing to place)."""
    pts = fit_curve(curve)
    if not pts or pts[0][1] <= target:
        return None
    for (e0, t0, v0), (e1, t1, v1) in zip(pts, pts[1:]):
        if t1 <= target:
            w = (t0 - target) / (t0 - t1)
            return e0 + w * (e1 - e0), v0 + w * (v1 - v0) - target
    return None


def matched_fit(groups: dict[str, list[dict]], a: str, b: str) -> dict[str, Any] | None:
    """The generalisation gaps of points ``a`` and ``b`` at the same fit of the training text: a
    model that fits less has less to lose on unseen text, so a smaller gap at the end of a budget
    can be slower learning rather than regularisation. Each finished, converged seed's end is the
    last point of its :func:`~archsim.functional.curves.fit_curve` (training and validation loss
    each averaged over its last epoch). The point whose mean final training loss
    is higher (``slow``) sets the fit, ``target``; the other (``fast``) is read where each of its
    seeds first reached it (:func:`gap_at_fit`). Validation minus training loss on both sides (the
    curves have no test loss); ``change`` is slow minus fast by the module's rule. None when either
    point has no such seed."""
    def curves(label: str) -> list[list[dict]]:
        return [(r.get("result") or {}).get("curve") for r in groups[label]
                if (loss := row_loss(r, "train_loss")) is not None and math.isfinite(loss)]

    ends = {label: [pts[-1] for pts in map(fit_curve, curves(label)) if pts] for label in (a, b)}
    if not ends[a] or not ends[b]:
        return None
    train = {label: Stats.of(t for _, t, _ in ends[label]).mean for label in (a, b)}
    slow, fast = (a, b) if train[a] >= train[b] else (b, a)
    found = [g for g in (gap_at_fit(c, train[slow]) for c in curves(fast)) if g is not None]
    gap_slow = Stats.of(v - t for _, t, v in ends[slow])
    gap_fast = Stats.of(gap for _, gap in found)
    return {"slow": slow, "fast": fast, "target": train[slow], "reached": len(found),
            "of": len(ends[fast]), "epoch_fast": Stats.of(e for e, _ in found),
            "epoch_slow": Stats.of(e for e, _, _ in ends[slow]), "gap_slow": gap_slow,
            "gap_fast": gap_fast, "change": compare(gap_slow, gap_fast) if found else None}


_VERDICT_FIT_LEAD = ("At matched fit (not part of the verdict; validation rather than test loss, as the "
                     "curves have no test loss)")
_REFERENCE_FIT_LEAD = "At matched fit (validation rather than test loss)"


def _matched_fit_note(m: dict[str, Any], delta: float, *, lead: str = _VERDICT_FIT_LEAD,
                      explain: bool = True) -> str:
    """The sentence of :func:`matched_fit`, opening with ``lead``; ``explain``: end with how the fit
    and the gap are read (once per report)."""
    head = f"{lead}: {m['slow']} ends its budget at a training loss of {m['target']:.3f}"
    seeds = "" if m["reached"] == m["of"] == 1 else f" ({m['reached']} of {m['of']} seeds)"
    if not m["reached"]:
        return (f"{head}; {m['fast']}'s curves never cross it{seeds}: never that low, or already "
                "below it at their first epoch, so there is no matched comparison.")
    c = m["change"]
    said = ("no change" if c is None or not c.exceeds(delta) else
            "larger" if c.rises(delta) else "smaller")
    return (f"{head}; {m['fast']} reached it at epoch {fmt_stats(m['epoch_fast'], 1, table=False)}"
            f"{seeds}, where its validation - training gap was "
            f"{fmt_stats(m['gap_fast'], signed=True, table=False)} nats/char, against "
            f"{fmt_stats(m['gap_slow'], signed=True, table=False)} for {m['slow']} at epoch "
            f"{fmt_stats(m['epoch_slow'], 1, table=False)}: {fmt_change(c)} ({m['slow']}'s gap: "
            f"{said} at the same fit, by the rule above)."
            + (" Training and validation loss: each the mean over an epoch, which describes the model "
               "at the epoch's middle to first order in the loss's slope (the epochs given are those "
               "middles); the figure's right-hand panel draws each run's gap against its fit."
               if explain else ""))


def _mean_curve(curves: list[list[dict]], key: str) -> list[tuple[float, Stats]]:
    """One loss of the seeds' curves by epoch: ``(epoch, Stats over the seeds)``, in epoch order."""
    by_epoch: dict[float, list[float]] = {}
    for curve in curves:
        for epoch, value in curve_points(curve, key):
            by_epoch.setdefault(round(epoch, 6), []).append(value)
    return [(e, Stats.of(v)) for e, v in sorted(by_epoch.items())]


def add_partway_curves(analysis: Analysis, rows: list[dict], partway: list[dict],
                       lost: list[dict] = ()) -> None:
    """Give the plot the curves so far of the runs still part way (``partway``: the part-way runs of
    :func:`archsim.reproduce.progress.partway_runs`, matched to ``rows`` by key): a paper-scale run
    trains for hours before it has a final loss, and its curve is the claim's figure in the making.
    ``lost``: the curves of earlier attempts whose checkpoints were lost with their machine
    (:func:`archsim.reproduce.progress.lost_attempts`), drawn apart. They stay out of the table
    and the verdict, which take finished runs only."""
    by_key = {r.get("key"): r for r in rows if r.get("key")}
    for name, runs in (("partway_curves", partway), ("lost_curves", lost)):
        found: dict[str, list[tuple[Any, list[dict]]]] = {}
        for run in runs:
            row = by_key.get(run.get("key"))
            if row is not None and run.get("curve"):
                found.setdefault(_overfit_label(row), []).append((row.get("seed"), run["curve"]))
        analysis.metrics[name] = found


def _plot_partway(ax, label: str, color: str, runs: list[tuple[Any, list[dict]]], *,
                  lost: bool = False) -> bool:
    """Each part-way run's own curve (no mean: seeds stand at different epochs): validation loss
    dotted with hollow markers, training loss faint dashed (the x label says so); labelled with
    its seed and the epoch reached. ``lost``: an earlier attempt whose checkpoint was lost, drawn
    fainter with crosses."""
    drawn = False
    marker, alpha = ("x", 0.45) if lost else ("o", 1.0)
    for seed, curve in runs:
        valid, train = curve_points(curve, "valid_loss"), curve_points(curve, "train_loss")
        if not valid:
            continue
        ax.plot([e for e, _ in train], [y for _, y in train], color=color, alpha=0.35 * alpha, lw=1,
                ls="--")
        ax.plot([e for e, _ in valid], [y for _, y in valid], color=color, lw=1.2, ls=":", marker=marker,
                ms=3, mfc="none", alpha=alpha,
                label=f"{label}, " + (f"lost attempt (seed {seed}, to epoch {valid[-1][0]:g})" if lost else
                                      f"part way (seed {seed}, epoch {valid[-1][0]:g} so far)"))
        drawn = True
    return drawn


def _fit_runs(finished: dict[str, list[list[dict]]], partway: dict[str, list[tuple[Any, list[dict]]]]
              ) -> list[tuple[str, list[tuple[float, float, float]], str]]:
    """``(point label, fit curve, what)`` of each run without dropout whose
    :func:`~archsim.functional.curves.fit_curve` has a point (any run the matched-fit note can
    read); ``what`` is "" for a
    finished seed, ", part way (seed s)" for a run still going. A dropout run's training loss is
    measured with dropout active, so its gap is not comparable and it is left out."""
    runs = []
    for label in dict.fromkeys([*finished, *partway]):
        if label.endswith("dropout 0"):
            runs += [(label, fit_curve(c), "") for c in finished.get(label, [])]
            runs += [(label, fit_curve(c), f", part way (seed {seed})") for seed, c in partway.get(label, [])]
    return [r for r in runs if r[1]]


def _plot_fit(ax, runs: list[tuple[str, list[tuple[float, float, float]], str]], colors: dict[str, str],
              target: float | None) -> None:
    """The generalisation gap against the fit (:func:`_fit_runs`): validation minus training loss
    over the training loss, the fit growing to the right. Runs whose lines lie on one another
    generalise alike at the same fit, however far each got in its budget; ``target``: the fit where
    the matched-fit note reads them."""
    named = set()     # a point's seeds share its colour and one legend entry
    for label, pts, what in runs:
        ax.plot([t for _, t, _ in pts], [v - t for _, t, v in pts], color=colors[label],
                ls=":" if what else "-", lw=1.2, marker="o", ms=2.5, mfc="none" if what else None,
                label="_nolegend_" if label + what in named else label + what)
        named.add(label + what)
    if target is not None:
        ax.axvline(target, color="0.4", lw=0.8, ls="--", label=f"matched fit ({target:.3f})")
    ax.invert_xaxis()
    ax.set_xlabel("training loss, mean over an epoch (nats/char; the fit grows to the right)", fontsize=8)
    ax.set_ylabel("validation - training (nats/char)")
    ax.set_title("Gap at the same fit (runs without dropout)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def plot_overfitting(analysis: Analysis, path: Path) -> Path:
    """Training (dashed) and validation loss by epoch per point, mean ± sd over its finished seeds,
    and the curves so far of part-way runs (:func:`add_partway_curves`); beside it, where runs have
    curves, their gaps at the same fit (:func:`_plot_fit`); bars of the final losses when there is
    no curve at all."""
    from archsim.plots import figure

    m = analysis.metrics
    partway, lost = m.get("partway_curves") or {}, m.get("lost_curves") or {}
    # One colour per point, whether it has finished seeds, part-way runs or lost attempts.
    colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys([*m["curves"], *partway, *lost]))}
    fit_runs = _fit_runs(m["curves"], partway)
    if fit_runs:
        fig = figure(11.4, 4.4)
        ax, fit_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        _plot_fit(fit_ax, fit_runs, colors, (m.get("matched_fit") or {}).get("target"))
    else:
        fig, ax = _figure()
    drawn = False
    for label, curves in m["curves"].items():
        if not curves:
            continue
        train = [(e, s.mean) for e, s in _mean_curve(curves, "train_loss") if s.mean is not None]
        ax.plot([e for e, _ in train], [y for _, y in train], color=colors[label], alpha=0.5, lw=1, ls="--",
                label=f"{label}: train (mean)")
        seed_errorbars(ax, _mean_curve(curves, "valid_loss"), label=f"{label}: valid (mean ± sd)",
                       color=colors[label])
        drawn = True
    for label, runs in partway.items():
        drawn = _plot_partway(ax, label, colors[label], runs) or drawn
    for label, runs in lost.items():
        drawn = _plot_partway(ax, label, colors[label], runs, lost=True) or drawn
    if not drawn:  # no curves: bars of the final losses
        labels = list(m["stats"])
        for j, key in enumerate(("train_loss", "test_loss")):
            s = [m["stats"][lab][key] for lab in labels]
            ax.bar([k + 0.4 * j for k in range(len(labels))], [x.mean or 0 for x in s],
                   yerr=[x.sd or 0 for x in s], capsize=3, width=0.4, label=key)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=15, ha="right", fontsize=7)
    else:
        ax.set_xlabel("epochs over the training prefix" + (
            "\n(runs not finished: validation dotted, training dashed; a lost attempt's checkpoint was "
            "lost with its machine)" if partway or lost else ""), fontsize=8 if partway or lost else None)
    ax.set_ylabel("loss (nats/char)")
    ax.set_title("Overfitting: floating point with/without dropout vs RPU")
    return _save(fig, ax, path)
