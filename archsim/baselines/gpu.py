"""GPU baseline: an explicit utilization model of LSTM training per precision, and a power model.

Why a model and not peak throughput: small-batch LSTMs run at a few percent of a GPU's peak
(DeepBench, H=512, N=16: 4.9 % of fp32 peak forward), so a peak-rate baseline flatters the GPU badly,
and one that ignores batch flatters the accelerator.

Time model of one LSTM layer (input n, hidden H, batch N, T timesteps) in precision mode m, whose
GEMM peak is P_m and which stores b_m bytes per value (4 for fp32/tf32, 2 for fp16/bf16)::

    recurrent GEMM per timestep, W_hh (4H x H) times h_{t-1} (H x N), F = 8 H^2 N flop:
        core(H, N) = smoothmax_p( F / (P_m e),                 compute limit
                                  H tau (1 + N/N0),            serial limit: the 4H x N output is
                                                               too small to fill the GPU
                                  4 H^2 b_m / (BW eta) )       the weights stream from DRAM each step
        smoothmax_p(a, b, c) = (a^p + b^p + c^p)^(1/p)
    forward:            T (t_step + core)                + G(4H, N T, n)   input GEMM x_t, all t at once
    backward (data):    T (t_step + s_b core)            + G(n, N T, 4H)   dx, for layers above the first
    backward (weights): t_w + G(4H, n + H, N T)                            dW_ih and dW_hh as one GEMM
    big GEMM (M x K by K x N): G(M, N, K) = 2 M N K / (P_m e  s/(s + s0)  K/(K + K0)),  s = sqrt(M N)

t_step becomes t_fused for H <= H_f (cuDNN 9's cheaper small-hidden path). The output (softmax)
layer V x H is three big GEMMs; the loss (~4 passes over V N T values of b_m bytes) and the SGD step
(fp32 master weights: 12 bytes per weight) are memory-bound streams at BW eta plus one t_step each;
t_fw is the framework's fixed cost per training step. Layers run one after another.

Precision modes (``GPUSpec.precisions``): the fp32 parameters are the preset's ``utilization``; a
mode changes P_m and b_m and replaces whichever parameters it was fitted for (``PrecisionModel``).
Where a mode was fitted, and how far each fit is off, is in :mod:`archsim.baselines.calibration`
(``archsim calibrate``). A name ``gpu:precision`` selects a mode; a bare name means the preset's
``default_precision``, the precision a practitioner would train in.

Power model (``GPUSpec.power``)::

    P = P_idle + (TDP - P_idle) x activity,
    activity = min(1, g (flops / (t P_m) + bytes / (t BW)))      g = 1 until fitted to measured power

where flops are the step's GEMM flops and bytes its modelled DRAM traffic (recurrent weights per
timestep and direction, the gate activations written and read, loss and optimizer streams). It is
bounded by construction: P_idle <= P <= TDP. Energy = P x t is reported with TDP x t (the bound).

Nothing here imports torch or reads files beyond the presets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.baselines import BaselineResult
from archsim.specs.baseline import PRECISIONS, GPUSpec, GPUUtilizationModel

#: Bytes per fp32 value (optimizer master weights and gradients stay fp32 in mixed precision).
_F32 = 4


def load_gpu(name: str, overrides: dict | None = None) -> GPUSpec:
    """Load a GPU baseline preset (``models/baselines/NAME.yaml``, ``inherits:`` supported) or a path.

    ``NAME:precision`` is accepted and the precision ignored here (see :func:`split_name`).
    """
    from archsim.specs import _read_preset, apply_overrides
    from archsim.specs.loader import validate

    name = split_name(name)[0]
    loaded = apply_overrides(_read_preset("baselines", name, "command line"), overrides)
    spec = validate(GPUSpec, loaded)
    spec._sources = loaded.sources
    return spec


def split_name(name: str) -> tuple[str, str | None]:
    """``"h100:bf16"`` -> ("h100", "bf16"); ``"h100"`` -> ("h100", None)."""
    base, sep, precision = name.partition(":")
    return base, (precision if sep else None)


def _as_gpu(gpu: GPUSpec | str) -> GPUSpec:
    return load_gpu(gpu) if isinstance(gpu, str) else gpu


# --- precision modes --------------------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    """A GPU in one precision mode: the parameters the time and power models use."""

    gpu: GPUSpec
    precision: str
    #: GEMM peak of this precision (op/s).
    peak_flops: float
    #: Bytes per stored weight/activation.
    bytes_per_value: int
    #: The utilization parameters in effect (fp32 ones with this mode's overrides).
    u: GPUUtilizationModel
    #: "fitted on GPU:precision" or "extrapolated from GPU:precision".
    fitted_on: str

    @property
    def label(self) -> str:
        return f"{self.gpu.name}:{self.precision}"


def mode(gpu: GPUSpec | str, precision: str | None = None) -> Mode:
    """``gpu`` in ``precision`` (default: the preset's ``default_precision``, or the one in the name).

    ValueError names the precisions the preset has when ``precision`` is not one of them.
    """
    if isinstance(gpu, str):
        base, named = split_name(gpu)
        precision = precision or named
        gpu = load_gpu(base)
    precision = precision or gpu.default_precision
    if precision == "fp32":
        return Mode(gpu, "fp32", gpu.peak_fp32_flops, _F32, gpu.utilization, gpu.utilization.fitted_on)
    if precision not in gpu.precisions:
        known = ", ".join(gpu.available_precisions())
        what = "unknown precision" if precision not in PRECISIONS else f"{gpu.name} has no {precision} mode"
        raise ValueError(f"{what} {precision!r}; {gpu.name} has: {known}")
    pm = gpu.precisions[precision]
    chain = ([gpu.precisions[pm.parameters_from]] if pm.parameters_from else []) + [pm]
    update = {k: getattr(e, k) for e in chain for k in e.OVERRIDES if getattr(e, k) is not None}
    return Mode(gpu, precision, pm.peak_flops, pm.bytes_per_value,
                gpu.utilization.model_copy(update=update), pm.fitted_on)


def _as_mode(gpu: GPUSpec | str | Mode, precision: str | None = None) -> Mode:
    return gpu if isinstance(gpu, Mode) else mode(gpu, precision)


# --- the time model ---------------------------------------------------------------------------

def _smoothmax(p: float, *terms: float) -> float:
    top = max(terms)
    if top <= 0:
        return 0.0
    # Divide by the largest term first so that large p cannot overflow.
    return top * sum((t / top) ** p for t in terms) ** (1.0 / p)


def step_latency_s(m: Mode, hidden: int) -> float:
    """Fixed cost per layer per timestep and direction (t_step, or t_fused for H <= H_f)."""
    u = m.u
    return u.fused_step_latency_s if hidden <= u.fused_max_hidden else u.step_latency_s


def recurrent_core_s(m: Mode, hidden: int, batch: int) -> float:
    """core(H, N): seconds of one timestep's recurrent GEMM (excluding the fixed t_step)."""
    u = m.u
    flops = 8.0 * hidden * hidden * batch
    compute = flops / (m.peak_flops * u.gemm_efficiency)
    serial = hidden * u.serial_time_per_k_s * (1.0 + batch / u.serial_batch_scale)
    memory = 4 * hidden * hidden * m.bytes_per_value / (m.gpu.mem_bytes_per_s * u.mem_efficiency)
    return _smoothmax(u.smooth_max_power, compute, serial, memory)


def big_gemm_s(m: Mode, rows: int, cols: int, depth: int) -> float:
    """Seconds of one large GEMM (M x K by K x N) whose efficiency grows with output size and depth."""
    if rows <= 0 or cols <= 0 or depth <= 0:
        return 0.0
    u = m.u
    size = math.sqrt(rows * cols)
    eff = u.gemm_efficiency * size / (size + u.gemm_size_half) * depth / (depth + u.gemm_depth_half)
    return 2.0 * rows * cols * depth / (m.peak_flops * eff)


def _stream_s(m: Mode, nbytes: float) -> float:
    return nbytes / (m.gpu.mem_bytes_per_s * m.u.mem_efficiency)


def lstm_layer_phases(gpu: GPUSpec | str | Mode, n_in: int, hidden: int, batch: int, seq_len: int,
                      input_grad: bool = True, precision: str | None = None) -> dict[str, float]:
    """Seconds of one LSTM layer's forward, backward-data and backward-weights phases.

    ``n_in = 0`` drops the input GEMM and the input-weight gradient (DeepBench's convention);
    ``input_grad`` adds the gradient with respect to the layer's input (not needed for layer 1).
    """
    m = _as_mode(gpu, precision)
    u = m.u
    core = recurrent_core_s(m, hidden, batch)
    latency = step_latency_s(m, hidden)
    nt = batch * seq_len
    return {
        "forward": seq_len * (latency + core) + big_gemm_s(m, 4 * hidden, nt, n_in),
        "backward_data": seq_len * (latency + u.backward_data_scale * core)
        + (big_gemm_s(m, n_in, nt, 4 * hidden) if input_grad else 0.0),
        "backward_weights": u.weight_grad_latency_s + big_gemm_s(m, 4 * hidden, n_in + hidden, nt),
    }


def deepbench_phases(gpu: GPUSpec | str | Mode, hidden: int, batch: int, seq_len: int,
                     precision: str = "fp32") -> dict[str, float]:
    """The model under DeepBench's convention (input GEMM excluded), seconds per phase.

    ``precision`` defaults to strict fp32 (DeepBench's fp32 rows); a :class:`Mode` keeps its own.
    """
    m = gpu if isinstance(gpu, Mode) else mode(gpu, precision)
    return lstm_layer_phases(m, 0, hidden, batch, seq_len, input_grad=False)


def training_flops(layer_shapes: list[tuple[int, int]], output: tuple[int, int] | None,
                   batch: int, seq_len: int) -> float:
    """GEMM flops (2 per multiply-accumulate) of one training step, as executed by a GPU/CPU.

    Per LSTM layer: forward 2*4H(n+H)NT, backward data 2*4H*H*NT (+ 2*4H*n*NT above layer 1, whose
    input needs no gradient), weight gradient 2*4H(n+H)NT; output layer 3 x 2*V*H*NT. Element-wise
    work is not counted. (This is close to, not equal to, NeuroSim's "3 x forward ops".)
    """
    nt = batch * seq_len
    flops = 0.0
    for i, (n_in, hidden) in enumerate(layer_shapes):
        flops += 2 * 2 * 4 * hidden * (n_in + hidden) * nt              # forward + weight gradient
        flops += 2 * 4 * hidden * (hidden + (n_in if i > 0 else 0)) * nt  # backward data
    if output is not None:
        vocab, hidden = output
        flops += 3 * 2 * vocab * hidden * nt
    return float(flops)


def _params(layer_shapes, output) -> int:
    params = sum(4 * h * (n + h) + 8 * h for n, h in layer_shapes)  # torch keeps two bias vectors
    if output is not None:
        params += output[0] * output[1] + output[0]
    return params


def training_bytes(layer_shapes: list[tuple[int, int]], output: tuple[int, int] | None,
                   batch: int, seq_len: int, bytes_per_value: int) -> float:
    """Modelled DRAM bytes of one training step (the power model's memory activity).

    Per layer: the recurrent weights 4H x H read once per timestep forward and once backward, the
    input weights once per pass (3 passes), the 4H x N x T gate activations written forward and read
    twice backward; the loss's ~4 passes over V N T logits; SGD on fp32 master weights (12 bytes per
    weight) and the fp32 gradients written (4 bytes per weight).
    """
    b, nt = bytes_per_value, batch * seq_len
    total = 0.0
    for n_in, hidden in layer_shapes:
        total += 2 * seq_len * 4 * hidden * hidden * b + 3 * 4 * hidden * n_in * b
        total += 3 * 4 * hidden * nt * b
    if output is not None:
        total += 4 * output[0] * nt * b + 3 * output[0] * output[1] * b
    total += 16 * _params(layer_shapes, output)
    return float(total)


def gpu_power_W(m: Mode, flops: float, nbytes: float, seconds: float) -> tuple[float, float]:
    """(modelled board power in W, activity in [0, 1]) of a step of ``flops`` and ``nbytes`` lasting
    ``seconds``: P = P_idle + (TDP - P_idle) x activity (module docstring)."""
    idle, tdp = m.gpu.power.idle_power_W, m.gpu.board_power_W
    if seconds <= 0:
        return tdp, 1.0
    raw = flops / (seconds * m.peak_flops) + nbytes / (seconds * m.gpu.mem_bytes_per_s)
    activity = min(1.0, m.gpu.power.activity_gain * raw)
    return idle + (tdp - idle) * activity, activity


def gpu_training_step(gpu: GPUSpec | str | Mode, layer_shapes: list[tuple[int, int]],
                      output: tuple[int, int] | None, batch: int, seq_len: int,
                      precision: str | None = None) -> BaselineResult:
    """Time and energy of one training step (forward, BPTT, SGD) of an LSTM stack on ``gpu``.

    ``layer_shapes`` is ``[(n_in, hidden), ...]`` per LSTM layer, ``output`` is ``(V, hidden)`` of
    the softmax layer or None. ``precision`` (or ``gpu`` named ``"NAME:precision"``) selects the mode;
    default: the preset's ``default_precision``. Energy = modelled power x time
    (:func:`gpu_power_W`); ``energy_bound_J`` = board power (TDP) x time.
    """
    m = _as_mode(gpu, precision)
    if batch <= 0 or seq_len <= 0 or not layer_shapes:
        raise ValueError("need batch > 0, seq_len > 0 and at least one layer")
    u = m.u
    nt = batch * seq_len
    parts = dict.fromkeys(("lstm_forward", "lstm_backward_data", "lstm_backward_weights",
                           "output_forward", "output_backward_data", "output_backward_weights",
                           "loss", "optimizer", "framework_overhead"), 0.0)
    for i, (n_in, hidden) in enumerate(layer_shapes):
        phases = lstm_layer_phases(m, n_in, hidden, batch, seq_len, input_grad=i > 0)
        parts["lstm_forward"] += phases["forward"]
        parts["lstm_backward_data"] += phases["backward_data"]
        parts["lstm_backward_weights"] += phases["backward_weights"]
    if output is not None:
        vocab, hidden = output
        parts["output_forward"] = big_gemm_s(m, vocab, nt, hidden)
        parts["output_backward_data"] = big_gemm_s(m, hidden, nt, vocab)
        parts["output_backward_weights"] = big_gemm_s(m, vocab, hidden, nt)
        # log-softmax + NLL forward and backward: about four passes over the V x N*T logits.
        parts["loss"] = u.step_latency_s + _stream_s(m, 4 * m.bytes_per_value * vocab * nt)
    # SGD: read the fp32 weight and its gradient, write the weight.
    parts["optimizer"] = u.step_latency_s + _stream_s(m, 3 * _F32 * _params(layer_shapes, output))
    parts["framework_overhead"] = u.framework_overhead_s
    total = sum(parts.values())
    flops = training_flops(layer_shapes, output, batch, seq_len)
    nbytes = training_bytes(layer_shapes, output, batch, seq_len, m.bytes_per_value)
    power, activity = gpu_power_W(m, flops, nbytes, total)
    gpu_ = m.gpu
    return BaselineResult(
        name=m.label,
        time_per_step_s=total,
        energy_per_step_J=power * total,
        utilization=flops / (total * m.peak_flops),
        flops_per_step=flops,
        breakdown=parts,
        energy_is_bound=False,
        power_W=power,
        kind="model",
        note=(f"{gpu_.name} {m.precision} utilization model ({calibration_word(m)}); power = idle "
              f"{gpu_.power.idle_power_W:g} W + ({gpu_.board_power_W:g} - {gpu_.power.idle_power_W:g}) W x "
              f"activity {activity:.3f} = {power:.0f} W "
              f"({'calibrated' if gpu_.power.calibrated else 'not calibrated on measured power'}); "
              f"bound: board power {gpu_.board_power_W:g} W x time"),
        precision=m.precision,
        energy_bound_J=gpu_.board_power_W * total,
        power_bound_W=gpu_.board_power_W,
        activity=activity,
    )


def calibration_word(m: Mode) -> str:
    """How this mode's time model relates to measurements (for notes and tables)."""
    own = f"{m.gpu.name}:{m.precision}"
    if m.fitted_on in (own, m.gpu.name):
        return f"fitted to {own} measurements, archsim calibrate --gpu {m.gpu.name}"
    return f"extrapolated from the {m.fitted_on} fit"


def best_precision(gpu: GPUSpec | str, layer_shapes, output, batch: int, seq_len: int) -> str:
    """The precision mode with the shortest modelled step of this workload on ``gpu`` (on a tie the
    preset's default precision, then the :data:`PRECISIONS` order)."""
    gpu = _as_gpu(gpu)
    times = {p: gpu_training_step(mode(gpu, p), layer_shapes, output, batch, seq_len).time_per_step_s
             for p in gpu.available_precisions()}
    return min(times, key=lambda p: (times[p], p != gpu.default_precision, PRECISIONS.index(p)))


# --- peak vs peak -----------------------------------------------------------------------------

def peak_throughput_comparison(
        gpus: list[str] | tuple[str, ...] = ("v100", "a100", "h100", "h200")) -> list[dict]:
    """Datasheet peak op/s and op/s/W per GPU: the RPU papers' peak-vs-peak comparison.

    These are NOT achieved on LSTM training (see :func:`gpu_training_step` for that); report them
    separately and labelled.
    """
    out = []
    for name in gpus:
        gpu = _as_gpu(split_name(name)[0])
        out.append({
            "name": gpu.name,
            "peak_fp32_ops_per_s": gpu.peak_fp32_flops,
            "peak_tensor_ops_per_s": gpu.peak_tensor_flops,
            "board_power_W": gpu.board_power_W,
            "peak_fp32_ops_per_s_per_W": gpu.peak_fp32_flops / gpu.board_power_W,
            "peak_tensor_ops_per_s_per_W": gpu.peak_tensor_flops / gpu.board_power_W,
            "label": "peak vs peak: datasheet peak rates at board power, not achieved on LSTM training",
        })
    return out
