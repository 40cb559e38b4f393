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
