"""``archsim train``: train a workload's LSTM on simulated RPU tiles (torch functional simulator)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from archsim.commands import (
    MAX_STEPS_FLAG, MAX_THREADS, bounded_int, learning_rate, load_workload_specs, positive_int,
    seed_int,
)
from archsim.errors import SpecError


def add_common_arguments(p, *, device_required: bool = False) -> None:
    """Flags shared by ``train`` and ``validate``."""
    p.add_argument("workload", help="workload YAML file (e.g. workloads/lstm2x64.yaml)")
    p.add_argument("--arch", metavar="A", help="architecture preset or YAML (default: the workload's)")
    p.add_argument("--device", metavar="D", required=device_required,
                   help="device preset or YAML" + ("" if device_required else " (default: the workload's)"))
    p.add_argument("--data", metavar="FILE",
                   help="UTF-8 text to train on (default: the workload's training.data, found next to "
                        "the workload, in $ARCHSIM_DATA_DIR or ../shared/data; without any: the Python "
                        "standard library's sources)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, metavar="N", help="passes over the training split")
    budget.add_argument("--max-chars", type=positive_int, metavar="N",
                        help="training characters (whole steps)")
    p.add_argument("--seed", type=seed_int, metavar="S",
                   help="seed of every random draw, 0..2^63-1 (default: the workload's)")
    p.add_argument("--lr", type=learning_rate, metavar="LR", help="SGD learning rate (default: training.learning_rate)")
    p.add_argument("--update-mode", choices=["fast", "exact"], default="fast",
                   help="pulsed update: fast (moment-matched, default) or exact (pulse trains sampled)")
    p.add_argument("--torch-device", default="cpu", metavar="DEV",
                   help="where torch computes: cpu (default), cuda, cuda:N or auto")
    p.add_argument("--eval-every", type=bounded_int(1, MAX_STEPS_FLAG), metavar="STEPS",
                   help="steps between curve points and checkpoints (default: a tenth of an epoch; "
                        "a checkpoint is also written every 60 s of wall time)")
    p.add_argument("--threads", type=bounded_int(1, MAX_THREADS), metavar="N",
                   help="torch CPU threads (default: 1 for hidden_size <= 128, where per-timestep "
                        "overhead dominates and more threads only contend; else torch's default)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --out (none there: start from scratch)")
    again.add_argument("--force", action="store_true",
                       help="start over even if --out holds a checkpoint (it is deleted); without "
                            "--resume or --force an existing checkpoint is refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a workload's LSTM on simulated RPU arrays (accuracy)",
                       description="Train the workload's character LSTM with every weight matrix on "
                                   "simulated RPU tiles; report train/valid/test cross-entropy in "
                                   "nats per character.")
    add_common_arguments(p)
    p.add_argument("--population", type=seed_int, nargs="+", metavar="S",
                   help="train one model per seed S (two or more, instead of --seed) as one batched "
                        "population: each equals its separate run in distribution; outputs per seed "
                        "in DIR/seed<S>/, one checkpoint.pt for all in DIR")
    p.add_argument("--out", metavar="DIR",
                   help="write checkpoint.pt (+ .json), curve.json, curve.png, result.json here "
                        "(default: runs/<workload>-<device>-seed<S>)")
    p.set_defaults(handler=run)


def load_inputs(args):
    """Workload, architecture and device specs named by the flags (one-line errors)."""
    workload, arch, device = load_workload_specs(args)
    for flag in ("epochs", "max_chars", "eval_every", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise SpecError("command line", f"--{flag.replace('_', '-')}", value, "expected a positive integer")
    if args.lr is not None and not args.lr > 0:
        raise SpecError("command line", "--lr", args.lr, "expected a positive learning rate")
    set_threads(args.threads, workload)
    return workload, arch, device


def set_threads(threads: int | None, workload) -> None:
    """Small LSTMs run fastest on one thread (many tiny kernels per timestep)."""
    if threads is None and workload.model.hidden_size > 128:
        return
    import torch

    torch.set_num_threads(threads or 1)


def run_options(args, workload, default_out: str) -> tuple[int, Path, dict]:
    """(seed, output folder, keyword arguments) shared by ``train`` and ``validate``.

    Checks, before anything is computed or written, that the output folder can be written to
    (one-line :class:`SpecError`, exit 2, otherwise).
    """
    from archsim.fsutil import check_out_dir

    seed = args.seed if args.seed is not None else workload.training.seed
    out = Path(args.out) if args.out else Path("runs") / default_out.format(seed=seed)
    check_out_dir(out, "--out")
    kwargs = dict(data_path=args.data, epochs=args.epochs, max_chars=args.max_chars, seed=seed,
                  out_dir=out, resume=args.resume, force=args.force, update_mode=args.update_mode,
                  progress=not args.no_progress, torch_device=args.torch_device,
                  learning_rate=args.lr, eval_every=args.eval_every)
    return seed, out, kwargs


def note_fresh_start(args, folders: list[Path]) -> list[str]:
    """With ``--resume``, one stderr line per folder holding no checkpoint (that run starts from
    scratch); returns the lines' texts so that the table does not repeat them."""
    if not args.resume:
        return []
    from archsim.functional.train import has_checkpoint

    said = []
    for folder in folders:
        if not has_checkpoint(folder):
            said.append(f"--resume: no checkpoint in {folder}; started from step 0")
            print(f"archsim: note: --resume: no checkpoint in {folder}; starting from scratch",
                  file=sys.stderr)
    return said


