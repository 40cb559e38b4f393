"""GPU baseline: measure torch's LSTM training on a CUDA GPU (time per precision, board power) and
compare with archsim's model.

    python benchmarks/gpu_fit.py measure --preset h200 --precision fp32,tf32,bf16 --power \
        --out reports/baselines/h200_lstm_measurements.json        # on a CUDA machine (torch only)
    python benchmarks/gpu_fit.py compare reports/baselines/h200_lstm_measurements.json --gpu h200 \
        --precision tf32 [--refit]                                 # error per row
    python benchmarks/gpu_fit.py measure --dry-run                 # checks this script on a CPU

The fits themselves read every ``reports/baselines/*_lstm_measurements.json`` (and the DeepBench rows
in ``reports/baselines/deepbench_v100.json``): ``archsim calibrate --refit``.

``measure`` times torch's cuDNN LSTM in each ``--precision``: ``fp32`` (strict, TF32 off), ``tf32``
(PyTorch's default for cuDNN on A100 and later), ``fp16`` / ``bf16`` (``torch.autocast`` mixed
precision: 16-bit GEMMs on tensor cores, fp32 master weights) on the DeepBench shapes (input size 1,
so the input GEMM is negligible as in DeepBench), a small-H scan, and full training steps of the
shipped workloads (LSTM stack + Linear + cross-entropy + SGD). CUDA events, median of ``--iters``
after warm-up. With ``--power`` it samples board power with ``nvidia-smi`` (every 50 ms) while each
case runs, records the samples and their median per case, and the idle power (CUDA context held, no
kernel) before the runs: the data ``archsim.baselines.calibration.fit_power`` calibrates the power
model on.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

#: DeepBench V100 fp32 shapes (hidden, batch, seq_len); see archsim.baselines.gpu.DEEPBENCH_V100_FP32.
DEEPBENCH_SHAPES = [(512, 16, 25), (512, 64, 25), (1024, 16, 25), (2048, 16, 25), (2048, 128, 25),
                    (4096, 16, 25), (4096, 128, 25), (256, 16, 150)]
#: Shipped workloads: name -> (layer_shapes [(n_in, hidden)], output (V, hidden) or None, batch, T).
WORKLOADS = {
    "lstm2x512": ([(98, 512), (512, 512)], (98, 512), 32, 100),
    "lstm2x64": ([(148, 64), (64, 64)], (148, 64), 32, 100),
    "lstm3x512": ([(98, 512), (512, 512), (512, 512)], (98, 512), 32, 100),
    "one_tile_example": ([(64, 256)], None, 1, 100),
    "tiny": ([(16, 8)], (16, 8), 2, 10),
}
#: Small-H scan (one layer, input size 1, batch 32, T = 100): where the fixed per-step cost dominates.
SCAN = [(h, 32, 100) for h in (64, 128, 256, 512, 1024)]


PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
#: nvidia-smi query used for power samples (CSV, no header, no units).
SMI_QUERY = ["nvidia-smi", "--query-gpu=timestamp,power.draw,utilization.gpu,clocks.sm",
             "--format=csv,noheader,nounits", "-lms", "50"]


def parse_nvidia_smi_csv(text: str, gpu_index: int = 0, n_gpus: int = 1) -> list[dict]:
    """Samples from ``nvidia-smi --query-gpu=timestamp,power.draw,utilization.gpu,clocks.sm
    --format=csv,noheader,nounits`` output: [{"timestamp", "power_W", "util_pct", "sm_MHz"}, ...].

    With several GPUs nvidia-smi prints one line per GPU per sample; ``gpu_index`` of ``n_gpus``
    picks one. Lines that do not parse ("[N/A]", "[Not Supported]", a truncated last line) are
    skipped, so a sampler killed mid-line loses one sample, not the run.
    """
    out = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if n_gpus > 1 and i % n_gpus != gpu_index:
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 2:
            continue
        try:
            power = float(cells[1])
        except ValueError:
            continue
        def num(j):
            try:
                return float(cells[j])
            except (IndexError, ValueError):
                return None
        out.append({"timestamp": cells[0], "power_W": power, "util_pct": num(2), "sm_MHz": num(3)})
    return out


def power_summary(samples: list[dict]) -> dict:
    """Median, mean, min and max board power of a case's samples (W); count."""
    watts = sorted(s["power_W"] for s in samples)
    if not watts:
        return {"n": 0}
    return {"n": len(watts), "median_W": statistics.median(watts), "mean_W": statistics.fmean(watts),
            "min_W": watts[0], "max_W": watts[-1]}


