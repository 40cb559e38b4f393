"""How far the CPU baseline's shrink-and-extrapolate estimate lands from the full step it stands for.

When torch's full training step would take longer than ``max_seconds``, ``cpu_training_step`` times
shorter sequences and extrapolates linearly in T (``scaled_from`` in its result). This script times
the full step and the extrapolated one side by side in one process, for a few LSTM sizes at budgets
of a half and a quarter of the full step, and prints extrapolated / full. The unit test checks the
arithmetic on an exact clock; this is the check on the real one (noisy on a shared machine: run it
twice before believing a ratio far from 1).

    python benchmarks/cpu_extrapolation.py
    python benchmarks/cpu_extrapolation.py --threads 2 --seq-len 100
"""
from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

SIZES = [("1x64, V 16", [(16, 64)], (16, 64)),
         ("2x128, V 64", [(64, 128), (128, 128)], (64, 128)),
         ("2x256, V 64", [(64, 256), (256, 256)], (64, 256))]


def main(argv: list[str] | None = None) -> int:
    from archsim.commands import MAX_THREADS, bounded_int, positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=positive_int, default=16)
    ap.add_argument("--seq-len", type=positive_int, default=100)
    ap.add_argument("--threads", type=bounded_int(1, MAX_THREADS), default=1)
    args = ap.parse_args(argv)

    from archsim.baselines.cpu import cpu_training_step

    rows = []
    for label, layers, output in SIZES:
        full = cpu_training_step(layers, output, args.batch, args.seq_len, threads=args.threads,
                                 max_seconds=60.0, use_cache=False)
        for share in (0.5, 0.25):
            est = cpu_training_step(layers, output, args.batch, args.seq_len, threads=args.threads,
                                    max_seconds=full.time_per_step_s * share, use_cache=False)
            timed = est.scaled_from["seq_len"] if est.scaled_from else [args.seq_len]
            rows.append([label, f"{share:g} x full", f"{full.time_per_step_s * 1e3:.2f}",
                         "T = " + ", ".join(map(str, timed)), f"{est.time_per_step_s * 1e3:.2f}",
                         f"{est.time_per_step_s / full.time_per_step_s:.2f}"])
    print(f"CPU fp32 LSTM training step, batch {args.batch}, T {args.seq_len}, "
          f"{args.threads} thread(s)")
    print(tabulate(rows, headers=["model", "budget", "full step (ms)", "timed at",
                                  "extrapolated (ms)", "extrapolated / full"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
