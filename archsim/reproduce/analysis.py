"""What the claims' analyses share: the :class:`Analysis` record, the verdict words, losses read from
sweep rows, their aggregation over seeds (:class:`Stats`), the rule for a change (:class:`Change`),
and the wording of numbers.

Rows are as :attr:`archsim.sweep.SweepOutcome.rows` has them (resolved, result, done, seed, kind).
Every threshold a verdict uses is a module constant (here and in the claim modules) and is printed
in the report.

**Seeds and the rule for a change.** A point (one combination of axis values) has one row per seed.
Its loss is summarised by :class:`Stats`: the seeds that finished (n), their mean, sample standard
deviation (sd), minimum and maximum; a seed that diverged is counted, not averaged (the point is
"diverged in k of n seeds"); the point counts as diverged in the verdicts when most of its
finished seeds diverged, else by the mean of the others (a learning rate at the edge of stability
makes single seeds of any device, floating point included, blow up early: that is the optimizer's
instability, not the device's, unless it is what most seeds do); a seed not run yet (or failed)
is missing, and the point shows the n it has ("2 of 3"). Two points a and b differ -- a *change* --
only where the difference of their means exceeds both the claim's fixed floor (:data:`DELTA` for a
change of the test loss, the claim modules' tolerances for theirs) and the seed spread, two
standard errors of the difference::

    |mean_a - mean_b| > max(floor, 2 * sqrt(sd_a^2 / n_a + sd_b^2 / n_b))

With a single finished seed on either side there is no spread, the floor alone decides and the
verdict says it is single-seed. The same rule with b = 0 (one standard error ``sd / sqrt(n)``) judges
a per-seed difference of one point, such as test minus training loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

VERDICTS = ("holds", "partly", "does not hold", "not tested")

#: Smallest test-loss difference counted as a change, whatever the seeds say: differences of a few
#: hundredths are what separates the conditions in the papers' tables. With several seeds per point a
#: change must also exceed the seed spread (:class:`Change`).
DELTA = 0.02
#: A difference counts only above this many standard errors of it (the seed spread).
SPREAD_SE = 2.0
_ROUNDING = 1e-9   # 1.72 - 1.70 is a difference of 0.02, not of 0.020000000000000018


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
    lacks_rows: bool = False
    """Not tested because the rows the claim is judged on are missing (the sentence names them):
    while points are still to run, that says nothing the report's "Incomplete" clause does not."""


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


