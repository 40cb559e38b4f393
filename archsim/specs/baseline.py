"""Digital baseline specs: GPUs (datasheet numbers plus a fitted LSTM utilization model) and the CPU host.

GPU utilization model (archsim/baselines/gpu.py has the full derivation)::

    recurrent GEMM of one timestep (4H x H by H x N, F = 8 H^2 N flop):
        core(H, N) = ( (F / (P e))^p + (H tau (1 + N/N0))^p + (16 H^2 / (BW eta))^p )^(1/p)
    forward            = T (t_step + core)      + G(4H, N T, n)
    backward (data)    = T (t_step + s_b core)  + G(n, N T, 4H)     (layers above the first)
    backward (weights) = t_w + G(4H, n + H, N T)                    one GEMM over all timesteps
    big GEMM (M x K by K x N): G(M, N, K) = 2 M N K / (P e s/(s + s0) K/(K + K0)),  s = sqrt(M N)
    per training step: + output layer GEMMs + loss and SGD streams + t_fw

with t_step replaced by t_fused for H <= H_f. P is the GPU's peak fp32 rate and BW its memory
bandwidth (bytes/s): a preset that inherits another GPU's parameters rescales the compute and memory
limits by its own P and BW and keeps every latency and dimensionless parameter -- an extrapolation
that each such preset states in ``calibration_note``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from archsim.specs.base import (
    BitsPerSecond, Fraction, NonNegInt, OpsPerSecond, SecondsNonNeg, Spec, Watts,
)


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


class GPUSpec(Spec):
    """A GPU baseline: datasheet peaks, memory bandwidth, board power and the utilization model.

    Time comes from :class:`GPUUtilizationModel`; energy = board power x time, which is an upper
    bound (the board rarely draws its full TDP on a latency-bound small-batch LSTM).
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
    utilization: GPUUtilizationModel = Field(description="Fitted LSTM-training time model.")

    @property
    def mem_bytes_per_s(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.mem_bandwidth / 8.0


class CPUSpec(Spec):
    """The CPU that archsim runs on, as a measured baseline. Time is measured; power is assumed.

    Energy = power_per_core_W x cores used x measured time: a TDP share, an estimate, not a
    measurement (package power is not portably readable).
    """

    kind: Literal["cpu"] = Field("cpu", description="Baseline kind (measured on this machine's CPU).")
    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    power_per_core_W: Watts = Field(description="Power charged per core (thread) used while timing.")