class PowerSampler:
    """``with PowerSampler(enabled): ...`` -- nvidia-smi samples board power while the block runs."""

    def __init__(self, enabled: bool, command=None):
        self.enabled, self.command, self.samples = enabled, command or SMI_QUERY, []

    def __enter__(self):
        if self.enabled:
            import subprocess
            import tempfile

            self._file = tempfile.TemporaryFile(mode="w+")
            self._proc = subprocess.Popen(self.command, stdout=self._file, stderr=subprocess.DEVNULL,
                                          text=True)
            # nvidia-smi takes a while to start: wait (at most 5 s) for its first sample, so that
            # a short measured block is not left without any.
            import time

            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self._proc.poll() is None:
                if os.fstat(self._file.fileno()).st_size > 0:
                    break
                time.sleep(0.005)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 -- never leave the sampler running
                self._proc.kill()
                self._proc.wait()
            self._file.seek(0)
            self.samples = parse_nvidia_smi_csv(self._file.read())
            self._file.close()
        return False


def _set_precision(torch, precision: str) -> None:
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def _autocast(torch, precision: str, device_type: str):
    import contextlib

    if precision in ("fp16", "bf16"):
        return torch.autocast(device_type=device_type,
                              dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return contextlib.nullcontext()


def _measure(args) -> int:
    import torch

    dry = args.dry_run  # exercise this code path on a CPU with tiny shapes (no timings worth keeping)
    if not dry and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cpu" if dry else "cuda")
    torch.manual_seed(0)
    sync = (lambda: None) if dry else torch.cuda.synchronize

    class _CpuEvent:
        def __init__(self, **_):
            self.t = 0.0

        def record(self):
            import time
            self.t = time.perf_counter()

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    Event = _CpuEvent if dry else torch.cuda.Event

    def timed(step, iters):
        """step() records events itself; returns the median of each interval in ms."""
        for _ in range(3):
            step()
        sync()
        samples = []
        for _ in range(iters):
            events = step()
            sync()
            samples.append([a.elapsed_time(b) for a, b in zip(events, events[1:])])
        return [statistics.median(col) for col in zip(*samples)]

    precision = "fp32"  # set by the loop below

    def with_power(run, fn):
        with PowerSampler(args.power) as sampler:
            fwd_bwd = fn()
        if args.power:
            run.update(power_samples=sampler.samples, power=power_summary(sampler.samples))
        return fwd_bwd

    def layer_case(n_in, hidden, batch, seq_len):
        lstm = torch.nn.LSTM(n_in, hidden).to(dev)
        x = torch.randn(seq_len, batch, n_in, device=dev)

        def step():
            ev = [Event(enable_timing=True) for _ in range(3)]
            lstm.zero_grad(set_to_none=True)
            ev[0].record()
            with _autocast(torch, precision, dev.type):
                out, _ = lstm(x)
            ev[1].record()
            out.float().backward(torch.ones_like(out, dtype=torch.float32))
            ev[2].record()
            return ev

        run = {"n_in": n_in, "hidden": hidden, "batch": batch, "seq_len": seq_len}
        fwd, bwd = with_power(run, lambda: timed(step, args.iters))
        return dict(run, forward_ms=fwd, backward_ms=bwd, total_ms=fwd + bwd)

    def workload_case(name, shapes, output, batch, seq_len):
        layers = torch.nn.ModuleList(torch.nn.LSTM(n, h) for n, h in shapes).to(dev)
        head = torch.nn.Linear(output[1], output[0]).to(dev) if output else None
        params = list(layers.parameters()) + (list(head.parameters()) if head else [])
        opt = torch.optim.SGD(params, lr=0.01)
        x = torch.randn(seq_len, batch, shapes[0][0], device=dev)
        y = torch.randint(0, output[0], (seq_len * batch,), device=dev) if output else None

        def step():
            ev = [Event(enable_timing=True) for _ in range(4)]
            opt.zero_grad(set_to_none=True)
            ev[0].record()
            with _autocast(torch, precision, dev.type):
                out = x
                for lstm in layers:
                    out, _ = lstm(out)
                if head is not None:
                    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, output[0]).float(), y)
                else:
                    loss = out.float().square().mean()
            ev[1].record()
            loss.backward()
            ev[2].record()
            opt.step()
            ev[3].record()
            return ev

        run = {"workload": name, "layers": shapes, "output": output, "batch": batch, "seq_len": seq_len}
        fwd, bwd, upd = with_power(run, lambda: timed(step, args.iters))
        return dict(run, forward_ms=fwd, backward_ms=bwd, optimizer_ms=upd, total_ms=fwd + bwd + upd)

    global DEEPBENCH_SHAPES, SCAN, WORKLOADS
    if dry:
        DEEPBENCH_SHAPES, SCAN = [(16, 2, 3)], [(8, 2, 3)]
        WORKLOADS = {"tiny": WORKLOADS["tiny"], "one_tile_example": ([(4, 8)], None, 1, 3)}
    precisions = [p for p in args.precision.split(",") if p]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        print(f"--precision: got {args.precision!r}; allowed: comma-separated {', '.join(PRECISIONS)}",
              file=sys.stderr)
        return 2
    if args.power:
        import shutil

        if shutil.which(SMI_QUERY[0]) is None:
            print("--power: nvidia-smi not found on PATH (it samples board power)", file=sys.stderr)
            return 2
    result = {"device": "cpu (dry run)" if dry else torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "iters": args.iters, "runs": []}
    if args.preset:
        result["preset"] = args.preset
    if args.power:
        with PowerSampler(True) as idle:  # CUDA context held (the device is initialised), no kernel
            import time
            time.sleep(args.idle_seconds)
        result["idle_power"] = power_summary(idle.samples)
        result["idle_power_samples"] = idle.samples
    for precision in precisions:
        if not dry:
            _set_precision(torch, precision)
        tag = {"precision": precision, "tf32": precision == "tf32"}
        for h, n, t in DEEPBENCH_SHAPES:
            result["runs"].append(dict(layer_case(1, h, n, t), kind="deepbench", **tag))
        for h, n, t in SCAN:
            result["runs"].append(dict(layer_case(1, h, n, t), kind="scan", **tag))
        for name, (shapes, output, batch, seq_len) in WORKLOADS.items():
            result["runs"].append(dict(workload_case(name, shapes, output, batch, seq_len),
                                       kind="workload", **tag))
        print(f"{precision} done", file=sys.stderr, flush=True)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(text)
    return 0


