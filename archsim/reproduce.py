"""Reproduce the seed paper's claims as shipped sweeps, and say whether each holds in our runs.

The seed paper is Gokmen, Rasch & Haensch, Front. Neurosci. 12:745 (2018) (LSTM training on RPU
arrays). Each claim below names the sweep files that test it (``sweeps/reproduce/<name>.yaml`` at the
default budget, ``<name>_full.yaml`` at paper scale), an analysis of the sweep's rows, and a plot.
:func:`run_claims` runs the sweeps (resumable: a rerun only computes missing points), analyses them
and writes ``<out>/<claim>.md`` (verdict sentence, table, the command and budget that produced it)
and ``<out>/<claim>.png``; the sweeps' own results and summaries go to ``<out>/runs/<sweep name>/``.

Verdicts are ``holds``, ``partly``, ``does not hold`` or ``not tested`` (the budget did not create the
condition the claim is about). Every threshold the verdicts use is a module constant below and is
printed in the report. The library never prints.

The ``overfitting`` claim trains on the first ``training.train_chars / training.train_fraction``
characters of the workload's text (a prefix, split by ``train_fraction`` as usual), so that a model large enough to
overfit does so in minutes; its points run through :func:`run_prefix_sweep`, which uses the sweep
machinery (expansion, keys, the resumable JSONL store, local or Dask backends) with a worker function
that builds that prefix corpus. The trainer itself always uses the whole text.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from archsim.errors import SpecError
from archsim.fsutil import atomic_write_text
from archsim.plots import write_png

# -- thresholds (nats per character unless stated); each report states the ones it uses ------------
#: Smallest test-loss difference counted as a change. One seed per point by default, so this is a
#: judgement, not a measured noise floor; differences of a few hundredths are what separates the
#: conditions in the papers' tables.
DELTA = 0.02
#: "Within X of the reference" for the resolution thresholds.
RESOLUTION_TOLERANCE = 0.03
#: "A few percent" of asymmetry: the claim holds only if the loss rises at or below this up_down.
FEW_PERCENT = 0.05
#: The symmetric device "stays close" to floating point when its test loss is within this.
CLOSE_TO_FP = 0.10
#: Test minus training loss of the unregularised floating-point model that counts as overfitting.
OVERFIT_GAP = 0.05
#: The paper's ratio of multiply-adds per epoch (LSTM2-512 on the Linux corpus vs the MNIST MLP).
PAPER_MAC_RATIO = 1500.0
#: The MNIST multilayer perceptron of the RPU papers.
MLP_LAYERS = (784, 256, 128, 10)
#: Training images per MNIST epoch.
MNIST_TRAIN_IMAGES = 60_000

VERDICTS = ("holds", "partly", "does not hold", "not tested")

PAPER = "Gokmen, Rasch & Haensch, Front. Neurosci. 12:745 (2018)"


# -- registry ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One finding of the seed paper and how archsim tests it."""

    name: str
    """Short name (the CLI argument and the report's file name)."""
    title: str
    statement: str
    """The claim as the paper states it (our wording of its abstract and figures)."""
    sweeps: tuple[str, ...] = ()
    """Sweep files (stems under the sweeps folder) at the default budget; empty: no training."""
    full_sweeps: tuple[str, ...] = ()
    """Sweep files at paper scale (``--full``)."""
    prefix_data: bool = False
    """Train on a prefix of the text (``train_chars / train_fraction`` characters); see module doc."""


