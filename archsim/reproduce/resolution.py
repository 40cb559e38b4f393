"""Claim ``resolution``: inputs to the arrays need at least 7 bits with deterministic rounding and 5 with
stochastic rounding (analysis and plot)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.reproduce.analysis import (
    SPREAD_SE, Analysis, Stats, _axis, change_rule, compare, fmt_change, fmt_stats, spread_clause,
)
from archsim.reproduce.figures import _figure, _save, seed_errorbars

#: "Within X of the reference" for the resolution thresholds: the floor of a change against the
#: reference (with several seeds a change must also exceed the seed spread).
RESOLUTION_TOLERANCE = 0.03

BITS_AXIS = "architecture.dac.bits"
ROUND_AXIS = "architecture.periphery.inp_sto_round"


def resolution_threshold(losses: dict[int, Stats | float | None], reference: Stats | float,
                         tolerance: float = RESOLUTION_TOLERANCE) -> int | None:
    """Fewest bits b such that no scanned resolution >= b has a test loss above the reference by a
    change of floor ``tolerance`` (more than ``max(tolerance, 2 SE)``; single losses: more than
    ``tolerance``). Values are :class:`~archsim.reproduce.analysis.Stats` or single losses.

    None when even the highest scanned resolution is above the reference by a change (or has no
    result).
    """
    threshold = None
    for bits in sorted(losses, reverse=True):
        change = compare(losses[bits], reference)
        if change is None or change.rises(tolerance):
            break
        threshold = bits
    return threshold


def analyse_resolution(rows: list[dict], *, tolerance: float = RESOLUTION_TOLERANCE,
                       expected: tuple[int, int] = (7, 5)) -> Analysis:
    """Thresholds of input resolution with deterministic and stochastic rounding, each point over
    its seeds.

    Reference: the test loss at the highest scanned resolution with deterministic rounding. The
    threshold of a rounding mode is :func:`resolution_threshold`. holds: thresholds equal the paper's
    ``expected`` = (7 deterministic, 5 stochastic). partly: one of them matches, or stochastic
    rounding needs fewer bits than deterministic. does not hold: neither.
    """
    groups: dict[bool, dict[int, list[dict]]] = {False: {}, True: {}}
    for r in rows:
        bits, sto = _axis(r, BITS_AXIS), bool(_axis(r, ROUND_AXIS, False))
        if bits is not None:
            groups[sto].setdefault(int(bits), []).append(r)
    stats = {sto: {b: Stats.of_rows(rs) for b, rs in g.items()} for sto, g in groups.items()}
    loss = {sto: {b: s.value for b, s in c.items()} for sto, c in stats.items()}
    metrics: dict[str, Any] = {"loss": loss, "stats": stats, "tolerance": tolerance, "expected": expected}
    notes = [f"Threshold of a rounding mode: the fewest DAC bits b such that no scanned resolution >= b "
             f"has a test loss above the reference (the highest scanned resolution with deterministic "
             f"rounding) by {change_rule(f'{tolerance} nats/char')}. \"vs ref\": difference of the mean "
             f"test losses ± {SPREAD_SE:g} standard errors. inp_res = 1/(2^bits - 2) of the input range."]
    det_bits = [b for b, v in loss[False].items() if v is not None]
    table = []
    all_bits = sorted(set(loss[False]) | set(loss[True]))
    ref_bits = max(det_bits) if det_bits else None
    ref = stats[False][ref_bits] if ref_bits is not None else None
    for b in all_bits:
        row: dict[str, Any] = {"DAC bits": b}
        for sto, label in ((False, "deterministic"), (True, "stochastic")):
            s = stats[sto].get(b)
            row[f"test loss, {label}"] = "-" if s is None else fmt_stats(s)
            row[f"vs ref, {label}"] = fmt_change(None if s is None or ref is None else compare(s, ref))
        table.append(row)
    if ref is None or math.isinf(ref.value) or not loss[True]:
        return Analysis("not tested", "Not tested: the sweep lacks deterministic or stochastic-rounding "
                        "points (or the reference run diverged).", table, metrics, notes,
                        lacks_rows=True)
    thr = {sto: resolution_threshold(stats[sto], ref, tolerance) for sto in (False, True)}
    metrics.update(reference=ref.value, reference_stats=ref, reference_bits=ref_bits,
                   threshold_det=thr[False], threshold_sto=thr[True])
    multi = any(s.n > 1 for c in stats.values() for s in c.values())
    within = f"within max({tolerance}, 2 SE) nats/char" if multi else f"within {tolerance} nats/char"

    def describe(sto: bool) -> str:
        t, label = thr[sto], ("deterministic" if not sto else "stochastic")
        scanned = sorted(stats[sto])
        if t is None:
            return f"with {label} rounding no scanned resolution is {within}"
        below = [b for b in scanned if b < t]
        if not below:
            return (f"with {label} rounding every scanned resolution is {within} "
                    f"(down to {t} bits, the lowest scanned)")
        b = below[-1]
        return (f"with {label} rounding the test loss is {within} from {t} bits up "
                f"({b} bits: {fmt_change(compare(stats[sto][b], ref))})")

    body = (f"{describe(False)}; {describe(True)} (reference: {ref_bits}-bit deterministic, "
            f"{fmt_stats(ref, table=False)} nats/char)")
    seeds = spread_clause(s for c in stats.values() for s in c.values())
    det_ok, sto_ok = thr[False] == expected[0], thr[True] == expected[1]
    lower = thr[True] is not None and (thr[False] is None or thr[True] < thr[False])
    if det_ok and sto_ok:
        return Analysis("holds", f"Holds in our runs: {body}.{seeds}", table, metrics, notes)
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
        return Analysis("partly", f"Holds partly in our runs: {det}, but {sto}; {body}.{seeds}",
                        table, metrics, notes)
    return Analysis("does not hold", f"Does not hold in our runs: stochastic rounding does not lower "
                    f"the bits needed; {body}.{seeds}", table, metrics, notes)


def plot_resolution(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    for i, (sto, label) in enumerate(((False, "deterministic rounding"), (True, "stochastic rounding"))):
        seed_errorbars(ax, sorted(m["stats"][sto].items()), label=f"{label}, mean ± sd over seeds",
                       color=f"C{i}", offset=0.06 * (2 * i - 1))
    if m.get("reference") is not None:
        ax.axhspan(m["reference"], m["reference"] + m["tolerance"], color="k", alpha=0.1,
                   label=f"reference + {m['tolerance']}")
    ax.set_xlabel("DAC input bits")
    ax.set_ylabel("test loss (nats/char)")
    ax.set_title("Input resolution, LSTM2-64 War and Peace (rpu_baseline)")
    return _save(fig, ax, path)
