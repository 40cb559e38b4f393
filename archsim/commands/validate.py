"""``archsim validate``: floating point vs a device preset, same seed, data and budget."""
from __future__ import annotations

import sys

from archsim.commands.train import add_common_arguments, load_inputs, note_fresh_start, print_json, run_options


def register(sub) -> None:
    p = sub.add_parser("validate", help="train floating point and a device side by side; test-loss gap",
                       description="Train the workload's LSTM in floating point (ideal device) and on "
                                   "the given device with the same seed, data and budget, and print "
                                   "their test cross-entropies (nats/char) and the gap.")
    add_common_arguments(p, device_required=True)
    p.add_argument("--out", metavar="DIR",
                   help="write both runs (fp/, <device>/), validate.json and curves.png here "
                        "(default: runs/validate-<workload>-<device>-seed<S>)")
    p.set_defaults(handler=run)


def run(args) -> int:
    workload, arch, device = load_inputs(args)
    from archsim.functional.train import validate

    seed, out, kwargs = run_options(args, workload, f"validate-{workload.name}-{device.name}-seed{{seed}}")
    note_fresh_start(args, [out / "fp", out / device.name])
    result = validate(workload, arch, device, **kwargs)
    if args.json:
        return print_json(result, out)
    from tabulate import tabulate

    rows = [[r["run"], f"{r['train']:.4f}", f"{r['valid']:.4f}", f"{r['test']:.4f}",
             f"{r['chars']:,}", f"{r['seconds']:.0f}"] for r in result.table()]
    print(f"{workload.name} on {arch.name}, lr {result.fp.learning_rate:g}, seed {seed}, "
          f"data {result.fp.data}")
    print(tabulate(rows, headers=["run", "train", "valid", "test (nats/char)", "chars", "seconds"],
                   tablefmt="simple"))
    print(f"gap (test, {device.name} - floating point): {result.gap:+.4f} nats/char")
    print(f"outputs: {out}/ (validate.json, curves.png, fp/, {device.name}/)", file=sys.stderr)
    return 0
