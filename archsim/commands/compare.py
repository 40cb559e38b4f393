"""``archsim compare``: workloads x architectures vs digital baselines; tables, plots, a report folder."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

#: Where ``archsim compare`` writes by default (relative to the working directory).
DEFAULT_OUT = "reports/compare"


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare RPU architectures with GPU/CPU baselines over several workloads",
        description="One table of workloads x architectures: time and energy per step, speedup and "
        "energy ratio (modelled GPU power and TDP bound) per baseline gpu:precision, op/s/W, array "
        "utilization, tiles, area; a separate peak-vs-peak table; the acceleration curves vs hidden "
        "size and batch size against each GPU's best precision (SimPy where contention matters) with "
        "their crossover points; plots. Printed in --format and written with the plots into --out. "
        "`archsim compare --reports` regenerates the repository's committed reports/compare/ set.")
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD.yaml", help="workload YAML files")
    p.add_argument("--arch", help="comma-separated architecture presets or YAML files (default: all presets)")
    p.add_argument("--baselines", help="comma-separated baselines NAME or NAME:PRECISION (h100:bf16, "
                   "v100:fp32; precisions fp32, tf32, fp16, bf16 where the preset has them; a bare GPU "
                   "name = its default, the precision practitioners use), or 'all' for every GPU preset "
                   "(default: the union of the workloads' own baselines)")
    p.add_argument("--all-precisions", action="store_true",
                   help="compare every bare-named GPU baseline in each of its precisions")
    p.add_argument("--cpu", action="store_true",
                   help="add the CPU baseline measured on this machine (cached; labelled when scaled)")
    p.add_argument("--format", choices=["github", "latex", "csv"], default="github",
                   help="format of the tables printed (all three are written to --out)")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="run the scaling sweeps and write the plots (default: on)")
    p.add_argument("--fidelity", choices=["simpy", "analytic"], default="simpy",
                   help="timing of the table rows (the scaling sweeps use --sweep-fidelity)")
    p.add_argument("--sweep-fidelity", choices=["simpy", "analytic"], default="analytic",
                   help="timing of the scaling sweeps (default analytic: thousands of tiles at H=4096)")
    p.add_argument("--sweep-base", metavar="WORKLOAD.yaml",
                   help="workload the sweeps vary (default: lstm2x512 when compared, else the first "
                        "workload; run as 2 layers, T=100, batch 32)")
    p.add_argument("--sweep-arch", help="comma-separated architectures for the sweeps (default: rpu2016 "
                   "and shared_adc256_nominal where compared, else the first architecture)")
    p.add_argument("--simpy-max-tiles", type=int, default=None, metavar="N",
                   help="closed-form sweeps also run SimPy at points of <= N tiles and carry its "
                        "contention factor beyond (default 300; 0: closed form only)")
    p.add_argument("--hidden-sizes", help="comma-separated hidden sizes (default: 64,128,...,4096)")
    p.add_argument("--batch-sizes", help="comma-separated batch sizes (default: 1,2,4,...,256)")
    p.add_argument("--reports", action="store_true",
                   help="regenerate the committed set: the repository's workloads/*.yaml against every "
                        "precision of their GPUs (--all-precisions) into its reports/compare/ (other "
                        "options at their defaults)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


#: Largest value of each scaling axis: 4x the default range's top (hidden 16384 on 256 x 256
#: arrays is 33,000 tiles a layer), so that a typo cannot ask for 10^12 tiles.
SCALING_MAX = {"--hidden-sizes": 16384, "--batch-sizes": 65536}


def _ints(text: str | None, flag: str, default) -> list[int]:
    from archsim.errors import SpecError

    if text is None:
        return list(default)
    top = SCALING_MAX[flag]
    allowed = f"comma-separated integers from 1 to {top}"
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SpecError("command line", flag, text, allowed) from None
    if not values or min(values) < 1 or max(values) > top:
        raise SpecError("command line", flag, text, allowed)
    return values


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _command(args) -> str:
    """The command line that reproduces this run (only options that differ from the defaults)."""
    if args.reports:
        return "archsim compare workloads/*.yaml --all-precisions"
    parts = ["archsim", "compare"] + _workload_args(args.workloads)
    for flag in ("arch", "baselines", "sweep_base", "sweep_arch", "hidden_sizes", "batch_sizes"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", value]
    if args.all_precisions:
        parts.append("--all-precisions")
    if args.simpy_max_tiles is not None:
        parts += ["--simpy-max-tiles", str(args.simpy_max_tiles)]
    if args.cpu:
        parts.append("--cpu")
    if args.fidelity != "simpy":
        parts += ["--fidelity", args.fidelity]
    if args.sweep_fidelity != "analytic":
        parts += ["--sweep-fidelity", args.sweep_fidelity]
    if not args.plots:
        parts.append("--no-plots")
    if args.out is not None and args.out != DEFAULT_OUT:
        parts += ["--out", args.out]
    return " ".join(p if p.endswith("*.yaml") else shlex.quote(p) for p in parts)


def _workload_args(given: list[str]) -> list[str]:
    """The workload arguments, as ``DIR/*.yaml`` when they are exactly that folder's YAML files in
    sorted order (what a shell glob gives), so that the recorded command does not depend on the
    shell having expanded it."""
    if len(given) > 1:
        parents = {str(Path(g).parent) for g in given}
        if len(parents) == 1:
            folder = parents.pop()
            everything = sorted(str(p.name) for p in Path(folder).glob("*.yaml"))
            if [Path(g).name for g in given] == everything:
                return [f"{folder}/*.yaml" if folder != "." else "*.yaml"]
    return list(given)


def run(args) -> int:
    from archsim import compare as cmp
    from archsim.errors import SpecError
    from archsim.fsutil import check_out_dir
    from archsim.specs import load_architecture, load_workload, preset_names

    # Validate everything before computing anything (bad input: one line, nothing written).
    if args.reports:
        if args.workloads:
            raise SpecError("command line", "--reports", " ".join(args.workloads),
                            "no workload files with --reports (it uses the repository's workloads/)")
        root = _repo_root()
        paths = sorted((root / "workloads").glob("*.yaml"))
        if not paths:
            raise SpecError("command line", "--reports", str(root / "workloads"),
                            "a source checkout with workloads/*.yaml")
        out = Path(args.out) if args.out else root / DEFAULT_OUT
    else:
        if not args.workloads:
            raise SpecError("command line", "WORKLOAD.yaml", "", "one or more workload YAML files, or --reports")
        paths = [Path(p) for p in args.workloads]
        out = Path(args.out or DEFAULT_OUT)
    check_out_dir(out)   # before any work: nothing is computed for an unwritable folder
    workloads = [load_workload(p) for p in paths]
    names = [a for a in (args.arch or "").split(",") if a] or preset_names("architectures")
    archs = [load_architecture(a, referrer="command line") for a in names]
    if args.baselines is None:
        baselines = None
    elif args.baselines.strip() == "all":
        baselines = cmp.gpu_baseline_names()
    else:
        from archsim.baselines import check_baseline_name

        baselines = [b for b in args.baselines.split(",") if b]
        for b in baselines:
            check_baseline_name(b, "--baselines")
        if not baselines:
            raise SpecError("command line", "--baselines", args.baselines, "preset names or 'all'")
    if args.simpy_max_tiles is not None and args.simpy_max_tiles < 0:
        raise SpecError("command line", "--simpy-max-tiles", args.simpy_max_tiles, "an integer >= 0")
    all_modes = args.all_precisions or args.reports
    hidden = _ints(args.hidden_sizes, "--hidden-sizes", cmp.DEFAULT_HIDDEN_SIZES)
    batches = _ints(args.batch_sizes, "--batch-sizes", cmp.DEFAULT_BATCH_SIZES)
    if args.sweep_base:
        sweep_base = Path(args.sweep_base)
        load_workload(sweep_base)
    else:
        sweep_base = next((p for p, w in zip(paths, workloads) if w.name == cmp.DEFAULT_SWEEP_BASE),
                          paths[0])
    if args.sweep_arch:
        sweep_archs = [load_architecture(a, referrer="command line")
                       for a in args.sweep_arch.split(",") if a]
    else:
        sweep_archs = [a for a in archs if a.name in cmp.DEFAULT_SWEEP_ARCHS] or archs[:1]

    progress = not args.no_progress
    memo: dict = {}  # identical estimates are run once (the sweeps' base point is a table row)
    comparison = cmp.compare(workloads, archs, baselines=baselines, cpu=args.cpu,
                             fidelity=args.fidelity, progress=progress, memo=memo, all_modes=all_modes)
    sweeps = []
    if args.plots:
        gpus = list(dict.fromkeys(b.split(":")[0] for b in comparison.baseline_names
                                  if b != cmp.CPU_BASELINE))
        max_tiles = cmp.DEFAULT_SIMPY_MAX_TILES if args.simpy_max_tiles is None else args.simpy_max_tiles
        for parameter, values in (("hidden_size", hidden), ("batch_size", batches)):
            sweeps.append(cmp.scaling_sweep(sweep_base, parameter, values, sweep_archs, gpus,
                                            fidelity=args.sweep_fidelity, simpy_max_tiles=max_tiles,
                                            progress=progress, memo=memo))
    written = cmp.write_compare_set(comparison, sweeps, out, _command(args), plots=args.plots)

    for title, table in cmp.comparison_tables(comparison, args.format):
        lead = {"github": "", "latex": "% ", "csv": "# "}[args.format]
        print(f"{lead}{title}\n{table}\n")
    for note in cmp.area_notes(comparison) + comparison.notes:
        print(f"- {note}")
    print(f"\nWrote {len(written)} files to {out}", file=sys.stderr)
    sys.stdout.flush()
    return 0
