"""``estimate``: time and energy of training a workload on an RPU architecture, and baselines.

The one library entry point behind ``archsim estimate`` (and sweeps). It maps the workload, builds
the schedule, times it with SimPy (exact per step; warm-up + periodic window extrapolated to the
epoch unless ``exact``), checks it against the closed-form model, prices the actions, and runs the
digital baselines on the same workload.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from archsim.activity import NOMINAL, ActivityProfile
from archsim.endurance import endurance_block
from archsim.energy import kind_energy_J, memory_traffic, price_step, training_ops_per_step
from archsim.feasibility import check_estimate
from archsim.hw.chip import chip_budget, over_limits
from archsim.hw.components import UpdateDriver
from archsim.engine.analytic import analytic_step, bound_by
from archsim.engine.extrapolate import epoch_timing, sequence_timing
from archsim.schedule import build_schedule, resource_class
from archsim.specs import load_architecture, load_device, spec_hash
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.device import DeviceSpec
from archsim.specs.workload import WorkloadSpec
from archsim.units import format_quantity as fq

#: Sequences at least this long are timed from shorter ones (extrapolated over timesteps).
SEQUENCE_EXTRAPOLATION_FROM = 128


@dataclass
class EstimateResult:
    """Everything ``archsim estimate`` reports (SI units)."""

    workload: str
    architecture: str
    device: str
    batch_size: int
    seq_len: int
    steps_per_epoch: int
    epochs: int
    n_weights: int
    mapping: list[dict]
    tiles: int
    array_utilization: float
    time_per_step_s: float
    first_step_s: float
    analytic_step_s: float
    time_per_epoch_s: float
    epoch_method: str
    periodic: bool
    energy_per_step_J: float
    energy_per_epoch_J: float
    energy_breakdown_J: dict[str, float]
    phase_breakdown: dict[str, dict[str, float]]
    utilization: dict[str, float]
    ops_per_step: float
    ops_per_s: float
    ops_per_W: float
    leakage_W: float
    baselines: list[dict]
    activity: dict
    spec_hash: str
    memory: dict = field(default_factory=dict)
    bound_by: dict = field(default_factory=dict)
    area_m2: dict = field(default_factory=dict)
    static_W: dict = field(default_factory=dict)
    chip: dict = field(default_factory=dict)
    simulation: dict = field(default_factory=dict)
    tiki_taka: dict = field(default_factory=dict)
    """With a Tiki-Taka ``update.algorithm`` (v1, TTv2, chopped TTv2): its settings, tiles,
    transfers per step and their energy (TTv2: the buffer H's size, place and energy), and the
    same estimate of the SGD design (one array per block) beside it."""
    endurance: dict = field(default_factory=dict)
    """Writes (coincidences) per device per step and per epoch per matrix and array, and the
    lifetime in epochs where the device has ``endurance_cycles`` (:mod:`archsim.endurance`)."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def estimate(workload: WorkloadSpec, arch: ArchitectureSpec | None = None,
             device: DeviceSpec | None = None, *, exact: bool = False,
             activity: ActivityProfile | None = None, batch: int | None = None,
             epochs: int | None = None, baselines: list[str] | None = None,
             progress: bool = False, fidelity: str = "simpy") -> EstimateResult:
    """Estimate one workload on one architecture (presets named by the workload unless given).

    ``fidelity="simpy"`` times the schedule with SimPy (contention included; an epoch is exact with
    ``exact=True``, else extrapolated); ``fidelity="analytic"`` uses only the closed form (no
    contention; epoch = steps x step), fast enough for scaling plots over thousands of tiles.
    """
    if fidelity not in ("simpy", "analytic"):
        raise ValueError(f"fidelity must be 'simpy' or 'analytic', not {fidelity!r}")
    arch = arch or load_architecture(workload.architecture)
    device = device or load_device(workload.device)
    activity = activity or NOMINAL
    if batch is not None or epochs is not None:
        training = workload.training.model_copy(update={
            k: v for k, v in (("batch_size", batch), ("epochs", epochs)) if v is not None})
        origin = workload._origin
        workload = workload.model_copy(update={"training": training})
        workload._origin = origin
    tr = workload.training
    n_steps = workload.steps_per_epoch()
    # Absurd sizes fail here in microseconds, not after minutes of mapping and simulating.
    check_estimate(workload, arch, exact=exact, steps_per_epoch=n_steps, fidelity=fidelity)

    def build(k: int):
        return build_schedule(workload, arch, steps=k, activity=activity, device=device)

    one = build(1)

    def build_len(k: int, seq_len: int):
        """k steps of a shorter sequence, its state where the full sequence's state lives."""
        training = workload.training.model_copy(update={"seq_len": seq_len})
        short = workload.model_copy(update={"training": training})
        return build_schedule(short, arch, steps=k, activity=activity, memory=one.memory,
                              device=device)

    analytic = analytic_step(one)
    bar = None
    if progress and fidelity == "simpy":
        from tqdm import tqdm

        # The number of ops simulated is known only for an exact run (extrapolation may retry).
        total = len(one.ops) * n_steps if exact else None
        bar = tqdm(total=total, unit="op", desc="simulating", delay=1.0, leave=False)
    wall0 = time.perf_counter()
    if fidelity == "analytic":
        timing = None
        phase_times = {"forward": analytic.forward_s, "backward": analytic.backward_s,
                       "update": analytic.update_s}
        step_s = analytic.step_s
        epoch_s, first_step_s, method, periodic, simulated = step_s * n_steps, step_s, "analytic", True, 0
        busy = _analytic_busy(one, step_s)
        n_events, wait_s = 0, 0.0
    else:
        tick = bar.update if bar is not None else None
        try:
            if exact or tr.seq_len < SEQUENCE_EXTRAPOLATION_FROM:
                timing = epoch_timing(build, n_steps, exact=exact, progress=tick)
            else:
                timing = sequence_timing(build_len, tr.seq_len, n_steps, progress=tick)
        finally:
            if bar is not None:
                bar.close()
        run = timing.run
        phase_times = run.steps[-1].phase_times
        step_s = timing.period_s
        epoch_s, first_step_s, method = timing.total_s, timing.first_step_s, timing.method
        periodic, simulated = timing.periodic, timing.simulated_steps
        busy = run.utilization()
        n_events, wait_s = run.n_events, run.total_wait_s
    wall = time.perf_counter() - wall0
    used_tiles = len({p.tile for rows in one.placements.values() for p in rows})
    budget = chip_budget(arch, used_tiles, device)   # once: price_step charges its static power
    energy = price_step(one, step_s, phase_times, device, budget)
    exceeded = over_limits(budget, energy.total_J / step_s)
    epoch_energy = (energy.dynamic_J * n_steps + energy.leakage_W * epoch_s)

    by_class: dict[str, list[float]] = {}
    for res, frac in busy.items():
        by_class.setdefault(resource_class(res), []).append(frac)
    utilization = {c: sum(v) / len(v) for c, v in sorted(by_class.items())}
    utilization.update({f"{c}_max": max(v) for c, v in sorted(by_class.items())})

    ops = training_ops_per_step(one)
    base_rows = []
    for name in (baselines if baselines is not None else workload.baselines):
        base_rows.append(baseline_row(run_baseline(name, workload), step_s, energy.total_J))

    notes = [
        "ops counted as DNN+NeuroSim does: training ops = 3 x forward ops, forward ops = 2 x MACs",
        f"activity: {activity.source}",
        "GPU baseline energy = modelled power (idle + dynamic x activity) x time; the bound beside it "
        "is board power (TDP) x time; GPUs run in the named or the preset's default precision",
    ]
    pulse = UpdateDriver(arch, device)
    if pulse.device_pulse_longer:
        notes.append(f"update pulse slot {fq(pulse.pulse_s, 's')}: device {device.name}'s write "
                     f"pulse (t_pulse_s) is longer than the architecture's "
                     f"{fq(arch.update.t_pulse_s, 's')}, so each rank-one update takes "
                     f"{fq(pulse.update_time_s(), 's')} at BL {arch.update.desired_bl}")
    if analytic.step_s and abs(first_step_s - analytic.step_s) > 1e-9 * analytic.step_s:
        notes.append(f"SimPy first step is {first_step_s / analytic.step_s:.4f}x the "
                     "uncontended closed form: shared resources are contended")
    return EstimateResult(
        workload=workload.name, architecture=arch.name, device=device.name,
        batch_size=tr.batch_size, seq_len=tr.seq_len, steps_per_epoch=n_steps, epochs=tr.epochs,
        n_weights=one.mapping.n_weights, mapping=one.mapping.table(), tiles=one.mapping.n_tiles,
        array_utilization=one.mapping.utilization,
        time_per_step_s=step_s, first_step_s=first_step_s, analytic_step_s=analytic.step_s,
        time_per_epoch_s=epoch_s, epoch_method=method, periodic=periodic,
        energy_per_step_J=energy.total_J, energy_per_epoch_J=epoch_energy,
        energy_breakdown_J=energy.by_component,
        phase_breakdown={p: {"time_s": phase_times[p], "energy_J": energy.by_phase[p]}
                         for p in phase_times},
        utilization=utilization, ops_per_step=ops, ops_per_s=ops / step_s,
        ops_per_W=ops / energy.total_J, leakage_W=energy.leakage_W, baselines=base_rows,
        activity=activity.model_dump(mode="json"),
        spec_hash=spec_hash(workload, arch, device, extra={"activity": activity.model_dump(mode="json")}),
        memory={"bptt_state": arch.system.bptt_state, "levels": memory_traffic(one),
                "placement": {f"{m}.{s}": lvl for (m, s), lvl in one.memory.level.items()}},
        area_m2={**budget.area_m2, "chip": budget.chip_area_m2, "tile": budget.tile_area_m2},
        static_W={**budget.static_W, "chip": budget.chip_static_W, "tile": budget.tile_static_W},
        chip={"n_tiles": arch.system.n_tiles, "used_tiles": used_tiles,
              "leaking_tiles": budget.leaking_tiles, "power_gating": arch.system.power_gating,
              "area_m2": budget.chip_area_m2, "static_W": budget.chip_static_W,
              "average_power_W": energy.total_J / step_s,
              "area_limit_m2": budget.area_limit_m2, "power_limit_W": budget.power_limit_W,
              "exceeded": exceeded, "area_not_modelled": budget.missing_area},
        bound_by=bound_by(one, timing.run.wait_by_phase_s if timing else None,
                          timing.run.total_s / timing.period_s if timing and timing.period_s else 1),
        simulation={"fidelity": fidelity, "simulated_steps": simulated, "events": n_events,
                    "simulated_seq_lens": list(timing.seq_lens) if timing and timing.seq_lens
                    else [tr.seq_len],
                    "wall_s": wall, "events_per_s": n_events / wall if wall and n_events else 0.0,
                    "contention_wait_s": wait_s},
        tiki_taka=_tiki_taka(one, workload, arch, device, step_s, energy.total_J, epoch_s,
                             epoch_energy, dict(exact=exact, activity=activity,
                                                fidelity=fidelity)),
        endurance=endurance_block(one, device, n_steps),
        notes=notes,
    )


