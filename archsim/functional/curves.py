"""Quantities derived from a training run's curve (``curve`` of a result of
:func:`archsim.functional.train.train`: one point per evaluation, each with the ``epoch`` it ends
and ``train_loss``, the mean training loss since the previous point).
"""
from __future__ import annotations


def curve_points(curve: list[dict] | None, key: str) -> list[tuple[float, float]]:
    """``(epoch, p[key])`` of the curve's points that have both, in the curve's order."""
    return [(float(p["epoch"]), float(p[key])) for p in curve or []
            if isinstance(p, dict) and p.get("epoch") is not None and p.get(key) is not None]


def _epoch_train_loss(pts: list[tuple[float, float]], end: float) -> float | None:
    """The training loss over the epoch ending at ``end``: each point's loss weighted by how much of
    its span (from the previous point) lies in ``(end - 1, end]``. None before epoch 1."""
    if end < 1.0 - 1e-9:
        return None
    start = end - 1.0
    total = weight = 0.0
    prev = 0.0
    for epoch, loss in pts:
        overlap = min(epoch, end) - max(prev, start)
        if overlap > 1e-12:
            total += loss * overlap
            weight += overlap
        prev = epoch
    return total / weight if weight > 0 else None


def last_epoch_train_loss(result: dict) -> float | None:
    """The training loss over the run's last epoch, from its curve (each point's ``train_loss`` is
    the mean since the previous point; weighted by how much of its span lies in the last epoch).
    The fit of the whole training text is what overfitting is about, and the trainer's own
    ``train_loss`` covers only the last tenth of an epoch. None without a curve reaching back one
    epoch (then the trainer's ``train_loss`` stands)."""
    pts = curve_points(result.get("curve"), "train_loss")
    return _epoch_train_loss(pts, pts[-1][0]) if pts else None


def fit_curve(curve: list[dict] | None) -> list[tuple[float, float, float]]:
    """``(epoch m, training loss, validation loss)`` of the model at epoch ``m``, one per curve point
    ``e`` whose epoch ``(e - 1, e]`` the curve covers: both losses are means over that epoch, the
    training loss as :func:`last_epoch_train_loss` measures a run's end (a half-epoch mean alone
    swings with the half of the text it covers), the validation loss as the time average of the
    curve's validation points (linear between them). A mean over a window is, to first order in
    the loss's slope, the loss of the model at the window's middle ``m = e - 1/2``, so the two are
    paired there. Paired at ``e`` instead, a run that is still learning fast would show a gap
    smaller by about half its fall over an epoch (0.05 nats/char at epoch 7 of the floating-point
    run in reports/reproduce/full). Averaging the validation loss too, rather than reading it at
    ``m``, keeps out a half-epoch ripple: on War and Peace with B contiguous streams, validation
    after a whole epoch runs 0.003-0.01 nats/char below the mean of its two neighbours, and after a
    half epoch about as much above it (all three runs in reports/reproduce/full)."""
    pts = curve_points(curve, "train_loss")
    valid = curve_points(curve, "valid_loss")
    out = []
    for epoch, _ in pts:
        train = _epoch_train_loss(pts, epoch)   # later points add nothing to an epoch ending here
        v = _window_mean(valid, epoch - 1.0, epoch)
        if train is not None and v is not None:
            out.append((epoch - 0.5, train, v))
    return out


def _window_mean(pts: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The time average over ``[start, end]`` of the curve through ``pts`` (sorted by their first
    element; linear between neighbours); None unless ``pts`` span the window."""
    if len(pts) < 2 or start < pts[0][0] - 1e-9 or end > pts[-1][0] + 1e-9:
        return None
    total = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        a, b = max(x0, start), min(x1, end)
        if b - a > 1e-12:
            ya, yb = (y0 + (x - x0) / (x1 - x0) * (y1 - y0) for x in (a, b))
            total += (ya + yb) / 2 * (b - a)
    return total / (end - start)


def result_last_epoch_train_loss(result: dict) -> float | None:
    """A stored result's last-epoch training loss: its ``train_loss_last_epoch`` where it has one
    (:func:`archsim.sweep.evaluate.train_result` stores it), else from its curve (results stored
    before that field was, or made by hand)."""
    stored = result.get("train_loss_last_epoch")
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return float(stored)
    return last_epoch_train_loss(result)
