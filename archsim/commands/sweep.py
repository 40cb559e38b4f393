"""``archsim sweep``: run or resume a design-space sweep on a local pool or a Dask cluster."""
from __future__ import annotations

import sys

from archsim.commands import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a design-space sweep (resumable; local process pool or Dask cluster)",
        description="Run every point of SWEEP.yaml (estimate, training run, or both) and append each "
        "result to <out>/results.jsonl as it finishes; rerunning resumes, skipping finished points. "
        "Writes summary.md and plot.png at the end.")
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file")
    p.add_argument("--backend", choices=["local", "dask"], default=None,
                   help="local process pool (default) or a Dask distributed cluster")
    p.add_argument("--address", metavar="tcp://HOST:PORT", default=None,
                   help="Dask scheduler address (implies --backend dask; default: start a local cluster)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="worker processes (default: one per core, at most one per point)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: reports/sweeps/<sweep name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archsim.errors import SpecError
    from archsim.sweep import run_sweep

    backend = args.backend or ("dask" if args.address else "local")
    if args.address and backend != "dask":
        raise SpecError("command line", "--address", args.address, "only with --backend dask")
    outcome = run_sweep(args.sweep, backend=backend, address=args.address, jobs=args.jobs,
                        out=args.out, progress=not args.no_progress)
    print(outcome.table)
    print(f"\n{outcome.points} points ({outcome.unique} distinct): {outcome.skipped} already done, "
          f"{outcome.computed} computed, {outcome.new} new records. Results: {outcome.results_path}")
    if outcome.summary_path:
        print(f"Summary: {outcome.summary_path}")
    if outcome.plot_path:
        print(f"Plot: {outcome.plot_path}")
    sys.stdout.flush()
    return 0