def _tiki_taka(one, workload, arch, device, step_s, energy_J, epoch_s, epoch_J, options) -> dict:
    """Tiki-Taka's costs per step and the SGD design's estimate beside them ({} for SGD)."""
    u = arch.update
    if not u.tiki_taka:
        return {}
    kinds = ("transfer_read", "transfer_update")
    counts = one.program.vector_counts(one.batch)
    sgd_arch = arch.model_copy(update={"update": u.model_copy(update={"algorithm": "sgd"})})
    sgd = estimate(workload, sgd_arch, device, baselines=[], **options)
    out = {
        "algorithm": u.algorithm,
        "transfer_every": u.transfer_every, "n_reads_per_transfer": u.n_reads_per_transfer,
        "transfer_lr": u.transfer_lr, "gamma": u.gamma,
        "tiles": one.mapping.n_tiles, "transfer_reads_per_step": counts["transfer_read"],
        "transfer_updates_per_step": counts["transfer_update"],
        "transfer_energy_J": kind_energy_J(one, kinds, device),
        "sgd": {"tiles": sgd.tiles, "time_per_step_s": sgd.time_per_step_s,
                "energy_per_step_J": sgd.energy_per_step_J,
                "time_per_epoch_s": sgd.time_per_epoch_s,
                "energy_per_epoch_J": sgd.energy_per_epoch_J},
        "tiki_taka": {"tiles": one.mapping.n_tiles, "time_per_step_s": step_s,
                      "energy_per_step_J": energy_J, "time_per_epoch_s": epoch_s,
                      "energy_per_epoch_J": epoch_J},
    }
    if u.buffered:
        out["buffer"] = _transfer_buffer(one, u)
    return out


