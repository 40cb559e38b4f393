"""``archsim run``: train N steps on simulated tiles, then time and price the measured activity."""
from __future__ import annotations

import json
import shlex

from archsim.commands import learning_rate, load_workload_specs, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser("run", help="train functionally, then estimate time/energy from the measured activity")
    p.add_argument("workload", help="workload YAML file")
    p.add_argument("--arch", help="architecture preset or YAML (default: the workload's)")
    p.add_argument("--device", help="device preset or YAML (default: the workload's)")
    p.add_argument("--steps", type=positive_int, default=20, help="training steps to measure (default 20)")
    p.add_argument("--data", help="text file (default: the workload's data, else a built-in corpus)")
    p.add_argument("--seed", type=seed_int, help="seed, 0 to 2^63-1 (default: the workload's)")
    p.add_argument("--update-mode", choices=["fast", "exact"], default="fast")
    p.add_argument("--lr", type=learning_rate, help="SGD learning rate (default: the workload's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="write report.json, report.md and activity.json into this folder")
    p.set_defaults(handler=run, argv=None)


def run(args) -> int:
    from tabulate import tabulate

    from archsim.activity_run import activity_run
    from archsim.fsutil import check_out_dir, write_files_together
    from archsim.report import endurance_table
    from archsim.units import format_quantity as fq

    if args.out:
        check_out_dir(args.out)   # before any work: nothing is computed for an unwritable folder
    w, a, d = load_workload_specs(args)
    r = activity_run(w, a, d, steps=args.steps, seed=args.seed, data_path=args.data,
                     update_mode=args.update_mode, progress=not args.json, learning_rate=args.lr)
    data = r.to_json()
    t = r.train
    loss = tabulate([[t.train_loss, t.valid_loss, t.test_loss, t.chars_seen, f"{t.seconds:.1f}"]],
                    headers=["train loss", "valid loss", "test loss", "chars", "seconds"],
                    floatfmt=".4f", tablefmt="github")
    cmp_rows = [[c["quantity"], fq(c["nominal"], c["unit"]), fq(c["measured"], c["unit"]),
                 f"{c['change']:+.1%}"] for c in r.comparison()]
    cmp = tabulate(cmp_rows, headers=["quantity", "nominal activity", "measured activity", "change"],
                   tablefmt="github")
    act = r.activity
    prof = tabulate([[k, getattr(act, k)] for k in ("bm_repeats_per_mvm", "pulse_slots_per_update",
                     "x_fire_prob", "d_fire_prob", "coincidence_prob", "adc_saturation_rate")],
                    headers=["activity (mean over tiles)", "measured"], tablefmt="github", floatfmt=".4g")
    counts = tabulate([[k, r.counts["functional"][k], r.counts["schedule"][k]] for k in r.counts["functional"]],
                      headers=["count", "functional run", "schedule"], tablefmt="github", floatfmt=".6g")
    end_title, end_table = endurance_table(r.measured.endurance, "github")
    command = "archsim run " + " ".join(shlex.quote(x) for x in args.argv)
    data["command"] = command
    text = (f"# archsim run: {w.name} on {a.name} / {d.name}, {t.steps} steps, seed {act.seed}\n\n"
            f"Produced by `{command}` (spec hash {act.spec_hash}).\n\n## Loss (nats/char)\n\n{loss}\n\n"
            f"## Time and energy: nominal vs measured activity\n\n{cmp}\n\n## Measured activity\n\n{prof}\n\n"
            f"## Op counts: functional run vs schedule\n\n{counts}\n\n## {end_title}\n\n{end_table}\n")
    if args.out:
        write_files_together(args.out, {
            "activity.json": json.dumps(act.model_dump(mode="json"), indent=2) + "\n",
            "report.json": json.dumps(data, indent=2) + "\n",
            "report.md": text})
    print(json.dumps(data, indent=2) if args.json else text, end="" if not args.json else "\n")
    return 0
