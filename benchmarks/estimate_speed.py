"""Speed of the estimate engine (issue 2's targets), measured side by side in one run.

Prints:
1. wall time of ``archsim estimate workloads/lstm2x512.yaml`` for a full epoch, including interpreter
   start-up (target <= 2 s), median of ``--repeat`` runs;
2. wall time of the exact SimPy run of one whole training step of lstm2x512 (target <= 1 s) and
   its events per second;
3. the extrapolated-vs-exact epoch error (target <= 0.1 %): an exact SimPy run of every step of
   the epoch against warm-up + window extrapolation. ``--epoch-workload`` picks the workload for
   this part (default lstm2x512, ~2 minutes for the exact run; add ``--train-chars`` to shrink).
4. the default estimate of a big workload, 4 x 8192 LSTM, T = 1000, batch 1024 (rpu2016 with 256
   tiles and 1 TiB of DRAM so that it fits; target <= 10 s), extrapolated over timesteps, against
   the run of the whole sequence (extrapolated over steps only; target <= 0.1 %; ~90 s).
   ``--skip-big`` leaves it out.

Run: python benchmarks/estimate_speed.py [--repeat 5] [--arch rpu2016]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--arch", default=None, help="architecture preset (default: the workload's)")
    ap.add_argument("--epoch-workload", default="lstm2x512")
    ap.add_argument("--train-chars", type=int, default=None)
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()

    from archsim.engine.analytic import analytic_step
    from archsim.engine.des import simulate
    from archsim.engine.extrapolate import epoch_timing
    from archsim.schedule import build_schedule
    from archsim.specs import load_architecture, load_workload

    wl = REPO / "workloads" / "lstm2x512.yaml"
    cmd = [sys.executable, "-m", "archsim", "estimate", str(wl), "--json"]
    if args.arch:
        cmd += ["--arch", args.arch]
    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    cli = statistics.median(walls)
    print(f"1. archsim estimate lstm2x512 (full epoch, with start-up): median {cli:.3f} s "
          f"over {args.repeat} runs (min {min(walls):.3f} s); target 2 s -> {cli / 2.0:.2f}x of target")

    w = load_workload(wl)
    a = load_architecture(args.arch or w.architecture)
    t0 = time.perf_counter()
    s = build_schedule(w, a)
    t1 = time.perf_counter()
    run = simulate(s)
    t2 = time.perf_counter()
    closed = analytic_step(s).step_s
    print(f"2. exact SimPy step of lstm2x512 on {a.name}: build {t1 - t0:.3f} s + simulate "
          f"{t2 - t1:.3f} s = {t2 - t0:.3f} s (target 1 s -> {(t2 - t0) / 1.0:.2f}x of target); "
          f"{run.n_events:,} events, {run.n_events / (t2 - t1):,.0f} events/s; "
          f"step {run.total_s * 1e3:.4f} ms, closed form {closed * 1e3:.4f} ms")

    over = {"training.train_chars": args.train_chars} if args.train_chars else None
    we = load_workload(REPO / "workloads" / f"{args.epoch_workload}.yaml", overrides=over)
    ae = load_architecture(args.arch or we.architecture)
    n = we.steps_per_epoch()
    build = lambda k: build_schedule(we, ae, steps=k)  # noqa: E731
    t0 = time.perf_counter()
    fast = epoch_timing(build, n)
    t1 = time.perf_counter()
    exact = epoch_timing(build, n, exact=True)
    t2 = time.perf_counter()
    err = abs(fast.total_s - exact.total_s) / exact.total_s
    print(f"3. epoch of {we.name} on {ae.name} ({n} steps): extrapolated {fast.total_s:.6f} s "
          f"from {fast.simulated_steps} steps in {t1 - t0:.2f} s; exact {exact.total_s:.6f} s in "
          f"{t2 - t1:.1f} s; error {err:.2e} ({err * 100:.5f} %, target 0.1 %); "
          f"wall-time ratio exact/extrapolated {(t2 - t1) / (t1 - t0):.0f}x")
    if not args.skip_big:
        big_workload(wl)


def big_workload(base) -> None:
    """Part 4: the default estimate of 4 x 8192, T = 1000, batch 1024 against its whole-sequence run."""
    from archsim.engine.extrapolate import epoch_timing
    from archsim.estimate import estimate
    from archsim.schedule import build_schedule
    from archsim.specs import load_architecture, load_workload

    w = load_workload(base, overrides={"model.layers": 4, "model.hidden_size": 8192,
                                       "training.seq_len": 1000, "training.batch_size": 1024})
    a = load_architecture("rpu2016", overrides={"system.n_tiles": 256,
                                                "dram.capacity_bytes": "1 TiB"})
    t0 = time.perf_counter()
    r = estimate(w, a, baselines=[])
    t1 = time.perf_counter()
    full = epoch_timing(lambda k: build_schedule(w, a, steps=k), w.steps_per_epoch())
    t2 = time.perf_counter()
    err = abs(r.time_per_epoch_s - full.total_s) / full.total_s
    phases = {p: v["time_s"] for p, v in r.phase_breakdown.items()}
    full_phases = full.run.steps[-1].phase_times
    worst = max(abs(phases[p] - full_phases[p]) / full.period_s for p in phases)
    print(f"4. estimate of 4x8192, T 1000, batch 1024 ({r.tiles} tiles): {t1 - t0:.2f} s "
          f"(target 10 s -> {(t1 - t0) / 10:.2f}x of target), {r.simulation['events']:,} events at "
          f"T = {r.simulation['simulated_seq_lens']}; whole sequence {t2 - t1:.1f} s, "
          f"{full.run.n_events:,} events; epoch error {err:.2e} ({err * 100:.6f} %, target 0.1 %); "
          f"phase times within {worst * 100:.3f} % of the step; ratio {(t2 - t1) / (t1 - t0):.0f}x")


if __name__ == "__main__":
    main()
