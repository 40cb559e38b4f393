"""SIGTERM handled like Ctrl-C by the long-running commands (``archsim sweep``, ``archsim reproduce``).

Inside :func:`sigterm_raises`, a SIGTERM raises :class:`Terminated` in the main thread, so the same
clean-up as for Ctrl-C runs: the worker pool is shut down (its workers are killed), results already
appended to the results file stay there, and the command prints ``archsim: terminated`` and exits
with status 143 (128 + SIGTERM), as a shell reports a process ended by SIGTERM.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

#: Exit status after SIGTERM: 128 + 15.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt: ``except Exception`` lets it by."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (once; further ones are ignored while
    the first is being handled). A no-op outside the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return  # already shutting down
        fired.append(signum)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_terminable(body: Callable[[], int]) -> int:
    """Run a command's ``body`` with SIGTERM raising :class:`Terminated`; on SIGTERM print one line
    and return :data:`EXIT_TERMINATED` (the command layer's shared wrapper)."""
    import sys

    try:
        with sigterm_raises():
            return body()
    except Terminated:
        print("archsim: terminated", file=sys.stderr)
        return EXIT_TERMINATED
