"""Expand a sweep into points, resolve each point's specs, and key it by what it really computes.

A point's key is the spec hash of its fully resolved workload, architecture and device specs plus
its seed, kind and result-relevant options: two points that resolve to the same specs (``2`` and
``2.0`` for an integer field, an override equal to the preset's value) share one key and are
computed once; a key already in the results file is never computed again.

A point whose axis values are each valid but whose resolved specs are not (a combination a spec
validator rejects) raises :class:`PointFailure`: the runner records it as a failed point and goes
on. An axis value that is invalid on its own (out of range, a bad unit) is a mistake in the sweep
file and stays a plain one-line :class:`~archsim.errors.SpecError` that stops the sweep up front.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import hashlib
import json

from archsim.errors import EXIT_BAD_INPUT, ArchsimError, SpecError
from archsim.specs import (
    ArchitectureSpec, DeviceSpec, WorkloadSpec, load_architecture, load_device, load_workload,
    spec_hash,
)
from archsim.sweep.spec import PERIPHERY_AXES, PRESET_AXES, Sweep

#: Options that change how a point runs but not its result (left out of the key): the echo
#: evaluator's pause, and how often a training run evaluates its curve (the trained weights and the
#: final losses do not depend on it; tests/test_sweep.py checks that).
UNKEYED_OPTIONS = frozenset({"sleep_s", "eval_every"})


class PointFailure(ArchsimError):
    """One point cannot be computed because of its own specs (a combination of values a validator
    rejects, a design that does not fit the architecture). ``reason`` is the one-line error the
    sweep records for the point; ``str()`` also names the sweep file and the point."""

    exit_status = EXIT_BAD_INPUT

    def __init__(self, message: str, reason: str | None = None, exit_status: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.reason = reason or message
        self.exit_status = exit_status


@dataclass(frozen=True)
class Point:
    """One point of a sweep: axis values (as written in the sweep file), a seed and a kind."""

    index: int
    values: dict[str, Any]
    seed: int
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.values.items()]
        return ", ".join(parts + [f"seed={self.seed}", f"kind={self.kind}"])


def axis_combinations(sweep: Sweep) -> list[dict[str, Any]]:
    """Axis-value dicts in a fixed order: the grid product (last axis fastest) or the zip."""
    names = list(sweep.spec.axes)
    lists = [sweep.spec.axes[n] for n in names]
    rows = itertools.product(*lists) if sweep.spec.mode == "grid" else zip(*lists)
    return [dict(zip(names, row)) for row in rows]


def options_for(sweep: Sweep, kind: str) -> dict[str, Any]:
    """The options block that applies to points of ``kind``."""
    block = {"estimate": sweep.spec.estimate, "train": sweep.spec.train, "echo": sweep.spec.echo}[kind]
    options = block.model_dump(mode="json")
    if kind == "train":
        if options.get("torch_device") is None:
            options.pop("torch_device")   # left out unless set: stored points keep their keys
        devices = options.pop("population_devices")
        periphery = options.pop("population_periphery")
        if options.pop("population"):
            # A member's numbers depend on the whole population (shared noise streams): key them
            # by its seeds (and device values). Left out when off, so that points stored before
            # these options existed keep their keys.
            options["population_seeds"] = list(dict.fromkeys(sweep.spec.seeds))
            if devices:
                options["population_devices"] = {axis: list(values) for axis, values in
                                                 sweep.spec.axes.items() if axis.startswith("device.")}
            if periphery:
                options["population_periphery"] = {axis: list(values) for axis, values in
                                                   sweep.spec.axes.items() if axis in PERIPHERY_AXES}
    return options


def expand(sweep: Sweep) -> list[Point]:
    """All points of the sweep: each axis combination x seed x kind, in a deterministic order."""
    points = []
    for values in axis_combinations(sweep):
        for seed in sweep.spec.seeds:
            for kind in sweep.spec.kinds():
                points.append(Point(len(points), values, seed, kind, options_for(sweep, kind)))
    return points


def make_task(sweep: Sweep, point: Point) -> dict[str, Any]:
    """Everything a worker needs to rebuild the point's specs (plain JSON-able values)."""
    overrides: dict[str, dict[str, Any]] = {"workload": {}, "architecture": {}, "device": {}}
    presets: dict[str, str | None] = {"architecture": sweep.spec.architecture, "device": sweep.spec.device}
    for axis, value in point.values.items():
        if axis in PRESET_AXES:
            presets[axis] = value
        else:
            target, rest = axis.split(".", 1)
            overrides[target][rest] = value
    for kind in PRESET_AXES:
        if presets[kind] is not None:
            ref = sweep.preset_ref(str(presets[kind]))
            presets[kind] = ref
            # Keep the workload's own preset fields consistent with what the point runs on.
            overrides["workload"][kind] = ref
    return {
        "sweep": sweep.name,
        "sweep_file": str(sweep.file),
        "index": point.index,
        "values": point.values,
        "seed": point.seed,
        "kind": point.kind,
        "options": point.options,
        "base": str(sweep.base_path),
        "architecture": presets["architecture"],
        "device": presets["device"],
        "overrides": overrides,
    }


