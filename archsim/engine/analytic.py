"""Closed-form timing of a schedule, assuming no op ever waits for a resource.

An op's latency follows the streaming formula of :mod:`archsim.engine.stream` through each copy's
chain of stages (parallel tile branches take the latest of their outputs; a stage on a resource
that an earlier stage of the same chain used starts when that one released it, as in the SimPy
engine). A step is the longest path through the step program's dependency graph with these
latencies: for the plain LSTM lattice this is the wavefront formula

    forward  = sum_k F_k + (T-1) * max_k F_k               (layers, then output, over T)
    backward = sum_k B_k + (T-1) * max_k B_k               (same lattice, reversed)

plus each matrix's T updates after its own backward sweep, but the graph also covers what the
formula does not (recompute ops, which wait for the tile's previous backward op). Phase times:
forward ends with the last forward op, backward with the last backward op, the updates' tail
after that. When no resource is contended this equals the SimPy run exactly (a tested property).
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.engine.stream import stage_out
from archsim.schedule import Chain, Op, Par, Schedule, resource_class


def chain_out(chain: Chain, first: float = 0.0, last: float = 0.0) -> tuple[float, float]:
    """(first_out, last_out) of one copy's chain fed between ``first`` and ``last``."""
    held: dict[str, float] = {}
    for item in chain:
        if isinstance(item, Par):
            outs = []
            for branch in item.branches:
                f, l = first, last
                for st in branch:
                    f, l = stage_out(f, l, st.count, st.seconds)
                outs.append((f, l))
            if outs:
                first, last = max(o[0] for o in outs), max(o[1] for o in outs)
        else:
            start = max(first, held.get(item.resource, first))
            first, last = stage_out(start, last, item.count, item.seconds)
            held[item.resource] = last
    return first, last


def op_latency(op: Op) -> float:
    """Latency of one op with all inputs ready at 0 and every resource free."""
    return max((chain_out(c)[1] for c in op.copies), default=0.0)


@dataclass
class AnalyticTiming:
    """Closed-form phase times of one training step (seconds)."""

    forward_s: float
    backward_s: float
    update_s: float

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s + self.update_s


def analytic_step(schedule: Schedule) -> AnalyticTiming:
    """Closed-form time of one training step of ``schedule`` (uses the step-0 ops)."""
    latency: dict[int, float] = {}
    end: list[float] = []
    ends = {"forward": 0.0, "backward": 0.0, "update": 0.0}
    for op in schedule.ops:
        if op.step != 0:
            break
        lat = latency.get(id(op.copies))
        if lat is None:
            lat = latency[id(op.copies)] = op_latency(op)
        e = max((end[d] for d in op.deps), default=0.0) + lat
        end.append(e)
        if e > ends[op.phase]:
            ends[op.phase] = e
    forward = ends["forward"]
    backward_end = max(forward, ends["backward"])
    step = max(backward_end, ends["update"])
    return AnalyticTiming(forward, backward_end - forward, step - backward_end)


def bound_by(schedule: Schedule, waits: dict[tuple[str, str], float] | None = None,
             steps: int = 1) -> dict[str, dict]:
    """Which stage bounds each phase: per op, the resource class whose stage holds its resource
    longest (count x seconds: the stream's bottleneck); per phase, the class that is the
    bottleneck of the largest share of the phase's op latency (``stage``, ``share``). Given a
    SimPy run's waiting per (phase, resource) over ``steps`` steps, also the resource class the
    phase's stages waited for most (``waits_on``; None when nothing waited) and that waiting per
    step, summed over the stages that waited (``wait_per_step_s``; parallel stages each count)."""
    latency: dict[int, float] = {}
    weight: dict[str, dict[str, float]] = {}
    for op in schedule.ops:
        if op.step != 0:
            break
        stages = op.stages()
        if not stages:
            continue
        lat = latency.get(id(op.copies))
        if lat is None:
            lat = latency[id(op.copies)] = op_latency(op)
        worst = max(stages, key=lambda st: st.count * st.seconds)
        per = weight.setdefault(op.phase, {})
        cls = resource_class(worst.resource)
        per[cls] = per.get(cls, 0.0) + lat
    out = {}
    for phase, per in weight.items():
        total = sum(per.values())
        cls = max(per, key=per.get)
        out[phase] = {"stage": cls, "share": per[cls] / total if total else 0.0}
        if waits is not None:
            by_cls: dict[str, float] = {}
            for (ph, res), w in waits.items():
                if ph == phase:
                    c = resource_class(res)
                    by_cls[c] = by_cls.get(c, 0.0) + w
            worst = max(by_cls, key=by_cls.get) if by_cls else None
            out[phase]["waits_on"] = worst
            out[phase]["wait_per_step_s"] = by_cls[worst] / steps if worst else 0.0
    return out
