"""Sweep spec: a base workload, axes over spec fields, and what to compute at each point.

A sweep file looks like::

    name: adc_energy_batch            # default: the file name without .yaml
    base: ../workloads/lstm2x512.yaml # relative to this file
    architecture: shared_adc256_nominal   # optional preset overrides (default: the workload's)
    device: rpu_baseline
    mode: grid                        # grid (product of the axes) or zip (i-th values together)
    axes:
      architecture: [shared_adc256_optimistic, shared_adc256_conservative]   # switch presets
      workload.training.batch_size: [1, 8, 32]
      architecture.adc.e_conv_J: ["1 pJ", "4 pJ"]
      device.up_down: [0.0, 0.05]
    kind: estimate                    # estimate | train | both  (echo: a cheap test evaluator)
    seeds: [0]                        # every point runs once per seed
    train: {max_chars: 20000, epochs: 1}   # + population: true (seeds as one batched model)
    plot: {x: workload.training.batch_size, y: energy_J}
    columns: [energy_J, time_s]       # result keys in the summary table

Axis paths start with the spec they change (``workload.``, ``architecture.``, ``device.``) and
must name a real field of that spec; the bare keys ``architecture`` and ``device`` switch presets.
``name`` (or the file name it defaults to) is the folder the results go to under
``reports/sweeps/``, so it must be a plain name: letters, digits, ``-``, ``_`` and ``.``, not
starting with ``.``.

Mistakes in the sweep file stop the sweep before anything runs or is written, with one line naming
the file, the field and the value (exit status 2): malformed YAML, an unknown field, an axis path
that names no field, an unknown preset, an axis value that is invalid on its own (out of range, a
bad unit), a name that is not a plain name, and a sweep none of whose points validates.

Failed points do not stop the sweep. A point fails when its values are each valid but the point
cannot be computed: the combination is rejected by a spec validator, or the evaluator finds the
design infeasible (it needs more tiles than ``architecture.system.n_tiles``, say). The sweep goes on
with the other points; the summary table marks the point ``failed`` and ``summary.md`` and the
command list each failed point with its axis values and its one-line error. ``archsim sweep`` then
exits with status 4 (``archsim: error: N of M points failed ...`` on stderr) after writing
everything, on every run while the sweep has failed points, so scripts notice.

Failed points are not retried on resume: such an error is deterministic (the same specs give the
same error), so a failure the evaluator reported is stored in ``results.jsonl`` under the point's
key (``"failed": true`` and its ``"error"``, no ``"result"``) like any finished point, and a point
whose specs do not validate is re-checked (it costs nothing) on every run but never sent to a
worker. To retry a stored failure (after changing archsim itself, say), delete its line from
``results.jsonl``. A diverged training run is a result, not a failure (``"diverged": true``). An
error that is not about the point's own specs (a missing text file, workers that see different
spec files) would hit every point: it stops the sweep with one line, keeping the results stored.

SIGINT (Ctrl-C) and SIGTERM stop a running sweep: workers are shut down, results already stored
stay (a rerun resumes), and the command exits with 130 (``archsim: interrupted``) or 143
(``archsim: terminated``). Local workers also exit by themselves when the process that started
them dies, even by SIGKILL. A Dask ``--address`` must look like ``tcp://HOST:PORT`` (or ``tls://``,
``ws://``, ``wss://``, ``ucx://``); a scheduler that does not answer within ``--connect-timeout``
seconds (default 10), or anything that is not a Dask scheduler, is one line and exit status 2,
before anything is written.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from archsim.errors import SpecError
from archsim.functional.config import MEMBER_PERIPHERY_FIELDS
from archsim.specs import ArchitectureSpec, DeviceSpec, WorkloadSpec
from archsim.specs.base import PositiveInt, Seed, Spec
from archsim.specs.loader import Loaded, preset_path, read_yaml, validate

#: First component of an axis path -> the spec model it changes.
TARGETS: dict[str, type[BaseModel]] = {
    "workload": WorkloadSpec,
    "architecture": ArchitectureSpec,
    "device": DeviceSpec,
}
#: Bare axis keys that switch presets.
PRESET_AXES = ("architecture", "device")
#: A sweep name is a folder name: letters, digits, ``-``, ``_``, ``.``; no leading ``.``.
NAME_PATTERN = re.compile(r"(?!\.)[\w.-]+")
NAME_ALLOWED = ("a plain name: letters, digits, '-', '_' and '.', not starting with '.' "
                "(it names the results folder)")
MAX_NAME_LENGTH = 128


class TrainBudget(Spec):
    """Budget of the training run at each ``train`` point (small by default: sweeps are many runs)."""

    max_chars: PositiveInt | None = Field(
        None, description="Stop after this many training characters (None: the workload's full epochs).")
    epochs: PositiveInt | None = Field(None, description="Override workload.training.epochs.")
    update_mode: str | None = Field(
        None, description="Update implementation passed to the trainer (None: the trainer's default).")
    torch_device: str | None = Field(
        None, description="Where torch trains each point: cpu, cuda, cuda:N or auto (None: cpu). "
                          "Part of the points' keys when set: CUDA draws other random numbers.")
    eval_every: PositiveInt | None = Field(
        None, description="Training steps between the curve's points (validation loss; None: "
                          "the trainer's default, a tenth of an epoch). Not part of the points' "
                          "keys: it sets how finely the curve is sampled, not what is trained "
                          "(an evaluation restores the training stream), and a point resumed "
                          "from a checkpoint keeps the checkpoint's cadence; what is read off "
                          "the curve (the best validation loss) is only as fine as its "
                          "sampling, so keep one cadence within a sweep. Each evaluation "
                          "reads the whole validation split (for LSTM2-64 on War and Peace about "
                          "16 training steps' time): long runs save by sampling less often.")
    population: bool = Field(
        False, description="Train the seeds of each axis combination together, as one population "
                           "(archsim.functional.train_population: one batched model, one process). "
                           "Each point's result is stored on its own; it equals the separate run "
                           "in distribution, not draw for draw, so the points are keyed by the "
                           "sweep's seed list too. Not with Tiki-Taka or weight mapping.")
    population_devices: bool = Field(
        False, description="With population: also gather the points that differ only in "
                           "`device.*` axes into one population (e.g. the asymmetry scan's "
                           "up_down values x seeds). The values may change only per-device "
                           "tensors of the device family (for constant-step devices up_down, the "
                           "*_dtod spreads and the bounds); one the family keeps as a number per "
                           "tile (dw_min, dw_min_std, an exp-step device's up_down) stops the "
                           "sweep with one line naming the field.")
    population_periphery: bool = Field(
        False, description="With population: also gather the points that differ only in the "
                           "periphery's converter axes (`architecture.dac.bits`, "
                           "`architecture.adc.bits`, `architecture.periphery.` inp_bound, "
                           "out_bound, out_noise, inp_sto_round, out_sto_round, max_bm_factor, "
                           "max_bm_res) into one population (e.g. the resolution scan's bits x "
                           "rounding x seeds): each member's tiles use its own converters "
                           "(archsim.functional.periphery_members). Other architecture axes "
                           "still split the sweep into populations.")

#: The architecture axes ``train.population_periphery`` gathers into one population.
PERIPHERY_AXES = tuple(f"architecture.{field}" for field in MEMBER_PERIPHERY_FIELDS.values())


class EstimateOptions(Spec):
    """Options of the estimate at each ``estimate`` point."""

    exact: bool = Field(False, description="Run the exact (slow) event simulation, not the fast path.")


class EchoOptions(Spec):
    """Options of the ``echo`` test evaluator (no physics: it returns the resolved axis values)."""

    sleep_s: float = Field(0.0, ge=0, description="Sleep this long per point (tests of interruption).")


class PlotSpec(Spec):
    """The plot written at the end: one result key against one axis, a line per other-axes combination."""

    x: str | None = Field(None, description="Axis path on the x axis (default: the first axis).")
    y: str | None = Field(None, description="Result key (dotted) on the y axis (default: first column).")
    logx: bool = Field(False, description="Logarithmic x axis.")
    logy: bool = Field(False, description="Logarithmic y axis.")


AxisValues = Annotated[list[Any], Field(min_length=1)]


class SweepSpec(Spec):
    """A design-space sweep: base workload, preset overrides, axes, and what to run per point."""

    name: str | None = Field(None, description="Sweep name (default: the sweep file's stem).")
    description: str = Field("", description="One sentence on what this sweep asks.")
    base: str = Field(description="Base workload YAML, relative to the sweep file.")
    architecture: str | None = Field(None, description="Architecture preset (default: the workload's).")
    device: str | None = Field(None, description="Device preset (default: the workload's).")
    mode: Literal["grid", "zip"] = Field(
        "grid", description="grid: product of the axes; zip: the i-th values of all axes together.")
    axes: dict[str, AxisValues] = Field(description="Dotted field path -> list of values.")
    kind: Literal["estimate", "train", "both", "echo"] = Field(
        "estimate", description="What each point computes (both: an estimate and a training run).")
    seeds: Annotated[list[Seed], Field(min_length=1)] = Field(
        default_factory=lambda: [0], description="Each point runs once per seed.")
    train: TrainBudget = Field(default_factory=TrainBudget, description="Training budget per train point.")
    estimate: EstimateOptions = Field(default_factory=EstimateOptions, description="Estimate options.")
    echo: EchoOptions = Field(default_factory=EchoOptions, description="Echo test evaluator options.")
    plot: PlotSpec = Field(default_factory=PlotSpec, description="The summary plot.")
    columns: list[str] | None = Field(None, description="Result keys in the summary table (default: a few).")

    @field_validator("axes")
    @classmethod
    def _axes_present(cls, axes):
        if not axes:
            raise ValueError("give at least one axis (a field path and a list of values)")
        return axes

    def kinds(self) -> list[str]:
        """Point kinds this sweep runs, in the order they are expanded."""
        return ["estimate", "train"] if self.kind == "both" else [self.kind]


class Sweep:
    """A validated sweep spec with its file (for relative paths and error messages)."""

    def __init__(self, spec: SweepSpec, file: Path, lines: dict[str, int] | None = None):
        self.spec, self.file, self.lines = spec, Path(file), lines or {}

    @property
    def name(self) -> str:
        return self.spec.name or self.file.stem

    @property
    def base_path(self) -> Path:
        return (self.file.resolve().parent / self.spec.base).resolve()

    def preset_ref(self, value: str) -> str:
        """A preset name stays a name; a YAML path is made absolute (relative to the sweep file)."""
        if value.endswith((".yaml", ".yml")) or "/" in value:
            return str((self.file.resolve().parent / value).resolve())
        return value

    def error(self, path: str, value: object, allowed: str) -> SpecError:
        return SpecError(self.file, path, value, allowed, line=self.lines.get(path))


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file: one-line SpecError on any problem, before anything runs."""
    loaded: Loaded = read_yaml(path)
    spec = validate(SweepSpec, loaded)
    sweep = Sweep(spec, loaded.file, loaded.lines)
    check_name(sweep)
    if not sweep.base_path.is_file():
        raise sweep.error("base", spec.base, f"no such workload file ({sweep.base_path})")
    for axis in spec.axes:
        check_axis_path(sweep, axis)
    if spec.mode == "zip":
        lengths = {axis: len(values) for axis, values in spec.axes.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{a}: {n}" for a, n in lengths.items())
            raise sweep.error("axes", shown, "mode: zip needs value lists of equal length")
    dev = spec.train.torch_device
    if dev is not None and not re.fullmatch(r"cpu|cuda|cuda:\d+|auto", dev):
        raise sweep.error("train.torch_device", dev, "allowed: cpu, cuda, cuda:N, auto")
    for option in ("population_devices", "population_periphery"):
        if getattr(spec.train, option) and not spec.train.population:
            raise sweep.error(f"train.{option}", True, "needs train.population: true")
    if spec.train.population_periphery and not any(a in PERIPHERY_AXES for a in spec.axes):
        raise sweep.error("train.population_periphery", True, "needs an axis among "
                          f"{', '.join(PERIPHERY_AXES)}")
    if spec.plot.x is not None and spec.plot.x not in spec.axes:
        raise sweep.error("plot.x", spec.plot.x, f"expected one of the axes: {', '.join(spec.axes)}")
    _check_presets(sweep)
    return sweep


def check_name(sweep: Sweep) -> None:
    """The sweep's name (``name:`` or the file name) must be a plain folder name."""
    name = sweep.spec.name if sweep.spec.name is not None else sweep.file.stem
    if NAME_PATTERN.fullmatch(name) and len(name) <= MAX_NAME_LENGTH:
        return
    allowed = NAME_ALLOWED if len(name) <= MAX_NAME_LENGTH else f"at most {MAX_NAME_LENGTH} characters"
    if sweep.spec.name is None:
        allowed += "; the file name is not one, so set name:"
    raise sweep.error("name", name, allowed)


def _check_presets(sweep: Sweep) -> None:
    """Unknown preset names (sweep-level or on a preset axis) are errors before anything runs."""
    for kind in PRESET_AXES:
        checks = [(kind, getattr(sweep.spec, kind))] if getattr(sweep.spec, kind) is not None else []
        checks += [(f"axes.{kind}", value) for value in sweep.spec.axes.get(kind, [])]
        for where, value in checks:
            if not isinstance(value, str):
                raise sweep.error(where, value, f"expected a {kind} preset name or YAML path")
            try:
                preset_path(f"{kind}s", sweep.preset_ref(value), referrer=sweep.file, field_path=where)
            except SpecError as exc:
                raise sweep.error(where, value, exc.allowed) from None


def check_axis_path(sweep: Sweep, axis: str) -> None:
    """Raise a one-line SpecError unless ``axis`` names a real field of the spec it targets."""
    where = f"axes.{axis}"
    parts = axis.split(".")
    if parts[0] not in TARGETS:
        raise sweep.error(where, parts[0], "an axis path starts with workload., architecture. or "
                          "device. (or is the bare key architecture or device to switch presets)")
    if len(parts) == 1:
        if axis in PRESET_AXES:
            return
        raise sweep.error(where, axis, "give a field path, e.g. workload.training.batch_size")
    model: Any = TARGETS[parts[0]]
    walked = parts[0]
    for part in parts[1:]:
        if model is None:
            raise sweep.error(where, part, f"{walked} is a value, not a group of fields")
        fields = model.model_fields
        if part not in fields:
            raise sweep.error(where, part, f"unknown field of {walked}; allowed: {', '.join(fields)}")
        model = _sub_model(fields[part].annotation)
        walked = f"{walked}.{part}"


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    """The spec model a field holds (through Optional/Annotated), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        sub = _sub_model(arg)
        if sub is not None:
            return sub
    return None