def resolve_task(task: dict[str, Any]) -> tuple[WorkloadSpec, ArchitectureSpec, DeviceSpec]:
    """Load the base workload and the presets with the point's overrides (same code in workers)."""
    ov = task["overrides"]
    workload = load_workload(task["base"], ov["workload"] or None)
    arch = load_architecture(task["architecture"] or workload.architecture, ov["architecture"] or None,
                             referrer=task["base"])
    device = load_device(task["device"] or workload.device, ov["device"] or None, referrer=task["base"])
    return workload, arch, device


def point_key(point: Point | dict, specs: tuple[WorkloadSpec, ArchitectureSpec, DeviceSpec]) -> str:
    """Spec hash of the resolved specs + seed + kind + result-relevant options."""
    get = point.get if isinstance(point, dict) else lambda name: getattr(point, name)
    options = {k: v for k, v in (get("options") or {}).items() if k not in UNKEYED_OPTIONS}
    return spec_hash(*specs, extra={"seed": get("seed"), "kind": get("kind"), "options": options})


def resolve_point(sweep: Sweep, point: Point) -> tuple[dict[str, Any], str]:
    """The point's task and key; a bad axis value becomes a one-line error naming the sweep file.

    Raises :class:`~archsim.errors.SpecError` when one axis value is invalid by itself, and
    :class:`PointFailure` when the values are valid but this combination of them is not.
    """
    task = make_task(sweep, point)
    try:
        specs = resolve_task(task)
    except SpecError as exc:
        blamed = _blame_axis(sweep, point, exc)
        if blamed is None:
            raise PointFailure(str(sweep.error("axes", point.label(), f"this point gives a bad spec: {exc}")),
                               reason=str(exc)) from None
        raise blamed from None
    key = point_key(point, specs)
    task["key"] = key
    task["resolved"] = resolved_values(point.values, specs)
    return task, key


def resolved_values(values: dict[str, Any], specs: tuple) -> dict[str, Any]:
    """Each axis's value after validation (SI floats for unit strings; preset axes: the name)."""
    dumped = dict(zip(("workload", "architecture", "device"), (s.model_dump(mode="json") for s in specs)))
    out = {}
    for axis in values:
        parts = axis.split(".")
        node: Any = dumped[parts[0]]
        for part in parts[1:] or ["name"]:  # a bare preset axis: the preset that was loaded
            node = node[part]
        out[axis] = node
    return out


def invalid_point_key(task: dict[str, Any]) -> str:
    """A stand-in key for a point whose specs do not resolve (no spec hash exists): a hash of what
    the sweep asks for at that point, so identical invalid points still count once."""
    options = {k: v for k, v in (task.get("options") or {}).items() if k not in UNKEYED_OPTIONS}
    blob = json.dumps([task["base"], task["architecture"], task["device"], task["overrides"],
                       task["seed"], task["kind"], options], sort_keys=True, default=str)
    return "invalid-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _blame_axis(sweep: Sweep, point: Point, exc: SpecError) -> SpecError | None:
    """Re-word an error from a spec file as an error of the axis whose value caused it on its own;
    None when no single axis value is to blame (the combination is)."""
    inner = str(exc.path or "")
    for axis, value in point.values.items():
        if axis in PRESET_AXES:
            if inner == axis or str(exc.value) == str(value):
                return sweep.error(f"axes.{axis}", value, exc.allowed)
            continue
        rest = axis.split(".", 1)[1]
        if inner == rest or inner.startswith((rest + ".", rest + "[")):
            return sweep.error(f"axes.{axis}", value, exc.allowed)
    return None
