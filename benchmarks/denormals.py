"""Subnormal floats on the CPU: why AnalogLSTM flushes them to zero (``torch.set_flush_denormal``).

A network whose gates saturate (e.g. the asymmetry scan's 5 % and 10 % devices late in training)
carries activations and errors below float32's smallest normal number, 1.2e-38 (sigmoid(-90) is
about 8e-40). x86 arithmetic on such subnormal numbers is many times slower. This script times, side
by side in one process, the matrix products of one LSTM2-64 training step's sizes (the prepared
forward products of 3,200 rows and the update's outer-product sums) on inputs with and without a
share of subnormal values, with and without flushing, and prints the ratios.

    python benchmarks/denormals.py [--share 0.3] [--repeats 20]

Measured on a saturated run itself (the 5 % asymmetry point's checkpoint at step 14,310, one
thread): 0.29 s per training step without flushing, 0.15 s with it; an unsaturated run (the
resolution scan's 5-bit point) 0.078 s and 0.080 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--share", type=float, default=0.3, help="share of subnormal inputs (0..1)")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    # (rows, inner, outputs): layer-1 prepared forward, layer-2 prepared forward, an update's sums
    shapes = [(3200, 149, 256), (3200, 129, 256), (129, 3200, 256)]
    rows = []
    for m, k, n in shapes:
        a = torch.rand(m, k, generator=g) * 2 - 1
        b = torch.rand(k, n, generator=g) * 2 - 1
        sub = a.clone()
        mask = torch.rand(m, k, generator=g) < args.share
        sub[mask] = 1e-39 * torch.sign(a[mask])         # subnormal, like a saturated gate's output
        times = {}
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            for label, x in (("normal", a), ("subnormal", sub)):
                times[(flush, label)] = timed(lambda x=x: torch.mm(x, b), args.repeats)
        torch.set_flush_denormal(False)
        rows.append((f"{m}x{k} @ {k}x{n}", times))
    print(f"matrix products, 1 thread, {args.share:.0%} of the inputs subnormal, median of "
          f"{args.repeats} (ms)")
    print(f"{'product':>20} {'normal':>8} {'subnormal':>10} {'ratio':>6} | flushed: {'normal':>7} "
          f"{'subnormal':>10} {'ratio':>6}")
    for name, t in rows:
        r0 = t[(False, "subnormal")] / t[(False, "normal")]
        r1 = t[(True, "subnormal")] / t[(True, "normal")]
        print(f"{name:>20} {t[(False, 'normal')] * 1e3:8.2f} {t[(False, 'subnormal')] * 1e3:10.2f} "
              f"{r0:5.1f}x | {'':9}{t[(True, 'normal')] * 1e3:7.2f} {t[(True, 'subnormal')] * 1e3:10.2f} "
              f"{r1:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
