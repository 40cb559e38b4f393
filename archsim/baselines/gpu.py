"""GPU baseline: an explicit utilization model of LSTM training, calibrated on measurements.

Why a model and not peak throughput: small-batch LSTMs run at a few percent of a GPU's peak
(DeepBench, H=512, N=16: 4.9 % of fp32 peak forward), so a peak-rate baseline flatters the GPU badly,
and one that ignores batch flatters the accelerator.

Model of one LSTM layer (input n, hidden H, batch N, T timesteps), all fp32::

    recurrent GEMM per timestep, W_hh (4H x H) times h_{t-1} (H x N), F = 8 H^2 N flop:
        core(H, N) = smoothmax_p( F / (P e),                 compute limit
                                  H tau (1 + N/N0),          serial limit: the 4H x N output is too
                                                             small to fill the GPU; time ~ depth K = H
                                  16 H^2 / (BW eta) )        the weights stream from DRAM each step
        smoothmax_p(a, b, c) = (a^p + b^p + c^p)^(1/p)
    forward:            T (t_step + core)                + G(4H, N T, n)   input GEMM x_t, all t at once
    backward (data):    T (t_step + s_b core)            + G(n, N T, 4H)   dx, for layers above the first
    backward (weights): t_w + G(4H, n + H, N T)                            dW_ih and dW_hh as one GEMM
    big GEMM (M x K by K x N): G(M, N, K) = 2 M N K / (P e  s/(s + s0)  K/(K + K0)),  s = sqrt(M N)

t_step becomes t_fused for H <= H_f (cuDNN 9 runs small hidden sizes through a much cheaper path:
measured on an H200, H=128 costs 5 us per step and H=256 26 us). The output (softmax) layer V x H is
three big GEMMs (forward, backward data, weight gradient); the loss (log-softmax + NLL, forward and
backward: ~4 passes over V N T floats) and the SGD step (read w and grad, write w: 12 bytes per
weight) are memory-bound streams at BW eta plus one t_step each; t_fw is the framework's fixed cost
per training step. Layers run one after another: no inter-layer wavefront is credited (measured on
the H200: a 2- and 3-layer 512-wide stack take 2x and 3x one layer's forward time).

Calibration data (:data:`CALIBRATION_ROWS`):
- ``v100``: the 8 Baidu DeepBench V100 fp32 rows. DeepBench times exclude the input GEMM and count
  only W_hh's gradient, so they are the model with n = 0. DeepBench times cuDNN calls, not a
  framework step, so t_fw is not identifiable there; there are no rows below H = 256, so H_f = 0.
- ``h200``: torch 2.11 / cuDNN 9.19 strict-fp32 measurements on an NVIDIA H200 made with
  ``benchmarks/gpu_fit.py measure``: the DeepBench shapes (input size 1), a small-H scan and full
  training steps of the shipped workloads.

Fit (:func:`fit_utilization`): the free parameters minimise
``sum_rows sum_phases log(model/measured)^2 + 3 sum_rows log(model_total/measured_total)^2``
(totals weighted because the totals are what the acceptance test checks), by Nelder-Mead in
log-parameter space from deterministic starts, with p = 2 held fixed (a free fit on the V100 rows
gives 2.02). Parameters that run to a bound are written in the preset as that bound (0 or 1).

V100 result (models/baselines/v100.yaml; ``archsim calibrate`` recomputes the errors)::

    t_step 20.2 us, e 0.974, tau 38.5 ns, N0 96.7, eta 1.0 (bound), s_b 0.909, t_w 72.4 us,
    s0 458, K0 87.2                                   objective 0.0861
    row (H N T)      fwd     bwd data  bwd weights  total
    512  16  25     -0.1 %   +11.0 %    +2.5 %      +4.8 %
    512  64  25     +1.5 %    +2.1 %    -6.6 %      +0.6 %
    1024 16  25     -8.3 %    -0.5 %   -10.2 %      -5.3 %
    2048 16  25     -0.5 %    +5.5 %    +0.6 %      +2.0 %
    2048 128 25     -2.2 %    -1.6 %    +3.1 %      -0.4 %
    4096 16  25     -0.7 %    -0.7 %    +6.0 %      +0.6 %
    4096 128 25     -0.6 %    -5.9 %    +7.2 %      +0.1 %
    256  16  150    +4.9 %    -9.2 %    +5.9 %      -2.4 %

H200 result (models/baselines/h200.yaml): t_step 22.9 us, t_fused 4.77 us (H <= 128), e 0.668,
tau 0 and s0 = K0 = 0 (bounds), eta 0.259, s_b 0.771, t_w 384 us, t_fw 1.17 ms; objective 4.74;
totals within -15 % .. +28 % of all 18 measurements (``archsim calibrate --gpu h200``).

Precision: the model is strict fp32 (TF32 off). PyTorch lets cuDNN use TF32 by default; measured on
the H200 that changes nothing that matters for H <= 512 (the shipped workloads: within ~10 %) but is
2.5-4x faster for H >= 2048 (benchmarks/gpu_fit.py compare --tf32), where the fp32 model is then
slower than a default PyTorch run.

Other GPUs (a100 and h100, both from the h200 fit, the same software stack): the compute and memory
limits scale with the GPU's own P and BW; every latency and dimensionless parameter is carried over
unchanged. That transfer is an extrapolation, and the presets say so; :func:`transfer_check` shows how
far such a transfer can miss by moving the V100 fit to the H200 and comparing with the H200
measurements (-15 % to +106 % on totals for H >= 256, up to +330 % for H <= 128, where cuDNN 9's
small-hidden path is not in the V100 fit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.baselines import BaselineResult
from archsim.specs.baseline import GPUSpec, GPUUtilizationModel


@dataclass(frozen=True)
class MeasuredRow:
    """One measured LSTM training time on a GPU (fp32), in ms.

    ``kind == "layer"``: one LSTM layer's forward and backward (no loss, no optimizer); ``n_in = 0``
    means the input GEMM is excluded (DeepBench). ``kind == "step"``: a whole training step
    (LSTM stack + output layer + cross-entropy + SGD), compared with :func:`gpu_training_step`.
    ``backward_ms`` is backward data + weights; DeepBench also gives the two separately.
    """

    label: str
    layers: tuple[tuple[int, int], ...]
    output: tuple[int, int] | None
    batch: int
    seq_len: int
    forward_ms: float
    backward_ms: float
    total_ms: float
    kind: str = "layer"
    backward_data_ms: float | None = None
    backward_weights_ms: float | None = None


def _deepbench(h: int, n: int, t: int, fwd: float, bwd_data: float, bwd_w: float, total: float):
    return MeasuredRow(f"H={h} N={n} T={t}", ((0, h),), None, n, t, fwd, bwd_data + bwd_w, total,
                       backward_data_ms=bwd_data, backward_weights_ms=bwd_w)


#: Where the V100 calibration rows come from.
DEEPBENCH_SOURCE = ("Baidu DeepBench LSTM training, Tesla V100 fp32, one layer, input GEMM excluded; "
                    "as restated in ../shared/reference/hardware-numbers.md")

#: The DeepBench V100 fp32 rows (hardware-numbers.md, "Digital baselines for LSTM training"):
#: hidden, batch, T, forward, backward inputs, backward weights, total (ms).
DEEPBENCH_V100_FP32: tuple[MeasuredRow, ...] = (
    _deepbench(512, 16, 25, 1.095, 0.937, 0.165, 2.197),
    _deepbench(512, 64, 25, 1.341, 1.257, 0.436, 3.034),
    _deepbench(1024, 16, 25, 1.923, 1.657, 0.445, 4.025),
    _deepbench(2048, 16, 25, 3.609, 3.137, 1.254, 8.000),
    _deepbench(2048, 128, 25, 9.294, 8.450, 7.847, 25.591),
    _deepbench(4096, 16, 25, 10.009, 9.144, 4.326, 23.479),
    _deepbench(4096, 128, 25, 31.169, 29.969, 28.487, 89.625),
    _deepbench(256, 16, 150, 4.542, 5.073, 0.221, 9.836),
)

#: Where the H200 calibration rows come from.
H200_SOURCE = ("measured on one NVIDIA H200 (SXM, 700 W limit) with torch 2.11.0+cu130, cuDNN 9.19, "
               "TF32 off, CUDA events, median of 20 after 3 warm-ups: "
               "python benchmarks/gpu_fit.py measure, 2026-11-28")

#: H200 strict-fp32 measurements (:data:`H200_SOURCE`): layer rows with input size 1 (input GEMM
#: negligible, as in DeepBench) and whole training steps of the shipped workloads.
H200_MEASURED_FP32: tuple[MeasuredRow, ...] = (
    MeasuredRow("H=512 N=16 T=25", ((1, 512),), None, 16, 25, 0.660, 1.239, 1.900),
    MeasuredRow("H=512 N=64 T=25", ((1, 512),), None, 64, 25, 0.690, 1.229, 1.919),
    MeasuredRow("H=1024 N=16 T=25", ((1, 1024),), None, 16, 25, 0.902, 1.366, 2.267),
    MeasuredRow("H=2048 N=16 T=25", ((1, 2048),), None, 16, 25, 2.056, 2.357, 4.413),
    MeasuredRow("H=2048 N=128 T=25", ((1, 2048),), None, 128, 25, 3.850, 5.778, 9.629),
    MeasuredRow("H=4096 N=16 T=25", ((1, 4096),), None, 16, 25, 6.805, 5.966, 12.771),
    MeasuredRow("H=4096 N=128 T=25", ((1, 4096),), None, 128, 25, 9.762, 19.122, 28.884),
    MeasuredRow("H=256 N=16 T=150", ((1, 256),), None, 16, 150, 2.747, 4.142, 6.889),
    MeasuredRow("H=64 N=32 T=100", ((1, 64),), None, 32, 100, 0.341, 0.911, 1.252),
    MeasuredRow("H=128 N=32 T=100", ((1, 128),), None, 32, 100, 0.529, 0.724, 1.253),
    MeasuredRow("H=256 N=32 T=100", ((1, 256),), None, 32, 100, 2.654, 3.404, 6.059),
    MeasuredRow("H=512 N=32 T=100", ((1, 512),), None, 32, 100, 2.647, 3.148, 5.796),
    MeasuredRow("H=1024 N=32 T=100", ((1, 1024),), None, 32, 100, 3.136, 4.035, 7.172),
    MeasuredRow("step lstm2x512", ((98, 512), (512, 512)), (98, 512), 32, 100, 5.603, 6.939, 12.962,
                kind="step"),
    MeasuredRow("step lstm2x64", ((148, 64), (64, 64)), (148, 64), 32, 100, 0.803, 2.119, 3.183,
                kind="step"),
    MeasuredRow("step lstm3x512", ((98, 512), (512, 512), (512, 512)), (98, 512), 32, 100,
                8.090, 9.895, 18.460, kind="step"),
    MeasuredRow("step one_tile_example", ((64, 256),), None, 1, 100, 1.595, 3.127, 4.941, kind="step"),
    MeasuredRow("step tiny", ((16, 8),), (16, 8), 2, 10, 0.445, 1.346, 1.997, kind="step"),
)

#: GPU preset name -> the measurements its utilization model is fitted to / checked against.
CALIBRATION_ROWS: dict[str, tuple[MeasuredRow, ...]] = {"v100": DEEPBENCH_V100_FP32,
                                                        "h200": H200_MEASURED_FP32}
#: GPU preset name -> where its calibration rows come from.
CALIBRATION_SOURCES = {"v100": DEEPBENCH_SOURCE, "h200": H200_SOURCE}

#: Bytes per fp32 value.
_F32 = 4


def load_gpu(name: str, overrides: dict | None = None) -> GPUSpec:
    """Load a GPU baseline preset (``models/baselines/NAME.yaml``, ``inherits:`` supported) or a path."""
    from archsim.specs import _read_preset, apply_overrides
    from archsim.specs.loader import validate

    loaded = apply_overrides(_read_preset("baselines", name, "command line"), overrides)
    spec = validate(GPUSpec, loaded)
    spec._sources = loaded.sources
    return spec


def _as_gpu(gpu: GPUSpec | str) -> GPUSpec:
    return load_gpu(gpu) if isinstance(gpu, str) else gpu


# --- the model --------------------------------------------------------------------------------

def _smoothmax(p: float, *terms: float) -> float:
    top = max(terms)
    if top <= 0:
        return 0.0
    # Divide by the largest term first so that large p cannot overflow.
    return top * sum((t / top) ** p for t in terms) ** (1.0 / p)


def step_latency_s(gpu: GPUSpec, hidden: int) -> float:
    """Fixed cost per layer per timestep and direction (t_step, or t_fused for H <= H_f)."""
    u = gpu.utilization
    return u.fused_step_latency_s if hidden <= u.fused_max_hidden else u.step_latency_s


def recurrent_core_s(gpu: GPUSpec, hidden: int, batch: int) -> float:
    """core(H, N): seconds of one timestep's recurrent GEMM (excluding the fixed t_step)."""
    u = gpu.utilization
    flops = 8.0 * hidden * hidden * batch
    compute = flops / (gpu.peak_fp32_flops * u.gemm_efficiency)
    serial = hidden * u.serial_time_per_k_s * (1.0 + batch / u.serial_batch_scale)
    memory = 4 * hidden * hidden * _F32 / (gpu.mem_bytes_per_s * u.mem_efficiency)
    return _smoothmax(u.smooth_max_power, compute, serial, memory)


