"""One step program, two engines: train on simulated tiles, then time and price the measured activity.

The functional simulator executes the step program (:mod:`archsim.program`) that the schedule
times, sweep by sweep (layer by layer over the timesteps, the output layer batched over T, BPTT in
reverse, each tile's T x B rank-one updates after its backward sweep), and counts, per tile, what
happened: MVMs run (with bound-management repeats), DAC and ADC conversions, ADC saturations,
rank-one updates, pulse slots, pulses per line and coincidences. :func:`profile_from_activity`
turns those counts into an :class:`~archsim.activity.ActivityProfile` (per tile), and the estimate
engine re-times and re-prices the schedule with it. :func:`schedule_counts` and
:func:`functional_counts` put both engines' counts side by side: equal by construction (both run
the same program's ops), and checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archsim.activity import ActivityProfile
from archsim.endurance import write_rates
from archsim.program import OP_KINDS
from archsim.schedule import Schedule

#: Count name (functional TileActivity field) -> the schedule action that counts the same thing:
#: one per op kind of the step program that the tiles count, then what the periphery does in them.
COUNT_ACTIONS = {
    **{k.counter: k.action for k in OP_KINDS.values() if k.counter is not None},
    "bm_repeats": ("array", "bm_repeat"),
    "dac_conversions": ("dac", "convert"),
    "adc_conversions": ("adc", "convert"),
    "pulse_slots": ("update", "pulse_slot"),
    "transfer_pulse_slots": ("update", "transfer_pulse_slot"),
}


def schedule_counts(schedule: Schedule) -> dict[str, float]:
    """What the schedule says the analog side does, in the functional simulator's units."""
    out = dict.fromkeys(COUNT_ACTIONS, 0.0)
    lookup = {v: k for k, v in COUNT_ACTIONS.items()}
    for (_phase, comp, act), n in schedule.action_counts().items():
        name = lookup.get((comp, act))
        if name:
            out[name] += n
    return out


def functional_counts(per_tile: dict[str, dict]) -> dict[str, float]:
    """Summed counters of a functional run (``per_tile``: tile key -> TileActivity dict)."""
    out = dict.fromkeys(COUNT_ACTIONS, 0.0)
    for counters in per_tile.values():
        for name in out:
            out[name] += float(counters.get(name, 0))
    return out


def _rates(c: dict) -> dict[str, float | None]:
    def div(a, b):
        return a / b if b else None

    return {
        "bm_repeats_per_mvm": div(c.get("bm_repeats", 0), c.get("forward_mvms", 0)) or 0.0,
        "pulse_slots_per_update": div(c.get("pulse_slots", 0), c.get("updates", 0)),
        "transfer_pulse_slots_per_update": div(c.get("transfer_pulse_slots", 0),
                                               c.get("transfer_updates", 0)),
        "x_fire_prob": div(c.get("row_pulses", 0), c.get("x_line_slots", 0)),
        "d_fire_prob": div(c.get("col_pulses", 0), c.get("d_line_slots", 0)),
        "coincidence_prob": div(c.get("coincidences", 0), c.get("device_slots", 0)),
        "adc_saturation_rate": div(c.get("adc_saturations", 0), c.get("adc_conversions", 0)) or 0.0,
        **write_rates(c),
    }


def profile_from_activity(per_tile: dict[str, dict], *, source: str, spec_hash: str | None = None,
                          seed: int | None = None) -> ActivityProfile:
    """A measured :class:`ActivityProfile`: global means plus one entry per tile."""
    total: dict[str, float] = {}
    for counters in per_tile.values():
        for k, v in counters.items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0.0) + v
    per = {key: _rates(c) for key, c in per_tile.items()}
    glob = {k: v for k, v in _rates(total).items() if v is not None}
    # Write rates are per tile (a max over devices does not add up): the global value, the
    # default of a tile without its own, is the largest tile's.
    for k in write_rates({}):
        found = [r[k] for r in per.values() if r.get(k) is not None]
        glob.pop(k, None)
        if found:
            glob[k] = max(found)
    return ActivityProfile(**glob, source=source, spec_hash=spec_hash, seed=seed, per_matrix=per)


#: Quantities compared between the nominal and the activity-driven estimate.
COMPARED = [
    ("time per step", lambda r: r.time_per_step_s, "s"),
    ("forward time", lambda r: r.phase_breakdown["forward"]["time_s"], "s"),
    ("update time", lambda r: r.phase_breakdown["update"]["time_s"], "s"),
    ("energy per step", lambda r: r.energy_per_step_J, "J"),
    ("update energy", lambda r: r.phase_breakdown["update"]["energy_J"], "J"),
    ("array energy", lambda r: r.energy_breakdown_J["array"], "J"),
    ("update-driver energy", lambda r: r.energy_breakdown_J["update"], "J"),
    ("ADC energy", lambda r: r.energy_breakdown_J["adc"], "J"),
    ("time per epoch", lambda r: r.time_per_epoch_s, "s"),
    ("energy per epoch", lambda r: r.energy_per_epoch_J, "J"),
]


