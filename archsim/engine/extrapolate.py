"""Whole-epoch timing: an exact SimPy run of every step, or warm-up plus a periodic window.

Steps of one epoch are identical, but consecutive steps overlap a little (a matrix's next forward
waits only for its own updates), so the first step is not the steady state. The extrapolation
simulates ``warmup + window`` steps, checks that the last ``window`` step periods agree (relative
spread <= ``period_rtol``; the window grows up to ``max_window`` until they do), and extends the run
by ``(N - simulated) x period``. Long sequences are also extrapolated over timesteps
(:func:`sequence_timing`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from archsim.engine.des import DESResult, StepTiming, simulate
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
    seq_lens: tuple = ()      # the sequence lengths simulated, when extrapolated over timesteps


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


def _linear(points: list[tuple[int, float]], T: int) -> float:
    """Value at ``T`` of the line through the last two points."""
    (t2, q2), (t3, q3) = points[-2], points[-1]
    return q3 + (q3 - q2) * (T - t3) / (t3 - t2)


#: Quantities whose line must hold to ``rtol`` of their own value: they make the epoch time.
_PRIMARY = ("total", "period", "first", "run_total", "end")


def _fit(runs: list[tuple[int, "EpochTiming"]], T: int, rtol: float, breakdown_rtol: float):
    """Quantities of the epoch at sequence length ``T`` from runs at three shorter lengths, or
    None when the shortest run is not on the line through the other two: within ``rtol`` of the
    value at the longest run for the epoch's times, within ``breakdown_rtol`` of that run's
    length for the breakdowns (phase ends of the last step, busy and waiting time per resource:
    the updates' tail settles more slowly than the step period when memory ports are contended)."""
    last = runs[-1][1].run
    getters = {
        "total": lambda e: e.total_s, "period": lambda e: e.period_s,
        "first": lambda e: e.first_step_s, "run_total": lambda e: e.run.total_s,
        "start": lambda e: e.run.steps[-1].start_s, "fwd": lambda e: e.run.steps[-1].forward_end_s,
        "bwd": lambda e: e.run.steps[-1].backward_end_s, "end": lambda e: e.run.steps[-1].end_s,
    }
    if any(set(e.run.busy_s) != set(last.busy_s) for _, e in runs):
        return None
    for r in last.busy_s:
        getters[f"busy:{r}"] = lambda e, r=r: e.run.busy_s[r]
        getters[f"wait:{r}"] = lambda e, r=r: e.run.wait_s[r]
    out = {}
    for name, get in getters.items():
        pts = [(t, get(e)) for t, e in runs]
        (t1, q1), (t2, q2), (t3, q3) = pts
        pred1 = q2 - (q3 - q2) * (t2 - t1) / (t3 - t2)
        tol = rtol * abs(q3) if name in _PRIMARY else breakdown_rtol * last.total_s
        if abs(pred1 - q1) > tol:
            return None
        out[name] = _linear(pts, T)
    return out


def sequence_timing(build: Callable[[int, int], Schedule], seq_len: int, n_steps: int, *,
                    first_len: int = 8, rtol: float = 1e-6, breakdown_rtol: float = 1e-3,
                    progress: Callable[[int], None] | None = None) -> EpochTiming:
    """Time ``n_steps`` steps of sequences of ``seq_len`` timesteps from shorter sequences.

    Within a step the timesteps of a phase repeat the same ops, so past the first few timesteps
    every quantity of the run (step times, phase ends, busy and waiting time per resource) grows
    linearly with the sequence length. ``build(k, T)`` returns the schedule of ``k`` steps of
    length ``T``; the epoch is timed (:func:`epoch_timing`) at lengths L, 2L, 4L (L =
    ``first_len``), and when the first lies on the line through the other two (within ``rtol``)
    the line gives the values at ``seq_len`` (the breakdowns within ``breakdown_rtol`` of the run:
    see :func:`_fit`). Otherwise L doubles; once 4L reaches ``seq_len``
    the full sequence is simulated. The check is the same kind as the one across steps, and the
    result is within 0.1 % of the exact run (benchmarks/estimate_speed.py measures it).
    """
    length = first_len
    while 4 * length < seq_len:
        runs = [(t, epoch_timing(lambda k, t=t: build(k, t), n_steps, progress=progress))
                for t in (length, 2 * length, 4 * length)]
        fit = _fit(runs, seq_len, rtol, breakdown_rtol)
        if fit is not None:
            last = runs[-1][1]
            step = StepTiming(fit["start"], fit["fwd"], fit["bwd"], fit["end"])
            busy = {r: fit[f"busy:{r}"] for r in last.run.busy_s}
            wait = {r: fit[f"wait:{r}"] for r in last.run.wait_s}
            events = sum(e.run.n_events for _, e in runs)
            # Waiting by phase (for bound_by's contention) is the longest run's, scaled to T.
            scale = fit["run_total"] / last.run.total_s if last.run.total_s else 1.0
            by_phase = {k: v * scale for k, v in last.run.wait_by_phase_s.items()}
            run = DESResult(fit["run_total"], [step], busy, wait, events, [], by_phase)
            return EpochTiming(n_steps, fit["total"], fit["period"], fit["first"],
                               f"extrapolated over steps and timesteps (T = {length}, "
                               f"{2 * length}, {4 * length})", last.simulated_steps,
                               all(e.periodic for _, e in runs), run,
                               seq_lens=(length, 2 * length, 4 * length))
        length *= 2
    return epoch_timing(lambda k: build(k, seq_len), n_steps, progress=progress)