# -- seeds ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """One quantity of one point over its seeds."""

    values: tuple[float, ...] = ()
    """The finite values of the seeds that finished, in row order."""
    diverged: int = 0
    """Seeds that finished with a non-finite value (diverged runs)."""
    expected: int = 0
    """Seeds the point has rows for, finished or not (at least :attr:`n`)."""

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Stats":
        """From one value per seed: a float, ``inf`` for a diverged seed, None for one not run."""
        values = list(values)
        done = [float(v) for v in values if v is not None]
        return cls(tuple(v for v in done if math.isfinite(v)),
                   sum(1 for v in done if not math.isfinite(v)), len(values))

    @classmethod
    def of_rows(cls, rows: list[dict], key: str = "test_loss") -> "Stats":
        return cls.of(row_loss(r, key) for r in rows)

    @property
    def n(self) -> int:
        """Seeds that finished (diverged ones included)."""
        return len(self.values) + self.diverged

    @property
    def mean(self) -> float | None:
        """Mean over the finite seeds (None when there are none)."""
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def value(self) -> float | None:
        """What the verdicts use: the mean of the finite seeds, ``inf`` when most finished seeds
        diverged (a tie counts as diverged), None when none finished."""
        if self.diverged and self.diverged >= len(self.values):
            return math.inf
        return self.mean

    @property
    def sd(self) -> float | None:
        """Sample standard deviation of the finite seeds (None below two)."""
        k = len(self.values)
        if k < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (k - 1))

    @property
    def min(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def max(self) -> float | None:
        return max(self.values) if self.values else None


def as_stats(value: "Stats | float | None") -> Stats:
    """A :class:`Stats` as it is, a single value (or None: not run) as a single-seed one."""
    return value if isinstance(value, Stats) else Stats.of([value])


def paired(a: list[float | None], b: list[float | None]) -> Stats:
    """Per-seed differences a - b (``inf`` when either diverged, None when either is missing)."""
    def one(x, y):
        if x is None or y is None:
            return None
        return math.inf if math.isinf(x) or math.isinf(y) else x - y
    return Stats.of(one(x, y) for x, y in zip(a, b))


@dataclass(frozen=True)
class Change:
    """The difference of two points' means and whether it is a change (the module doc's rule)."""

    diff: float
    """mean_a - mean_b; ``+inf`` / ``-inf`` when only a / only b diverged."""
    se2: float | None
    """:data:`SPREAD_SE` standard errors of the difference; None without a spread (a single seed on
    a side, or a diverged side)."""
    seeds: int
    """The fewer finished seeds of the two sides."""

    def threshold(self, floor: float = DELTA) -> float:
        """What the difference must exceed: ``max(floor, se2)``."""
        return floor if self.se2 is None else max(floor, self.se2)

    def rises(self, floor: float = DELTA) -> bool:
        """a is above b by more than the threshold (a difference equal to it up to rounding is not)."""
        return self.diff > self.threshold(floor) + _ROUNDING

    def falls(self, floor: float = DELTA) -> bool:
        """a is below b by more than the threshold."""
        return self.diff < -self.threshold(floor) - _ROUNDING

    def exceeds(self, floor: float = DELTA) -> bool:
        return self.rises(floor) or self.falls(floor)

    @property
    def single_seed(self) -> bool:
        return math.isfinite(self.diff) and self.se2 is None


def compare(a: "Stats | float | None", b: "Stats | float | None") -> Change | None:
    """``a - b`` as a :class:`Change`; None when a side has no finished seed or both diverged."""
    a, b = as_stats(a), as_stats(b)
    va, vb = a.value, b.value
    if va is None or vb is None or (math.isinf(va) and math.isinf(vb)):
        return None
    seeds = min(a.n, b.n)
    if math.isinf(va) or math.isinf(vb):
        return Change(va - vb, None, seeds)
    se2 = None
    if a.sd is not None and b.sd is not None:
        se2 = SPREAD_SE * math.sqrt(a.sd ** 2 / len(a.values) + b.sd ** 2 / len(b.values))
    return Change(va - vb, se2, seeds)


def level(s: Stats) -> Change | None:
    """A point's own mean as a :class:`Change` from zero (spread: ``SPREAD_SE * sd / sqrt(n)``), for
    per-seed differences such as test minus training loss."""
    v = s.value
    if v is None:
        return None
    se2 = None if math.isinf(v) or s.sd is None else SPREAD_SE * s.sd / math.sqrt(len(s.values))
    return Change(v, se2, s.n)


def change_rule(floor: str = f"{DELTA} nats/char") -> str:
    """The rule for a change with its floor, in short (:func:`spread_text` says what SE is)."""
    return f"a difference of means above max({floor}, {SPREAD_SE:g} SE)"


def spread_text() -> str:
    """What the seed spread of a change is, in full (printed once in each report)."""
    return (f"{SPREAD_SE:g} SE = {SPREAD_SE:g}*sqrt(sd_a^2/n_a + sd_b^2/n_b), {SPREAD_SE:g} standard "
            "errors of the difference of the means of points a and b (sd: sample standard deviation "
            f"over a point's n finished seeds; for a per-seed difference such as test - train, "
            f"{SPREAD_SE:g}*sd/sqrt(n)); with a single seed on a side there is no spread and the fixed "
            "threshold alone decides (a single-seed verdict)")


def spread_clause(stats: Iterable[Stats]) -> str:
    """The closing words of a verdict sentence on the seeds behind it: how many per point and what
    ``±`` means, or that the verdict is (partly) single-seed."""
    ns = [s.n for s in stats if s.n]
    if not ns:
        return ""
    if max(ns) < 2:
        return (" Single-seed verdict: one seed per point, so changes are judged against the fixed "
                "thresholds alone.")
    seeds = f"{min(ns)} to {max(ns)}" if min(ns) != max(ns) else f"{max(ns)}"
    text = (f" Seeds per point: {seeds}; x ± s is the mean ± the seeds' standard deviation of a loss, "
            f"d ± e a difference of means ± {SPREAD_SE:g} standard errors.")
    single = sum(1 for n in ns if n < 2)
    if single:
        text += (f" {single} point{'s have' if single > 1 else ' has'} a single seed: changes against "
                 f"{'them' if single > 1 else 'it'} are single-seed, judged against the fixed thresholds alone.")
    return text


# -- wording ----------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "diverged"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def diverged_in(s: Stats, verb: str = "diverged") -> str:
    """``diverged`` (one seed) or ``diverged in k of n seeds``, with another form of the verb."""
    return verb + ("" if s.n == 1 else f" in {s.diverged} of {_seeds(s.n)}")


def fmt_stats(s: Stats, digits: int = 3, signed: bool = False, table: bool = True) -> str:
    """``mean ± sd (n)`` (table) or ``mean ± sd`` (sentence); ``(n of N)`` while seeds are missing;
    ``diverged in k of n seeds`` (and the rest's mean) where seeds diverged."""
    count = f"{s.n} of {s.expected}" if s.expected > s.n else f"{s.n}"
    if s.n == 0:
        return "-" + (f" (0 of {s.expected})" if table and s.expected > 1 else "")
    finite = _fmt(s.mean, digits, signed) + ("" if s.sd is None else f" ± {s.sd:.{digits}f}")
    if s.diverged:
        if s.n == 1 and s.expected <= 1:
            return "diverged"
        text = diverged_in(s)
        if s.values:
            text += f" (the other {len(s.values)}: {finite})"
        return text + (f" ({count} run)" if table and s.expected > s.n else "")
    return f"{finite} ({count})" if table else finite


def fmt_change(c: Change | None, digits: int = 3) -> str:
    """``+d ± e`` (e: :data:`SPREAD_SE` standard errors), ``+d`` without a spread, ``diverged``."""
    if c is None:
        return "-"
    if math.isinf(c.diff):
        return "diverged" if c.diff > 0 else "below a diverged point"
    return _fmt(c.diff, digits, signed=True) + ("" if c.se2 is None else f" ± {c.se2:.{digits}f}")


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
