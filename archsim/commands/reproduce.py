"""``archsim reproduce``: rerun the seed paper's experiments and say whether each claim holds."""
from __future__ import annotations

import sys

from archsim.commands.sweep import add_backend_arguments

#: Kept in step with archsim.reproduce.CLAIMS (importing it here would slow every archsim start-up
#: only a little, but the registry is the source of truth: the handler checks names against it).
CLAIM_HELP = "asymmetry, resolution, overfitting, macs"


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="rerun the seed paper's experiments; a report and a verdict per claim",
        description="Run the shipped sweeps of sweeps/reproduce/ for each CLAIM (default: all), then "
        "write reports/reproduce/<claim>.md (verdict sentence, table, command and budget) and "
        "<claim>.png. Results are resumable: rerunning only computes missing points. Default budgets "
        "fit a 2-core machine; --full uses paper-scale budgets (hours to days on a CPU), --mid "
        "intermediate ones for the claims whose paper scale is out of a CPU's reach (overfitting: "
        "about 80 minutes on 2 cores). Exit status "
        "4 when some sweep points failed; SIGINT/SIGTERM stop the run, keeping stored results "
        "(exit 130/143).")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help=f"claims to run ({CLAIM_HELP}); default all")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--mid", action="store_true",
                        help="intermediate budgets, where floating point is below 1.8 nats/char on War and "
                             "Peace (the *_mid.yaml sweeps, overfitting only; reports under "
                             "reports/reproduce/mid)")
    budget.add_argument("--full", action="store_true",
                        help="paper-scale budgets (the *_full.yaml sweeps; reports under "
                             "reports/reproduce/full)")
    add_backend_arguments(p)
    p.add_argument("--sweeps", metavar="DIR", default=None,
                   help="folder holding the claims' sweep files (default: sweeps/reproduce of the checkout)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="report folder (default: reports/reproduce, or reports/reproduce/mid or "
                        "reports/reproduce/full with --mid or --full)")
    p.add_argument("--list", action="store_true", help="list the claims and their sweep files, run nothing")
    p.add_argument("--stored", action="store_true",
                   help="compute nothing: write the reports from the results stored so far (points "
                        "not run yet show as missing seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archsim.sweep.signals import run_terminable

    return run_terminable(lambda: _run(args))


def _run(args) -> int:
    from archsim.commands.sweep import backend_of
    from archsim.reproduce import CLAIMS, check_claims, run_claims, sweep_paths
    from archsim.sweep.runner import EXIT_POINTS_FAILED

    budget = "full" if args.full else "mid" if args.mid else "default"
    names = check_claims(args.claims, budget)
    if args.list:
        for name in names:
            claim = CLAIMS[name]
            files = [str(p) for p in sweep_paths(claim, budget=budget, sweeps_dir=args.sweeps)]
            print(f"{name}: {claim.statement}\n    sweeps: {', '.join(files) or '(none: counts only)'}")
        return 0
    backend = backend_of(args)

    def show(report) -> None:
        print(f"{report.claim}: {report.verdict}. {report.sentence}")
        print(f"    report: {report.report_path} ({report.computed} points computed, "
              f"{report.wall_s:.0f} s)")
        for row in report.failures:
            print(f"    failed point: {row['label']}: {row['error']}")
        sys.stdout.flush()

    reports = run_claims(names, budget=budget, sweeps_dir=args.sweeps, out=args.out, backend=backend,
                         address=args.address, jobs=args.jobs, progress=not args.no_progress,
                         command=None, on_claim=show, connect_timeout=args.connect_timeout,
                         stored_only=args.stored)
    failed = sum(len(r.failures) for r in reports)
    if failed:
        total = sum(o.points for r in reports for o in r.sweeps)
        print(f"archsim: error: {failed} of {total} sweep points failed (listed above and in the "
              "reports); their claims are judged without them", file=sys.stderr)
        return EXIT_POINTS_FAILED
    return 0