def big_gemm_s(gpu: GPUSpec, m: int, n: int, k: int) -> float:
    """Seconds of one large GEMM (M x K by K x N) whose efficiency grows with output size and depth."""
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    u = gpu.utilization
    size = math.sqrt(m * n)
    eff = u.gemm_efficiency * size / (size + u.gemm_size_half) * k / (k + u.gemm_depth_half)
    return 2.0 * m * n * k / (gpu.peak_fp32_flops * eff)


def _stream_s(gpu: GPUSpec, nbytes: float) -> float:
    return nbytes / (gpu.mem_bytes_per_s * gpu.utilization.mem_efficiency)


def lstm_layer_phases(gpu: GPUSpec, n_in: int, hidden: int, batch: int, seq_len: int,
                      input_grad: bool = True) -> dict[str, float]:
    """Seconds of one LSTM layer's forward, backward-data and backward-weights phases.

    ``n_in = 0`` drops the input GEMM and the input-weight gradient (DeepBench's convention);
    ``input_grad`` adds the gradient with respect to the layer's input (not needed for layer 1).
    """
    u = gpu.utilization
    core = recurrent_core_s(gpu, hidden, batch)
    latency = step_latency_s(gpu, hidden)
    nt = batch * seq_len
    return {
        "forward": seq_len * (latency + core) + big_gemm_s(gpu, 4 * hidden, nt, n_in),
        "backward_data": seq_len * (latency + u.backward_data_scale * core)
        + (big_gemm_s(gpu, n_in, nt, 4 * hidden) if input_grad else 0.0),
        "backward_weights": u.weight_grad_latency_s + big_gemm_s(gpu, 4 * hidden, n_in + hidden, nt),
    }


