"""Where the weights of a floating-point run and an rpu_baseline run ended, matrix by matrix: do the
device run's weights sit on their devices' bounds, and would the floating-point run's weights fit
inside them?

Reads the final ``checkpoint.pt`` of two ``archsim train`` runs of the same workload (the weights,
and for the device run every device's own bounds ``w_min``/``w_max`` and step sizes) and prints,
per matrix: the RMS and the 99th percentile and largest ``|w|`` on each side; the share of the
device run's devices within one step of a bound (``w >= w_max - step_up`` or
``w <= w_min + step_down``); and the share of the floating-point run's weights that lie outside the
bounds of the device at the same place (those the devices could not hold).

With ``--workload`` (the runs' workload file) it also rebuilds both models' initial weights from
the runs' seed and prints how far the weights moved, ``rms |w - w0|`` (each side from its own
``w0``: the same distribution, other draws, as the device model draws its device variations from
the same generator first), beside what the device
update's sampling noise alone would give: a random walk of ``n_ij`` steps (the device's recorded
coincidences; expected values in fast mode) of size ``step_up``/``step_down`` with cycle-to-cycle
spread ``dw_min_std``, ``sqrt(mean_ij(n_ij (step_up^2 + step_down^2) / 2 (1 + dw_min_std^2)))``;
and the drift of each device's own up/down imbalance if half its coincidences went each way,
``rms_ij(n_ij / 2 (step_up - step_down))``. The three parts (floating point's movement standing
for the learned signal) added in quadrature can be set against the device run's movement.
Used for the lr 0.01 + clip pair (README here):

    python reports/lstm2x512_linux_fp_vs_rpu/weight_stats.py FP_RUN_DIR RPU_RUN_DIR \\
        --workload reports/lstm2x512_linux_fp_vs_rpu/lstm2x512_lr0.01_clip.yaml

Bad input (a folder without a checkpoint, checkpoints of different shapes, a device run without
device tensors) is one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def fail(message: str) -> None:
    print(f"weight_stats.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load(run_dir: str) -> tuple[dict, dict]:
    meta_path, ckpt_path = Path(run_dir) / "checkpoint.json", Path(run_dir) / "checkpoint.pt"
    if not ckpt_path.is_file() or not meta_path.is_file():
        fail(f"{run_dir}: no checkpoint.pt and checkpoint.json (an archsim train --out folder)")
    try:
        meta = json.loads(meta_path.read_text())
        ck = torch.load(ckpt_path, weights_only=True)
        tiles = ck["model"]["tiles"]
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        fail(f"{ckpt_path}: cannot read it as an archsim checkpoint ({type(exc).__name__})")
    return meta, {"step": ck["step"], "tiles": tiles}


def matrix(tiles: dict, i: int) -> dict:
    """Matrix ``i`` (one tile: the shipped LSTM2-512 maps each matrix onto a single array)."""
    parts = tiles[i]
    if len(parts) != 1:
        fail(f"matrix {i} is split over {len(parts)} arrays; this script reads single-array matrices")
    return parts[0]


def rms(t: torch.Tensor) -> float:
    """Root mean square, in double precision."""
    return float(t.double().pow(2).mean().sqrt())


def pct(t: torch.Tensor) -> str:
    return f"{100.0 * float(t.double().mean()):.2f} %"


def quantile(t: torch.Tensor, q: float) -> float:
    flat = t.flatten().double()
    k = max(1, int(round(q * flat.numel())))
    return float(flat.kthvalue(k).values)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fp_run", help="the floating-point run's --out folder")
    p.add_argument("rpu_run", help="the device run's --out folder")
    p.add_argument("--workload", help="the runs' workload file: also compare with the initial weights")
    p.add_argument("--device", help="with --workload: the device run's device file, when it was not "
                   "a preset (default: the preset its checkpoint names)")
    args = p.parse_args(argv)
    fp_meta, fp = load(args.fp_run)
    rpu_meta, rpu = load(args.rpu_run)
    names = ["lstm1", "lstm2", "output"] if len(fp["tiles"]) == 3 else [f"matrix {i}" for i in range(len(fp["tiles"]))]
    if len(fp["tiles"]) != len(rpu["tiles"]):
        fail(f"{args.fp_run} has {len(fp['tiles'])} matrices, {args.rpu_run} {len(rpu['tiles'])}")
    # The second table first, so that a bad workload or device file fails before any output.
    movement = moved(args.workload, names, fp_meta, fp, rpu_meta, rpu, args.device) if args.workload else None
    print(f"floating point: {fp_meta['device']}, step {fp['step']} of {fp_meta['total_steps']} "
          f"(workload {fp_meta['workload']}, seed {fp_meta['seed']})")
    print(f"device run:     {rpu_meta['device']}, step {rpu['step']} of {rpu_meta['total_steps']} "
          f"(workload {rpu_meta['workload']}, seed {rpu_meta['seed']})")
    header = ("matrix", "side", "rms |w|", "p99 |w|", "max |w|", "at a bound", "outside the devices' bounds")
    rows = []
    for i, name in enumerate(names):
        a, b = matrix(fp["tiles"], i), matrix(rpu["tiles"], i)
        w_fp, w = a["weight"], b["weight"]
        dev = b.get("devices") or {}
        if not {"w_min", "w_max", "step_up", "step_down"} <= set(dev):
            fail(f"{args.rpu_run}: matrix {i} has no device tensors (a floating-point run?)")
        if w_fp.shape != w.shape:
            fail(f"matrix {i}: shapes {tuple(w_fp.shape)} and {tuple(w.shape)} differ")
        w_min, w_max = dev["w_min"], dev["w_max"]
        at_bound = (w >= w_max - dev["step_up"].abs()) | (w <= w_min + dev["step_down"].abs())
        outside = (w_fp > w_max) | (w_fp < w_min)
        for side, t, bound, out in (("floating point", w_fp, "-", pct(outside)),
                                    (rpu_meta["device"], w, pct(at_bound), "-")):
            rows.append((name, side, f"{rms(t):.3f}",
                         f"{quantile(t.abs(), 0.99):.3f}", f"{float(t.abs().max()):.3f}", bound, out))
        rows.append((name, "device bounds", "-", f"w_max p1 {quantile(w_max, 0.01):.3f}",
                     f"w_max min {float(w_max.min()):.3f}", "-", "-"))
    print_table(header, rows)
    if movement is not None:
        print()
        print_table(*movement)


def print_table(header, rows) -> None:
    widths = [max(len(str(r[c])) for r in rows + [header]) for c in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(v).ljust(wd) for v, wd in zip(r, widths)).rstrip())


def moved(workload_path: str, names, fp_meta, fp, rpu_meta, rpu, device_path: str | None = None):
    """How far each side's weights moved from their initial values, and the random walk that the
    device run's coincidences alone would give."""
    from archsim.errors import SpecError
    from archsim.functional.train import build_model
    from archsim.specs import load_architecture, load_device, load_workload

    try:
        wl = load_workload(workload_path)
        arch = load_architecture(rpu_meta["architecture"])
        device = load_device(device_path or rpu_meta["device"])
        ideal = load_device(fp_meta["device"])
    except SpecError as exc:
        fail(str(exc))
    if fp_meta["seed"] != rpu_meta["seed"]:
        fail(f"the runs have different seeds ({fp_meta['seed']}, {rpu_meta['seed']})")
    vocab = matrix(fp["tiles"], len(names) - 1)["weight"].shape[0]
    init = {}
    for side, spec in (("fp", ideal), ("rpu", device)):
        model = build_model(wl, arch, spec, vocab, seed=rpu_meta["seed"], update_mode=rpu_meta["update_mode"])
        init[side] = [m.tiles[0].weight.detach().clone() for m in model.matrices]
    std = float(getattr(device, "dw_min_std", 0.0) or 0.0)
    header = ("matrix", "rms |w0| (fp, device)", "moved fp", "moved device", "random walk", "imbalance drift",
              "the three in quadrature", "coincidences per device (mean)")
    rows = []
    for i, name in enumerate(names):
        a, b = matrix(fp["tiles"], i), matrix(rpu["tiles"], i)
        dev, n = b["devices"], b["device_writes"].double()
        walk = (n * (dev["step_up"].double() ** 2 + dev["step_down"].double() ** 2) / 2
                * (1 + std ** 2)).mean().sqrt()
        drift = rms(n / 2 * (dev["step_up"].double() - dev["step_down"].double()))
        moved_fp = rms(a["weight"] - init["fp"][i])
        moved_dev = rms(b["weight"] - init["rpu"][i])
        total = (moved_fp ** 2 + float(walk) ** 2 + float(drift) ** 2) ** 0.5
        rms0 = [f"{rms(init[k][i]):.3f}" for k in ("fp", "rpu")]
        rows.append((name, ", ".join(rms0),
                     f"{moved_fp:.3f}", f"{moved_dev:.3f}", f"{float(walk):.3f}", f"{float(drift):.3f}",
                     f"{total:.3f}", f"{float(n.mean()):,.0f}"))
    return header, rows


if __name__ == "__main__":
    main()
