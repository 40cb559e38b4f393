"""Claim ``macs``: the paper's LSTM workloads are about 1500x the MNIST MLP in multiply-adds per epoch
(counted from the shipped workload files, no training; analysis and plot)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.errors import SpecError
from archsim.reproduce.analysis import Analysis
from archsim.reproduce.figures import _figure, _save
from archsim.reproduce.registry import repo_root

#: The paper's ratio of multiply-adds per epoch (LSTM2-512 on the Linux corpus vs the MNIST MLP).
PAPER_MAC_RATIO = 1500.0
#: The MNIST multilayer perceptron of the RPU papers.
MLP_LAYERS = (784, 256, 128, 10)
#: Training images per MNIST epoch.
MNIST_TRAIN_IMAGES = 60_000

MAC_WORKLOADS = ("lstm2x64", "lstm2x512", "lstm3x512")


def mlp_weights(layers: tuple[int, ...] = MLP_LAYERS, biases: bool = True) -> int:
    """Weights of a fully connected network with these layer widths (biases included by default)."""
    return sum(a * b + (b if biases else 0) for a, b in zip(layers, layers[1:]))


def corpus_chars(workload) -> int:
    """Characters of a workload's whole text: ``train_chars / train_fraction`` (the 90 % training
    split scaled back to the corpus), or the file's length when train_chars is unset."""
    t = workload.training
    if t.train_chars is not None:
        # The split keeps floor(fraction * n) characters: the smallest n consistent with train_chars.
        return math.ceil(t.train_chars / t.train_fraction - 1e-9)
    from archsim.specs.loader import text_length

    return text_length(workload.data_path())


def analyse_macs(workloads: dict[str, Any], *, reference: str = "lstm2x512",
                 paper_ratio: float = PAPER_MAC_RATIO) -> Analysis:
    """Multiply-adds per epoch of LSTM workloads against the MNIST MLP.

    Convention: one multiply-add per weight (biases included) per sample in the forward pass; an
    epoch presents every sample once (60,000 MNIST images; every character of the corpus for a char
    LSTM, the paper's 6.2M for the Linux corpus). The backward pass and the update cost one more
    multiply-add per weight and sample each in both networks, so the ratio is the same for a whole
    training epoch. holds: the reference workload's ratio is within 10 % of ``paper_ratio``;
    partly: within a factor of 2; does not hold otherwise.
    """
    mlp_w = mlp_weights()
    mlp_macs = mlp_w * MNIST_TRAIN_IMAGES
    table = [{"model": "MNIST MLP 784-256-128-10", "weights (incl. biases)": f"{mlp_w:,}",
              "samples per epoch": f"{MNIST_TRAIN_IMAGES:,} images", "MACs per epoch": f"{mlp_macs:.3e}",
              "ratio to MLP": "1"}]
    ratios: dict[str, float] = {}
    macs: dict[str, float] = {"MNIST MLP": float(mlp_macs)}
    split: dict[str, float] = {}
    for name, w in workloads.items():
        n_w = w.model.n_weights()
        chars = corpus_chars(w)
        m = n_w * chars
        ratios[name] = m / mlp_macs
        macs[name] = float(m)
        split[name] = n_w * w.resolved_train_chars() / mlp_macs
        data = w.training.data or "text"
        table.append({"model": f"{name} ({w.model.layers}x{w.model.hidden_size}, V={w.model.vocab_size})",
                      "weights (incl. biases)": f"{n_w:,}", "samples per epoch": f"{chars:,} chars of {data}",
                      "MACs per epoch": f"{m:.3e}", "ratio to MLP": f"{ratios[name]:.0f}"})
    metrics = {"mlp_weights": mlp_w, "mlp_macs": mlp_macs, "ratios": ratios, "macs": macs,
               "ratio_train_split": split, "paper_ratio": paper_ratio}
    notes = ["Convention: one multiply-add per weight (biases included) per sample, forward pass; an "
             "epoch presents every sample once (MNIST: 60,000 training images; char LSTM: every "
             "character of the corpus, as the paper's 6.2M). Backward pass and update add one "
             "multiply-add per weight and sample each in both networks, so the ratio also holds for "
             "whole training epochs."]
    if reference not in ratios:
        return Analysis("not tested", f"Not tested: workload {reference} is missing.", table, metrics, notes)
    w = workloads[reference]
    r = ratios[reference]
    off = r / paper_ratio - 1
    metrics["reference_ratio"] = r
    body = (f"{reference} ({w.model.n_weights():,} weights incl. biases x {corpus_chars(w):,} "
            f"characters = {macs[reference]:.3g} multiply-adds per epoch) is {r:.0f}x the MNIST MLP "
            f"({mlp_w:,} weights x {MNIST_TRAIN_IMAGES:,} images = {mlp_macs:.3g}), {off:+.1%} from "
            f"the paper's ~{paper_ratio:.0f}x; counting only the 90 % training split it is "
            f"{split[reference]:.0f}x")
    if abs(off) <= 0.10:
        return Analysis("holds", f"Holds in our count: {body}.", table, metrics, notes)
    if 0.5 <= r / paper_ratio <= 2:
        return Analysis("partly", f"Holds partly in our count: {body}.", table, metrics, notes)
    return Analysis("does not hold", f"Does not hold in our count: {body}.", table, metrics, notes)


def plot_macs(analysis: Analysis, path: Path) -> Path:
    m = analysis.metrics
    fig, ax = _figure()
    names = list(m["macs"])
    ax.bar(range(len(names)), [m["macs"][n] for n in names], color=["C7"] + ["C0"] * (len(names) - 1))
    for i, n in enumerate(names[1:], start=1):
        ax.annotate(f"{m['ratios'][n]:.0f}x", (i, m["macs"][n]), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("multiply-adds per epoch (forward)")
    ax.set_title("Multiply-adds per epoch versus the MNIST MLP")
    return _save(fig, ax, path, legend=False)


def macs_workloads(root: Path | None = None) -> dict[str, Any]:
    """The shipped LSTM workloads the macs claim compares (workloads/<name>.yaml of the checkout)."""
    from archsim.specs import load_workload

    root = root or repo_root()
    out = {}
    for name in MAC_WORKLOADS:
        path = root / "workloads" / f"{name}.yaml"
        if not path.is_file():
            path = Path("workloads") / f"{name}.yaml"
        if not path.is_file():
            raise SpecError(path, "", str(path), "no such workload file (archsim reproduce macs "
                            "runs from a checkout holding workloads/)")
        out[name] = load_workload(path)
    return out
