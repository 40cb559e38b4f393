"""``archsim estimate``: time and energy per step and per epoch, breakdowns, baselines."""
from __future__ import annotations

import json
import shlex

from archsim.commands import positive_int


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
    p.add_argument("--baselines", help="comma-separated baseline presets (default: the workload's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="write report.json and report.md into this folder")
    p.set_defaults(handler=run, argv=None)


def run(args) -> int:
    from archsim.activity import load_activity
    from archsim.estimate import estimate
    from archsim.fsutil import check_out_dir, write_files_together
    from archsim.report import estimate_markdown, estimate_text
    from archsim.specs import load_architecture, load_device, load_workload

    if args.out:
        check_out_dir(args.out)   # before any work: nothing is computed for an unwritable folder
    workload = load_workload(args.workload)
    arch = load_architecture(args.arch or workload.architecture,
                             referrer="command line" if args.arch else args.workload)
    device = load_device(args.device or workload.device,
                         referrer="command line" if args.device else args.workload)
    activity = load_activity(args.activity) if args.activity else None
    baselines = None
    if args.baselines is not None:
        from archsim.specs.loader import preset_path

        baselines = [b for b in args.baselines.split(",") if b]
        for b in baselines:
            preset_path("baselines", b, field_path="--baselines")
    result = estimate(workload, arch, device, exact=args.exact, activity=activity, batch=args.batch,
                      epochs=args.epochs, baselines=baselines, progress=not args.json)
    if args.out:
        command = "archsim estimate " + " ".join(shlex.quote(a) for a in args.argv)
        write_files_together(args.out, {
            "report.json": json.dumps(result.to_json(), indent=2) + "\n",
            "report.md": estimate_markdown(result, command)})
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(estimate_text(result), end="")
    return 0
