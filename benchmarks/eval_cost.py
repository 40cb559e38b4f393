"""What one curve point costs a training run: one evaluation of the whole validation split against
one training step, side by side in one process (CPU time, one torch thread).

A run evaluates its validation split at every curve point (``train.eval_every`` steps in a sweep,
``--eval-every`` for ``archsim train``; default a tenth of an epoch), so its evaluation share is
about ``ratio / (eval_every + ratio)``: the number printed here says how much a coarser cadence
saves on a long run.

    python benchmarks/eval_cost.py --data ../shared/data/warpeace_input.txt
    python benchmarks/eval_cost.py --workload workloads/lstm2x512.yaml --data ../shared/data/linux_kernel_input.txt
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def measure(workload_path: str, data: str, device_name: str, steps: int, evals: int) -> dict:
    import torch

    from archsim.functional.data import StreamBatches, load_corpus
    from archsim.functional.train import build_model, evaluate, tenth_of_an_epoch
    from archsim.specs import load_architecture, load_device, load_workload

    torch.set_num_threads(1)
    w = load_workload(workload_path)
    arch, dev = load_architecture(w.architecture), load_device(device_name or w.device)
    B, T = w.training.batch_size, w.training.seq_len
    corpus = load_corpus(Path(data), train_fraction=w.training.train_fraction, batch_size=B)
    model = build_model(w, arch, dev, corpus.vocab_size, seed=0)
    batches = StreamBatches(corpus.train, B, T)       # the trainer's batches and steps per epoch
    ids, targets = batches.batch(0)
    state = model.zero_state(B)
    model.train_step(ids, targets, state, w.training.learning_rate)    # warm-up
    step_s = []
    for _ in range(steps):
        c0 = time.process_time()
        model.train_step(ids, targets, state, w.training.learning_rate)
        step_s.append(time.process_time() - c0)
    eval_s = []
    for k in range(evals):
        c0 = time.process_time()
        evaluate(model, corpus.valid, B, T, seed=k)
        eval_s.append(time.process_time() - c0)
    steps_per_epoch = len(batches)
    return {"workload": w.name, "device": dev.name, "valid_chars": len(corpus.valid),
            "step_s": statistics.median(step_s), "eval_s": statistics.median(eval_s),
            "default_eval_every": tenth_of_an_epoch(steps_per_epoch)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="workloads/lstm2x64.yaml")
    p.add_argument("--data", required=True, help="UTF-8 text (the corpus the workload trains on)")
    p.add_argument("--device", default=None, help="device preset (default: the workload's)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (after 1 warm-up)")
    p.add_argument("--evals", type=int, default=2, help="timed evaluations of the validation split")
    p.add_argument("--every", default="default,450,900",
                   help="cadences (steps; 'default' = a tenth of an epoch) to show the share for")
    args = p.parse_args(argv)
    if not Path(args.data).is_file():
        p.error(f"--data {args.data}: no such file")
    r = measure(args.workload, args.data, args.device, args.steps, args.evals)
    ratio = r["eval_s"] / r["step_s"]
    print(f"{r['workload']} on {r['device']}, {r['valid_chars']:,} validation characters, 1 thread, "
          f"CPU time (median of {args.steps} steps, {args.evals} evaluations):")
    print(f"  one training step      {r['step_s'] * 1e3:9.1f} ms")
    print(f"  one evaluation         {r['eval_s'] * 1e3:9.1f} ms  = {ratio:.1f} training steps")
    for every in args.every.split(","):
        n = r["default_eval_every"] if every == "default" else int(every)
        label = f"{n} (default)" if every == "default" else str(n)
        print(f"  share of a run evaluating every {label:>15} steps: {ratio / (n + ratio):6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