@dataclass
class RunResult:
    """Training on simulated tiles plus nominal and activity-driven estimates of the same schedule."""

    train: Any
    activity: ActivityProfile
    nominal: Any
    measured: Any
    counts: dict[str, dict[str, float]] = field(default_factory=dict)

    def comparison(self) -> list[dict]:
        rows = []
        for name, get, unit in COMPARED:
            a, b = get(self.nominal), get(self.measured)
            rows.append({"quantity": name, "unit": unit, "nominal": a, "measured": b,
                         "change": (b - a) / a if a else 0.0})
        return rows

    def to_json(self) -> dict:
        return {
            "workload": self.nominal.workload, "architecture": self.nominal.architecture,
            "device": self.nominal.device, "spec_hash": self.activity.spec_hash,
            "seed": self.activity.seed,
            "train": {k: v for k, v in self.train.to_dict().items() if k != "curve"},
            "activity": self.activity.model_dump(mode="json"),
            "comparison": self.comparison(), "counts": self.counts,
            "nominal": self.nominal.to_json(), "measured": self.measured.to_json(),
        }


def activity_run(workload, arch, device, *, steps: int, seed: int | None = None,
                 data_path=None, update_mode: str = "fast", progress: bool = False,
                 torch_device: str | None = "cpu", baselines: list[str] | None = None,
                 learning_rate: float | None = None) -> RunResult:
    """Train ``steps`` steps functionally, then estimate nominally and with the measured activity."""
    from archsim.estimate import estimate
    from archsim.functional.train import train
    from archsim.schedule import build_schedule
    from archsim.specs import spec_hash

    from archsim.feasibility import check_estimate

    from archsim.errors import SpecError

    if device.kind == "ideal":
        # Checked before training: a floating-point tile makes no pulses, so there is no update
        # activity to measure (the profile's pulse rates would be zero, which no schedule prices).
        raise SpecError("device", "kind", f"ideal ({device.name})",
                        "a physical device: run measures the update's pulses and the ideal device "
                        "makes none (its accuracy: archsim train; its nominal cost: archsim estimate)")
    tr = workload.training
    seed = tr.seed if seed is None else seed
    # The chip must hold the network before minutes of training are spent. The vocabulary comes
    # from the text later: check with one character (a lower bound on the tiles needed).
    smallest = workload.model_copy(update={"model": workload.model.model_copy(update={"vocab_size": 1})})
    check_estimate(smallest, arch)
    result = train(workload, arch, device, data_path=data_path, max_chars=steps * tr.batch_size * tr.seq_len,
                   seed=seed, update_mode=update_mode, progress=progress, torch_device=torch_device,
                   learning_rate=learning_rate)
    from archsim.mapping import map_workload

    if result.vocab_size and result.vocab_size != workload.model.vocab_size:
        # The functional model's vocabulary comes from the text: time the same network.
        model = workload.model.model_copy(update={"vocab_size": result.vocab_size})
        origin = workload._origin
        workload = workload.model_copy(update={"model": model})
        workload._origin = origin

    mapped = {m.name for m in map_workload(workload.model, arch.array.rows, arch.array.cols).matrices}
    # Only tiles the schedule maps (an unmapped output layer runs in floating point).
    per_tile = {k: v for k, v in result.activity.get("per_tile", {}).items()
                if k.split("[")[0] in mapped}
    h = spec_hash(workload, arch, device, extra={"seed": seed, "steps": result.steps,
                                                   "update_mode": update_mode, "lr": result.learning_rate})
    profile = profile_from_activity(
        per_tile, spec_hash=h, seed=seed,
        source=f"measured: {result.steps} functional training steps of {workload.name} on "
               f"{arch.name}/{device.name}, seed {seed}, {update_mode} update mode")
    nominal = estimate(workload, arch, device, baselines=baselines if baselines is not None else [])
    measured = estimate(workload, arch, device, activity=profile,
                        baselines=baselines if baselines is not None else [])
    # Counts are the same every step, so one step's schedule times the number of steps.
    one = schedule_counts(build_schedule(workload, arch, steps=1, activity=profile))
    counts = {"functional": functional_counts(per_tile),
              "schedule": {k: v * result.steps for k, v in one.items()}}
    return RunResult(result, profile, nominal, measured, counts)
