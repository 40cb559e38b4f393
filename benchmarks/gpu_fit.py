"""GPU baseline: measure torch's LSTM training on a CUDA GPU and compare with archsim's model.

    python benchmarks/gpu_fit.py measure --out m.json    # on a CUDA machine (needs torch only)
    python benchmarks/gpu_fit.py compare m.json --gpu h200 [--refit]   # error per row

The fits themselves (DeepBench V100 rows, the H200 rows this script measured, copied into
archsim/baselines/gpu.py as H200_MEASURED_FP32): ``archsim calibrate --refit``.

``measure`` times torch's cuDNN LSTM in strict fp32 (TF32 off) -- and, for reference, with TF32 on
(PyTorch's default for cuDNN) -- on the DeepBench shapes (input size 1, so the input GEMM is
negligible as in DeepBench) and on full training steps of the shipped workloads (LSTM stack +
Linear + cross-entropy + SGD). CUDA events, median of ``--iters`` after warm-up.
"""
from __future__ import annotations

import argparse
import json
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

    def layer_case(n_in, hidden, batch, seq_len):
        lstm = torch.nn.LSTM(n_in, hidden).to(dev)
        x = torch.randn(seq_len, batch, n_in, device=dev)

        def step():
            ev = [Event(enable_timing=True) for _ in range(3)]
            lstm.zero_grad(set_to_none=True)
            ev[0].record()
            out, _ = lstm(x)
            ev[1].record()
            out.backward(torch.ones_like(out))
            ev[2].record()
            return ev

        fwd, bwd = timed(step, args.iters)
        return {"n_in": n_in, "hidden": hidden, "batch": batch, "seq_len": seq_len,
                "forward_ms": fwd, "backward_ms": bwd, "total_ms": fwd + bwd}

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
            out = x
            for lstm in layers:
                out, _ = lstm(out)
            if head is not None:
                loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, output[0]), y)
            else:
                loss = out.square().mean()
            ev[1].record()
            loss.backward()
            ev[2].record()
            opt.step()
            ev[3].record()
            return ev

        fwd, bwd, upd = timed(step, args.iters)
        return {"workload": name, "layers": shapes, "output": output, "batch": batch,
                "seq_len": seq_len, "forward_ms": fwd, "backward_ms": bwd, "optimizer_ms": upd,
                "total_ms": fwd + bwd + upd}

    global DEEPBENCH_SHAPES, SCAN, WORKLOADS
    if dry:
        DEEPBENCH_SHAPES, SCAN = [(16, 2, 3)], [(8, 2, 3)]
        WORKLOADS = {"tiny": WORKLOADS["tiny"], "one_tile_example": ([(4, 8)], None, 1, 3)}
    result = {"device": "cpu (dry run)" if dry else torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "iters": args.iters, "runs": []}
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for h, n, t in DEEPBENCH_SHAPES:
            result["runs"].append(dict(layer_case(1, h, n, t), kind="deepbench", tf32=tf32))
        for h, n, t in SCAN:
            result["runs"].append(dict(layer_case(1, h, n, t), kind="scan", tf32=tf32))
        for name, (shapes, output, batch, seq_len) in WORKLOADS.items():
            result["runs"].append(dict(workload_case(name, shapes, output, batch, seq_len),
                                       kind="workload", tf32=tf32))
        print(f"tf32={tf32} done", file=sys.stderr, flush=True)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(text)
    return 0


def rows_from_measurement(data: dict, tf32: bool = False):
    """MeasuredRows (archsim.baselines.gpu) from a ``measure`` JSON file."""
    from archsim.baselines.gpu import MeasuredRow

    rows = []
    for run in data["runs"]:
        if run["tf32"] != tf32:
            continue
        if run["kind"] == "workload":
            rows.append(MeasuredRow(f"step {run['workload']}", tuple(map(tuple, run["layers"])),
                                    tuple(run["output"]) if run["output"] else None, run["batch"],
                                    run["seq_len"], run["forward_ms"], run["backward_ms"],
                                    run["total_ms"], kind="step"))
        else:
            rows.append(MeasuredRow(f"H={run['hidden']} N={run['batch']} T={run['seq_len']}",
                                    ((run["n_in"], run["hidden"]),), None, run["batch"],
                                    run["seq_len"], run["forward_ms"], run["backward_ms"],
                                    run["total_ms"]))
    return tuple(rows)


def _compare(args) -> int:
    from tabulate import tabulate

    from archsim.baselines import load_gpu
    from archsim.baselines.gpu import calibration_table, fit_utilization

    with open(args.measurement, encoding="utf-8") as fh:
        data = json.load(fh)
    gpu = load_gpu(args.gpu)
    rows = rows_from_measurement(data, tf32=args.tf32)
    print(f"model {gpu.name} vs measured on {data['device']} (torch {data['torch']}, cuDNN "
          f"{data['cudnn']}, TF32 {'on' if args.tf32 else 'off'}); error = model/measured - 1")
    table = [[r["row"], r["measured_ms"], r["model_ms"], r["error_pct"],
              r.get("forward_error_pct"), r.get("backward_error_pct", "")]
             for r in calibration_table(gpu, rows)]
    print(tabulate(table, headers=["row", "measured ms", "model ms", "total err %", "fwd err %",
                                   "bwd err %"], floatfmt=".3f", tablefmt="github"))
    if args.refit:
        fitted, loss = fit_utilization(gpu, rows)
        print(f"refit to these rows (objective {loss:.4f}):")
        print(fitted.model_dump())
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    m = sub.add_parser("measure")
    m.add_argument("--out")
    m.add_argument("--iters", type=int, default=10)
    m.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the script")
    c = sub.add_parser("compare")
    c.add_argument("measurement")
    c.add_argument("--gpu", default="h200", help="GPU preset to compare (default h200)")
    c.add_argument("--tf32", action="store_true", help="compare with the TF32-on runs instead")
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
