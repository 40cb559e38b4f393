"""The GPU time model against measurements: the data (read from reports/baselines/), the error per
row, and the least-squares fit that produced the presets' parameters.

Data (files in ``reports/baselines/`` of a source checkout, or ``$ARCHSIM_BASELINE_DATA``):

- ``deepbench_v100.json``: the published Baidu DeepBench V100 LSTM rows, strict fp32 (8 rows with
  forward / backward-data / backward-weights / total) and fp16 mixed precision (2 rows: H=512 N=16
  total; H=1024 N=128 total and forward rate), each with its source. DeepBench times exclude the input
  GEMM and count only W_hh's gradient, so they are the model with n = 0 and no framework cost.
- ``NAME_lstm_measurements.json``: written by ``benchmarks/gpu_fit.py measure`` on a GPU
  (``h200_lstm_measurements.json``: torch 2.11 / cuDNN 9.19 on an H200, strict fp32 and TF32, 18 rows
  each: the DeepBench shapes with input size 1, a small-H scan and whole training steps of the shipped
  workloads). A file's runs carry ``precision`` (or the older ``tf32`` flag).

Fit (:func:`fit_utilization`): the free parameters minimise
``sum_rows sum_phases log(model/measured)^2 + sum_rows (3 l_r^2 + 100 max(0, l_r - log 1.15)^2)``,
``l_r = |log(model_total/measured_total)|`` (totals beyond 15 % are penalised steeply: the acceptance
test holds every fitted total within 25 %), by Nelder-Mead in log-parameter space from deterministic starts. For strict fp32 the free parameters
are :data:`FIT_PARAMETERS` (+ t_fused / t_fw where the rows resolve them); for another precision they
are the parameters that precision's preset entry sets (the rest are the fp32 fit's).
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from archsim.baselines.gpu import Mode, gpu_training_step, load_gpu, lstm_layer_phases, mode  # noqa: F401
from archsim.specs.baseline import GPUSpec, GPUUtilizationModel


@dataclass(frozen=True)
class MeasuredRow:
    """One measured LSTM training time on a GPU in one precision, in ms.

    ``kind == "layer"``: one LSTM layer's forward and backward (no loss, no optimizer); ``n_in = 0``
    means the input GEMM is excluded (DeepBench). ``kind == "step"``: a whole training step
    (LSTM stack + output layer + cross-entropy + SGD), compared with ``gpu_training_step``.
    ``backward_ms`` is backward data + weights; DeepBench also gives the two separately. A phase
    that was not published is None.
    """

    label: str
    layers: tuple[tuple[int, int], ...]
    output: tuple[int, int] | None
    batch: int
    seq_len: int
    forward_ms: float | None
    backward_ms: float | None
    total_ms: float
    kind: str = "layer"
    backward_data_ms: float | None = None
    backward_weights_ms: float | None = None
    precision: str = "fp32"
    source: str = ""


def data_dir() -> Path:
    """Where the measurement files are: ``$ARCHSIM_BASELINE_DATA`` or the checkout's reports/baselines."""
    env = os.environ.get("ARCHSIM_BASELINE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "reports" / "baselines"


def _deepbench_rows(data: dict) -> list[MeasuredRow]:
    rows = []
    for r in data["rows"]:
        h, n, t = r["hidden"], r["batch"], r["seq_len"]
        forward = r.get("forward_ms")
        if forward is None and r.get("forward_tflops"):
            forward = 8.0 * h * h * n * t / (r["forward_tflops"] * 1e12) * 1e3
        bd, bw = r.get("backward_data_ms"), r.get("backward_weights_ms")
        rows.append(MeasuredRow(f"H={h} N={n} T={t}", ((0, h),), None, n, t, forward,
                                None if bd is None else bd + bw, r["total_ms"],
                                backward_data_ms=bd, backward_weights_ms=bw,
                                precision=r["precision"], source=r["source"]))
    return rows


def rows_from_measurement(data: dict, precision: str | None = None) -> list[MeasuredRow]:
    """MeasuredRows from a ``benchmarks/gpu_fit.py measure`` JSON document (all precisions, or one)."""
    src = (f"measured on {data.get('device', '?')} with torch {data.get('torch', '?')}, cuDNN "
           f"{data.get('cudnn', '?')}: benchmarks/gpu_fit.py measure")
    rows = []
    for run in data["runs"]:
        prec = run.get("precision") or ("tf32" if run.get("tf32") else "fp32")
        if precision is not None and prec != precision:
            continue
        if run["kind"] == "workload":
            rows.append(MeasuredRow(f"step {run['workload']}", tuple(map(tuple, run["layers"])),
                                    tuple(run["output"]) if run["output"] else None, run["batch"],
                                    run["seq_len"], run["forward_ms"], run["backward_ms"],
                                    run["total_ms"], kind="step", precision=prec, source=src))
        else:
            rows.append(MeasuredRow(f"H={run['hidden']} N={run['batch']} T={run['seq_len']}",
                                    ((run["n_in"], run["hidden"]),), None, run["batch"],
                                    run["seq_len"], run["forward_ms"], run["backward_ms"],
                                    run["total_ms"], precision=prec, source=src))
    return rows


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> dict[str, tuple[str, tuple[MeasuredRow, ...]]]:
    out: dict[str, list] = {}
    sources: dict[str, str] = {}
    root = Path(folder)
    if not root.is_dir():
        return {}
    for path in sorted(root.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            continue
        if path.name.startswith("deepbench_"):
            rows = _deepbench_rows(data)
            src = f"Baidu DeepBench {data['preset']} rows ({path.name}; each row cites its source)"
        elif path.name.endswith("_lstm_measurements.json") and "runs" in data:
            rows = rows_from_measurement(data)
            data.setdefault("preset", path.name.split("_lstm_measurements")[0])
            src = f"{rows[0].source} ({path.name})" if rows else path.name
        else:
            continue
        for row in rows:
            key = f"{data['preset']}:{row.precision}"
            out.setdefault(key, []).append(row)
            sources.setdefault(key, src)
    return {k: (sources[k], tuple(v)) for k, v in out.items()}


def calibration_sets() -> dict[str, tuple[str, tuple[MeasuredRow, ...]]]:
    """``"gpu:precision"`` -> (source, rows) for every measured GPU and precision."""
    return _load(str(data_dir()))


def _key(gpu: GPUSpec | str | Mode, precision: str | None) -> tuple[Mode, str]:
    m = gpu if isinstance(gpu, Mode) else mode(gpu, precision or "fp32")
    return m, m.label


def calibration_rows(gpu: GPUSpec | str | Mode, precision: str | None = None) -> tuple[MeasuredRow, ...]:
    """The measurements of that GPU and precision (default fp32), or ValueError when there are none."""
    _, key = _key(gpu, precision)
    sets = calibration_sets()
    if key not in sets:
        raise ValueError(f"no measurements of {key}; measured: {', '.join(sets) or 'none (no data in '}"
                         + ("" if sets else f"{data_dir()})"))
    return sets[key][1]


def row_model_ms(m: Mode, row: MeasuredRow) -> dict[str, float]:
    """The model's ms for the quantities ``row`` measured (forward, backward, total, ...)."""
    if row.kind == "step":
        res = gpu_training_step(m, list(row.layers), row.output, row.batch, row.seq_len)
        b = res.breakdown
        forward = b["lstm_forward"] + b["output_forward"] + b["loss"]
        return {"forward": forward * 1e3, "total": res.time_per_step_s * 1e3}
    (n_in, hidden), = row.layers
    ph = lstm_layer_phases(m, n_in, hidden, row.batch, row.seq_len, input_grad=False)
    return {"forward": ph["forward"] * 1e3, "backward": (ph["backward_data"] + ph["backward_weights"]) * 1e3,
            "backward_data": ph["backward_data"] * 1e3, "backward_weights": ph["backward_weights"] * 1e3,
            "total": sum(ph.values()) * 1e3}


def _row_measured_ms(row: MeasuredRow) -> dict[str, float]:
    """The phases a row measured, without double counting: DeepBench's split backward, else backward."""
    out = {} if row.forward_ms is None else {"forward": row.forward_ms}
    if row.backward_data_ms is not None:
        out.update(backward_data=row.backward_data_ms, backward_weights=row.backward_weights_ms)
    elif row.kind == "layer" and row.backward_ms is not None:
        out["backward"] = row.backward_ms
    return out


def calibration_table(gpu: GPUSpec | str | Mode = "v100", precision: str | None = None,
                      rows: tuple[MeasuredRow, ...] | None = None) -> list[dict]:
    """Model vs measurement per row: measured and model ms per phase and in total, error in %."""
    m, _ = _key(gpu, precision)
    rows = calibration_rows(m) if rows is None else rows
    out = []
    for row in rows:
        model = row_model_ms(m, row)
        entry = {"row": row.label, "kind": row.kind, "precision": m.precision, "layers": row.layers,
                 "batch": row.batch, "seq_len": row.seq_len}
        for phase, measured in _row_measured_ms(row).items():
            entry[f"{phase}_measured_ms"] = measured
            entry[f"{phase}_model_ms"] = model[phase]
            entry[f"{phase}_error_pct"] = 100.0 * (model[phase] / measured - 1.0)
        entry.update(measured_ms=row.total_ms, model_ms=model["total"],
                     error_pct=100.0 * (model["total"] / row.total_ms - 1.0))
        out.append(entry)
    return out


def transfer_check(source: str = "v100", target: str = "h200") -> list[dict]:
    """How the transfer used for un-measured GPUs does: ``source``'s fitted fp32 parameters on
    ``target``'s hardware numbers, against ``target``'s fp32 measurements (error per row)."""
    src, dst = load_gpu(source), load_gpu(target)
    moved = dst.model_copy(update={"utilization": src.utilization})
    return calibration_table(mode(moved, "fp32"), rows=calibration_rows(dst, "fp32"))


# --- the fit ----------------------------------------------------------------------------------

#: fp32 parameters the fit always varies (all positive; the efficiencies in (0, 1)); p stays fixed.
FIT_PARAMETERS = ("step_latency_s", "gemm_efficiency", "serial_time_per_k_s", "serial_batch_scale",
                  "mem_efficiency", "backward_data_scale", "weight_grad_latency_s", "gemm_size_half",
                  "gemm_depth_half")
_UNIT_INTERVAL = ("gemm_efficiency", "mem_efficiency")


def fit_parameters(gpu: GPUSpec, rows: tuple[MeasuredRow, ...], precision: str = "fp32") -> tuple[str, ...]:
    """Free parameters: for fp32 :data:`FIT_PARAMETERS` (+ t_fused where a fused path is set and
    rows reach it, + t_fw with step rows); for another precision, the ones its preset entry sets."""
    if precision != "fp32":
        pm = gpu.precisions[precision]
        return tuple(k for k in pm.OVERRIDES if getattr(pm, k) is not None)
    names = list(FIT_PARAMETERS)
    if gpu.utilization.fused_max_hidden > 0 and any(
            h <= gpu.utilization.fused_max_hidden for r in rows for _, h in r.layers):
        names.append("fused_step_latency_s")
    if any(r.kind == "step" for r in rows):
        names.append("framework_overhead_s")
    return tuple(names)


#: Totals further than this from a measurement are penalised steeply in the fit (the acceptance
#: test holds every fitted total within 25 %).
TOTAL_TOLERANCE = 0.15
_PENALTY = 100.0


def _fit_loss(m: Mode, rows) -> float:
    loss = 0.0
    edge = math.log1p(TOTAL_TOLERANCE)
    for row in rows:
        model = row_model_ms(m, row)
        for phase, measured in _row_measured_ms(row).items():
            loss += math.log(model[phase] / measured) ** 2
        total = abs(math.log(model["total"] / row.total_ms))
        loss += 3.0 * total ** 2 + _PENALTY * max(0.0, total - edge) ** 2
    return loss


def fit_loss(gpu: GPUSpec | str | Mode = "v100", precision: str | None = None,
             rows: tuple[MeasuredRow, ...] | None = None) -> float:
    """The fit's objective at the preset's current parameters."""
    m, _ = _key(gpu, precision)
    return _fit_loss(m, calibration_rows(m) if rows is None else rows)


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


def fit_utilization(gpu: GPUSpec | str = "v100", precision: str = "fp32",
                    rows: tuple[MeasuredRow, ...] | None = None) -> tuple[GPUUtilizationModel, float]:
    """Refit the free parameters (:func:`fit_parameters`) of ``gpu`` in ``precision`` to ``rows``.

    ``rows`` defaults to that GPU's measurements in that precision. Starts from the preset's values
    and from a generic start and restarts Nelder-Mead from the best point until it stops improving;
    deterministic. Returns (the utilization parameters in effect for that precision, loss).
    """
    gpu = load_gpu(gpu) if isinstance(gpu, str) else gpu
    rows = calibration_rows(gpu, precision) if rows is None else rows
    names = fit_parameters(gpu, rows, precision)
    current = mode(gpu, precision).u

    def encode(values: dict) -> list[float]:
        return [math.log(values[k] / (1 - values[k])) if k in _UNIT_INTERVAL else math.log(values[k])
                for k in names]

    def trial(x: list[float]) -> Mode | None:
        try:
            update = {k: (1 / (1 + math.exp(-v)) if k in _UNIT_INTERVAL else math.exp(v))
                      for k, v in zip(names, x)}
        except OverflowError:
            return None
        if not all(0.0 < v < math.inf for v in update.values()):
            return None  # under/overflow of exp: outside any sensible range
        if precision == "fp32":
            spec = gpu.model_copy(update={"utilization": gpu.utilization.model_copy(update=update)})
        else:
            pm = gpu.precisions[precision].model_copy(update=update)
            spec = gpu.model_copy(update={"precisions": {**gpu.precisions, precision: pm}})
        return mode(spec, precision)

    def loss(x: list[float]) -> float:
        m = trial(x)
        return math.inf if m is None else _fit_loss(m, rows)

    # Parameters a fit ran to a bound are written as 0 or 1 in presets; start just inside.
    preset = {k: min(max(getattr(current, k), 1e-9), 1 - 1e-6) if k in _UNIT_INTERVAL
              else max(getattr(current, k), 1e-12) for k in names}
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
    return trial(best_x).u, best_f


# --- power ------------------------------------------------------------------------------------

def _raw_activity(m: Mode, run: dict) -> float:
    """flop/s / peak + bytes/s / bandwidth of a measured run, at its measured time."""
    from archsim.baselines.gpu import training_bytes, training_flops

    if run["kind"] == "workload":
        shapes = [tuple(x) for x in run["layers"]]
        output = tuple(run["output"]) if run["output"] else None
    else:
        shapes, output = [(run["n_in"], run["hidden"])], None
    seconds = run["total_ms"] * 1e-3
    flops = training_flops(shapes, output, run["batch"], run["seq_len"])
    nbytes = training_bytes(shapes, output, run["batch"], run["seq_len"], m.bytes_per_value)
    return flops / (seconds * m.peak_flops) + nbytes / (seconds * m.gpu.mem_bytes_per_s)


def fit_power(gpu: GPUSpec | str, data: dict, precision: str = "fp32") -> dict:
    """Fit the power model's idle power and activity gain to board power measured during the runs
    of one precision (``benchmarks/gpu_fit.py measure --power``): least squares on log(P_model /
    P_measured) over the runs' median power, activity from the model's flops and bytes at the
    measured time. Returns {"idle_power_W", "activity_gain", "n", "median_abs_error_pct", "rows",
    "measured_idle_W"}; ValueError without power data.
    """
    m = mode(gpu, precision) if not isinstance(gpu, Mode) else gpu
    runs = [r for r in data["runs"] if (r.get("precision") or ("tf32" if r.get("tf32") else "fp32"))
            == m.precision and r.get("power", {}).get("n")]
    if not runs:
        raise ValueError(f"no power samples for {m.label} in this measurement")
    tdp = m.gpu.board_power_W
    points = [(_raw_activity(m, r), r["power"]["median_W"]) for r in runs]

    def model(idle: float, gain: float, raw: float) -> float:
        return idle + (tdp - idle) * min(1.0, gain * raw)

    def loss(x):
        idle, gain = tdp / (1 + math.exp(-x[0])), math.exp(x[1])
        return sum(math.log(model(idle, gain, a) / p) ** 2 for a, p in points)

    lowest = min(p for _, p in points)
    start = min(max(lowest * 0.8, 1.0), tdp * 0.99)
    x, _ = _nelder_mead(loss, [math.log(start / (tdp - start)), 0.0])
    idle, gain = tdp / (1 + math.exp(-x[0])), math.exp(x[1])
    rows = [{"run": r.get("workload") or f"H={r['hidden']} N={r['batch']} T={r['seq_len']}",
             "measured_W": p, "model_W": model(idle, gain, a), "activity_raw": a}
            for r, (a, p) in zip(runs, points)]
    errors = sorted(abs(100 * (row["model_W"] / row["measured_W"] - 1)) for row in rows)
    return {"idle_power_W": idle, "activity_gain": gain, "n": len(rows), "rows": rows,
            "median_abs_error_pct": errors[len(errors) // 2],
            "measured_idle_W": data.get("idle_power", {}).get("median_W")}
