"""Digital baseline specs: GPUs (datasheet numbers, a fitted LSTM utilization model per precision, a
utilization-dependent power model) and the CPU host.

GPU utilization model (archsim/baselines/gpu.py has the full derivation)::

    recurrent GEMM of one timestep (4H x H by H x N, F = 8 H^2 N flop):
        core(H, N) = ( (F / (P e))^p + (H tau (1 + N/N0))^p + (16 H^2 / (BW eta))^p )^(1/p)
    forward            = T (t_step + core)      + G(4H, N T, n)
    backward (data)    = T (t_step + s_b core)  + G(n, N T, 4H)     (layers above the first)
    backward (weights) = t_w + G(4H, n + H, N T)                    one GEMM over all timesteps
    big GEMM (M x K by K x N): G(M, N, K) = 2 M N K / (P e s/(s + s0) K/(K + K0)),  s = sqrt(M N)
    per training step: + output layer GEMMs + loss and SGD streams + t_fw

with t_step replaced by t_fused for H <= H_f. P is the GPU's peak rate in the precision used
(``peak_fp32_flops`` for strict fp32, ``precisions.<p>.peak_flops`` otherwise) and BW its memory
bandwidth (bytes/s); 16 H^2 above is 4H x H weights x 4 bytes (2 bytes in fp16/bf16). A precision entry
replaces the parameters it was fitted for. A preset that inherits another GPU's parameters rescales the
compute and memory limits by its own P and BW and keeps every latency and dimensionless parameter --
an extrapolation that each such preset (and precision entry) states in its note.

Power: P = idle + (TDP - idle) x activity (:class:`PowerModel`); TDP x time stays the upper bound.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from archsim.specs.base import (
    BitsPerSecond, Fraction, NonNegInt, OpsPerSecond, PositiveInt, SecondsNonNeg, Spec, Watts,
)

#: Precision modes a GPU preset can describe. ``fp32`` is the preset's base model (strict fp32, TF32
#: off); ``tf32`` = fp32 storage with TF32 tensor-core GEMMs (A100 and later); ``fp16``/``bf16`` =
#: mixed precision (16-bit storage and tensor-core GEMMs with fp32 accumulation; V100 has fp16 only).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
Precision = Literal["fp32", "tf32", "fp16", "bf16"]


class GPUUtilizationModel(Spec):
    """Parameters of the LSTM-training time model (formula in the module docstring).

    Fitted by least squares on log errors to measurements on the GPU named by ``fitted_on``
    (``archsim calibrate --refit`` repeats the fit; ``archsim calibrate`` prints the error per row).
    """

    fitted_on: str = Field(description="The GPU whose measurements the parameters were fitted to.")
    step_latency_s: SecondsNonNeg = Field(
        description="t_step: fixed cost per layer per timestep and direction (kernel launches, "
                    "gate element-wise kernel, synchronisation).")
    fused_max_hidden: NonNegInt = Field(
        0, description="H_f: layers with hidden size <= H_f pay fused_step_latency_s instead of "
                       "step_latency_s per timestep (cuDNN's faster small-hidden path); 0 = none.")
    fused_step_latency_s: SecondsNonNeg = Field(
        0.0, description="t_fused: fixed cost per layer per timestep and direction when H <= H_f.")
    gemm_efficiency: Fraction = Field(
        description="e: fraction of peak fp32 a large, compute-bound GEMM reaches.")
    serial_time_per_k_s: SecondsNonNeg = Field(
        description="tau: time per reduction element (K = H) of a recurrent GEMM whose 4H x N "
                    "output is too small to fill the GPU, at batch -> 0.")
    serial_batch_scale: float = Field(
        gt=0, description="N0: the serial term grows as (1 + N/N0) with batch N.")
    mem_efficiency: Fraction = Field(
        gt=0, description="eta: fraction of peak memory bandwidth reached when streaming weights "
                          "(recurrent weights per timestep, optimizer, loss).")
    smooth_max_power: float = Field(
        ge=1, description="p: exponent of the smooth maximum joining the compute, serial and "
                          "memory limits (p -> inf is a hard roofline).")
    backward_data_scale: float = Field(
        gt=0, description="s_b: backward-data recurrent GEMM time relative to the forward one.")
    weight_grad_latency_s: SecondsNonNeg = Field(
        description="t_w: fixed cost of one layer's weight-gradient phase.")
    gemm_size_half: float = Field(
        ge=0, description="s0: geometric-mean output dimension sqrt(M*N) at which a big GEMM's "
                          "efficiency halves (too few output tiles to fill the GPU).")
    gemm_depth_half: float = Field(
        ge=0, description="K0: reduction depth K at which a big GEMM's efficiency halves "
                          "(tile prologue/epilogue not amortised).")
    framework_overhead_s: SecondsNonNeg = Field(
        0.0, description="t_fw: fixed cost per training step of the framework around the kernels "
                         "(autograd, loss and optimizer launches; host side).")


class PrecisionModel(Spec):
    """One precision mode of a GPU: its GEMM peak, bytes per stored value, and the utilization
    parameters that differ from the fp32 model (unset = the fp32 model's value).

    The time model is the fp32 one (archsim/baselines/gpu.py) with P = ``peak_flops`` and weights
    streamed at ``bytes_per_value`` bytes; every parameter given here replaces the fp32 one.
    """

    peak_flops: OpsPerSecond = Field(description="Dense GEMM peak rate of this precision (datasheet).")
    bytes_per_value: PositiveInt = Field(
        description="Bytes per stored weight/activation: 4 for fp32/tf32, 2 for fp16/bf16.")
    fitted_on: str = Field(
        description="'GPU:precision' whose measurements the parameters below were fitted to.")
    note: str = Field("", description="How this mode applies to this GPU (fitted, or extrapolated).")
    parameters_from: Precision | None = Field(
        None, description="Take the parameters this entry does not set from this other precision's "
                          "entry (e.g. bf16 from the tf32 fit) instead of from the fp32 model.")
    step_latency_s: SecondsNonNeg | None = Field(None, description="t_step for this precision.")
    fused_step_latency_s: SecondsNonNeg | None = Field(None, description="t_fused for this precision.")
    gemm_efficiency: Fraction | None = Field(None, description="e: fraction of peak_flops reached.")
    serial_time_per_k_s: SecondsNonNeg | None = Field(None, description="tau for this precision.")
    mem_efficiency: Fraction | None = Field(None, gt=0, description="eta for this precision.")
    backward_data_scale: float | None = Field(None, gt=0, description="s_b for this precision.")
    weight_grad_latency_s: SecondsNonNeg | None = Field(None, description="t_w for this precision.")
    framework_overhead_s: SecondsNonNeg | None = Field(None, description="t_fw for this precision.")

    #: Fields that override the fp32 utilization model.
    OVERRIDES: ClassVar[tuple[str, ...]] = ("step_latency_s", "fused_step_latency_s", "gemm_efficiency", "serial_time_per_k_s",
                 "mem_efficiency", "backward_data_scale", "weight_grad_latency_s",
                                           "framework_overhead_s")


class PowerModel(Spec):
    """Board power while the LSTM step runs: P = idle + (TDP - idle) x activity.

    activity = min(1, g x (achieved GEMM flop/s / the precision's peak + achieved DRAM bytes/s / peak
    bandwidth)) over the step (archsim/baselines/gpu.py ``gpu_power_W``); board TDP x time stays the
    upper bound that is reported beside it.
    """

    idle_power_W: Watts = Field(
        description="Board power with a CUDA context held and no kernel running (the floor of the "
                    "modelled power).")
    activity_gain: float = Field(
        1.0, ge=0, description="g: activity = min(1, g x (flop/s / peak + bytes/s / bandwidth)); 1 "
                               "until fitted to measured board power (calibration.fit_power).")
    calibrated: bool = Field(
        False, description="True when idle power and the activity gain were fitted to board power "
                           "measured while the cuDNN LSTM benchmark ran on this GPU.")


class GPUSpec(Spec):
    """A GPU baseline: datasheet peaks, memory bandwidth, board power, power model, utilization model.

    Time comes from :class:`GPUUtilizationModel` (fp32) and ``precisions`` (other modes); energy =
    modelled power (:class:`PowerModel`) x time, with board power (TDP) x time as the upper bound.
    """

    kind: Literal["gpu"] = Field("gpu", description="Baseline kind (a GPU model).")
    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    peak_fp32_flops: OpsPerSecond = Field(description="Peak dense fp32 rate (no tensor cores, no TF32).")
    peak_tensor_flops: OpsPerSecond = Field(
        description="Peak dense fp16/bf16 tensor-core rate (datasheet; used only in peak-vs-peak).")
    mem_bandwidth: BitsPerSecond = Field(description="Peak DRAM (HBM) bandwidth.")
    board_power_W: Watts = Field(description="Board power (TDP) charged for the whole step.")
    calibration_note: str = Field(
        "", description="How the utilization model applies to this GPU (fitted here, or extrapolated).")
    utilization: GPUUtilizationModel = Field(description="Fitted LSTM-training time model (fp32).")
    precisions: dict[Precision, PrecisionModel] = Field(
        default_factory=dict, description="Precision modes besides strict fp32 (tf32, fp16, bf16).")
    default_precision: Precision = Field(
        "fp32", description="The precision a practitioner trains LSTMs in on this GPU (used when a "
                            "baseline is named without ':precision').")
    power: PowerModel = Field(description="Utilization-dependent board power while training.")

    @property
    def mem_bytes_per_s(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.mem_bandwidth / 8.0

    def available_precisions(self) -> list[str]:
        """Precision modes this preset describes, in :data:`PRECISIONS` order (fp32 always)."""
        return [p for p in PRECISIONS if p == "fp32" or p in self.precisions]

    @model_validator(mode="after")
    def _consistent(self):
        if "fp32" in self.precisions:
            raise ValueError("precisions: fp32 is the base model (utilization), not an entry")
        if self.default_precision != "fp32" and self.default_precision not in self.precisions:
            raise ValueError(f"default_precision {self.default_precision!r} is not among precisions "
                             f"({', '.join(self.available_precisions())})")
        for name, pm in self.precisions.items():
            src = pm.parameters_from
            if src is not None and (src == name or src not in self.precisions
                                    or self.precisions[src].parameters_from is not None):
                raise ValueError(f"precisions.{name}.parameters_from: {src!r} must be another "
                                 "precision entry that does not itself use parameters_from")
        if self.power.idle_power_W > self.board_power_W:
            raise ValueError(f"power.idle_power_W {self.power.idle_power_W:g} W exceeds "
                             f"board_power_W {self.board_power_W:g} W")
        return self


class CPUSpec(Spec):
    """The CPU that archsim runs on, as a measured baseline. Time is measured; power is assumed.

    Energy = power_per_core_W x cores used x measured time: a TDP share, an estimate, not a
    measurement (package power is not portably readable).
    """

    kind: Literal["cpu"] = Field("cpu", description="Baseline kind (measured on this machine's CPU).")
    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    power_per_core_W: Watts = Field(description="Power charged per core (thread) used while timing.")
