"""Digital baseline specs: GPUs (datasheet numbers plus a fitted LSTM utilization model) and the CPU host.

GPU utilization model (fitted to Baidu DeepBench V100 fp32 LSTM rows; see archsim/baselines/gpu.py)::

    recurrent GEMM of one timestep (4H x H by H x N, F = 8 H^2 N flop):
        core(H, N) = ( (F / (P * e))^p + (H * tau' * (1 + N/N0))^p + (16 H^2 / (BW * eta))^p )^(1/p)
    forward            = T * (t_step + core)
    backward (data)    = T * (t_step + s_b * core)
    backward (weights) = t_w + G(4H, n + H, N*T)            one GEMM over all timesteps
    "big" GEMM (M x K by K x N): G(M, N, K) = 2 M N K / (P * e * s/(s + s0) * K/(K + K0)),  s = sqrt(M N)

P is the GPU's peak fp32 rate, BW its memory bandwidth (bytes/s); tau' = tau * (P_sm,fit / P_sm) with
P_sm = P / sm_count rescales the serial (too-small-to-fill-the-GPU) term from the GPU the fit was made
on to this one. Every other parameter is dimensionless or a latency and is carried over unchanged to
other GPUs -- an extrapolation, said so in each preset.
"""
from __future__ import annotations

from pydantic import Field

from archsim.specs.base import (
    BitsPerSecond, Fraction, OpsPerSecond, PositiveInt, Seconds, SecondsNonNeg, Spec, Watts,
)


class GPUUtilizationModel(Spec):
    """Parameters of the LSTM-training time model (formula in the module docstring).

    Fitted by least squares on log errors to the DeepBench V100 fp32 rows (``archsim calibrate
    --refit`` repeats the fit); ``archsim calibrate`` prints the error per row.
    """

    step_latency_s: SecondsNonNeg = Field(
        description="t_step: fixed cost per layer per timestep and direction (kernel launches, "
                    "gate element-wise kernel, synchronisation).")
    gemm_efficiency: Fraction = Field(
        description="e: fraction of peak fp32 a large, compute-bound GEMM reaches.")
    serial_time_per_k_s: Seconds = Field(
        description="tau: time per reduction element (K = H) of a recurrent GEMM whose 4H x N "
                    "output is too small to fill the GPU, at batch -> 0, on the GPU the fit was made on.")
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
        gt=0, description="s0: geometric-mean output dimension sqrt(M*N) at which a big GEMM's "
                          "efficiency halves (too few output tiles to fill the GPU).")
    gemm_depth_half: float = Field(
        gt=0, description="K0: reduction depth K at which a big GEMM's efficiency halves "
                          "(tile prologue/epilogue not amortised).")
    fitted_on: str = Field(description="Name of the GPU whose measurements the parameters were fitted to.")
    fit_peak_per_sm_flops: OpsPerSecond = Field(
        description="P_sm,fit: peak fp32 op/s per SM of the GPU the fit was made on (rescales tau).")


class GPUSpec(Spec):
    """A GPU baseline: datasheet peaks, memory bandwidth, board power and the utilization model.

    Time comes from :class:`GPUUtilizationModel`; energy = board power x time, which is an upper
    bound (the board rarely draws its full TDP on a latency-bound small-batch LSTM).
    """

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    peak_fp32_flops: OpsPerSecond = Field(description="Peak dense fp32 rate (no tensor cores, no TF32).")
    peak_tensor_flops: OpsPerSecond = Field(
        description="Peak dense fp16/bf16 tensor-core rate (datasheet; used only in peak-vs-peak).")
    mem_bandwidth: BitsPerSecond = Field(description="Peak DRAM (HBM) bandwidth.")
    board_power_W: Watts = Field(description="Board power (TDP) charged for the whole step.")
    sm_count: PositiveInt = Field(description="Streaming multiprocessors (sets per-SM throughput).")
    utilization: GPUUtilizationModel = Field(description="Fitted LSTM-training time model.")
    calibration_note: str = Field(
        "", description="How the utilization model applies to this GPU (fitted here, or extrapolated).")

    @property
    def mem_bytes_per_s(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.mem_bandwidth / 8.0

    @property
    def peak_per_sm_flops(self) -> float:
        return self.peak_fp32_flops / self.sm_count


class CPUSpec(Spec):
    """The CPU that archsim runs on, as a measured baseline. Time is measured; power is assumed.

    Energy = power_per_core_W x cores used x measured time: a TDP share, an estimate, not a
    measurement (package power is not portably readable).
    """

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    power_per_core_W: Watts = Field(description="Power charged per core (thread) used while timing.")