def deepbench_phases(gpu: GPUSpec | str, hidden: int, batch: int, seq_len: int) -> dict[str, float]:
    """The model under DeepBench's convention (input GEMM excluded), seconds per phase."""
    return lstm_layer_phases(_as_gpu(gpu), 0, hidden, batch, seq_len, input_grad=False)


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


def gpu_training_step(gpu: GPUSpec | str, layer_shapes: list[tuple[int, int]],
                      output: tuple[int, int] | None, batch: int, seq_len: int) -> BaselineResult:
    """Time and energy of one fp32 training step (forward, BPTT, SGD) of an LSTM stack on ``gpu``.

    ``layer_shapes`` is ``[(n_in, hidden), ...]`` per LSTM layer, ``output`` is ``(V, hidden)`` of
    the softmax layer or None. Energy = board power x time: an upper bound (``energy_is_bound``).
    """
    gpu = _as_gpu(gpu)
    if batch <= 0 or seq_len <= 0 or not layer_shapes:
        raise ValueError("need batch > 0, seq_len > 0 and at least one layer")
    u = gpu.utilization
    nt = batch * seq_len
    parts = dict.fromkeys(("lstm_forward", "lstm_backward_data", "lstm_backward_weights",
                           "output_forward", "output_backward_data", "output_backward_weights",
                           "loss", "optimizer", "framework_overhead"), 0.0)
    params = 0
    for i, (n_in, hidden) in enumerate(layer_shapes):
        phases = lstm_layer_phases(gpu, n_in, hidden, batch, seq_len, input_grad=i > 0)
        parts["lstm_forward"] += phases["forward"]
        parts["lstm_backward_data"] += phases["backward_data"]
        parts["lstm_backward_weights"] += phases["backward_weights"]
        params += 4 * hidden * (n_in + hidden) + 8 * hidden  # torch keeps two bias vectors
    if output is not None:
        vocab, hidden = output
        parts["output_forward"] = big_gemm_s(gpu, vocab, nt, hidden)
        parts["output_backward_data"] = big_gemm_s(gpu, hidden, nt, vocab)
        parts["output_backward_weights"] = big_gemm_s(gpu, vocab, hidden, nt)
        # log-softmax + NLL forward and backward: about four passes over the V x N*T logits.
        parts["loss"] = u.step_latency_s + _stream_s(gpu, 4 * _F32 * vocab * nt)
        params += vocab * hidden + vocab
    # SGD: read the weight and its gradient, write the weight.
    parts["optimizer"] = u.step_latency_s + _stream_s(gpu, 3 * _F32 * params)
    parts["framework_overhead"] = u.framework_overhead_s
    total = sum(parts.values())
    flops = training_flops(layer_shapes, output, batch, seq_len)
    return BaselineResult(
        name=gpu.name,
        time_per_step_s=total,
        energy_per_step_J=gpu.board_power_W * total,
        utilization=flops / (total * gpu.peak_fp32_flops),
        flops_per_step=flops,
        breakdown=parts,
        energy_is_bound=True,
        power_W=gpu.board_power_W,
        kind="model",
        note=(f"{gpu.name} fp32 utilization model ({_calibration_word(gpu)}); energy = board power "
              f"{gpu.board_power_W:g} W x time, an upper bound"),
    )


