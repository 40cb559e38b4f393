"""``archsim sweep``: run or resume a design-space sweep on a local pool or a Dask cluster."""
from __future__ import annotations

import argparse
import math
import sys

from archsim.commands import MAX_JOBS, bounded_int

#: Default of --connect-timeout (kept in step with archsim.sweep.backends.DEFAULT_CONNECT_TIMEOUT,
#: which is not imported here to keep ``archsim`` start-up light).
CONNECT_TIMEOUT_S = 10.0


def positive_seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive number of seconds")
    return value


def add_backend_arguments(p) -> None:
    """--backend, --address, --connect-timeout and --jobs (shared with ``archsim reproduce``)."""
    p.add_argument("--backend", choices=["local", "dask"], default=None,
                   help="local process pool (default) or a Dask distributed cluster")
    p.add_argument("--address", metavar="tcp://HOST:PORT", default=None,
                   help="Dask scheduler address, tcp://, tls://, ws://, wss:// or ucx:// (implies "
                   "--backend dask; default: start a local cluster)")
    p.add_argument("--connect-timeout", type=positive_seconds, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"seconds the scheduler at --address gets to answer (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--jobs", type=bounded_int(1, MAX_JOBS), default=None, metavar="N",
                   help="worker processes (default: one per core, at most one per point)")


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a design-space sweep (resumable; local process pool or Dask cluster)",
        description="Run every point of SWEEP.yaml (estimate, training run, or both) and append each "
        "result to <out>/results.jsonl as it finishes; rerunning resumes, skipping finished points. "
        "Writes summary.md and plot.png at the end. A point that cannot be computed (an invalid "
        "combination of values, a design that does not fit) is recorded as failed and the sweep goes "
        "on; the exit status is then 4. SIGINT/SIGTERM stop the sweep, keeping stored results "
        "(exit 130/143).")
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file")
    add_backend_arguments(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: reports/sweeps/<sweep name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def backend_of(args) -> str:
    """The backend the flags ask for; --address with --backend local is a one-line error."""
    from archsim.errors import SpecError

    backend = args.backend or ("dask" if args.address else "local")
    if args.address and backend != "dask":
        raise SpecError("command line", "--address", args.address, "only with --backend dask")
    return backend


def run(args) -> int:
    from archsim.sweep.signals import run_terminable

    return run_terminable(lambda: _run(args))


def _run(args) -> int:
    from archsim.sweep import run_sweep
    from archsim.sweep.runner import EXIT_POINTS_FAILED

    backend = backend_of(args)
    outcome = run_sweep(args.sweep, backend=backend, address=args.address, jobs=args.jobs,
                        out=args.out, progress=not args.no_progress,
                        connect_timeout=args.connect_timeout)
    print(outcome.table)
    if outcome.failures:
        print("\n" + outcome.failures_text)
    print(f"\n{outcome.points} points ({outcome.unique} distinct): {outcome.skipped} already done, "
          f"{outcome.computed} computed, {outcome.new} new records. Results: {outcome.results_path}")
    if outcome.summary_path:
        print(f"Summary: {outcome.summary_path}")
    if outcome.plot_path:
        print(f"Plot: {outcome.plot_path}")
    sys.stdout.flush()
    if outcome.failures:
        print(f"archsim: error: {len(outcome.failures)} of {outcome.points} points failed (listed "
              f"under 'Failed points' above and in {outcome.summary_path})", file=sys.stderr)
        return EXIT_POINTS_FAILED
    return 0
