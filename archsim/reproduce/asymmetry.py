"""Claim ``asymmetry``: a few percent of up/down asymmetry of the device update raises the test loss
over floating point, while a symmetric device stays close to it (analysis and plot)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.reproduce.analysis import (
    DELTA, SPREAD_SE, Analysis, Change, Stats, _axis, _is_fp, _pct, _strength, as_stats, change_rule,
    compare, diverged_in, fmt_change, fmt_stats, spread_clause,
)
from archsim.reproduce.figures import _figure, _save, seed_errorbars

#: "A few percent" of asymmetry: the claim holds only if the loss rises at or below this up_down.
FEW_PERCENT = 0.05
#: The symmetric device "stays close" to floating point when its test loss is within this.
CLOSE_TO_FP = 0.10

LOSSES = ("train_loss", "valid_loss", "test_loss")


def analyse_asymmetry(rows: list[dict], *, delta: float = DELTA, few: float = FEW_PERCENT,
                      close: float = CLOSE_TO_FP) -> Analysis:
    """Test loss versus ``device.up_down`` (device rows) against floating point (``device: ideal``),
    each point over its seeds; changes by the rule of :mod:`~archsim.reproduce.analysis`.

    holds: the symmetric device does not differ from floating point by a change of floor ``close``, and some
    asymmetry of at most ``few`` raises the test loss over the symmetric device by a change of floor
    ``delta``. partly: asymmetry raises the loss, but only above ``few``, or the symmetric device is
    not close to floating point. does not hold: no scanned asymmetry raises the loss by a change.

    The scanned device is the one with the most ``up_down`` values; the rows of other devices (e.g.
    ``rpu_symmetric``, without the scanned device's device-to-device up/down imbalance) are
    reference points: a table row and a note each, outside the verdict.
    """
    fp_rows = [r for r in rows if _is_fp(r)]
    by_device: dict[str, list[dict]] = {}
    for r in rows:
        if not _is_fp(r):
            by_device.setdefault(str(_axis(r, "device", "device")), []).append(r)
    scanned = max(by_device, key=lambda d: len({_axis(r, "device.up_down", 0.0) for r in by_device[d]}),
                  default=None)
    by_u: dict[float, list[dict]] = {}
    for r in by_device.get(scanned, []):
        by_u.setdefault(float(_axis(r, "device.up_down", 0.0) or 0.0), []).append(r)
    extra = {d: rs for d, rs in by_device.items() if d != scanned}
    references = {d: Stats.of_rows(rs) for d, rs in extra.items()}
    fp = {k: Stats.of_rows(fp_rows, k) for k in LOSSES}
    stats = {u: Stats.of_rows(rs) for u, rs in by_u.items()}
    loss = {u: s.value for u, s in stats.items()}
    table = []
    if fp["test_loss"].n:
        table.append({"device": "floating point (ideal)", "up_down": "-",
                      **{f"{k.split('_')[0]} loss": fmt_stats(fp[k]) for k in LOSSES},
                      "vs fp": "-", "vs symmetric": "-"})
    sym = stats.get(0.0)
    for u in sorted(by_u):
        rs = by_u[u]
        table.append({"device": str(_axis(rs[0], "device", "device")), "up_down": _pct(u),
                      **{f"{k.split('_')[0]} loss": fmt_stats(Stats.of_rows(rs, k)) for k in LOSSES},
                      "vs fp": fmt_change(compare(stats[u], fp["test_loss"])),
                      "vs symmetric": fmt_change(None if sym is None else compare(stats[u], sym))})
    for device, rs in extra.items():
        st = references[device]
        ups = sorted({float(_axis(r, "device.up_down", 0.0) or 0.0) for r in rs})
        table.append({"device": f"{device} (reference)", "up_down": ", ".join(_pct(u) for u in ups),
                      **{f"{k.split('_')[0]} loss": fmt_stats(Stats.of_rows(rs, k)) for k in LOSSES},
                      "vs fp": fmt_change(compare(st, fp["test_loss"])),
                      "vs symmetric": fmt_change(None if sym is None else compare(st, sym))})
    notes = [f"\"vs fp\" and \"vs symmetric\": difference of the mean test losses ± {SPREAD_SE:g} "
             f"standard errors. A change is {change_rule(f'{delta} nats/char')}; \"a few percent\" is "
             f"up_down <= {_pct(few)}; \"close to floating point\": the symmetric device's test loss does "
             f"not differ from floating point's by {change_rule(f'{close} nats/char')}."]
    for device, st in references.items():
        to_fp, to_sym = compare(st, fp["test_loss"]), None if sym is None else compare(st, sym)
        if to_fp is not None or to_sym is not None:
            notes.append(f"Reference point {device} (not part of the verdict): test loss "
                         f"{fmt_stats(st, table=False)} nats/char, {fmt_change(to_fp)} from floating "
                         f"point and {fmt_change(to_sym)} from {scanned} at 0 %.")
    asym = sorted(u for u in loss if u > 0 and loss[u] is not None)
    metrics: dict[str, Any] = {"fp": fp["test_loss"].value, "symmetric": None if sym is None else sym.value,
                               "scanned": scanned,
                               "references": references,
                               "loss": loss, "stats": stats, "fp_stats": fp["test_loss"],
                               "delta": delta, "few": few, "close": close}
    if fp["test_loss"].value is None or sym is None or sym.value is None or not asym:
        return Analysis("not tested", "Not tested: the sweep lacks the floating-point point, the "
                        "symmetric point (up_down 0) or an asymmetric point.", table, metrics, notes,
                        lacks_rows=True)
    changes = {u: compare(stats[u], sym) for u in asym}
    excess = {u: c.diff if c is not None else math.nan for u, c in changes.items()}
    onset = next((u for u in asym if changes[u] is not None and changes[u].rises(delta)), None)
    to_fp = compare(sym, fp["test_loss"])
    gap_sym = to_fp.diff if to_fp is not None else math.inf
    u_max = asym[-1]
    finite = [(u, stats[u].mean) for u in [0.0] + asym if math.isfinite(loss[u])]
    slope = _slope(finite)
    metrics.update(excess=excess, changes=changes, onset=onset, gap_sym=gap_sym, slope_per_percent=slope)
    sym_close = to_fp is not None and not to_fp.exceeds(close)
    sym_text = (f"the symmetric device ends at {fmt_stats(sym, table=False)} nats/char, "
                f"{fmt_change(to_fp)} from floating point ({fmt_stats(fp['test_loss'], table=False)})")
    drops = non_monotone(stats, [0.0] + asym, delta)
    metrics["drops"] = [(u, v, c.diff) for u, v, c in drops]
    tail = ("; the scan is not monotone: " + ", ".join(
        f"{_pct(u)} is {fmt_change(c).lstrip('+')} below {_pct(v)}" for u, v, c in drops)) if drops else ""
    seeds = spread_clause([fp["test_loss"], *stats.values()])
    if onset is None:
        worst = max(asym, key=lambda u: excess[u] if not math.isnan(excess[u]) else -math.inf)
        return Analysis("does not hold", f"Does not hold in our runs: no asymmetry up to {_pct(u_max)} "
                        f"raises the test loss over the symmetric device by a change (more than "
                        f"{delta} nats/char and the seed spread; largest difference "
                        f"{fmt_change(changes[worst])} nats/char at {_pct(worst)}); {sym_text}{tail}.{seeds}",
                        table, metrics, notes)
    def raises(u: float, verb: str = "raises the test loss ") -> str:
        if stats[u].diverged:
            return diverged_in(stats[u], "diverges")
        return f"{verb}by {fmt_change(changes[u])} nats/char"

    rise = f"{_pct(onset)} asymmetry {raises(onset)}"
    if u_max != onset:
        rise += f" and {_pct(u_max)} {raises(u_max, '' if not stats[onset].diverged else 'raises it ')}"
    if slope is not None:
        rise += f" (least-squares slope of the means {slope:+.3f} nats/char per percent)"
    if onset <= few + 1e-12 and sym_close:
        how = _strength(excess[u_max], changes[u_max].threshold(delta))
        return Analysis("holds", f"Holds {how} in our runs: {rise}, while {sym_text}{tail}.{seeds}",
                        table, metrics, notes)
    why = []
    if onset > few + 1e-12:
        why.append(f"the first change appears only at {_pct(onset)}, above \"a few percent\"")
    if not sym_close:
        why.append(f"{sym_text}, more than {close} nats/char")
    return Analysis("partly", f"Holds partly in our runs: {rise}, but {' and '.join(why)}{tail}.{seeds}",
                    table, metrics, notes)


def non_monotone(stats: dict[float, Stats | float], order: list[float],
                 delta: float = DELTA) -> list[tuple[float, float, Change]]:
    """Points whose test loss falls below that of a smaller asymmetry by a change (floor ``delta``):
    ``(u, the worse smaller u, the Change of that point over u)``. Values may be :class:`Stats` or single
    losses."""
    stats = {u: as_stats(s) for u, s in stats.items()}
    drops = []
    worst = order[0]
    for u in order[1:]:
        a, b = stats[u].value, stats[worst].value
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            worst = u if a is not None and not math.isfinite(a) else worst
            continue
        below = compare(stats[worst], stats[u])
        if below.rises(delta):
            drops.append((u, worst, below))
        if a > b:
            worst = u
    return drops


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of loss against up_down in percent."""
    if len(points) < 2:
        return None
    xs = [100 * u for u, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def plot_asymmetry(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    seed_errorbars(ax, sorted((100 * u, s) for u, s in m["stats"].items()),
                   label=f"RPU device ({m.get('scanned') or 'rpu_baseline'}), mean ± sd over seeds",
                   color="C0")
    for i, (device, st) in enumerate(m.get("references", {}).items()):
        if st.mean is not None and math.isfinite(st.mean):
            ax.errorbar([0.0], [st.mean], yerr=[st.sd or 0.0], fmt="s", color=f"C{i + 2}", capsize=3,
                        label=f"{device} (reference), mean ± sd")
    fp = m.get("fp_stats")
    if fp is not None and fp.mean is not None:
        ax.axhline(fp.mean, color="k", ls="--", lw=1, label="floating point")
        if fp.sd is not None:
            ax.axhspan(fp.mean - fp.sd, fp.mean + fp.sd, color="k", alpha=0.08, label="floating point ± sd")
    if m.get("symmetric") is not None and math.isfinite(m["symmetric"]):
        ax.axhspan(m["symmetric"] - m["delta"], m["symmetric"] + m["delta"], color="C0", alpha=0.12,
                   label=f"symmetric ± {m['delta']} (floor of a change)")
    ax.set_xlabel("update asymmetry up_down (%)")
    ax.set_ylabel("test loss (nats/char)")
    ax.set_title("Asymmetry scan, LSTM2-64 War and Peace")
    return _save(fig, ax, path)
