"""Tiki-Taka study (issue 14, item 5): LSTM2-64 on War and Peace, plain pulsed SGD vs Tiki-Taka on
devices with 0, 2, 5 and 10 % update asymmetry and on two technology presets: test loss, time and
energy per step and per epoch against the SGD design, and device lifetime from the measured writes.

Each point is one ``archsim run`` (library: :func:`archsim.activity_run.activity_run`): training
on the functional simulator, then the estimate of the same schedule nominally and from the
measured activity. A point's result is written atomically to ``points/<label>-seed<S>.json`` as it
finishes; rerunning skips finished points, so an interrupted study resumes where it stopped.

    python reports/tiki_taka/study.py run [--steps 900] [--seeds 0] [--only SUBSTRING]
    python reports/tiki_taka/study.py summarize          # README.md and loss.png from points/

Needs War and Peace ($ARCHSIM_DATA_DIR or ../shared/data next to the checkout).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
POINTS = HERE / "points"
WORKLOAD = ROOT / "workloads" / "lstm2x64.yaml"
LEARNING_RATE = 0.1          # as the reproduce sweeps: leaves the plateau within one epoch
ARCH = "rpu2016"

#: Tiki-Taka settings of every TT point: one transfer per training step of 100 columns of A (in
#: turn), pulsed onto C with transfer_lr; gamma 0 (the network reads C only).
TT = {"transfer_every": 3200, "n_reads_per_transfer": 100, "transfer_lr": 0.5, "gamma": 0.0}

#: (device preset, asymmetry shown in the tables or None for a technology preset)
#: In the order they run (technology presets first) and are tabulated.
DEVICES = [("ecram_tang2018", None), ("reram_es_gong2018", None), ("rpu_baseline", 0.0),
           ("rpu_asym10", 0.10), ("rpu_asym5", 0.05), ("rpu_asym2", 0.02)]
ALGORITHMS = ["sgd", "tiki_taka", "tiki_taka_v2"]
TRAIN_KEYS = ("train_loss", "valid_loss", "test_loss", "steps", "chars_seen", "epochs", "diverged")


def points() -> list[dict]:
    out = [{"label": "fp", "device": "ideal", "algorithm": "sgd", "asymmetry": None}]
    for device, asym in DEVICES:
        for alg in ALGORITHMS:
            out.append({"label": f"{device}-{alg}", "device": device, "algorithm": alg,
                        "asymmetry": asym})
    return out


def _arch(algorithm: str):
    from archsim.specs import load_architecture

    over = {"update.algorithm": algorithm}
    if algorithm != "sgd":
        over.update({f"update.{k}": v for k, v in TT.items()})
    return load_architecture(ARCH, overrides=over)


def _data() -> Path:
    for base in (os.environ.get("ARCHSIM_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if base and (Path(base) / "warpeace_input.txt").is_file():
            return Path(base) / "warpeace_input.txt"
    sys.exit("War and Peace not found: set ARCHSIM_DATA_DIR or put ../shared/data beside the checkout")


def estimate_summary(p: dict) -> dict:
    """Time, energy, area and endurance of a point's design, from its measured activity."""
    from archsim.activity import ActivityProfile
    from archsim.estimate import estimate
    from archsim.specs import load_device, load_workload

    est = estimate(load_workload(WORKLOAD), _arch(p["algorithm"]), load_device(p["device"]),
                   activity=ActivityProfile(**p["activity"]), baselines=[])
    data = est.to_json()
    keep = ("tiles", "time_per_step_s", "time_per_epoch_s", "energy_per_step_J",
            "energy_per_epoch_J", "area_m2", "static_W", "steps_per_epoch", "tiki_taka",
            "endurance", "energy_breakdown_J")
    return {k: data.get(k) for k in keep}


def run_point(p: dict, *, steps: int, seed: int) -> dict:
    from archsim.activity_run import activity_run
    from archsim.specs import load_device, load_workload

    workload = load_workload(WORKLOAD)
    t0 = time.time()
    if p["device"] == "ideal":
        # Floating point: accuracy only (an ideal device makes no pulses to measure).
        from archsim.functional.train import train as train_fn

        train = train_fn(workload, _arch("sgd"), load_device("ideal"), data_path=_data(),
                         max_chars=steps * 3200, seed=seed, learning_rate=LEARNING_RATE,
                         progress=False).to_dict()
        return {**p, "seed": seed, "steps": steps, "learning_rate": LEARNING_RATE, "tt": None,
                "seconds": time.time() - t0, "curve": train.get("curve"),
                "train": {k: train.get(k) for k in TRAIN_KEYS}}
    res = activity_run(workload, _arch(p["algorithm"]), load_device(p["device"]), steps=steps,
                       seed=seed, data_path=_data(), learning_rate=LEARNING_RATE)
    train = res.train.to_dict()
    return {**p, "seed": seed, "steps": steps, "learning_rate": LEARNING_RATE,
            "tt": TT if p["algorithm"] != "sgd" else None, "seconds": time.time() - t0,
            "train": {k: train.get(k) for k in TRAIN_KEYS},
            "curve": train.get("curve"),
            # The measured activity, re-priced by summarize with the code of the day.
            "activity": res.activity.model_dump(mode="json")}


def _write_atomic(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    tmp.replace(path)


def cmd_run(args) -> None:
    from archsim.errors import DivergenceError

    POINTS.mkdir(exist_ok=True)
    todo = [(p, s) for s in args.seeds for p in points() if not args.only or args.only in p["label"]]
    for p, seed in todo:
        path = POINTS / f"{p['label']}-seed{seed}.json"
        if path.exists():
            continue
        print(f"{time.strftime('%H:%M:%S')} {path.name} ...", flush=True)
        try:
            result = run_point(p, steps=args.steps, seed=seed)
        except Exception as exc:   # a diverged or failed point is recorded, the study goes on
            result = {**p, "seed": seed, "steps": args.steps, "error": f"{type(exc).__name__}: {exc}"}
            if isinstance(exc, DivergenceError):
                result["train"] = {"diverged": True}
        _write_atomic(path, result)
        print(f"{time.strftime('%H:%M:%S')} {path.name}: "
              f"{result.get('train', {}).get('test_loss', result.get('error'))}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--steps", type=int, default=900)
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--only")
    sub.add_parser("summarize")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        import torch

        torch.set_num_threads(1)   # 64 units: per-op overhead dominates, threads only contend
        cmd_run(args)
    else:
        from summarize import summarize   # reports/tiki_taka/summarize.py
        summarize(POINTS, HERE, [d for d, _ in DEVICES], estimate_summary)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