CLAIMS: dict[str, Claim] = {c.name: c for c in (
    Claim("asymmetry", "Update asymmetry versus floating point",
          "A few percent of up/down asymmetry of the device update raises the test error of LSTM2-64 "
          "on War and Peace over floating point; a symmetric device stays close to floating point.",
          ("asymmetry",), ("asymmetry_full",)),
    Claim("resolution", "Input (DAC) resolution with and without stochastic rounding",
          "Inputs to the arrays need at least 7 bits with deterministic rounding; stochastic "
          "rounding brings the requirement down to 5 bits.",
          ("resolution",), ("resolution_full",)),
    Claim("overfitting", "Device noise as a regulariser",
          "Device variations and analog noise regularise training: an RPU model without dropout "
          "overfits less than a floating-point model without dropout (less need for dropout).",
          ("overfitting",), ("overfitting_full",), prefix_data=True),
    Claim("macs", "Multiply-adds per epoch versus the MNIST MLP",
          "The paper's LSTM workloads are about 1500x the MNIST MLP 784-256-128-10 in multiply-adds "
          "per epoch (LSTM2-512 on the 6.2M-character Linux corpus: about 3.4M weights x 6.2M "
          "characters = 2.1e13 versus 1.41e10)."),
)}


def claim_names() -> list[str]:
    return list(CLAIMS)


def repo_root() -> Path:
    """The checkout this archsim runs from (``sweeps/`` and ``workloads/`` live there)."""
    import archsim

    return Path(archsim.__file__).resolve().parents[1]


def default_sweeps_dir() -> Path:
    """``sweeps/reproduce`` of the checkout, else of the current folder."""
    here = repo_root() / "sweeps" / "reproduce"
    return here if here.is_dir() else Path("sweeps") / "reproduce"


def default_out_dir(full: bool = False) -> Path:
    base = Path("reports") / "reproduce"
    return base / "full" if full else base


def check_claims(names: Iterable[str] | None) -> list[str]:
    """Requested claim names in registry order (all when none); unknown names are a SpecError."""
    names = list(names or [])
    for name in names:
        if name not in CLAIMS:
            raise SpecError("command line", "CLAIM", name, f"allowed: {', '.join(CLAIMS)}")
    return [n for n in CLAIMS if not names or n in names]


def sweep_paths(claim: Claim, *, full: bool = False, sweeps_dir: str | Path | None = None) -> list[Path]:
    """The sweep files of a claim; a missing one is a SpecError naming it."""
    folder = Path(sweeps_dir) if sweeps_dir is not None else default_sweeps_dir()
    paths = []
    for stem in (claim.full_sweeps if full else claim.sweeps):
        path = folder / f"{stem}.yaml"
        if not path.is_file():
            raise SpecError(path, "", str(path), f"no such sweep file (claim {claim.name}; "
                            "archsim reproduce runs from a checkout holding sweeps/reproduce/)")
        paths.append(path)
    return paths


# -- results of one claim ----------------------------------------------------------------------------
@dataclass
class Analysis:
    """What a claim's rows say."""

    verdict: str
    """One of :data:`VERDICTS`."""
    sentence: str
    """Whether the claim holds in our runs and how strongly, with numbers."""
    table: list[dict[str, Any]] = field(default_factory=list)
    """Rows of the report's table (column name -> value), in order."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Numbers behind the sentence (and the plot)."""
    notes: list[str] = field(default_factory=list)
    """Conventions and caveats printed under the table."""


@dataclass
class ClaimReport:
    """A claim run: its analysis and where it was written."""

    claim: str
    analysis: Analysis
    report_path: Path
    plot_path: Path | None
    sweeps: list[Any] = field(default_factory=list)   # SweepOutcome per sweep file
    wall_s: float = 0.0
    computed: int = 0

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Failed points of the claim's sweeps (rows with ``label`` and ``error``)."""
        return [r for outcome in self.sweeps for r in outcome.failures]

    @property
    def verdict(self) -> str:
        return self.analysis.verdict

    @property
    def sentence(self) -> str:
        return self.analysis.sentence


# -- row helpers (rows as archsim.sweep.SweepOutcome.rows: resolved, result, done, seed, kind) ------------
def _axis(row: dict, axis: str, default: Any = None) -> Any:
    resolved = row.get("resolved") or {}
    if axis in resolved:
        return resolved[axis]
    return (row.get("values") or {}).get(axis, default)


