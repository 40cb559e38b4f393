"""``archsim reproduce``: rerun the seed paper's experiments and say whether each claim holds."""
from __future__ import annotations

import sys

from archsim.commands import positive_int

#: Kept in step with archsim.reproduce.CLAIMS (importing it here would slow every archsim start-up
#: only a little, but the registry is the source of truth: the handler checks names against it).
CLAIM_HELP = "asymmetry, resolution, overfitting, macs"


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="rerun the seed paper's experiments; a report and a verdict per claim",
        description="Run the shipped sweeps of sweeps/reproduce/ for each CLAIM (default: all), then "
        "write reports/reproduce/<claim>.md (verdict sentence, table, command and budget) and "
        "<claim>.png. Results are resumable: rerunning only computes missing points. Default budgets "
        "fit a 2-core machine; --full uses paper-scale budgets (hours to days on a CPU).")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help=f"claims to run ({CLAIM_HELP}); default all")
    p.add_argument("--full", action="store_true",
                   help="paper-scale budgets (the *_full.yaml sweeps; reports under reports/reproduce/full)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="worker processes (default: one per core, at most one per point)")
    p.add_argument("--backend", choices=["local", "dask"], default=None,
                   help="local process pool (default) or a Dask distributed cluster")
    p.add_argument("--address", metavar="tcp://HOST:PORT", default=None,
                   help="Dask scheduler address (implies --backend dask)")
    p.add_argument("--sweeps", metavar="DIR", default=None,
                   help="folder holding the claims' sweep files (default: sweeps/reproduce of the checkout)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="report folder (default: reports/reproduce, or reports/reproduce/full with --full)")
    p.add_argument("--list", action="store_true", help="list the claims and their sweep files, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archsim.errors import SpecError
    from archsim.reproduce import CLAIMS, check_claims, run_claims, sweep_paths

    names = check_claims(args.claims)
    if args.list:
        for name in names:
            claim = CLAIMS[name]
            files = [str(p) for p in sweep_paths(claim, full=args.full, sweeps_dir=args.sweeps)]
            print(f"{name}: {claim.statement}\n    sweeps: {', '.join(files) or '(none: counts only)'}")
        return 0
    backend = args.backend or ("dask" if args.address else "local")
    if args.address and backend != "dask":
        raise SpecError("command line", "--address", args.address, "only with --backend dask")

    def show(report) -> None:
        print(f"{report.claim}: {report.verdict}. {report.sentence}")
        print(f"    report: {report.report_path} ({report.computed} points computed, "
              f"{report.wall_s:.0f} s)")
        sys.stdout.flush()

    run_claims(names, full=args.full, sweeps_dir=args.sweeps, out=args.out, backend=backend,
               address=args.address, jobs=args.jobs, progress=not args.no_progress,
               command=None, on_claim=show)
    return 0
