"""Claim ``asymmetry``: a few percent of up/down asymmetry of the device update raises the test loss
over floating point, while a symmetric device stays close to it (analysis and plot)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.reproduce.analysis import (
    DELTA, Analysis, _axis, _fmt, _is_fp, _mean, _pct, _strength, row_loss,
)
from archsim.reproduce.figures import _figure, _save

#: "A few percent" of asymmetry: the claim holds only if the loss rises at or below this up_down.
FEW_PERCENT = 0.05
#: The symmetric device "stays close" to floating point when its test loss is within this.
CLOSE_TO_FP = 0.10


def analyse_asymmetry(rows: list[dict], *, delta: float = DELTA, few: float = FEW_PERCENT,
                      close: float = CLOSE_TO_FP) -> Analysis:
    """Test loss versus ``device.up_down`` (device rows) against floating point (``device: ideal``).

    holds: the symmetric device is within ``close`` of floating point, and some asymmetry of at most
    ``few`` raises the test loss by more than ``delta`` over the symmetric device. partly: asymmetry
    raises the loss, but only above ``few``, or the symmetric device is not close to floating point.
    does not hold: no scanned asymmetry raises the loss by more than ``delta``.
    """
    fp_rows = [r for r in rows if _is_fp(r)]
    by_u: dict[float, list[dict]] = {}
    for r in rows:
        if not _is_fp(r):
            by_u.setdefault(float(_axis(r, "device.up_down", 0.0) or 0.0), []).append(r)
    fp = {k: _mean([row_loss(r, k) for r in fp_rows]) for k in ("train_loss", "valid_loss", "test_loss")}
    loss = {u: _mean([row_loss(r) for r in rs]) for u, rs in by_u.items()}
    table = []
    if fp["test_loss"] is not None:
        table.append({"device": "floating point (ideal)", "up_down": "-",
                      "train loss": _fmt(fp["train_loss"]), "valid loss": _fmt(fp["valid_loss"]),
                      "test loss": _fmt(fp["test_loss"]), "vs fp": "-", "vs symmetric": "-"})
    sym = loss.get(0.0)
    for u in sorted(by_u):
        rs = by_u[u]
        test = loss[u]
        table.append({
            "device": str(_axis(rs[0], "device", "device")), "up_down": _pct(u),
            "train loss": _fmt(_mean([row_loss(r, "train_loss") for r in rs])),
            "valid loss": _fmt(_mean([row_loss(r, "valid_loss") for r in rs])),
            "test loss": _fmt(test),
            "vs fp": _fmt(None if fp["test_loss"] is None or test is None else test - fp["test_loss"],
                          signed=True),
            "vs symmetric": _fmt(None if sym is None or test is None else test - sym, signed=True)})
    notes = [f"A change is a test-loss difference above {delta} nats/char; \"a few percent\" is "
             f"up_down <= {_pct(few)}; \"close to floating point\" is within {close} nats/char."]
    asym = sorted(u for u in loss if u > 0 and loss[u] is not None)
    metrics: dict[str, Any] = {"fp": fp["test_loss"], "symmetric": sym, "loss": loss,
                               "delta": delta, "few": few, "close": close}
    if fp["test_loss"] is None or sym is None or not asym:
        return Analysis("not tested", "Not tested: the sweep lacks the floating-point point, the "
                        "symmetric point (up_down 0) or an asymmetric point.", table, metrics, notes)
    excess = {u: loss[u] - sym for u in asym}
    onset = next((u for u in asym if excess[u] > delta), None)
    gap_sym = sym - fp["test_loss"]
    u_max = asym[-1]
    finite = [(u, loss[u]) for u in [0.0] + asym if math.isfinite(loss[u])]
    slope = _slope(finite)
    metrics.update(excess=excess, onset=onset, gap_sym=gap_sym, slope_per_percent=slope)
    sym_close = abs(gap_sym) <= close
    sym_text = (f"the symmetric device ends at {sym:.3f} nats/char, {gap_sym:+.3f} from floating "
                f"point ({fp['test_loss']:.3f})")
    drops = non_monotone(loss, [0.0] + asym, delta)
    metrics["drops"] = drops
    tail = ("; the scan is not monotone (one seed per point): " + ", ".join(
        f"{_pct(u)} is {d:.3f} below {_pct(v)}" for u, v, d in drops)) if drops else ""
    if onset is None:
        worst = max(excess.values())
        return Analysis("does not hold", f"Does not hold in our runs: no asymmetry up to {_pct(u_max)} "
                        f"raises the test loss by more than {delta} nats/char over the symmetric "
                        f"device (largest change {_fmt(worst, signed=True)} nats/char); {sym_text}{tail}.",
                        table, metrics, notes)
    rise = (f"{_pct(onset)} asymmetry raises the test loss by {_fmt(excess[onset], signed=True)} "
            f"nats/char and {_pct(u_max)} by {_fmt(excess[u_max], signed=True)}")
    if slope is not None:
        rise += f" (least-squares slope {slope:+.3f} nats/char per percent)"
    if onset <= few + 1e-12 and sym_close:
        how = _strength(excess[u_max], delta)
        return Analysis("holds", f"Holds {how} in our runs: {rise}, while {sym_text}{tail}.",
                        table, metrics, notes)
    why = []
    if onset > few + 1e-12:
        why.append(f"the first change appears only at {_pct(onset)}, above \"a few percent\"")
    if not sym_close:
        why.append(f"{sym_text}, more than {close} nats/char")
    return Analysis("partly", f"Holds partly in our runs: {rise}, but {' and '.join(why)}{tail}.",
                    table, metrics, notes)


def non_monotone(loss: dict[float, float], order: list[float], delta: float) -> list[tuple[float, float, float]]:
    """Points whose loss is more than ``delta`` below that of a smaller asymmetry:
    ``(u, the worse smaller u, how far below)``."""
    drops = []
    worst = order[0]
    for u in order[1:]:
        if not (math.isfinite(loss[u]) and math.isfinite(loss[worst])):
            worst = u if not math.isfinite(loss[u]) else worst
            continue
        if loss[u] < loss[worst] - delta:
            drops.append((u, worst, loss[worst] - loss[u]))
        if loss[u] > loss[worst]:
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
    us = sorted(u for u, v in m["loss"].items() if v is not None)
    ys = [m["loss"][u] for u in us]
    fin = [(100 * u, y) for u, y in zip(us, ys) if math.isfinite(y)]
    ax.plot([x for x, _ in fin], [y for _, y in fin], marker="o", label="RPU device (rpu_baseline)")
    for u, y in zip(us, ys):
        if not math.isfinite(y):
            ax.annotate("diverged", (100 * u, max(v for _, v in fin) if fin else 0), rotation=90)
    if m.get("fp") is not None and math.isfinite(m["fp"]):
        ax.axhline(m["fp"], color="k", ls="--", lw=1, label="floating point")
    if m.get("symmetric") is not None and math.isfinite(m["symmetric"]):
        ax.axhspan(m["symmetric"] - m["delta"], m["symmetric"] + m["delta"], color="C0", alpha=0.12,
                   label=f"symmetric +- {m['delta']}")
    ax.set_xlabel("update asymmetry up_down (%)")
    ax.set_ylabel("test loss (nats/char)")
    ax.set_title("Asymmetry scan, LSTM2-64 War and Peace")
    return _save(fig, ax, path)
