"""Streaming arithmetic shared by the analytic model and the SimPy engine.

``count`` independent vectors pass through a stage that takes ``s`` seconds per vector and starts
(gets its resource) at ``start``. With the input stream arriving between ``first_in`` and ``last_in``
(evenly), vector v leaves at ``out(v) = max(in(v), out(v-1)) + s``, so::

    first_out = start + s
    last_out  = max(start + count*s, last_in + s)

which is exact for evenly spaced input when ``start >= first_in``. The SimPy engine holds the
stage's resource for ``count*s`` (its busy time) from ``start``, so several streams can share a
unit as long as their busy times fit; placing that busy time at the start of the stream is the
approximation (exact when the stage is the stream's bottleneck). A chain of stages s_1..s_n fed all
at once therefore takes ``sum(s) + (count-1)*max(s)``: fill the pipeline, then the slowest stage.
"""
from __future__ import annotations


def stage_out(start: float, last_in: float, count: int, seconds: float) -> tuple[float, float]:
    """(first_out, last_out) of a stage that starts at ``start``."""
    return start + seconds, max(start + count * seconds, last_in + seconds)


def chain_latency(seconds: list[float], count: int) -> float:
    """Latency of ``count`` vectors through a chain of uncontended stages, all ready at time 0."""
    return sum(seconds) + (count - 1) * max(seconds) if seconds else 0.0