def _calibration_word(gpu: GPUSpec) -> str:
    fitted = gpu.utilization.fitted_on
    if fitted == gpu.name:
        return f"fitted to {gpu.name} measurements, archsim calibrate --gpu {gpu.name}"
    return f"extrapolated from the {fitted} fit"


# --- calibration ------------------------------------------------------------------------------

def row_model_ms(gpu: GPUSpec, row: MeasuredRow) -> dict[str, float]:
    """The model's ms for the quantities ``row`` measured (forward, backward, total, ...)."""
    if row.kind == "step":
        res = gpu_training_step(gpu, list(row.layers), row.output, row.batch, row.seq_len)
        b = res.breakdown
        forward = b["lstm_forward"] + b["output_forward"] + b["loss"]
        return {"forward": forward * 1e3, "total": res.time_per_step_s * 1e3}
    (n_in, hidden), = row.layers
    ph = lstm_layer_phases(gpu, n_in, hidden, row.batch, row.seq_len, input_grad=False)
    return {"forward": ph["forward"] * 1e3, "backward": (ph["backward_data"] + ph["backward_weights"]) * 1e3,
            "backward_data": ph["backward_data"] * 1e3, "backward_weights": ph["backward_weights"] * 1e3,
            "total": sum(ph.values()) * 1e3}


