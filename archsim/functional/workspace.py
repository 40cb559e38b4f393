"""Tensors kept between calls, by name.

A training step's large temporaries (a population's update operands, a whole sequence's DAC
inputs) are the same few shapes on every step. Allocated afresh, each one past the allocator's
reuse threshold (glibc's 32 MiB) is mapped anew and faults in its pages again on every call,
which costs more than the arithmetic on it; kept here, they are allocated once.
"""
from __future__ import annotations

import math

import torch


class Workspace:
    """Tensors kept between calls, by name, on one device (contents undefined on every call).

    ``ws(name, shape)`` gives a tensor of exactly that shape, made anew when the shape or dtype
    changes; ``ws.at_least(name, shape)`` a view into a flat tensor that only grows, for a
    temporary whose shape varies between calls (a block of a varying number of timesteps). A
    name is for one temporary at a time: a caller may hold the tensor only until it asks for the
    same name again."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self._tensors: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tensor ``name`` of ``shape`` (the workspace's dtype unless ``dtype`` is given)."""
        dtype = dtype or self.dtype
        shape = tuple(shape)
        buf = self._tensors.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = torch.empty(shape, device=self.device, dtype=dtype)
            self._tensors[name] = buf
        return buf

    def at_least(self, name: str, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of ``shape``: the first elements of the flat tensor ``name``, made anew only
        when it is too small (or of another dtype)."""
        dtype = dtype or self.dtype
        numel = math.prod(shape)
        buf = self._tensors.get(name)
        if buf is None or buf.dim() != 1 or buf.numel() < numel or buf.dtype != dtype:
            buf = torch.empty(numel, device=self.device, dtype=dtype)
            self._tensors[name] = buf
        return buf[:numel].view(tuple(shape))

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self):
        """The names of the kept tensors."""
        return iter(list(self._tensors))
