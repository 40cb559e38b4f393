"""Energy of a timed schedule: counts x energy per action + leakage x time (after the timing run).

Operations are counted as DNN+NeuroSim counts training work: forward ops = 2 x MACs, training ops =
3 x forward ops (forward, backward and update each touch every weight once per vector).
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.hw.chip import chip_budget
from archsim.hw.components import action_energy_J, build_components
from archsim.schedule import PHASES, Schedule

#: Report names of the component kinds, in table order.
COMPONENTS = ("array", "dac", "integrator", "adc", "update", "digital", "buffer", "global_buffer",
              "dram", "bus", "system")


@dataclass
class EnergyReport:
    """Energy of one training step (J), by component and by phase."""

    by_component: dict[str, float]
    by_phase: dict[str, float]
    dynamic_J: float
    leakage_J: float
    leakage_W: float

    @property
    def total_J(self) -> float:
        return self.dynamic_J + self.leakage_J


def leakage_by_component_W(schedule: Schedule, device=None, budget=None) -> dict[str, float]:
    """Static power by component: every tile of the chip, or with ``system.power_gating`` only
    the tiles this workload occupies (:mod:`archsim.hw.chip`); ``budget``: that chip budget when
    the caller has it already."""
    if budget is None:
        used = len({p.tile for rows in schedule.placements.values() for p in rows})
        budget = chip_budget(schedule.arch, used, device)
    return {c: budget.static_W.get(c, 0.0) for c in COMPONENTS}


def dynamic_energy(schedule: Schedule, device=None) -> dict[tuple[str, str], float]:
    """(phase, component) -> dynamic energy of all the schedule's ops (J)."""
    components = build_components(schedule.arch, device)
    out: dict[tuple[str, str], float] = {}
    for (phase, comp, act), count in schedule.action_counts().items():
        key = (phase, comp)
        out[key] = out.get(key, 0.0) + count * action_energy_J(components, comp, act)
    return out


def kind_energy_J(schedule: Schedule, kinds, device=None) -> dict[str, float]:
    """Dynamic energy per step of the ops of each of ``kinds`` (their analog stages, digital
    work and memory traffic), J."""
    components = build_components(schedule.arch, device)
    out = dict.fromkeys(kinds, 0.0)
    for op in schedule.ops:
        if op.kind in out:
            out[op.kind] += sum(n * action_energy_J(components, comp, act)
                                for (comp, act), n in op.actions.items()) / schedule.steps
    return out


def price_step(schedule: Schedule, step_time_s: float, phase_times_s: dict[str, float],
               device=None, budget=None) -> EnergyReport:
    """Energy of one step of ``schedule`` (divides multi-step schedules by their step count).

    Static power is charged over ``step_time_s`` and split over phases by ``phase_times_s``;
    ``device``: the device preset (its technology may price the update coincidences);
    ``budget``: the schedule's chip budget, when the caller has computed it.
    """
    dyn = dynamic_energy(schedule, device)
    per = 1.0 / schedule.steps
    leak_W = leakage_by_component_W(schedule, device, budget)
    total_leak_W = sum(leak_W.values())
    by_component = {c: leak_W.get(c, 0.0) * step_time_s for c in COMPONENTS}
    by_phase = {p: total_leak_W * phase_times_s.get(p, 0.0) for p in PHASES}
    dynamic = 0.0
    for (phase, comp), e in dyn.items():
        by_component[comp] += e * per
        by_phase[phase] += e * per
        dynamic += e * per
    return EnergyReport(by_component, by_phase, dynamic, total_leak_W * step_time_s, total_leak_W)


def training_ops_per_step(schedule: Schedule) -> float:
    """NeuroSim-style training ops of one step: 3 x (2 x MACs of the forward pass)."""
    T = schedule.workload.training.seq_len
    B = schedule.batch
    macs = sum(m.rows * m.cols for m in schedule.mapping.matrices) * T * B
    return 3 * 2 * macs


def memory_traffic(schedule: Schedule) -> dict[str, dict[str, float]]:
    """Per memory level, per step: bits moved (reads and writes), their energy, the bytes of BPTT
    state it holds at the peak of a step and its capacity (all instances)."""
    from archsim.memory import LEVELS

    components = build_components(schedule.arch)
    bits = dict.fromkeys(LEVELS, 0.0)
    for (_, comp, act), count in schedule.action_counts().items():
        if comp in bits:
            bits[comp] += count / schedule.steps
    plan = schedule.memory
    out = {}
    for level in LEVELS:
        if level not in components:
            continue
        out[level] = {
            "bytes_moved": bits[level] / 8,
            "energy_J": bits[level] * action_energy_J(components, level, "bit"),
            "peak_bytes": plan.peak_bytes.get(level, 0.0) if plan else 0.0,
            "capacity_bytes": plan.capacity_bytes.get(level, 0.0) if plan else 0.0,
        }
    return out