def _row_measured_ms(row: MeasuredRow) -> dict[str, float]:
    """The phases a row measured, without double counting: DeepBench's split backward, else backward."""
    out = {"forward": row.forward_ms}
    if row.backward_data_ms is not None:
        out.update(backward_data=row.backward_data_ms, backward_weights=row.backward_weights_ms)
    elif row.kind == "layer":
        out["backward"] = row.backward_ms
    return out


def calibration_rows(gpu: GPUSpec | str) -> tuple[MeasuredRow, ...]:
    """The measurements of the GPU ``gpu`` names, or ValueError when there are none."""
    name = gpu if isinstance(gpu, str) else gpu.name
    if name not in CALIBRATION_ROWS:
        raise ValueError(f"no measurements of {name}; measured GPUs: {', '.join(CALIBRATION_ROWS)}")
    return CALIBRATION_ROWS[name]


def calibration_table(gpu: GPUSpec | str = "v100",
                      rows: tuple[MeasuredRow, ...] | None = None) -> list[dict]:
    """Model vs measurement per row: measured and model ms per phase and in total, error in %.

    ``rows`` defaults to the measurements of that GPU (:data:`CALIBRATION_ROWS`).
    """
    gpu = _as_gpu(gpu)
    rows = calibration_rows(gpu) if rows is None else rows
    out = []
    for row in rows:
        model = row_model_ms(gpu, row)
        entry = {"row": row.label, "kind": row.kind, "layers": row.layers, "batch": row.batch,
                 "seq_len": row.seq_len}
        for phase, measured in _row_measured_ms(row).items():
            entry[f"{phase}_measured_ms"] = measured
            entry[f"{phase}_model_ms"] = model[phase]
            entry[f"{phase}_error_pct"] = 100.0 * (model[phase] / measured - 1.0)
        entry.update(measured_ms=row.total_ms, model_ms=model["total"],
                     error_pct=100.0 * (model["total"] / row.total_ms - 1.0))
        out.append(entry)
    return out


