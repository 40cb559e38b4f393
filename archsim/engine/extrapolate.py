"""Whole-epoch timing: an exact SimPy run of every step, or warm-up plus a periodic window.

Steps of one epoch are identical, but consecutive steps overlap a little (a matrix's next forward
waits only for its own updates), so the first step is not the steady state. The extrapolation
simulates ``warmup + window`` steps, checks that the last ``window`` step periods agree (relative
spread <= ``period_rtol``; the window grows up to ``max_window`` until they do), and extends the run
by ``(N - simulated) x period``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from archsim.engine.des import DESResult, simulate
from archsim.schedule import Schedule


@dataclass
class EpochTiming:
    """Time of ``n_steps`` steps and how it was obtained."""

    n_steps: int
    total_s: float
    period_s: float           # steady-state time per step
    first_step_s: float
    method: str               # "exact" or "extrapolated"
    simulated_steps: int
    periodic: bool
    run: DESResult            # the SimPy run it rests on


def _periods(run: DESResult) -> list[float]:
    ends = [s.end_s for s in run.steps]
    return [ends[0]] + [b - a for a, b in zip(ends, ends[1:])]


def epoch_timing(build: Callable[[int], Schedule], n_steps: int, *, exact: bool = False,
                 warmup: int = 1, window: int = 2, max_window: int = 8, period_rtol: float = 1e-9,
                 progress: Callable[[int], None] | None = None) -> EpochTiming:
    """Time ``n_steps`` training steps; ``build(k)`` returns the schedule of ``k`` steps."""
    if exact or n_steps <= warmup + window:
        run = simulate(build(n_steps), progress=progress)
        periods = _periods(run)
        return EpochTiming(n_steps, run.total_s, periods[-1], periods[0], "exact", n_steps, True, run)
    while True:
        k = min(n_steps, warmup + window)
        run = simulate(build(k), progress=progress)
        periods = _periods(run)
        tail = periods[warmup:]
        spread = (max(tail) - min(tail)) / max(tail)
        periodic = spread <= period_rtol
        if periodic or window >= max_window or k == n_steps:
            break
        window = min(max_window, window * 2)
    if k == n_steps:
        return EpochTiming(n_steps, run.total_s, periods[-1], periods[0], "exact", k, periodic, run)
    period = tail[-1] if periodic else sum(tail) / len(tail)
    total = run.total_s + (n_steps - k) * period
    return EpochTiming(n_steps, total, period, periods[0], "extrapolated", k, periodic, run)