def row_loss(row: dict, key: str = "test_loss") -> float | None:
    """A loss of a finished row; ``inf`` for a diverged run, None when not run or missing."""
    if not row.get("done", True):
        return None
    result = row.get("result") or {}
    if result.get("diverged"):
        return math.inf
    value = result.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)   # a non-finite loss is stored as the string "nan" / "inf"
    except (TypeError, ValueError):
        return None
    return math.inf if math.isnan(value) else value


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    if any(math.isinf(v) for v in values):
        return math.inf
    return sum(values) / len(values)


def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "diverged"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return f"{100 * value:g} %"


def _strength(effect: float, unit: float) -> str:
    """Words for an effect measured in units of the change threshold."""
    if math.isinf(effect) or effect >= 10 * unit:
        return "strongly"
    if effect >= 3 * unit:
        return "clearly"
    return "weakly"


def _is_fp(row: dict) -> bool:
    return _axis(row, "device") == "ideal"


# -- claim 1: asymmetry ------------------------------------------------------------------------------
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


# -- claim 2: resolution -----------------------------------------------------------------------------
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


# -- claim 3: overfitting ----------------------------------------------------------------------------
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


# -- claim 4: multiply-adds per epoch ---------------------------------------------------------------------
def mlp_weights(layers: tuple[int, ...] = MLP_LAYERS, biases: bool = True) -> int:
    """Weights of a fully connected network with these layer widths (biases included by default)."""
    return sum(a * b + (b if biases else 0) for a, b in zip(layers, layers[1:]))


def corpus_chars(workload) -> int:
    """Characters of a workload's whole text: ``train_chars / train_fraction`` (the 90 % training
    split scaled back to the corpus), or the file's length when train_chars is unset."""
    t = workload.training
    if t.train_chars is not None:
        # The split keeps floor(fraction * n) characters: the smallest n consistent with train_chars.
        return math.ceil(t.train_chars / t.train_fraction - 1e-9)
    from archsim.specs.loader import text_length

    return text_length(workload.data_path())


def analyse_macs(workloads: dict[str, Any], *, reference: str = "lstm2x512",
                 paper_ratio: float = PAPER_MAC_RATIO) -> Analysis:
    """Multiply-adds per epoch of LSTM workloads against the MNIST MLP.

    Convention: one multiply-add per weight (biases included) per sample in the forward pass; an
    epoch presents every sample once (60,000 MNIST images; every character of the corpus for a char
    LSTM, the paper's 6.2M for the Linux corpus). The backward pass and the update cost one more
    multiply-add per weight and sample each in both networks, so the ratio is the same for a whole
    training epoch. holds: the reference workload's ratio is within 10 % of ``paper_ratio``;
    partly: within a factor of 2; does not hold otherwise.
    """
    mlp_w = mlp_weights()
    mlp_macs = mlp_w * MNIST_TRAIN_IMAGES
    table = [{"model": "MNIST MLP 784-256-128-10", "weights (incl. biases)": f"{mlp_w:,}",
              "samples per epoch": f"{MNIST_TRAIN_IMAGES:,} images", "MACs per epoch": f"{mlp_macs:.3e}",
              "ratio to MLP": "1"}]
    ratios: dict[str, float] = {}
    macs: dict[str, float] = {"MNIST MLP": float(mlp_macs)}
    split: dict[str, float] = {}
    for name, w in workloads.items():
        n_w = w.model.n_weights()
        chars = corpus_chars(w)
        m = n_w * chars
        ratios[name] = m / mlp_macs
        macs[name] = float(m)
        split[name] = n_w * w.resolved_train_chars() / mlp_macs
        data = w.training.data or "text"
        table.append({"model": f"{name} ({w.model.layers}x{w.model.hidden_size}, V={w.model.vocab_size})",
                      "weights (incl. biases)": f"{n_w:,}", "samples per epoch": f"{chars:,} chars of {data}",
                      "MACs per epoch": f"{m:.3e}", "ratio to MLP": f"{ratios[name]:.0f}"})
    metrics = {"mlp_weights": mlp_w, "mlp_macs": mlp_macs, "ratios": ratios, "macs": macs,
               "ratio_train_split": split, "paper_ratio": paper_ratio}
    notes = ["Convention: one multiply-add per weight (biases included) per sample, forward pass; an "
             "epoch presents every sample once (MNIST: 60,000 training images; char LSTM: every "
             "character of the corpus, as the paper's 6.2M). Backward pass and update add one "
             "multiply-add per weight and sample each in both networks, so the ratio also holds for "
             "whole training epochs."]
    if reference not in ratios:
        return Analysis("not tested", f"Not tested: workload {reference} is missing.", table, metrics, notes)
    w = workloads[reference]
    r = ratios[reference]
    off = r / paper_ratio - 1
    metrics["reference_ratio"] = r
    body = (f"{reference} ({w.model.n_weights():,} weights incl. biases x {corpus_chars(w):,} "
            f"characters = {macs[reference]:.3g} multiply-adds per epoch) is {r:.0f}x the MNIST MLP "
            f"({mlp_w:,} weights x {MNIST_TRAIN_IMAGES:,} images = {mlp_macs:.3g}), {off:+.1%} from "
            f"the paper's ~{paper_ratio:.0f}x; counting only the 90 % training split it is "
            f"{split[reference]:.0f}x")
    if abs(off) <= 0.10:
        return Analysis("holds", f"Holds in our count: {body}.", table, metrics, notes)
    if 0.5 <= r / paper_ratio <= 2:
        return Analysis("partly", f"Holds partly in our count: {body}.", table, metrics, notes)
    return Analysis("does not hold", f"Does not hold in our count: {body}.", table, metrics, notes)


