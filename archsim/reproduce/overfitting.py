"""Claim ``overfitting``: device noise regularises, so an RPU model without dropout overfits less than
a floating-point model without dropout (analysis and plot; its sweeps run through
:mod:`archsim.reproduce.prefix`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.reproduce.analysis import (
    DELTA, Analysis, _axis, _fmt, _is_fp, _mean, _strength, row_loss,
)
from archsim.reproduce.figures import _figure, _save

#: Test minus training loss of the unregularised floating-point model that counts as overfitting.
OVERFIT_GAP = 0.05


def _overfit_label(row: dict) -> str:
    dropout = float(_axis(row, "workload.training.dropout", 0.0) or 0.0)
    who = "floating point" if _is_fp(row) else f"RPU ({_axis(row, 'device')})"
    return f"{who}, dropout {dropout:g}"


def analyse_overfitting(rows: list[dict], *, delta: float = DELTA,
                        overfit_gap: float = OVERFIT_GAP) -> Analysis:
    """Generalisation gaps (test minus train loss) of fp without dropout, fp with dropout, and an RPU
    device without dropout.

    not tested: fp without dropout does not overfit (gap below ``overfit_gap``). holds: the RPU gap is
    smaller than the fp-without-dropout gap by more than ``delta`` and the RPU test loss is within
    ``delta`` of the better floating-point test loss (it needs no dropout). partly: the gap is
    smaller but the RPU test loss is worse (part of the smaller gap is slower learning). does not
    hold: the gap is not smaller.
    """
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_overfit_label(r), []).append(r)
    stats: dict[str, dict[str, float | None]] = {}
    for label, rs in groups.items():
        s = {k: _mean([row_loss(r, k) for r in rs])
             for k in ("train_loss", "valid_loss", "test_loss", "valid_best", "epochs")}
        s["gap"] = None if s["test_loss"] is None or s["train_loss"] is None else s["test_loss"] - s["train_loss"]
        s["valid_rise"] = None if s["valid_loss"] is None or s["valid_best"] is None else s["valid_loss"] - s["valid_best"]
        stats[label] = s
    table = [{"run": label, "epochs": _fmt(s["epochs"], 1), "train loss": _fmt(s["train_loss"]),
              "valid loss (best)": _fmt(s["valid_best"]), "valid loss (final)": _fmt(s["valid_loss"]),
              "test loss": _fmt(s["test_loss"]), "test - train": _fmt(s["gap"], signed=True)}
             for label, s in stats.items()]
    curves = {label: (rs[0].get("result") or {}).get("curve") for label, rs in groups.items()}
    metrics: dict[str, Any] = {"stats": stats, "curves": curves, "delta": delta, "overfit_gap": overfit_gap}
    notes = [f"Overfitting: test minus training loss of floating point without dropout above "
             f"{overfit_gap} nats/char. A change is more than {delta} nats/char. The training loss is "
             "the mean over the last evaluation interval, measured on the training batches as trained "
             "(with dropout active for the dropout run, and through the noisy analog tiles for the RPU "
             "run), so it overstates the dropout model's fit of the training set."]
    fp0 = next((s for k, s in stats.items() if k.startswith("floating point") and k.endswith("dropout 0")), None)
    fpd = next((s for k, s in stats.items() if k.startswith("floating point") and not k.endswith("dropout 0")), None)
    rpu = next((s for k, s in stats.items() if k.startswith("RPU") and k.endswith("dropout 0")), None)
    if fp0 is None or rpu is None or fp0["gap"] is None or rpu["gap"] is None:
        return Analysis("not tested", "Not tested: the sweep lacks the floating-point or the RPU run "
                        "without dropout, or they have no results.", table, metrics, notes)
    metrics.update(gap_fp=fp0["gap"], gap_rpu=rpu["gap"], gap_fp_dropout=fpd["gap"] if fpd else None)
    if math.isinf(fp0["gap"]) or fp0["gap"] < overfit_gap:
        return Analysis("not tested", f"Not tested at this budget: floating point without dropout does "
                        f"not overfit (test - train {_fmt(fp0['gap'], signed=True)} nats/char, below "
                        f"{overfit_gap}), so there is nothing for device noise to regularise.",
                        table, metrics, notes)
    if math.isinf(rpu["gap"]):
        return Analysis("does not hold", "Does not hold in our runs: the RPU run without dropout "
                        "diverged.", table, metrics, notes)
    reduction = fp0["gap"] - rpu["gap"]
    best_fp = min(v for v in (fp0["test_loss"], fpd["test_loss"] if fpd else None) if v is not None)
    gaps = (f"test - train is {_fmt(rpu['gap'], signed=True)} nats/char for the RPU device without "
            f"dropout against {_fmt(fp0['gap'], signed=True)} for floating point without dropout"
            + (f" and {_fmt(fpd['gap'], signed=True)} with dropout" if fpd and fpd["gap"] is not None else ""))
    tests = (f"test loss {_fmt(rpu['test_loss'])} (RPU) vs {_fmt(fp0['test_loss'])} (fp)"
             + (f" and {_fmt(fpd['test_loss'])} (fp + dropout)" if fpd else ""))
    metrics.update(gap_reduction=reduction, best_fp_test=best_fp)
    if reduction <= delta:
        return Analysis("does not hold", f"Does not hold in our runs: {gaps} (no reduction larger than "
                        f"{delta}); {tests}.", table, metrics, notes)
    strength = _strength(reduction, delta)
    if fpd is None or fpd["test_loss"] is None or rpu["test_loss"] <= fpd["test_loss"] + delta:
        return Analysis("holds", f"Holds {strength} in our runs: {gaps}, and without dropout the RPU "
                        f"model reaches {tests}.", table, metrics, notes)
    if rpu["test_loss"] < fp0["test_loss"] - delta:
        return Analysis("partly", f"Holds partly in our runs: the RPU device regularises ({gaps}; "
                        f"{tests}: {rpu['test_loss'] - fp0['test_loss']:+.3f} against floating point "
                        f"without dropout), but less than dropout does "
                        f"({rpu['test_loss'] - fpd['test_loss']:+.3f} against floating point with "
                        "dropout).", table, metrics, notes)
    return Analysis("partly", f"Holds partly in our runs: {gaps}, but the RPU model's test loss is no "
                    f"better than floating point without dropout ({tests}), so the smaller gap is "
                    "mostly slower learning, not regularisation.", table, metrics, notes)


def plot_overfitting(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    drawn = False
    for i, (label, curve) in enumerate(m["curves"].items()):
        if not curve:
            continue
        pts = [p for p in curve if p.get("train_loss") is not None and p.get("epoch") is not None]
        ax.plot([p["epoch"] for p in pts], [p["train_loss"] for p in pts], color=f"C{i}", alpha=0.5,
                lw=1, ls="--", label=f"{label}: train")
        pts = [p for p in curve if p.get("valid_loss") is not None and p.get("epoch") is not None]
        ax.plot([p["epoch"] for p in pts], [p["valid_loss"] for p in pts], color=f"C{i}", marker="o",
                ms=3, label=f"{label}: valid")
        drawn = True
    if not drawn:  # no curves: bars of the final losses
        labels = list(m["stats"])
        for j, key in enumerate(("train_loss", "test_loss")):
            ax.bar([k + 0.4 * j for k in range(len(labels))],
                   [m["stats"][lab][key] or 0 for lab in labels], width=0.4, label=key)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=15, ha="right", fontsize=7)
    else:
        ax.set_xlabel("epochs over the training prefix")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title("Overfitting: floating point with/without dropout vs RPU")
    return _save(fig, ax, path)
