"""Does a paper-scale run that the trainer declared diverged (training loss above 3 ln V) recover
if it is let go on? Trains one point of the paper-scale asymmetry sweep (LSTM2-64 on War and Peace,
the workload's learning rate, the sweep's seed) with the divergence stop switched off, and writes
its curve. Run from the repository root:

    python reports/reproduce/full/diagnostics/divergence/let_go_on.py ideal 2 0.0 300 30 > ..._fp_s2.json
    python reports/reproduce/full/diagnostics/divergence/let_go_on.py rpu_baseline 1 0.01 5400 90 > ..._1pct_s1.json

Arguments: device preset, seed, up_down, steps, steps between curve points.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import archsim.functional.train as trainer
from archsim.specs import load_architecture, load_device, load_workload

ROOT = Path(__file__).resolve().parents[5]


def main(argv: list[str]) -> int:
    device_name, seed, up_down, steps, every = argv[0], int(argv[1]), float(argv[2]), int(argv[3]), int(argv[4])
    torch.set_num_threads(1)
    trainer.DIVERGENCE_FACTOR = float("inf")      # never stop: see where the loss goes
    w = load_workload(ROOT / "workloads" / "lstm2x64.yaml")
    device = load_device(device_name)
    if up_down:
        device = device.model_copy(update={"up_down": up_down})
    data = Path(os.environ.get("ARCHSIM_DATA_DIR", ROOT.parent / "shared" / "data")) / "warpeace_input.txt"
    B, T = w.training.batch_size, w.training.seq_len
    r = trainer.train(w, load_architecture("rpu2016"), device, data_path=data, max_chars=steps * B * T,
                      seed=seed, progress=False, eval_every=every)
    print(json.dumps({"device": device_name, "up_down": up_down, "seed": seed, "steps": steps,
                      "valid_loss": r.valid_loss, "test_loss": r.test_loss,
                      "curve": [{"step": p["step"], "train_loss": p["train_loss"],
                                 "valid_loss": p.get("valid_loss")} for p in r.curve]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
