"""Digital baselines for the same LSTM training step: a GPU model and a CPU measurement.

- :func:`gpu_training_step` -- explicit utilization model of LSTM training on a GPU (V100, A100,
  H100, H200 presets in models/baselines/), fitted to Baidu DeepBench V100 fp32 rows (v100) and to
  fp32 measurements on an H200 (h200; a100 and h100 extrapolated from it); error per row:
  :func:`calibration_table`, ``archsim calibrate``.
- :func:`cpu_training_step` -- torch's floating-point LSTM training step timed on this machine
  (shrunk and extrapolated when the full step would take too long; the result says so).
- :func:`peak_throughput_comparison` -- datasheet peak op/s and op/s/W, the RPU papers' style of
  comparison, reported separately from the workload-level numbers.

Energies are power x time with a datasheet or assumed power, so they are labelled bounds/estimates.
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
    #: Joules per training step = power x time (see ``energy_is_bound``/``energy_note``).
    energy_per_step_J: float
    #: Achieved / peak fp32 op/s (None where the peak is unknown, e.g. the CPU).
    utilization: float | None
    #: Floating-point operations of one step counted as GEMM flops (2 per multiply-accumulate).
    flops_per_step: float
    #: Seconds per part of the step (keys depend on the baseline; they sum to the total).
    breakdown: dict[str, float] = field(default_factory=dict)
    #: True when the energy is power x time with a TDP-class power: an upper bound/estimate,
    #: not a measurement.
    energy_is_bound: bool = True
    #: Power used for the energy (W).
    power_W: float = 0.0
    #: "model" (GPU utilization model) or "measured" (timed here).
    kind: str = "model"
    #: For a shrunk-and-extrapolated measurement: what was actually run and how it was scaled.
    scaled_from: dict | None = None
    #: One line on where the numbers come from.
    note: str = ""

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


from archsim.baselines.cpu import cpu_training_step, load_cpu  # noqa: E402
from archsim.baselines.gpu import (  # noqa: E402
    DEEPBENCH_V100_FP32, H200_MEASURED_FP32, calibration_table, fit_utilization, gpu_training_step,
    load_gpu, peak_throughput_comparison, transfer_check,
)

__all__ = [
    "BaselineResult", "workload_shapes", "load_gpu", "gpu_training_step", "calibration_table",
    "fit_utilization", "transfer_check", "peak_throughput_comparison", "DEEPBENCH_V100_FP32",
    "H200_MEASURED_FP32", "cpu_training_step", "load_cpu",
]