def transfer_check(source: str = "v100", target: str = "h200") -> list[dict]:
    """How the transfer used for un-measured GPUs does: ``source``'s fitted parameters on
    ``target``'s hardware numbers, against ``target``'s measurements (error per row)."""
    src, dst = load_gpu(source), load_gpu(target)
    moved = dst.model_copy(update={"utilization": src.utilization})
    return calibration_table(moved, calibration_rows(dst))


#: Parameters the fit always varies (all positive; the efficiencies in (0, 1)); p stays fixed.
FIT_PARAMETERS = ("step_latency_s", "gemm_efficiency", "serial_time_per_k_s", "serial_batch_scale",
                  "mem_efficiency", "backward_data_scale", "weight_grad_latency_s", "gemm_size_half",
                  "gemm_depth_half")
_UNIT_INTERVAL = ("gemm_efficiency", "mem_efficiency")


def fit_parameters(gpu: GPUSpec, rows: tuple[MeasuredRow, ...]) -> tuple[str, ...]:
    """Free parameters for ``rows``: t_fused only where a fused path is set, t_fw only with step rows."""
    names = list(FIT_PARAMETERS)
    if gpu.utilization.fused_max_hidden > 0 and any(
            h <= gpu.utilization.fused_max_hidden for r in rows for _, h in r.layers):
        names.append("fused_step_latency_s")
    if any(r.kind == "step" for r in rows):
        names.append("framework_overhead_s")
    return tuple(names)


def _fit_loss(gpu: GPUSpec, rows) -> float:
    loss = 0.0
    for row in rows:
        model = row_model_ms(gpu, row)
        for phase, measured in _row_measured_ms(row).items():
            loss += math.log(model[phase] / measured) ** 2
        loss += 3.0 * math.log(model["total"] / row.total_ms) ** 2
    return loss


def fit_loss(gpu: GPUSpec | str = "v100", rows: tuple[MeasuredRow, ...] | None = None) -> float:
    """The fit's objective at ``gpu``'s current parameters."""
    gpu = _as_gpu(gpu)
    return _fit_loss(gpu, calibration_rows(gpu) if rows is None else rows)


