"""Closed-form timing of a schedule, assuming no op ever waits for a resource.

Op latency (pre stage, parallel tile branches, post stage) follows the streaming formula of
:mod:`archsim.engine.stream`. Because each phase is a lattice over (matrix row k, timestep t) in
which every op of row k has the same latency ``L_k``, the phase lasts::

    forward  = sum_k F_k + (T-1) * max_k F_k               (wavefront over layers, then output)
    backward = sum_k B_k + (T-1) * max_k B_k               (same lattice, reversed)

and matrix k's updates end ``T * U_k`` after its own backward sweep, which ends
``sum_{j>=k} B_j + (T-1) * max_{j>=k} B_j`` into the backward phase (rows counted from the top).
The first layer's op at t=0 has no transposed MVM (nothing consumes it); it is the lattice's last
corner, visited once by every path, so its latency simply replaces one ``B_0``.
Step time = forward + max(backward, max_k(backward end_k + T * U_k)).
When no resource is contended this equals the SimPy run exactly (a tested property).
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.engine.stream import stage_out
from archsim.schedule import Op, Schedule


def op_latency(op: Op) -> float:
    """Latency of one op with all inputs ready at 0 and every resource free.

    An op's pre and post digital work share one digital unit, so the post stage starts only when
    the pre stage has released it (the same rule the SimPy engine obeys by construction).
    """
    first = last = pre_end = 0.0
    if op.pre:
        first, last = stage_out(0.0, 0.0, op.pre.count, op.pre.seconds)
        pre_end = last
    firsts, lasts = [], []
    for chain in op.branches:
        f, l = first, last
        for st in chain:
            f, l = stage_out(f, l, st.count, st.seconds)
        firsts.append(f)
        lasts.append(l)
    if firsts:
        first, last = max(firsts), max(lasts)
    if op.post:
        start = max(first, pre_end) if op.pre and op.pre.resource == op.post.resource else first
        first, last = stage_out(start, last, op.post.count, op.post.seconds)
    return last


@dataclass
class AnalyticTiming:
    """Closed-form phase times of one training step (seconds)."""

    forward_s: float
    backward_s: float
    update_s: float
    per_matrix: dict[str, dict[str, float]]

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s + self.update_s


def analytic_step(schedule: Schedule) -> AnalyticTiming:
    """Closed-form time of one training step of ``schedule`` (uses the step-0 ops)."""
    T = schedule.seq_len
    lat: dict[tuple[str, str], float] = {}
    order: list[str] = []
    corner = None  # the program's backward op without a transposed MVM (first layer, t = 0)
    for op in schedule.ops:
        if op.step != 0:
            break
        key = (op.phase, op.matrix)
        if op.phase == "backward" and op.kind is None:
            corner = op_latency(op)
        elif key not in lat:
            lat[key] = op_latency(op)
            if op.phase == "forward":
                order.append(op.matrix)
    if corner is not None and ("backward", order[0]) not in lat:
        lat[("backward", order[0])] = corner   # T = 1: the corner is the first layer's only op
    F = [lat[("forward", m)] for m in order]
    B = [lat[("backward", m)] for m in order]
    U = [lat[("update", m)] for m in order]
    forward = sum(F) + (T - 1) * max(F)
    # Backward rows run from the top (output) down: row k's sweep ends after all rows above it.
    bwd_end = {}
    for k in range(len(order)):
        above = B[k:]
        bwd_end[order[k]] = sum(above) + (T - 1) * max(above)
    if corner is not None:
        # Every path through the reversed lattice ends in the corner (first layer, t=0) exactly
        # once, so its own latency replaces one B_0 (the other T-1 visits may still be anywhere).
        bwd_end[order[0]] += corner - B[0]
    backward = max(bwd_end.values())
    upd_end = max(bwd_end[m] + T * U[k] for k, m in enumerate(order))
    step_rest = max(backward, upd_end)
    per_matrix = {m: {"forward_op_s": F[k], "backward_op_s": B[k], "update_op_s": U[k]}
                  for k, m in enumerate(order)}
    return AnalyticTiming(forward, backward, step_rest - backward, per_matrix)