def _transfer_buffer(one, u) -> dict:
    """TTv2's digital buffer H: its settings, bytes and levels, and per step its digital ops, the
    bits it moves and their energy (the transfer updates' digital work and traffic)."""
    from archsim.hw.components import action_energy_J, build_components
    from archsim.memory import LEVELS
    from archsim.program import transfer_buffer_words

    components = build_components(one.arch)
    ops = dict.fromkeys(("add", "mul"), 0.0)
    bits, energy = 0.0, 0.0
    for op in one.ops:
        if op.kind != "transfer_update":
            continue
        for (comp, act), n in op.actions.items():
            if comp == "digital" or comp in LEVELS:
                energy += n * action_energy_J(components, comp, act) / one.steps
            if comp == "digital":
                ops[act] = ops.get(act, 0.0) + n / one.steps
            elif comp in LEVELS:
                bits += n / one.steps
    words = transfer_buffer_words(one.program)
    level = {m: one.memory.level_of(m, "transfer_buffer") for m, n in words.items() if n}
    return {"thres_scale": u.thres_scale, "momentum": u.buffer_momentum,
            "forget_buffer": u.forget_buffer, "transfer_desired_bl": u.transfer_desired_bl,
            **({"in_chop_prob": u.in_chop_prob} if u.algorithm == "chopped_tiki_taka_v2" else {}),
            "word_bits": one.arch.digital.word_bits,
            "bytes": sum(words.values()) * one.arch.digital.word_bits / 8, "level": level,
            "digital_ops_per_step": ops, "bits_moved_per_step": bits,
            "energy_per_step_J": energy}