def plot_macs(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    names = list(m["macs"])
    ax.bar(range(len(names)), [m["macs"][n] for n in names], color=["C7"] + ["C0"] * (len(names) - 1))
    for i, n in enumerate(names[1:], start=1):
        ax.annotate(f"{m['ratios'][n]:.0f}x", (i, m["macs"][n]), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("multiply-adds per epoch (forward)")
    ax.set_title("Multiply-adds per epoch versus the MNIST MLP")
    return _save(fig, ax, path, legend=False)


MAC_WORKLOADS = ("lstm2x64", "lstm2x512", "lstm3x512")


def macs_workloads(root: Path | None = None) -> dict[str, Any]:
    """The shipped LSTM workloads the macs claim compares (workloads/<name>.yaml of the checkout)."""
    from archsim.specs import load_workload

    root = root or repo_root()
    out = {}
    for name in MAC_WORKLOADS:
        path = root / "workloads" / f"{name}.yaml"
        if not path.is_file():
            path = Path("workloads") / f"{name}.yaml"
        if not path.is_file():
            raise SpecError(path, "", str(path), "no such workload file (archsim reproduce macs "
                            "runs from a checkout holding workloads/)")
        out[name] = load_workload(path)
    return out


# -- plotting helpers --------------------------------------------------------------------------------
def _figure():
    from archsim.plots import figure

    fig = figure(6.6, 4.2)
    return fig, fig.subplots()


def _save(fig, ax, path: Path, legend: bool = True) -> Path:
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return write_png(path, fig, dpi=110)


ANALYSES: dict[str, Callable[[list[dict]], Analysis]] = {
    "asymmetry": analyse_asymmetry, "resolution": analyse_resolution, "overfitting": analyse_overfitting,
}
PLOTS: dict[str, Callable[[Analysis, Path], Path]] = {
    "asymmetry": plot_asymmetry, "resolution": plot_resolution, "overfitting": plot_overfitting,
    "macs": plot_macs,
}


# -- running ---------------------------------------------------------------------------------------
def run_claims(names: Iterable[str] | None = None, *, full: bool = False,
               sweeps_dir: str | Path | None = None, out: str | Path | None = None,
               backend: str = "local", address: str | None = None, jobs: int | None = None,
               progress: bool = True, command: str | None = None,
               on_claim: Callable[[ClaimReport], None] | None = None,
               connect_timeout: float | None = None) -> list[ClaimReport]:
    """Run (or resume) the requested claims (all by default) and write their reports.

    Every sweep file, the backend (and the form of a Dask ``address``) and the output folder are
    checked before anything runs. ``command`` is the command line quoted in the reports (default:
    the equivalent ``archsim reproduce`` call). ``on_claim`` is called after each claim's report is
    written. ``connect_timeout`` bounds the wait for the Dask scheduler at ``address``.
    """
    from archsim.fsutil import check_out_dir
    from archsim.sweep import load_sweep
    from archsim.sweep.backends import check_backend

    selected = check_claims(names)
    plan = {name: sweep_paths(CLAIMS[name], full=full, sweeps_dir=sweeps_dir) for name in selected}
    for paths in plan.values():
        for path in paths:
            load_sweep(path)   # one-line SpecError before anything runs
    check_backend(backend, address)
    out_dir = Path(out) if out is not None else default_out_dir(full)
    check_out_dir(out_dir, "--out" if out is not None else "--out (default)")
    reports = []
    for name in selected:
        cmd = command or " ".join(["archsim reproduce", name] + (["--full"] if full else [])
                                  + ([f"--jobs {jobs}"] if jobs else []))
        report = run_claim(name, full=full, sweep_files=plan[name], out=out_dir, backend=backend,
                           address=address, jobs=jobs, progress=progress, command=cmd,
                           connect_timeout=connect_timeout)
        reports.append(report)
        if on_claim is not None:
            on_claim(report)
    return reports


def run_claim(name: str, *, full: bool = False, sweep_files: list[Path] | None = None,
              out: str | Path | None = None, backend: str = "local", address: str | None = None,
              jobs: int | None = None, progress: bool = True, command: str | None = None,
              connect_timeout: float | None = None) -> ClaimReport:
    """Run one claim's sweeps, analyse them, and write ``<out>/<name>.md`` and ``<out>/<name>.png``.

    Failed points (see :mod:`archsim.sweep.spec`) count as not run in the analysis; the report
    lists them."""
    from archsim.sweep import load_sweep, run_sweep

    claim = CLAIMS[check_claims([name])[0]]
    out_dir = Path(out) if out is not None else default_out_dir(full)
    if sweep_files is None:
        sweep_files = sweep_paths(claim, full=full)
    start = time.perf_counter()
    outcomes, rows, sweeps = [], [], []
    for path in sweep_files:
        sweep = load_sweep(path)
        runs = out_dir / "runs" / sweep.name
        runner = run_prefix_sweep if claim.prefix_data else run_sweep
        extra = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
        outcome = runner(path, backend=backend, address=address, jobs=jobs, out=runs, progress=progress,
                         **extra)
        if outcome.computed:
            _record_wall(runs, time.perf_counter() - start, outcome.computed, jobs, command)
        outcomes.append(outcome)
        sweeps.append(sweep)
        rows += _rows_with_records(outcome)
    wall = time.perf_counter() - start
    if name == "macs":
        analysis = analyse_macs(macs_workloads())
    else:
        analysis = ANALYSES[name](rows)
    plot_path = PLOTS[name](analysis, out_dir / f"{name}.png")
    report_path = out_dir / f"{name}.md"
    text = render_report(claim, analysis, sweeps, outcomes, plot_path.name, command or
                         f"archsim reproduce {name}" + (" --full" if full else ""), out_dir)
    atomic_write_text(report_path, text)
    computed = sum(o.computed for o in outcomes)
    return ClaimReport(name, analysis, report_path, plot_path, outcomes, wall, computed)


def _rows_with_records(outcome) -> list[dict]:
    """The sweep's rows; a row that carries its key gets its full stored result (curves included)."""
    from archsim.sweep import ResultsStore

    records = ResultsStore(outcome.results_path).load()
    rows = []
    for r in outcome.rows:
        row = dict(r)
        record = records.get(r.get("key")) if r.get("key") else None
        if record is not None and isinstance(record.get("result"), dict) and r.get("done", True):
            row["result"] = {**record["result"], **r["result"]}
        rows.append(row)
    return rows


def _record_wall(runs: Path, wall_s: float, computed: int, jobs: int | None, command: str | None) -> None:
    """Keep the wall time of the last run that computed points (the report quotes it)."""
    atomic_write_text(runs / "wall.json", json.dumps(
        {"wall_s": round(wall_s, 1), "computed_points": computed, "jobs": jobs, "command": command},
        indent=2) + "\n")


# -- the report ----------------------------------------------------------------------------------
def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    from tabulate import tabulate

    headers = list(rows[0])
    return tabulate([[r.get(h, "") for h in headers] for r in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


def _budget_lines(sweep, outcome, out_dir: Path) -> list[str]:
    spec = sweep.spec
    try:
        shown = sweep.file.resolve().relative_to(repo_root())
    except ValueError:
        shown = sweep.file
    lines = [f"- Sweep file `{shown}` ({spec.mode} over {', '.join(f'`{a}`' for a in spec.axes)}; "
             f"base workload `{spec.base}`; kind {spec.kind}; seeds {spec.seeds})."]
    if spec.kind in ("train", "both"):
        t = spec.train
        budget = []
        if t.max_chars:
            budget.append(f"max_chars {t.max_chars:,} per run")
        if t.epochs:
            budget.append(f"{t.epochs} epochs per run")
        budget.append(f"update mode {t.update_mode or 'trainer default (fast)'}")
        lines.append(f"- Training budget: {', '.join(budget)}; {outcome.points} points.")
    failed = [r for r in outcome.rows if r.get("failed")]
    if failed:
        lines.append(f"- Failed points: {len(failed)} of {outcome.points} (not in the analysis): "
                     + "; ".join(f"{r['label']}: {r['error']}" for r in failed) + ".")
    seconds = [r.get("seconds") for r in outcome.rows if r.get("seconds") is not None]
    if seconds:
        lines.append(f"- Run time per point: {sum(seconds):.0f} s in total over {len(seconds)} points "
                     f"(longest {max(seconds):.0f} s).")
    runs = out_dir / "runs" / sweep.name
    wall = runs / "wall.json"
    if wall.is_file():
        try:
            w = json.loads(wall.read_text())
            lines.append(f"- Wall time of the last run that computed points: {w['wall_s']:.0f} s for "
                         f"{w['computed_points']} points (jobs {w.get('jobs') or 'default'}).")
        except (ValueError, KeyError):
            pass
    lines.append(f"- Results: `runs/{sweep.name}/results.jsonl` (resumable; rerunning the command only "
                 "computes missing points), sweep summary `runs/{0}/summary.md`.".format(sweep.name))
    return lines


def render_report(claim: Claim, analysis: Analysis, sweeps: list, outcomes: list, plot_name: str,
                  command: str, out_dir: Path) -> str:
    lines = [f"# Reproduction: {claim.title}", "",
             f"**Claim** ({PAPER}): {claim.statement}", "",
             f"**Verdict: {analysis.verdict}.** {analysis.sentence}", "",
             _markdown_table(analysis.table), ""]
    lines += [f"{n}" for n in analysis.notes] + [""]
    lines += [f"![{claim.name}]({plot_name})", "", "## How this was produced", "", f"    {command}", ""]
    if sweeps:
        lines += ["Budgets: the default budgets are a small fraction of the paper's (tens of epochs, "
                  "several seeds; see the `--full` sweeps), one seed per point. The verdict is about "
                  "these runs at this budget, with the thresholds above.", ""]
    if claim.prefix_data:
        lines += ["The runs train on a prefix of the text: `training.train_chars / training.train_fraction` "
                  "characters, split into training, validation and test text by `training.train_fraction` as usual "
                  "(see `archsim/reproduce.py`).", ""]
    for sweep, outcome in zip(sweeps, outcomes):
        lines += _budget_lines(sweep, outcome, out_dir)
    if not sweeps:
        lines.append("- No training: the counts come from the shipped workload files "
                     f"({', '.join(f'`workloads/{n}.yaml`' for n in MAC_WORKLOADS)}).")
    lines.append("")
    return "\n".join(lines)


# -- overfitting runner: sweep machinery, prefix corpus ------------------------------------------------------
def prefix_corpus(workload):
    """The first ``train_chars / train_fraction`` characters of the workload's text as a corpus."""
    from archsim.functional.data import corpus_from_text, read_text, resolve_data_path

    t = workload.training
    path = resolve_data_path(None, workload)
    if path is None:
        raise SpecError(f"workload {workload.name}", "training.data", None,
                        "the overfitting claim needs a text file (training.data)")
    text = read_text(path)
    n = len(text) if t.train_chars is None else min(len(text), math.ceil(t.train_chars / t.train_fraction))
    return corpus_from_text(text[:n], train_fraction=t.train_fraction,
                            source=f"{path.name}[:{n}]", batch_size=t.batch_size, seq_len=t.seq_len)


def prefix_train_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker function of :func:`run_prefix_sweep`: train one point on the prefix corpus.

    Returns ``{key, result, seconds}`` (result: the scalar losses, the best validation loss, and the
    per-epoch curve) or ``{key, error}``, as :func:`archsim.sweep.evaluate.run_task` does.
    """
    from archsim.sweep.evaluate import worker_output

    return worker_output(task, _train_on_prefix)


def _train_on_prefix(task: dict[str, Any]) -> dict[str, Any]:
    from archsim.sweep.evaluate import point_failures, resolve_checked

    workload, arch, device = resolve_checked(task)
    with point_failures(task, (workload, arch, device)):   # the point's own specs: a failed point
        return _train_prefix_point(task, workload, arch, device)


def _train_prefix_point(task: dict[str, Any], workload, arch, device) -> dict[str, Any]:
    from archsim.functional.train import train
    from archsim.sweep.evaluate import compact

    opts = task["options"]
    corpus = prefix_corpus(workload)
    epochs = opts.get("epochs") or workload.training.epochs
    per_epoch = max(1, (len(corpus.train) // workload.training.batch_size - 1) // workload.training.seq_len)
    kwargs: dict[str, Any] = dict(seed=task["seed"], progress=False, corpus=corpus, eval_every=per_epoch)
    if opts.get("max_chars"):
        kwargs["max_chars"] = opts["max_chars"]
    else:
        kwargs["epochs"] = epochs
    if opts.get("update_mode"):
        kwargs["update_mode"] = opts["update_mode"]
    outcome = train(workload, arch, device, **kwargs)  # divergence: worker_output records it
    result = compact(outcome)
    curve = [{k: p.get(k) for k in ("epoch", "train_loss", "valid_loss")} for p in outcome.curve
             if not p.get("final")]
    valid = [p["valid_loss"] for p in curve if p.get("valid_loss") is not None] + [outcome.valid_loss]
    result.update(curve=curve, valid_best=min(valid), train_text_chars=len(corpus.train))
    return result


def run_prefix_sweep(sweep_path: str | Path, *, backend: str = "local", address: str | None = None,
                     jobs: int | None = None, out: str | Path | None = None, progress: bool = True,
                     **kwargs):
    """:func:`archsim.sweep.run_sweep` with :func:`prefix_train_task` as the worker (train sweeps only);
    other keyword arguments (``connect_timeout``) go to it."""
    from archsim.sweep import load_sweep, run_sweep

    sweep = load_sweep(sweep_path)
    if sweep.spec.kind != "train":
        raise sweep.error("kind", sweep.spec.kind, "the overfitting claim's sweep must be kind: train")
    return run_sweep(sweep_path, backend=backend, address=address, jobs=jobs, out=out,
                     progress=progress, worker=prefix_train_task, **kwargs)
