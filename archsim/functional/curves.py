"""Quantities derived from a training run's curve (``curve`` of a result of
:func:`archsim.functional.train.train`: one point per evaluation, each with the ``epoch`` it ends
and ``train_loss``, the mean training loss since the previous point).
"""
from __future__ import annotations


def last_epoch_train_loss(result: dict) -> float | None:
    """The training loss over the run's last epoch, from its curve (each point's ``train_loss`` is
    the mean since the previous point; weighted by how much of its span lies in the last epoch).
    The fit of the whole training text is what overfitting is about, and the trainer's own
    ``train_loss`` covers only the last tenth of an epoch. None without a curve reaching back one
    epoch (then the trainer's ``train_loss`` stands)."""
    pts = [(float(p["epoch"]), float(p["train_loss"])) for p in result.get("curve") or []
           if isinstance(p, dict) and p.get("epoch") is not None and p.get("train_loss") is not None]
    if not pts:
        return None
    end = pts[-1][0]
    start = end - 1.0
    if end < 1.0 - 1e-9:
        return None
    total = weight = 0.0
    prev = 0.0
    for epoch, loss in pts:
        overlap = min(epoch, end) - max(prev, start)
        if overlap > 1e-12:
            total += loss * overlap
            weight += overlap
        prev = epoch
    return total / weight if weight > 0 else None


def result_last_epoch_train_loss(result: dict) -> float | None:
    """A stored result's last-epoch training loss: its ``train_loss_last_epoch`` where it has one
    (:func:`archsim.sweep.evaluate.train_result` stores it), else from its curve (results stored
    before that field was, or made by hand)."""
    stored = result.get("train_loss_last_epoch")
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return float(stored)
    return last_epoch_train_loss(result)
