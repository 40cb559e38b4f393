"""Functional RPU simulator (torch): analog tiles with periphery and pulsed updates, LSTMs on them.

Importing this package is cheap: names are loaded on first use (torch only when a tile is made).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RPUConfig": "archsim.functional.config",
    "TileActivity": "archsim.functional.activity",
    "AnalogTile": "archsim.functional.tile",
    "PulsedDevices": "archsim.functional.devices",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'archsim.functional' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
