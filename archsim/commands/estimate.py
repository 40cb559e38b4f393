"""``archsim estimate``: time and energy per step and per epoch, breakdowns, baselines."""
from __future__ import annotations

import json
import shlex

from archsim.commands import load_workload_specs, positive_int
from archsim.specs.architecture import ALGORITHMS


def register(sub) -> None:
    p = sub.add_parser("estimate", help="time and energy of training a workload on an RPU architecture")
    p.add_argument("workload", help="workload YAML file")
    p.add_argument("--arch", help="architecture preset name or YAML file (default: the workload's)")
    p.add_argument("--device", help="device preset name or YAML file (default: the workload's)")
    p.add_argument("--batch", type=positive_int, help="override training.batch_size")
    p.add_argument("--epochs", type=positive_int, help="override training.epochs")
    p.add_argument("--exact", action="store_true",
                   help="simulate every step of the epoch instead of extrapolating a periodic window")
    p.add_argument("--activity", help="activity profile JSON saved by `archsim run` (default: nominal)")
    p.add_argument("--algorithm", choices=ALGORITHMS,
                   help="training algorithm of the tiles (override update.algorithm): plain pulsed "
                        "SGD, or Tiki-Taka v1, TTv2 or chopped TTv2 (arrays A and C per block, "
                        "transfers every update.transfer_every rank-one updates; TTv2 through a "
                        "digital buffer H), printed beside the SGD design")
    p.add_argument("--bptt", choices=("store", "recompute"),
                   help="what BPTT keeps between the sweeps (override system.bptt_state): store "
                        "every tile's inputs and gates, or keep h and c and recompute the gates "
                        "with a second forward MVM")
    p.add_argument("--baselines", help="comma-separated baseline presets (default: the workload's)")
    p.add_argument("--curves", action="store_true",
                   help="also the acceleration curves over hidden size (64-4096) and batch size "
                        "(1-256) of this workload against each GPU in its fastest precision, with "
                        "the crossover points (closed form; `archsim compare` adds SimPy)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="write report.json and report.md into this folder")
    p.set_defaults(handler=run, argv=None)


def run(args) -> int:
    from archsim.activity import load_activity
    from archsim.estimate import estimate
    from archsim.fsutil import check_out_dir, write_files_together
    from archsim.report import estimate_markdown, estimate_text

    if args.out:
        check_out_dir(args.out)   # before any work: nothing is computed for an unwritable folder
    # Overrides are validated with the preset (e.g. chopped TTv2 needs gamma 0).
    overrides = {k: v for k, v in (("system.bptt_state", args.bptt),
                                   ("update.algorithm", args.algorithm)) if v}
    workload, arch, device = load_workload_specs(args, arch_overrides=overrides)
    activity = load_activity(args.activity) if args.activity else None
    baselines = None
    if args.baselines is not None:
        from archsim.baselines import check_baseline_name

        baselines = [b for b in args.baselines.split(",") if b]
        for b in baselines:
            check_baseline_name(b, "--baselines")
    result = estimate(workload, arch, device, exact=args.exact, activity=activity, batch=args.batch,
                      epochs=args.epochs, baselines=baselines, progress=not args.json)
    curves = _curves(args.workload, arch, result) if args.curves else None
    data = result.to_json()
    if curves is not None:
        data["curves"] = [{"parameter": s.parameter, "points": s.points, "crossovers": s.crossovers}
                          for s in curves]
    if args.out:
        command = "archsim estimate " + " ".join(shlex.quote(a) for a in args.argv)
        write_files_together(args.out, {
            "report.json": json.dumps(data, indent=2, default=str) + "\n",
            "report.md": estimate_markdown(result, command) + _curves_text(curves)})
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(estimate_text(result) + _curves_text(curves), end="")
    return 0


def _curves(workload_file: str, arch, result):
    """Hidden-size and batch-size sweeps of this workload against its GPU baselines (best precision)."""
    from archsim.baselines import baseline_kind, split_name
    from archsim.compare import workload_curves

    gpus = sorted({split_name(b["name"])[0] for b in result.baselines if baseline_kind(b["name"]) == "gpu"})
    if not gpus:
        from archsim.errors import SpecError

        raise SpecError("command line", "--curves", True, "at least one GPU baseline (--baselines v100,...)")
    return workload_curves(workload_file, arch, gpus)


def _curves_text(curves) -> str:
    if not curves:
        return ""
    from archsim.compare import crossover_table, sweep_table, sweep_title

    parts = []
    for s in curves:
        parts.append(f"\n## {sweep_title(s)}\n\n{sweep_table(s)}\n\nCrossovers:\n\n{crossover_table(s)}\n")
    return "".join(parts)
