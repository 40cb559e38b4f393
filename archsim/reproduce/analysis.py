"""What the claims' analyses share: the :class:`Analysis` record, the verdict words, the change
threshold, losses read from sweep rows, and the wording of numbers.

Rows are as :attr:`archsim.sweep.SweepOutcome.rows` has them (resolved, result, done, seed, kind).
Every threshold a verdict uses is a module constant (here and in the claim modules) and is printed
in the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("holds", "partly", "does not hold", "not tested")

#: Smallest test-loss difference counted as a change. One seed per point by default, so this is a
#: judgement, not a measured noise floor; differences of a few hundredths are what separates the
#: conditions in the papers' tables.
DELTA = 0.02


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
