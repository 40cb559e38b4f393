"""One training step: floating-point torch.nn.LSTM vs archsim's LSTM on simulated RPU tiles.

Prints, side by side from one run, the wall time of one training step (forward, BPTT, SGD update)
of a character LSTM for each network size and mode, its ratio to the floating-point step, and the
peak memory of the process that ran it:

* ``fp``     torch.nn.LSTM + Linear, plain SGD (the floating-point reference);
* ``ideal``  archsim's LSTM on ideal-device tiles (its own overhead, no device physics);
* ``fast``   archsim on rpu_baseline devices with the default (moment-matched) pulsed update;
* ``exact``  archsim on rpu_baseline devices with pulse trains sampled per rank-one update.

Targets (issue 3): fast <= 3x and exact <= 10x the fp step; peak memory <= 4 GB for 2x512.
Each (size, mode) runs in its own subprocess so that its peak memory (``ru_maxrss``, or
``torch.cuda.max_memory_allocated`` on a GPU) is its own; modes are interleaved over
``--rounds`` rounds and the median step time of each is reported (with the range of the samples:
the floating-point step at small sizes is itself bimodal), because the machine is shared.

With ``--members 1,4,8,16`` it times populations instead (issue 13): ``K`` models of different
seeds trained as one batched model (``AnalogLSTM(seeds=...)``, fast update), and prints the time
per step *per model* against the floating-point step, with the issue's targets: at 2x64, K = 16 at
most 1x the floating-point step per model; at 2x512, no worse per model than K = 1 (on a GPU: at
most 3x cuDNN's fp32 step per model). ``benchmarks/device_session.sh`` runs it on a GPU machine.
``--unlike-periphery`` adds, for every K > 1, a population whose members differ in their DAC
(the resolution scan's shape: bits cycling 3..9, rounding alternating deterministic/stochastic;
:mod:`archsim.functional.periphery_members`), and its cost against the population of like members.
``--breakdown`` (CPU) profiles one more step of every run and splits its CPU time per model into
matrix products, random draws, copies and everything else: a population can only remove the
per-op overhead in the last, so products + draws per model are the floor it cannot go below.

    python benchmarks/functional_step.py                       # 2x64 and 2x512, batch 32, T=100
    python benchmarks/functional_step.py --sizes 64 --rounds 3 --torch-device cuda
    python benchmarks/functional_step.py --members 1,4,8,16 --sizes 64,512 --steps 2 --rounds 1
    python benchmarks/functional_step.py --members 1,4 --sizes 64 --unlike-periphery
    python benchmarks/functional_step.py --members 1,16 --sizes 64 --breakdown
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TARGETS = {"fast": 3.0, "exact": 10.0}

#: ``--breakdown``'s categories: torch ops by name (self CPU time, so nothing counts twice); any
#: other op is "other" (elementwise arithmetic, reductions, and each op's dispatch overhead).
CATEGORIES = {
    "products": ("aten::mm", "aten::bmm", "aten::addmm", "aten::addmm_", "aten::baddbmm",
                 "aten::baddbmm_", "aten::addbmm", "aten::addbmm_"),
    "random draws": ("aten::normal_", "aten::uniform_", "aten::bernoulli_", "aten::random_",
                     "aten::exponential_", "aten::randn", "aten::rand"),
    "copies": ("aten::copy_", "aten::index_select", "aten::index_copy_", "aten::clone"),
}


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.torch_device)
    H, L, B, T, V = args.hidden, args.layers, args.batch, args.seq, args.vocab
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (T, B), generator=g)
    targets = torch.randint(0, V, (T, B), generator=g)

    if args.mode == "fp":
        torch.manual_seed(0)
        lstm = torch.nn.LSTM(V, H, L).to(dev)
        out = torch.nn.Linear(H, V).to(dev)
        opt = torch.optim.SGD([*lstm.parameters(), *out.parameters()], lr=0.05)
        x = torch.nn.functional.one_hot(ids, V).float().to(dev)
        y = targets.to(dev)

        def step():
            hs, _ = lstm(x)
            loss = torch.nn.functional.cross_entropy(out(hs).reshape(-1, V), y.reshape(-1)) * T
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        from archsim.functional.config import RPUConfig
        from archsim.functional.lstm import AnalogLSTM
        from archsim.specs import load_architecture, load_device

        arch = load_architecture(args.arch)
        device = load_device("ideal" if args.mode == "ideal" else args.device)
        cfg = RPUConfig.from_specs(device, arch, "exact" if args.mode == "exact" else "fast")
        seeds = list(range(args.population)) if args.population > 1 else None
        member_configs = None
        if args.unlike and seeds:
            import dataclasses

            member_configs = [dataclasses.replace(cfg, inp_res=1.0 / (2 ** (3 + k % 7) - 2),
                                                  inp_sto_round=bool(k % 2)) for k in seeds]
        model = AnalogLSTM(V, H, L, cfg, array_rows=arch.array.rows, array_cols=arch.array.cols,
                           seed=0, device=str(dev), seeds=seeds, member_configs=member_configs)
        state = model.zero_state(B)
        phases = {"forward": [], "backward": [], "update": []}

        def step():
            if not args.phases:
                model.train_step(ids, targets, state, 0.05)
                return
            # train_step's three phases, timed apart (CPU time; same work as train_step)
            c0 = time.process_time()
            logits, _ = model.forward(ids, state, train=True)
            c1 = time.process_time()
            K = args.population     # a population's rows: (member, sequence)
            logp = torch.log_softmax(logits.view(T * B * K, V), dim=1)
            d = logp.exp_().scatter_add_(1, targets.repeat(1, K).view(-1, 1),
                                         torch.full((T * B * K, 1), -1.0))
            model.backward(d.mul_(1.0 / B).view(T, B * K, V))
            c2 = time.process_time()
            for m in model.matrices:
                m.apply_update(0.05)
            c3 = time.process_time()
            for name, dt in zip(phases, (c1 - c0, c2 - c1, c3 - c2)):
                phases[name].append(dt)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, kernel selection)
    sync()
    times, cpu, faults = [], [], []
    for _ in range(args.steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    if args.profile:
        profile_step(step, sync, dev, args.profile)
    breakdown = breakdown_step(step) if args.breakdown else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    gpu_peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    # Minor page faults per step: a step that allocates its large temporaries afresh faults
    # their pages in again every time (glibc maps blocks above 32 MiB anew), which a
    # population's K-fold tensors reach first.
    out = {"times": times, "cpu": cpu, "minor_faults": faults, "peak_rss_bytes": peak,
           "gpu_peak_bytes": gpu_peak}
    if breakdown is not None:
        out["breakdown_s"] = breakdown
    if args.mode != "fp" and args.phases:
        out["phases"] = {k: v[1:] for k, v in phases.items()}   # without the warm-up step
    return out


def profile_step(step, sync, dev, path: str) -> None:
    """One more step under torch.profiler; its top ops and a summary go to ``path``. The summary
    says whether the step is launch-bound: the wall time against the time the GPU spent in
    kernels, and how many kernel launches and host waits (synchronizations, device-to-host
    copies: the step's data-dependent branches) one step makes."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        step()
        sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()

    def self_device_us(e) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    def calls(*names) -> int:
        return sum(e.count for e in events if any(n in e.key for n in names))

    # Only the kernels' own rows: an aten op's row repeats the time of the kernels it launched.
    kernel_us = sum(self_device_us(e) for e in events
                    if getattr(e, "device_type", None) == DeviceType.CUDA)
    lines = [f"wall {wall * 1e3:.1f} ms (under the profiler); GPU busy in kernels "
             f"{kernel_us / 1e3:.1f} ms ({kernel_us / 1e4 / wall:.0f} % of wall)" if cuda else
             f"wall {wall * 1e3:.1f} ms (under the profiler)",
             f"kernel launches {calls('cudaLaunchKernel', 'cuLaunchKernel')}, "
             "stream/device synchronizations "
             f"{calls('cudaStreamSynchronize', 'cudaDeviceSynchronize')}, "
             f"memcpy calls {calls('cudaMemcpy')}, aten::item/_local_scalar_dense "
             f"{calls('aten::_local_scalar_dense')}, aten::nonzero {calls('aten::nonzero')}", ""]
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    lines.append(events.table(sort_by=sort, row_limit=30))
    lines.append(events.table(sort_by="cpu_time_total", row_limit=20))
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def breakdown_step(step) -> dict[str, float]:
    """One more step under torch.profiler (CPU): its self CPU time in seconds per category of
    :data:`CATEGORIES` and "other"."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    totals = dict.fromkeys([*CATEGORIES, "other"], 0.0)
    for e in prof.key_averages():
        cat = next((c for c, names in CATEGORIES.items() if e.key in names), "other")
        totals[cat] += e.self_cpu_time_total * 1e-6
    return totals


def run_one(args, hidden: int, mode: str, members: int = 1, unlike: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--hidden", str(hidden),
           "--layers", str(args.layers), "--batch", str(args.batch), "--seq", str(args.seq),
           "--vocab", str(args.vocab), "--steps", str(args.steps), "--threads", str(args.threads),
           "--torch-device", args.torch_device, "--arch", args.arch, "--device", args.device,
           "--population", str(members)]
    if args.phases:
        cmd.append("--phases")
    if unlike:
        cmd.append("--unlike")
    if args.breakdown and mode != "fp":   # torch.nn.LSTM's fused kernel has no product ops to split
        cmd.append("--breakdown")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"worker {hidden}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,512", help="hidden sizes, comma separated")
    p.add_argument("--modes", default="fp,ideal,fast,exact")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--vocab", type=int, default=100)
    p.add_argument("--steps", type=int, default=3, help="timed steps per subprocess (after 1 warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every mode")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every mode")
    p.add_argument("--torch-device", default="cpu")
    p.add_argument("--arch", default="rpu2016")
    p.add_argument("--device", default="rpu_baseline")
    p.add_argument("--json", metavar="FILE", help="also write the measurements here")
    p.add_argument("--phases", action="store_true",
                   help="also time archsim's forward, backward and update apart (CPU time)")
    p.add_argument("--profile", metavar="FILE",
                   help="worker only: profile one more step and write its top ops here")
    p.add_argument("--members", metavar="K,K,...",
                   help="time populations of K models (fast update) per step per model instead")
    p.add_argument("--unlike-periphery", action="store_true",
                   help="with --members: also time populations whose members' DACs differ")
    p.add_argument("--breakdown", action="store_true",
                   help="with --members, on a CPU: profile one more step of each run and split "
                        "its time per model into products, random draws, copies and the rest")
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--unlike", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, help=argparse.SUPPRESS)
    p.add_argument("--population", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.breakdown and not args.worker and (not args.members or args.torch_device != "cpu"):
        p.error("--breakdown needs --members and a CPU (--torch-device cpu)")
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    from tabulate import tabulate

    if args.members:
        return members_table(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    samples: dict[tuple[int, str], list[float]] = {}
    cpu_samples: dict[tuple[int, str], list[float]] = {}
    peaks: dict[tuple[int, str], dict] = {}
    phase_samples: dict[tuple[int, str], dict[str, list[float]]] = {}
    t_start = time.time()
    for hidden in sizes:
        for r in range(args.rounds):
            for mode in modes:
                res = run_one(args, hidden, mode)
                samples.setdefault((hidden, mode), []).extend(res["times"])
                cpu_samples.setdefault((hidden, mode), []).extend(res["cpu"])
                old = peaks.get((hidden, mode), {})
                peaks[(hidden, mode)] = {k: max(v or 0, old.get(k) or 0) if v is not None else None
                                         for k, v in res.items()
                                         if k not in ("times", "cpu", "minor_faults", "phases")}
                for name, values in res.get("phases", {}).items():
                    phase_samples.setdefault((hidden, mode), {}).setdefault(name, []).extend(values)
                print(f"  {args.layers}x{hidden} {mode:5s} round {r + 1}: "
                      f"{statistics.median(res['times']):.3f} s/step", file=sys.stderr, flush=True)
    # On a CPU the ratio uses process CPU time (robust to other jobs on a shared machine; with one
    # thread it equals wall time on an idle machine); on a GPU it uses wall time.
    on_gpu = args.torch_device.startswith("cuda")
    basis = samples if on_gpu else cpu_samples
    rows, records = [], []
    for hidden in sizes:
        fp = statistics.median(basis[(hidden, "fp")]) if (hidden, "fp") in basis else None
        for mode in modes:
            t = statistics.median(basis[(hidden, mode)])
            wall = statistics.median(samples[(hidden, mode)])
            ratio = t / fp if fp else None
            pk = peaks[(hidden, mode)]
            mem = pk["gpu_peak_bytes"] if on_gpu else pk["peak_rss_bytes"]
            target = TARGETS.get(mode)
            ok = "" if target is None or ratio is None else ("yes" if ratio <= target else "NO")
            spread = f"{min(basis[(hidden, mode)]) * 1e3:.0f}-{max(basis[(hidden, mode)]) * 1e3:.0f}"
            rows.append([f"{args.layers}x{hidden}", mode, f"{t * 1e3:.0f}", spread, f"{wall * 1e3:.0f}",
                         f"{ratio:.2f}x" if ratio else "-", f"<= {target:g}x" if target else "",
                         ok, f"{mem / 2**20:.0f}"])
            records.append({"size": f"{args.layers}x{hidden}", "mode": mode, "step_s": t,
                            "wall_s": wall, "ratio_to_fp": ratio, "target": target,
                            "peak_bytes": mem, "wall_samples": samples[(hidden, mode)],
                            "cpu_samples": cpu_samples[(hidden, mode)]})
    mem_label = "GPU peak MiB" if args.torch_device.startswith("cuda") else "peak RSS MiB"
    print(f"training step, batch {args.batch}, T={args.seq}, vocabulary {args.vocab}, "
          f"{args.threads} thread(s), {args.torch_device}, device {args.device} on {args.arch}; "
          f"median of {args.rounds}x{args.steps} steps")
    label = "ms/step (wall)" if on_gpu else "ms/step (CPU)"
    print(tabulate(rows, headers=["LSTM", "mode", label, "range", "wall ms", "vs fp", "target", "met",
                                  mem_label],
                   tablefmt="github"))
    if phase_samples:
        phase_rows = [[f"{args.layers}x{h}", mode] + [f"{statistics.median(v) * 1e3:.1f}"
                                                      for v in ph.values()]
                      for (h, mode), ph in phase_samples.items()]
        print("archsim phases, ms per step (CPU, median):")
        print(tabulate(phase_rows, headers=["LSTM", "mode", *next(iter(phase_samples.values()))],
                       tablefmt="github"))
        for rec in records:
            ph = phase_samples.get((int(rec["size"].split("x")[1]), rec["mode"]))
            if ph:
                rec["phases_s"] = {k: statistics.median(v) for k, v in ph.items()}
    print(f"(total {time.time() - t_start:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": records}, fh, indent=2)
    return 0


def members_table(args) -> int:
    """``--members``: fp and populations of K, interleaved over rounds; per-model step times."""
    from tabulate import tabulate

    sizes = [int(s) for s in args.sizes.split(",")]
    ks = [int(k) for k in args.members.split(",")]
    runs = [("fp", "fp", 1, False)] + [(f"K={k}", "fast", k, False) for k in ks]
    if args.unlike_periphery:
        runs += [(f"K={k} unlike", "fast", k, True) for k in ks if k > 1]
    cpu: dict[tuple[int, str], list[float]] = {}
    wall: dict[tuple[int, str], list[float]] = {}
    faults: dict[tuple[int, str], list[float]] = {}
    phases: dict[tuple[int, str], dict[str, list[float]]] = {}
    parts: dict[tuple[int, str], dict[str, list[float]]] = {}
    on_gpu = args.torch_device.startswith("cuda")
    t_start = time.time()
    for hidden in sizes:
        for r in range(args.rounds):
            for label, mode, k, unlike in runs:
                res = run_one(args, hidden, mode, k, unlike)
                for name, values in res.get("phases", {}).items():
                    phases.setdefault((hidden, label), {}).setdefault(name, []).extend(
                        v / k for v in values)
                for name, value in res.get("breakdown_s", {}).items():
                    parts.setdefault((hidden, label), {}).setdefault(name, []).append(value / k)
                cpu.setdefault((hidden, label), []).extend(t / k for t in res["cpu"])
                wall.setdefault((hidden, label), []).extend(t / k for t in res["times"])
                faults.setdefault((hidden, label), []).extend(n / k for n in res["minor_faults"])
                print(f"  {args.layers}x{hidden} {label:5s} round {r + 1}: "
                      f"{statistics.median(res['times']) / k:.3f} s/step per model",
                      file=sys.stderr, flush=True)
    basis = wall if on_gpu else cpu
    rows, records = [], []
    phase_rows = []
    for (hidden, label), ph in phases.items():
        phase_rows.append([f"{args.layers}x{hidden}", label] +
                          [f"{statistics.median(v) * 1e3:.1f}" for v in ph.values()])
    for hidden in sizes:
        fp = statistics.median(basis[(hidden, "fp")])
        one = statistics.median(basis[(hidden, f"K={ks[0]}")]) if ks[0] == 1 else None
        for label in [r[0] for r in runs]:
            t = statistics.median(basis[(hidden, label)])
            target, ok = "", ""
            if label.endswith("unlike"):
                like = statistics.median(basis[(hidden, label.split()[0])])
                target = f"{t / like:.2f}x like members"
            elif hidden == 64 and label == "K=16":
                target, ok = "<= 1x fp", "yes" if t <= fp else "NO"
            elif hidden == 512 and label != "fp" and on_gpu:     # item 6: the GPU path
                target, ok = "<= 3x fp", "yes" if t <= 3 * fp else "NO"
            elif hidden == 512 and label != "fp" and one is not None and label != "K=1":
                target, ok = "<= K=1", "yes" if t <= one else "NO"
            flt = statistics.median(faults[(hidden, label)])
            rows.append([f"{args.layers}x{hidden}", label, f"{t * 1e3:.0f}",
                         f"{t / fp:.2f}x", f"{t / one:.2f}x" if one else "-", target, ok, f"{flt:,.0f}"])
            records.append({"size": f"{args.layers}x{hidden}", "run": label, "step_s_per_model": t,
                            "ratio_to_fp": t / fp, "ratio_to_k1": t / one if one else None,
                            "cpu_samples_per_model": cpu[(hidden, label)],
                            "wall_samples_per_model": wall[(hidden, label)],
                            "minor_faults_per_model": faults[(hidden, label)]})
            if (hidden, label) in parts:
                records[-1]["breakdown_s_per_model"] = {
                    name: statistics.median(v) for name, v in parts[(hidden, label)].items()}
    print(f"training step per model, batch {args.batch}, T={args.seq}, vocabulary {args.vocab}, "
          f"{args.threads} thread(s), {args.torch_device}, device {args.device} on {args.arch} "
          f"(fast update); median of {args.rounds}x{args.steps} steps")
    label = "ms/step/model (wall)" if on_gpu else "ms/step/model (CPU)"
    print(tabulate(rows, headers=["LSTM", "run", label, "vs fp", "vs K=1", "target", "met",
                                  "page faults/step/model"], tablefmt="github"))
    if parts:
        print(breakdown_table(parts, basis, args.layers))
    if phase_rows:
        print("archsim phases, CPU ms per step per model (median):")
        print(tabulate(phase_rows, headers=["LSTM", "run", "forward", "backward", "update"],
                       tablefmt="github"))
    print(f"(total {time.time() - t_start:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": records}, fh, indent=2)
    return 0


def breakdown_table(parts, basis, layers: int) -> str:
    """``--breakdown``: CPU ms per model and category (median over rounds, under the profiler)
    and the floor products + draws against the unprofiled floating-point step."""
    from tabulate import tabulate

    names = [*CATEGORIES, "other"]
    rows = []
    for (hidden, label), ph in parts.items():
        ms = {n: statistics.median(ph[n]) * 1e3 for n in names}
        fp = statistics.median(basis[(hidden, "fp")]) * 1e3
        floor = ms["products"] + ms["random draws"]
        rows.append([f"{layers}x{hidden}", label, *(f"{ms[n]:.1f}" for n in names),
                     f"{sum(ms.values()):.1f}", f"{floor:.1f}", f"{floor / fp:.2f}x"])
    return ("step time per model by kind of op, CPU ms (one more step under the profiler; "
            "floor = products + random draws, against the fp step above):\n"
            + tabulate(rows, headers=["LSTM", "run", *names, "total", "floor", "floor vs fp"],
                       tablefmt="github"))


if __name__ == "__main__":
    sys.exit(main())
