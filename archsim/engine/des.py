"""Exact discrete-event timing of a schedule with SimPy.

Every tile array, ADC bank, bus, digital unit and memory port is a ``simpy.Resource`` of capacity
one. An op
starts when its dependencies are done; each of its stages asks for its resource when the first
vector reaches it, streams the batch through (:mod:`archsim.engine.stream`) and holds the resource
for its busy time, ``count x seconds``: streams of several tiles interleave on a shared unit, and
only when their summed busy time exceeds the time the stream has do they slow each other down. So contention (a bus shared by several tiles, a digital unit
serving several tiles, the wavefront of layers meeting on one unit) shows up as waiting time.
The engine only counts actions; energy is priced afterwards (:mod:`archsim.energy`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import simpy

from archsim.engine.stream import stage_out
from archsim.schedule import PHASES, Chain, Op, Par, Schedule, Stage


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events (for events-per-second figures)."""

    def __init__(self):
        super().__init__()
        self.n_events = 0

    def step(self) -> None:
        self.n_events += 1
        super().step()


@dataclass
class StepTiming:
    """Timing of one training step inside a run (absolute simulated times, seconds)."""

    start_s: float
    forward_end_s: float
    backward_end_s: float
    end_s: float

    @property
    def phase_times(self) -> dict[str, float]:
        """Wall-clock split of the step: forward, then backward, then the updates' tail."""
        return {"forward": self.forward_end_s - self.start_s,
                "backward": self.backward_end_s - self.forward_end_s,
                "update": self.end_s - self.backward_end_s}

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class DESResult:
    """Outcome of a SimPy run of a schedule."""

    total_s: float
    steps: list[StepTiming]
    busy_s: dict[str, float]
    wait_s: dict[str, float]
    n_events: int
    op_end_s: list[float] = field(repr=False, default_factory=list)
    wait_by_phase_s: dict[tuple[str, str], float] = field(default_factory=dict)
    """(phase, resource) -> time stages of that phase's ops waited for the resource."""

    @property
    def total_wait_s(self) -> float:
        """Summed time that stages waited for a busy resource (0 when nothing is contended)."""
        return sum(self.wait_s.values())

    def utilization(self) -> dict[str, float]:
        """Busy fraction per resource over the whole run."""
        return {r: b / self.total_s for r, b in self.busy_s.items()} if self.total_s else {}


def simulate(schedule: Schedule, *, progress: Callable[[int], None] | None = None) -> DESResult:
    """Run the schedule's ops in SimPy and return times, busy fractions and event counts."""
    env = CountingEnvironment()
    resources = {name: simpy.Resource(env, capacity=1) for name in schedule.resources()}
    busy = dict.fromkeys(resources, 0.0)
    waited = dict.fromkeys(resources, 0.0)
    waited_in: dict[tuple[str, str], float] = {}   # (phase, resource) -> waiting time
    done = [env.event() for _ in schedule.ops]
    start_s = [0.0] * len(schedule.ops)
    end_s = [0.0] * len(schedule.ops)

    def stage_proc(st: Stage, first_in: float, last_in: float, published: simpy.Event,
                   ready: float, phase: str):
        # ``ready``: when the op itself frees this resource (its pre stage on the same unit);
        # waiting until then is part of the op, not contention.
        if max(first_in, ready) > env.now:
            yield env.timeout(max(first_in, ready) - env.now)
        res = resources[st.resource]
        with res.request() as req:
            yield req
            start = env.now
            wait = start - max(first_in, ready)
            waited[st.resource] += wait
            if wait > 0:
                key = (phase, st.resource)
                waited_in[key] = waited_in.get(key, 0.0) + wait
            published.succeed(stage_out(start, last_in, st.count, st.seconds))
            # The resource is held for its busy time (count x seconds) and then serves other
            # streams: transfers and digital work of several tiles interleave on a shared unit.
            hold = st.count * st.seconds
            busy[st.resource] += hold
            yield env.timeout(hold)

    def run_stage(st: Stage, first: float, last: float, phase: str, ready: float = 0.0):
        published = env.event()
        env.process(stage_proc(st, first, last, published, ready, phase))
        return (yield published)

    def branch_proc(stages, first: float, last: float, phase: str):
        for st in stages:
            first, last = yield from run_stage(st, first, last, phase)
        return first, last

    def chain_proc(chain: Chain, first: float, last: float, phase: str):
        # A stage on a resource that an earlier stage of the chain used starts once that one
        # released it (a copy's pre and post digital work share its unit).
        held: dict[str, float] = {}
        for item in chain:
            if isinstance(item, Par):
                if len(item.branches) == 1:
                    first, last = yield from branch_proc(item.branches[0], first, last, phase)
                elif item.branches:
                    procs = [env.process(branch_proc(b, first, last, phase)) for b in item.branches]
                    outs = yield simpy.AllOf(env, procs)
                    first = max(v[0] for v in outs.values())
                    last = max(v[1] for v in outs.values())
            else:
                first, last = yield from run_stage(item, first, last, phase,
                                                   held.get(item.resource, 0.0))
                held[item.resource] = last
        return first, last

    def op_proc(op: Op):
        if op.deps:
            yield simpy.AllOf(env, [done[d] for d in op.deps])
        start_s[op.id] = env.now
        first = last = env.now
        if len(op.copies) == 1:
            first, last = yield from chain_proc(op.copies[0], first, last, op.phase)
        elif op.copies:
            procs = [env.process(chain_proc(c, first, last, op.phase)) for c in op.copies]
            outs = yield simpy.AllOf(env, procs)
            last = max(v[1] for v in outs.values())
        if last > env.now:
            yield env.timeout(last - env.now)
        end_s[op.id] = env.now
        done[op.id].succeed()
        if progress is not None:
            progress(1)

    for op in schedule.ops:
        env.process(op_proc(op))
    env.run()
    return DESResult(env.now, _step_timings(schedule, start_s, end_s), busy, waited,
                     env.n_events, end_s, waited_in)


def _step_timings(schedule: Schedule, start_s: list[float], end_s: list[float]) -> list[StepTiming]:
    steps = []
    for s in range(schedule.steps):
        ends = {p: 0.0 for p in PHASES}
        first = None
        for op in schedule.ops:
            if op.step != s:
                continue
            first = start_s[op.id] if first is None else min(first, start_s[op.id])
            ends[op.phase] = max(ends[op.phase], end_s[op.id])
        prev_end = steps[-1].end_s if steps else 0.0
        start = max(prev_end, 0.0) if s else 0.0
        end = max(ends.values())
        steps.append(StepTiming(start, ends["forward"], max(ends["backward"], ends["forward"]), end))
    return steps