def _analytic_busy(schedule, step_s: float) -> dict[str, float]:
    """Busy fraction per resource from the schedule's stage times (no simulation needed)."""
    busy: dict[str, float] = {}
    for op in schedule.ops:
        for st in op.stages():
            busy[st.resource] = busy.get(st.resource, 0.0) + st.count * st.seconds
    return {r: b / step_s for r, b in busy.items()}


def run_baseline(name: str, workload: WorkloadSpec):
    """Time/energy of one step of ``workload`` on a digital baseline preset (GPU model or CPU).

    ``name`` is a preset name, for a GPU optionally ``NAME:precision`` (fp32, tf32, fp16, bf16;
    default: the preset's ``default_precision``). A GPU result's energy is modelled power x time,
    with board power x time in ``energy_bound_J``.
    """
    from archsim import baselines as bl
    from archsim.specs.loader import preset_path, read_yaml

    shapes, output = bl.workload_shapes(workload.model)
    if not workload.model.output_layer:
        output = None
    tr = workload.training
    base, precision = bl.split_name(name)
    kind = read_yaml(preset_path("baselines", base)).data.get("kind", "gpu")
    if kind == "cpu":
        if precision not in (None, "fp32"):
            raise ValueError(f"{base} is measured in fp32 only, not {precision}")
        return bl.cpu_training_step(shapes, output, tr.batch_size, tr.seq_len)
    return bl.gpu_training_step(bl.load_gpu(base), shapes, output, tr.batch_size, tr.seq_len,
                                precision=precision)


def baseline_row(res, step_s: float, energy_J: float) -> dict:
    """One baseline as ``EstimateResult.baselines`` carries it: its numbers and the ratios to the RPU
    (energy ratio against the modelled energy, ``energy_ratio_bound`` against the TDP bound)."""
    return {
        "name": res.name, "kind": res.kind, "precision": res.precision,
        "time_per_step_s": res.time_per_step_s, "energy_per_step_J": res.energy_per_step_J,
        "energy_bound_J": res.energy_bound_J, "power_W": res.power_W,
        "power_bound_W": res.power_bound_W,
        "speedup": res.time_per_step_s / step_s,
        "energy_ratio": res.energy_per_step_J / energy_J,
        "energy_ratio_bound": res.energy_bound_J / energy_J,
        "utilization": res.utilization, "energy_is_bound": res.energy_is_bound,
        "threads": res.threads, "scaled_from": res.scaled_from, "note": res.note,
    }
