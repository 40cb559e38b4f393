"""CLI subcommands. Each module defines ``register(subparsers)``; none imports torch at import time."""
