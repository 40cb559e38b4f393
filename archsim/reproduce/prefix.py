"""The overfitting claim's sweep runner: the sweep machinery (expansion, keys, the resumable JSONL
store, local or Dask backends) with a worker that trains on a prefix of the workload's text.

The prefix is the first ``training.train_chars / training.train_fraction`` characters, split by
``train_fraction`` as usual, so that a model large enough to overfit does so in minutes. The trainer
itself always uses the whole text.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archsim.errors import SpecError


def prefix_corpus(workload):
    """The first ``train_chars / train_fraction`` characters of the workload's text as a corpus."""
    from archsim.functional.data import corpus_from_text, read_text, resolve_data_path

    t = workload.training
    path = resolve_data_path(None, workload)
    if path is None:
        raise SpecError(f"workload {workload.name}", "training.data", None,
                        "the overfitting claim needs a text file (training.data)")
    text = read_text(path)
    n = len(text) if t.train_chars is None else min(len(text), math.ceil(t.train_chars / t.train_fraction))
    return corpus_from_text(text[:n], train_fraction=t.train_fraction,
                            source=f"{path.name}[:{n}]", batch_size=t.batch_size, seq_len=t.seq_len)


def prefix_train_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker function of :func:`run_prefix_sweep`: train one point on the prefix corpus.

    Returns ``{key, result, seconds}`` (result: the scalar losses, the best validation loss, and the
    per-epoch curve) or ``{key, error}``, as :func:`archsim.sweep.evaluate.run_task` does.
    """
    from archsim.sweep.evaluate import worker_output

    return worker_output(task, _train_on_prefix)


def _train_on_prefix(task: dict[str, Any]) -> dict[str, Any]:
    from archsim.sweep.evaluate import point_failures, resolve_checked

    workload, arch, device = resolve_checked(task)
    with point_failures(task, (workload, arch, device)):   # the point's own specs: a failed point
        return _train_prefix_point(task, workload, arch, device)


def _train_prefix_point(task: dict[str, Any], workload, arch, device) -> dict[str, Any]:
    from archsim.functional.data import StreamBatches
    from archsim.functional.train import train
    from archsim.sweep.evaluate import train_result, train_run_options

    opts = task["options"]
    corpus = prefix_corpus(workload)
    epochs = opts.get("epochs") or workload.training.epochs
    # A curve point per epoch unless the sweep sets train.eval_every; a paper-scale point (hours)
    # checkpoints into its folder like any train point and continues from there when rerun.
    per_epoch = StreamBatches.steps_per_epoch(len(corpus.train), workload.training.batch_size,
                                              workload.training.seq_len)
    kwargs: dict[str, Any] = dict(corpus=corpus, **train_run_options(task, train, max(1, per_epoch)))
    if opts.get("max_chars"):
        kwargs["max_chars"] = opts["max_chars"]
    else:
        kwargs["epochs"] = epochs
    outcome = train(workload, arch, device, **kwargs)  # divergence: worker_output records it
    result = train_result(outcome)
    curve = [{k: p.get(k) for k in ("epoch", "train_loss", "valid_loss")} for p in outcome.curve
             if not p.get("final")]
    valid = [p["valid_loss"] for p in curve if p.get("valid_loss") is not None] + [outcome.valid_loss]
    result.update(curve=curve, valid_best=min(valid), train_text_chars=len(corpus.train))
    return result


def run_prefix_sweep(sweep_path: str | Path, *, backend: str = "local", address: str | None = None,
                     jobs: int | None = None, out: str | Path | None = None, progress: bool = True,
                     **kwargs):
    """:func:`archsim.sweep.run_sweep` with :func:`prefix_train_task` as the worker (train sweeps only);
    other keyword arguments (``connect_timeout``, ``stored_only``) go to it."""
    from archsim.sweep import load_sweep, run_sweep

    sweep = load_sweep(sweep_path)
    if sweep.spec.kind != "train":
        raise sweep.error("kind", sweep.spec.kind, "the overfitting claim's sweep must be kind: train")
    return run_sweep(sweep_path, backend=backend, address=address, jobs=jobs, out=out,
                     progress=progress, worker=prefix_train_task, **kwargs)
