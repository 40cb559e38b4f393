"""CLI subcommands. Each module defines ``register(subparsers)``; none imports torch at import time."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a positive integer (the error names the value and what is allowed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; expected a positive integer")
    return value


#: Seeds are stored as 64-bit integers (torch generators, numpy); specs require seed >= 0.
MAX_SEED = 2**63 - 1


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2^63 - 1] (the range every generator accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer seed in [0, 2^63-1]") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"got {value}; expected an integer seed in [0, 2^63-1]")
    return value


#: Largest learning rate accepted anywhere (spec or flag): far above any that trains, and small
#: enough that lr * |x| * |d| / dw_min stays a float32 number inside the pulsed update.
MAX_LEARNING_RATE = 1e6
#: Largest step count between curve points and thread count accepted from the command line.
MAX_STEPS_FLAG = 10**9
MAX_THREADS = 4096
#: Worker processes a sweep may ask for (more than the points are never started anyway).
MAX_JOBS = 4096


def bounded_int(low: int, high: int):
    """argparse type factory: an integer in [low, high] (one-line error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer from {low} to {high:,}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"got {value}; expected an integer from {low} to {high:,}")
        return value

    return parse


def learning_rate(text: str) -> float:
    """argparse type: a learning rate, a finite number in (0, MAX_LEARNING_RATE]."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive number") from None
    if not (math.isfinite(value) and 0 < value <= MAX_LEARNING_RATE):
        raise argparse.ArgumentTypeError(f"got {text}; expected a number above 0 and at most {MAX_LEARNING_RATE:g}")
    return value


def load_workload_specs(args, arch_overrides: dict | None = None):
    """(workload, architecture, device) named by ``args.workload`` and the ``--arch``/``--device``
    flags; an error in a preset names the flag when the flag chose it, else the workload file."""
    from archsim.specs import load_architecture, load_device, load_workload

    workload = load_workload(args.workload)
    arch = load_architecture(args.arch or workload.architecture, overrides=arch_overrides,
                             referrer="command line" if args.arch else args.workload)
    device = load_device(args.device or workload.device,
                         referrer="command line" if args.device else args.workload)
    return workload, arch, device