def rows_from_measurement(data: dict, precision: str = "fp32"):
    """MeasuredRows of one precision from a ``measure`` JSON file (archsim.baselines.calibration)."""
    from archsim.baselines.calibration import rows_from_measurement as rows

    return tuple(rows(data, precision))


def _compare(args) -> int:
    from tabulate import tabulate

    from archsim.baselines import load_gpu
    from archsim.baselines.calibration import calibration_table, fit_power, fit_utilization

    with open(args.measurement, encoding="utf-8") as fh:
        data = json.load(fh)
    gpu = load_gpu(args.gpu)
    rows = rows_from_measurement(data, args.precision)
    print(f"model {gpu.name}:{args.precision} vs measured on {data['device']} (torch {data['torch']}, "
          f"cuDNN {data['cudnn']}); error = model/measured - 1")
    table = [[r["row"], r["measured_ms"], r["model_ms"], r["error_pct"],
              r.get("forward_error_pct"), r.get("backward_error_pct", "")]
             for r in calibration_table(gpu, args.precision, rows)]
    print(tabulate(table, headers=["row", "measured ms", "model ms", "total err %", "fwd err %",
                                   "bwd err %"], floatfmt=".3f", tablefmt="github"))
    if args.refit:
        fitted, loss = fit_utilization(gpu, args.precision, rows)
        print(f"refit to these rows (objective {loss:.4f}):")
        print(fitted.model_dump())
    if any("power" in r for r in data["runs"]):
        fit = fit_power(gpu, data, args.precision)
        print(f"power model fitted to {fit['n']} cases with measured power: idle {fit['idle_power_W']:.1f} W "
              f"(measured idle {fit.get('measured_idle_W')}), activity gain {fit['activity_gain']:.3g}, "
              f"median |error| {fit['median_abs_error_pct']:.1f} %")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    m = sub.add_parser("measure")
    m.add_argument("--out")
    m.add_argument("--iters", type=int, default=10)
    m.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the script")
    m.add_argument("--precision", default="fp32,tf32",
                   help="comma-separated precisions to time: fp32 (strict), tf32, fp16, bf16 (autocast)")
    m.add_argument("--preset", help="archsim GPU preset these measurements are of (recorded in the file)")
    m.add_argument("--power", action="store_true",
                   help="sample board power with nvidia-smi during every case (and idle before)")
    m.add_argument("--idle-seconds", type=float, default=3.0, help="idle power sampling time (--power)")
    c = sub.add_parser("compare")
    c.add_argument("measurement")
    c.add_argument("--gpu", default="h200", help="GPU preset to compare (default h200)")
    c.add_argument("--precision", default="fp32", choices=PRECISIONS, help="which runs to compare")
    c.add_argument("--refit", action="store_true", help="also fit the model to these rows")
    args = parser.parse_args(argv)
    if args.mode == "measure":
        return _measure(args)
    if args.mode == "compare":
        return _compare(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
