"""Digital baselines for the same LSTM training step: a GPU model and a CPU measurement.

- :func:`gpu_training_step` (:mod:`archsim.baselines.gpu`) -- explicit utilization model of LSTM
  training on a GPU per precision (strict fp32, TF32, fp16/bf16 mixed precision; V100, A100, H100,
  H200 presets in models/baselines/) and a utilization-dependent power model (idle + dynamic x
  activity, board TDP kept as the bound).
- :mod:`archsim.baselines.calibration` -- the measurements (read from reports/baselines/: DeepBench
  V100 fp32 and fp16 rows, H200 fp32 and TF32 cuDNN timings), error per row
  (:func:`calibration_table`, ``archsim calibrate``) and the least-squares fit.
- :func:`cpu_training_step` -- torch's floating-point LSTM training step timed on this machine
  (shrunk and extrapolated when the full step would take too long; the result says so).
- :func:`peak_throughput_comparison` -- datasheet peak op/s and op/s/W, the RPU papers' style of
  comparison, reported separately from the workload-level numbers.

GPU energies are modelled power x time, reported beside board power x time (the bound); the CPU's is
an assumed per-core power x threads x time (an estimate).
Nothing here imports torch at module import time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class BaselineResult:
    """One digital baseline's cost of one training step of a workload."""

    #: Baseline name (preset name, e.g. "v100", "cpu_host").
    name: str
    #: Seconds per training step (forward, backward, weight update).
    time_per_step_s: float
    #: Joules per training step = (modelled) power x time; ``energy_bound_J`` is the bound beside it.
    energy_per_step_J: float
    #: Achieved / peak op/s of the precision used (None where the peak is unknown, e.g. the CPU).
    utilization: float | None
    #: Floating-point operations of one step counted as GEMM flops (2 per multiply-accumulate).
    flops_per_step: float
    #: Seconds per part of the step (keys depend on the baseline; they sum to the total).
    breakdown: dict[str, float] = field(default_factory=dict)
    #: True when ``energy_per_step_J`` itself is power x time with a TDP-class power (an upper
    #: bound/estimate, not a measurement); False when it comes from the power model.
    energy_is_bound: bool = True
    #: Power used for the energy (W).
    power_W: float = 0.0
    #: "model" (GPU utilization model) or "measured" (timed here).
    kind: str = "model"
    #: For a shrunk-and-extrapolated measurement: what was actually run and how it was scaled.
    scaled_from: dict | None = None
    #: One line on where the numbers come from.
    note: str = ""
    #: Precision mode (GPU: fp32, tf32, fp16, bf16; CPU: fp32).
    precision: str = "fp32"
    #: Upper bound of the energy: board power (TDP) x time (GPU); equals the energy for the CPU.
    energy_bound_J: float | None = None
    #: The power behind ``energy_bound_J`` (W).
    power_bound_W: float | None = None
    #: Power model activity in [0, 1] (GPU), None where there is no power model.
    activity: float | None = None
    #: Threads the CPU measurement used (None for GPUs).
    threads: int | None = None

    def __post_init__(self):
        if self.energy_bound_J is None:
            self.energy_bound_J = self.energy_per_step_J
        if self.power_bound_W is None:
            self.power_bound_W = self.power_W

    def phase_breakdown(self) -> dict[str, float]:
        """Seconds per archsim phase: forward, backward (data), update (weight gradients + optimizer)."""
        out = {"forward": 0.0, "backward": 0.0, "update": 0.0}
        for key, seconds in self.breakdown.items():
            out[_PHASE_OF.get(key, "forward")] += seconds
        return out

    def to_dict(self) -> dict:
        return asdict(self)


#: breakdown key -> archsim phase (forward / backward / update).
_PHASE_OF = {
    "lstm_forward": "forward", "output_forward": "forward", "loss": "forward",
    "lstm_backward_data": "backward", "output_backward_data": "backward",
    "lstm_backward_weights": "update", "output_backward_weights": "update", "optimizer": "update",
    # Host-side framework cost per step: measured on the H200 it sits mostly in the backward call.
    "framework_overhead": "backward",
    # CPU measurement: backward includes the weight gradients (torch does not separate them).
    "forward": "forward", "backward": "backward",
}


def workload_shapes(model) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """(layer_shapes, output) of a ``WorkloadSpec.model``: [(n_in, hidden), ...], (V, hidden)."""
    shapes, n_in = [], model.n_input
    for _ in range(model.layers):
        shapes.append((n_in, model.hidden_size))
        n_in = model.hidden_size
    return shapes, (model.n_output, model.hidden_size)


def check_baseline_name(name: str, field_path: str = "--baselines", file: object = "command line") -> str:
    """Validate a baseline name (``PRESET`` or, for a GPU, ``PRESET:precision``); returns it.

    Bad input raises :class:`archsim.errors.SpecError` (one line: where, the value, what is allowed).
    """
    from archsim.errors import SpecError
    from archsim.specs.loader import preset_path

    base, precision = split_name(name)
    preset_path("baselines", base, referrer=file, field_path=field_path)
    if precision is None:
        return name
    try:
        spec = load_gpu(base)
    except SpecError:
        raise SpecError(file, field_path, name, f"{base} is not a GPU preset: name it without "
                        "':precision' (the CPU is measured in fp32)") from None
    if precision not in spec.available_precisions():
        raise SpecError(file, field_path, name, f"precisions of {base}: "
                        + ", ".join(spec.available_precisions()))
    return name


def baseline_kind(name: str) -> str:
    """"gpu" or "cpu": the ``kind`` of the preset a baseline name refers to."""
    from archsim.specs.loader import preset_path, read_yaml

    return read_yaml(preset_path("baselines", split_name(name)[0])).data.get("kind", "gpu")


def canonical_name(name: str) -> str:
    """``"h100"`` -> ``"h100:bf16"`` (the preset's default precision); CPU presets stay bare."""
    base, precision = split_name(name)
    if baseline_kind(base) == "cpu":
        return base
    return f"{base}:{precision or load_gpu(base).default_precision}"


def all_precisions(name: str) -> list[str]:
    """Every ``gpu:precision`` of a GPU preset (fp32 first); a CPU preset as itself."""
    base = split_name(name)[0]
    if baseline_kind(base) == "cpu":
        return [base]
    return [f"{base}:{p}" for p in load_gpu(base).available_precisions()]


from archsim.baselines.cpu import cpu_training_step, load_cpu  # noqa: E402
from archsim.baselines.gpu import (  # noqa: E402
    best_precision, gpu_training_step, load_gpu, mode, peak_throughput_comparison, split_name,
)
from archsim.baselines.calibration import (  # noqa: E402
    calibration_sets, calibration_table, fit_utilization, transfer_check,
)

__all__ = [
    "BaselineResult", "workload_shapes", "check_baseline_name", "canonical_name", "all_precisions",
    "baseline_kind", "load_gpu", "gpu_training_step", "mode", "split_name",
    "best_precision", "calibration_table", "calibration_sets", "fit_utilization", "transfer_check",
    "peak_throughput_comparison", "cpu_training_step", "load_cpu",
]
