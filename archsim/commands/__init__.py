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


def positive_float(text: str) -> float:
    """argparse type: a finite number above zero (a learning rate, a time)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"got {text}; expected a finite number above 0")
    return value
