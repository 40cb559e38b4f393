"""Thin argparse front end over the library. The library never prints; commands do."""
from __future__ import annotations

import argparse
import importlib
import sys

from archsim import __version__
from archsim.errors import EXIT_BAD_INPUT, ArchsimError

#: Subcommand modules under archsim.commands, in the order ``archsim --help`` lists them.
COMMANDS = ["estimate", "run", "train", "validate", "compare", "physics", "sweep", "reproduce",
            "calibrate", "schema"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, what is allowed) and exit 2."""

    def error(self, message: str):
        print(f"archsim: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="archsim",
        description="Time, energy and accuracy of LSTM training on resistive cross-point arrays.",
    )
    parser.add_argument("--version", action="version", version=f"archsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"archsim.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"archsim.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    if hasattr(args, "argv") and args.argv is None:
        args.argv = list(argv if argv is not None else sys.argv[1:])[1:]  # after the command name
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ArchsimError as exc:
        print(f"archsim: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("archsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`archsim ... | head`): stop quietly, as Unix tools do; point stdout
        # at /dev/null so that the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
        # A folder that became unwritable after the up-front checks (they run before any work).
        print(f"archsim: error: {exc.filename or ''}: {(exc.strerror or type(exc).__name__).lower()}; "
              "expected a path archsim can write to", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("archsim: error: out of memory; use a smaller workload (the spec checks estimate "
              "memory up front, this run needed more than they foresaw)", file=sys.stderr)
        return 1
