"""Continue a training checkpoint step by step with one thing changed, to see what makes it diverge.

Loads ``checkpoint.pt`` of an ``archsim train`` run (its weights, device variations, generators and
hidden state, without the run-key check, so that another learning rate, clip or periphery may be
tried on the same state), then trains N more steps on the same batches the run would have seen and
prints, per step, the training loss, the largest LSTM cell state and the output matrix's largest
and RMS weight. ``--as-ideal`` copies the weights into a floating-point model first: if that one
diverges too, the devices' update is not what drives the divergence.

Used for the LSTM2-512 rpu_baseline run at lr 0.02 with errors clipped at 0.05 (README here):

    python reports/lstm2x512_linux_fp_vs_rpu/diagnose_divergence.py RUN_DIR \\
        reports/lstm2x512_linux_fp_vs_rpu/lstm2x512_clip.yaml --data ../shared/data/linux_kernel_input.txt \\
        --steps 12 [--lr 0.01] [--grad-clip 0.01] [--as-ideal] [--device-override '{"dw_min_std": 0}'] \\
        [--arch-override '{"periphery": {"out_noise": 0}}'] [--generator-seed 5]
"""
from __future__ import annotations

import argparse
import json
import math

import torch

from archsim.functional import train as T
from archsim.functional.data import StreamBatches, load_corpus, resolve_data_path
from archsim.specs import load_architecture, load_device, load_workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="folder holding the run's checkpoint.pt and checkpoint.json")
    p.add_argument("workload")
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--lr", type=float, help="default: the workload's")
    p.add_argument("--grad-clip", type=float, help="default: the workload's")
    p.add_argument("--as-ideal", action="store_true", help="continue in floating point from the weights")
    p.add_argument("--device-override", default="{}", help="JSON overrides of the run's device")
    p.add_argument("--arch-override", default="{}", help="JSON overrides of the run's architecture")
    p.add_argument("--generator-seed", type=int, help="reseed the tiles' generator (other draws)")
    args = p.parse_args()
    torch.set_num_threads(1)

    meta = json.loads(open(f"{args.run_dir}/checkpoint.json").read())
    wl = load_workload(args.workload)
    arch = load_architecture(meta["architecture"], json.loads(args.arch_override) or None)
    device = load_device(meta["device"], json.loads(args.device_override) or None)
    tr = wl.training
    corpus = load_corpus(resolve_data_path(args.data, wl), train_fraction=tr.train_fraction,
                         batch_size=tr.batch_size, seq_len=tr.seq_len)
    batches = StreamBatches(corpus.train, tr.batch_size, tr.seq_len)
    model = T.build_model(wl, arch, device, corpus.vocab_size, seed=meta["seed"],
                          update_mode=meta["update_mode"])
    ck = torch.load(f"{args.run_dir}/checkpoint.pt", weights_only=True)
    T._load_model_state(model, ck["model"])
    state = list(ck["state"])
    step = int(ck["step"])
    if args.generator_seed is not None:
        model.tile_generator.manual_seed(args.generator_seed)
    if args.as_ideal:
        fp = T.build_model(wl, arch, load_device("ideal"), corpus.vocab_size, seed=meta["seed"])
        for a, b in zip(fp.matrices, model.matrices):
            a.set_weights(b.weight.clone())
        model = fp
    if args.grad_clip is not None:
        model.grad_clip = args.grad_clip
    lr = args.lr if args.lr is not None else tr.learning_rate
    print(f"from step {step} of {args.run_dir}: lr {lr:g}, grad_clip {model.grad_clip}, "
          f"{'floating point' if args.as_ideal else device.name}, device overrides "
          f"{args.device_override}, architecture overrides {args.arch_override}")
    limit = 3 * math.log(corpus.vocab_size)
    for _ in range(args.steps):
        x, y = batches.batch(step % len(batches))
        loss, state = model.train_step(x, y, state, lr)
        step += 1
        c_max = max(float(c.abs().max()) for _, c in state)
        w = model.output.weight
        print(f"step {step}: loss {loss:.3f} nats/char, max|c| {c_max:.2f}, output max|W| "
              f"{float(w.abs().max()):.3f} rms {float(w.pow(2).mean().sqrt()):.4f}", flush=True)
        if not math.isfinite(loss) or loss > limit:
            print(f"diverged (loss above 3 ln V = {limit:.3g})")
            break


if __name__ == "__main__":
    import sys

    from archsim.errors import ArchsimError

    try:
        main()
    except (ArchsimError, OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        # One line, exit 2: a missing or foreign run folder, a bad override, a bad spec.
        print(f"diagnose_divergence: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
