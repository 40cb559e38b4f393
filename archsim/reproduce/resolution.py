"""Claim ``resolution``: inputs to the arrays need at least 7 bits with deterministic rounding and 5 with
stochastic rounding (analysis and plot)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.reproduce.analysis import Analysis, _axis, _fmt, _mean, row_loss
from archsim.reproduce.figures import _figure, _save

#: "Within X of the reference" for the resolution thresholds.
RESOLUTION_TOLERANCE = 0.03

BITS_AXIS = "architecture.dac.bits"
ROUND_AXIS = "architecture.periphery.inp_sto_round"


def resolution_threshold(losses: dict[int, float | None], reference: float,
                         tolerance: float = RESOLUTION_TOLERANCE) -> int | None:
    """Fewest bits b such that every scanned resolution >= b has test loss <= reference + tolerance.

    None when even the highest scanned resolution is further than ``tolerance`` from the reference
    (or has no result).
    """
    threshold = None
    for bits in sorted(losses, reverse=True):
        value = losses[bits]
        if value is None or value - reference > tolerance:
            break
        threshold = bits
    return threshold


def analyse_resolution(rows: list[dict], *, tolerance: float = RESOLUTION_TOLERANCE,
                       expected: tuple[int, int] = (7, 5)) -> Analysis:
    """Thresholds of input resolution with deterministic and stochastic rounding.

    Reference: the test loss at the highest scanned resolution with deterministic rounding. The
    threshold of a rounding mode is :func:`resolution_threshold`. holds: thresholds equal the paper's
    ``expected`` = (7 deterministic, 5 stochastic). partly: one of them matches, or stochastic
    rounding needs fewer bits than deterministic. does not hold: neither.
    """
    curves: dict[bool, dict[int, list[float | None]]] = {False: {}, True: {}}
    train: dict[tuple[bool, int], list[float | None]] = {}
    for r in rows:
        bits, sto = _axis(r, BITS_AXIS), bool(_axis(r, ROUND_AXIS, False))
        if bits is None:
            continue
        curves[sto].setdefault(int(bits), []).append(row_loss(r))
        train.setdefault((sto, int(bits)), []).append(row_loss(r, "train_loss"))
    loss = {sto: {b: _mean(v) for b, v in c.items()} for sto, c in curves.items()}
    metrics: dict[str, Any] = {"loss": loss, "tolerance": tolerance, "expected": expected}
    notes = [f"Threshold of a rounding mode: the fewest DAC bits b such that every scanned resolution "
             f">= b has a test loss within {tolerance} nats/char of the reference (the highest scanned "
             "resolution with deterministic rounding). inp_res = 1/(2^bits - 2) of the input range."]
    det_bits = [b for b, v in loss[False].items() if v is not None]
    table = []
    all_bits = sorted(set(loss[False]) | set(loss[True]))
    ref_bits = max(det_bits) if det_bits else None
    ref = loss[False][ref_bits] if ref_bits is not None else None
    for b in all_bits:
        row: dict[str, Any] = {"DAC bits": b}
        for sto, label in ((False, "deterministic"), (True, "stochastic")):
            v = loss[sto].get(b)
            row[f"test loss, {label}"] = _fmt(v)
            row[f"vs ref, {label}"] = _fmt(None if v is None or ref is None else v - ref, signed=True)
        table.append(row)
    if ref is None or math.isinf(ref) or not loss[True]:
        return Analysis("not tested", "Not tested: the sweep lacks deterministic or stochastic-rounding "
                        "points (or the reference run diverged).", table, metrics, notes)
    thr = {sto: resolution_threshold(loss[sto], ref, tolerance) for sto in (False, True)}
    metrics.update(reference=ref, reference_bits=ref_bits, threshold_det=thr[False], threshold_sto=thr[True])

    def describe(sto: bool) -> str:
        t, label = thr[sto], ("deterministic" if not sto else "stochastic")
        scanned = sorted(loss[sto])
        if t is None:
            return f"with {label} rounding no scanned resolution is within {tolerance} nats/char"
        below = [b for b in scanned if b < t]
        if not below:
            return (f"with {label} rounding every scanned resolution is within {tolerance} nats/char "
                    f"(down to {t} bits, the lowest scanned)")
        b = below[-1]
        return (f"with {label} rounding the test loss is within {tolerance} nats/char from {t} bits up "
                f"({b} bits: {_fmt(loss[sto][b] - ref, signed=True)})")

    body = (f"{describe(False)}; {describe(True)} (reference: {ref_bits}-bit deterministic, "
            f"{ref:.3f} nats/char)")
    det_ok, sto_ok = thr[False] == expected[0], thr[True] == expected[1]
    lower = thr[True] is not None and (thr[False] is None or thr[True] < thr[False])
    if det_ok and sto_ok:
        return Analysis("holds", f"Holds in our runs: {body}.", table, metrics, notes)
    if det_ok or sto_ok or lower:
        def bits(t):
            return "no scanned resolution" if t is None else f"{t} bits"
        det = (f"the deterministic-rounding threshold is the paper's {expected[0]} bits" if det_ok else
               f"the deterministic-rounding threshold is {bits(thr[False])}, not {expected[0]}")
        if sto_ok:
            sto = f"stochastic rounding brings it to the paper's {expected[1]} bits"
        elif lower:
            sto = f"stochastic rounding lowers it to {bits(thr[True])}, not {expected[1]}"
        else:
            sto = f"stochastic rounding does not lower it ({bits(thr[True])}, not {expected[1]})"
        return Analysis("partly", f"Holds partly in our runs: {det}, but {sto}; {body}.",
                        table, metrics, notes)
    return Analysis("does not hold", f"Does not hold in our runs: stochastic rounding does not lower "
                    f"the bits needed; {body}.", table, metrics, notes)


def plot_resolution(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    for sto, label in ((False, "deterministic rounding"), (True, "stochastic rounding")):
        pts = sorted((b, v) for b, v in m["loss"][sto].items() if v is not None and math.isfinite(v))
        ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", label=label)
    if m.get("reference") is not None:
        ax.axhspan(m["reference"], m["reference"] + m["tolerance"], color="k", alpha=0.1,
                   label=f"reference + {m['tolerance']}")
    ax.set_xlabel("DAC input bits")
    ax.set_ylabel("test loss (nats/char)")
    ax.set_title("Input resolution, LSTM2-64 War and Peace (rpu_baseline)")
    return _save(fig, ax, path)
