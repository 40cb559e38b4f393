"""DAC/ADC quantizers: uniform levels over +-bound, rounding to nearest or stochastic.

Level spacing (aihwkit resolution ``res``, e.g. ``1/(2^bits - 2)``)::

    step = 2 * bound * res            levels k*step, k integer, clipped to +-bound
    Q_det(v) = round(v / step) * step
    Q_sto(v) = floor(v / step + u) * step,   u ~ U[0, 1)   =>  E[Q_sto(v)] = v  (unbiased)

With ``bits`` bits, ``res = 1/(2^bits - 2)`` gives ``2^bits - 1`` levels from -bound to +bound.
"""
from __future__ import annotations

import math

import torch


def level_step(res: float, bound: float) -> float:
    """Spacing of the quantizer levels; 0.0 means no quantization (``res <= 0`` or no bound)."""
    if res is None or res <= 0 or not math.isfinite(bound):
        return 0.0
    if res > 1:  # aihwkit accepts a number of steps as well as a resolution
        res = 1.0 / res
    return 2.0 * bound * res


def quantize(v: torch.Tensor, step: float, sto_round: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Round ``v`` to multiples of ``step`` (no-op for ``step <= 0``)."""
    if step <= 0:
        return v
    if sto_round:
        u = torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype)
        return torch.floor(v / step + u) * step
    return torch.round(v / step) * step


def quantize_clip(v: torch.Tensor, step: float, bound: float, sto_round: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize then clip to ``+-bound`` (a converter's transfer function)."""
    q = quantize(v, step, sto_round, generator)
    if math.isfinite(bound):
        q = q.clamp(-bound, bound)
    return q