def _nelder_mead(f, x0: list[float], step: float = 0.3, iters: int = 4000, tol: float = 1e-12):
    n = len(x0)
    simplex = [list(x0)] + [[x + (step if i == j else 0.0) for j, x in enumerate(x0)] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < tol:
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]
        point = lambda a: [c + a * (c - w) for c, w in zip(centroid, worst)]  # noqa: E731
        xr = point(1.0)
        fr = f(xr)
        if fr < values[0]:
            xe = point(2.0)
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = point(-0.5)
            fc = f(xc)
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, s)] for s in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    i = min(range(n + 1), key=values.__getitem__)
    return simplex[i], values[i]


#: A generic start for the fit (besides the preset's own values).
_GENERIC_START = {"step_latency_s": 2e-5, "gemm_efficiency": 0.9, "serial_time_per_k_s": 5e-8,
                  "serial_batch_scale": 100.0, "mem_efficiency": 0.8, "backward_data_scale": 0.9,
                  "weight_grad_latency_s": 5e-5, "gemm_size_half": 500.0, "gemm_depth_half": 100.0,
                  "fused_step_latency_s": 5e-6, "framework_overhead_s": 5e-4}


def fit_utilization(gpu: GPUSpec | str = "v100", rows: tuple[MeasuredRow, ...] | None = None,
                    ) -> tuple[GPUUtilizationModel, float]:
    """Refit the free parameters (:func:`fit_parameters`) of ``gpu``'s model to ``rows``.

    ``rows`` defaults to that GPU's measurements. Starts from the preset's values and from a
    generic start and restarts Nelder-Mead from the best point until it stops improving;
    deterministic. Returns (fitted parameters, loss).
    """
    gpu = _as_gpu(gpu)
    rows = calibration_rows(gpu) if rows is None else rows
    names = fit_parameters(gpu, rows)

    def encode(values: dict) -> list[float]:
        return [math.log(values[k] / (1 - values[k])) if k in _UNIT_INTERVAL else math.log(values[k])
                for k in names]

    def trial(x: list[float]) -> GPUSpec | None:
        try:
            update = {k: (1 / (1 + math.exp(-v)) if k in _UNIT_INTERVAL else math.exp(v))
                      for k, v in zip(names, x)}
        except OverflowError:
            return None
        if not all(0.0 < v < math.inf for v in update.values()):
            return None  # under/overflow of exp: outside any sensible range
        return gpu.model_copy(update={"utilization": gpu.utilization.model_copy(update=update)})

    def loss(x: list[float]) -> float:
        spec = trial(x)
        return math.inf if spec is None else _fit_loss(spec, rows)

    # Parameters a fit ran to a bound are written as 0 or 1 in presets; start just inside.
    preset = {k: min(max(getattr(gpu.utilization, k), 1e-9), 1 - 1e-6) if k in _UNIT_INTERVAL
              else max(getattr(gpu.utilization, k), 1e-12) for k in names}
    best_x, best_f = None, math.inf
    for start in (preset, {k: _GENERIC_START[k] for k in names}):
        x, fx = _nelder_mead(loss, encode(start))
        for _ in range(30):  # restart until the simplex stops finding anything better
            x2, f2 = _nelder_mead(loss, x)
            if f2 >= fx - 1e-10:
                break
            x, fx = x2, f2
        if fx < best_f:
            best_x, best_f = x, fx
    return trial(best_x).utilization, best_f


# --- peak vs peak -----------------------------------------------------------------------------

def peak_throughput_comparison(
        gpus: list[str] | tuple[str, ...] = ("v100", "a100", "h100", "h200")) -> list[dict]:
    """Datasheet peak op/s and op/s/W per GPU: the RPU papers' peak-vs-peak comparison.

    These are NOT achieved on LSTM training (see :func:`gpu_training_step` for that); report them
    separately and labelled.
    """
    out = []
    for name in gpus:
        gpu = _as_gpu(name)
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