def print_json(result, out: Path) -> int:
    d = result.to_dict()
    d["out_dir"] = str(out)
    print(json.dumps(d, default=float))
    return 0


def run(args) -> int:
    if args.population is not None:
        return run_population(args)
    workload, arch, device = load_inputs(args)
    from archsim.functional.train import train

    seed, out, kwargs = run_options(args, workload, f"{workload.name}-{device.name}-seed{{seed}}")
    said = note_fresh_start(args, [out])
    result = train(workload, arch, device, **kwargs)
    if args.json:
        return print_json(result, out)
    from tabulate import tabulate

    rows = [["train loss (nats/char)", f"{result.train_loss:.4f}"],
            ["valid loss (nats/char)", f"{result.valid_loss:.4f}"],
            ["test loss (nats/char)", f"{result.test_loss:.4f}"],
            ["characters seen", f"{result.chars_seen:,}"],
            ["epochs", f"{result.epochs:.3f}"],
            ["seconds", f"{result.seconds:.1f}"],
            ["tiles", result.n_tiles],
            ["data", result.data]]
    print(f"{workload.name} on {arch.name} with {device.name} ({args.update_mode} update), "
          f"lr {result.learning_rate:g}, seed {seed}")
    print(tabulate(rows, tablefmt="simple"))
    for note in result.notes:
        if note not in said:
            print(f"note: {note}")
    print(f"outputs: {out}/ (curve.png, curve.json, result.json, checkpoint.pt, checkpoint.json)",
          file=sys.stderr)
    return 0


def run_population(args) -> int:
    """``--population S S ...``: the seeds as one population (archsim.functional.train_population)."""
    seeds = list(dict.fromkeys(args.population))
    if args.seed is not None:
        raise SpecError("command line", "--seed/--population", f"{args.seed}/{seeds}",
                        "give one: --seed for one model, --population for several")
    if len(seeds) < 2:
        raise SpecError("command line", "--population", args.population, "expected two or more distinct seeds")
    workload, arch, device = load_inputs(args)
    from archsim.errors import DivergenceError
    from archsim.fsutil import check_out_dir
    from archsim.functional.train import CHECKPOINT_NAME, plot_curves, write_json
    from archsim.functional.train_population import train_population

    out = Path(args.out) if args.out else Path("runs") / (
        f"{workload.name}-{device.name}-population{'-'.join(map(str, seeds))}")
    check_out_dir(out, "--out")
    ckpt = out / CHECKPOINT_NAME
    if ckpt.is_file() and not (args.resume or args.force):
        raise SpecError(ckpt, "--out", "a folder holding a checkpoint",
                        "use --resume to continue it or --force to start over")
    if args.force and ckpt.is_file():
        ckpt.unlink()
    results = train_population(
        workload, arch, device, seeds=seeds, data_path=args.data, epochs=args.epochs,
        max_chars=args.max_chars, update_mode=args.update_mode, progress=not args.no_progress,
        torch_device=args.torch_device, learning_rate=args.lr, eval_every=args.eval_every,
        out_dir=out)
    rows, records = [], []
    for seed, r in zip(seeds, results):
        folder = out / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(r, DivergenceError):
            record = {"seed": seed, "diverged": True, "error": str(r)}
            rows.append([seed, "-", "-", "-", "diverged"])
        else:
            record = {"seed": seed, **r.to_dict()}
            write_json(folder / "curve.json", {"run": {"seed": seed, "device": r.device}, "curve": r.curve})
            plot_curves(folder / "curve.png", {f"seed {seed}": r.curve},
                        title=f"{workload.name} on {arch.name} / {r.device}, seed {seed} (population)")
            rows.append([seed, f"{r.train_loss:.4f}", f"{r.valid_loss:.4f}", f"{r.test_loss:.4f}", "finished"])
        write_json(folder / "result.json", record)
        records.append(record)
    if all(isinstance(r, DivergenceError) for r in results):
        raise results[0]
    diverged = [seed for seed, r in zip(seeds, results) if isinstance(r, DivergenceError)]

    def status() -> int:
        # Exit 3 like a single run that diverged, after the finished members' outputs: a script
        # checking the status must not take a partly diverged population for a finished one.
        if not diverged:
            return 0
        print(f"archsim: error: {len(diverged)} of {len(seeds)} members diverged (seed "
              f"{', '.join(map(str, diverged))}); {out}/seed<S>/result.json says where, the others "
              f"finished", file=sys.stderr)
        return 3

    if args.json:
        print(json.dumps({"out_dir": str(out), "members": records}, default=float))
        return status()
    from tabulate import tabulate

    done = next(r for r in results if not isinstance(r, DivergenceError))
    print(f"{workload.name} on {arch.name} with {device.name} ({args.update_mode} update), "
          f"lr {done.learning_rate:g}, population of {len(seeds)}, {done.epochs:.3f} epochs, "
          f"{done.seconds:.1f} s")
    print(tabulate(rows, headers=["seed", "train", "valid", "test (nats/char)", "state"],
                   tablefmt="simple"))
    print(f"outputs: {out}/seed<S>/ (curve.png, curve.json, result.json); checkpoint {ckpt}",
          file=sys.stderr)
    return status()
