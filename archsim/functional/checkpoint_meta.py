"""A training checkpoint's description, ``checkpoint.json`` beside its ``checkpoint.pt``
(:func:`archsim.functional.train.train` writes it first), read without torch: how far a run has
got (``step`` of ``total_steps``) and at which curve cadence (``eval_every``). The sweeps (a
resumed point's cadence) and the reports (how far each run has got) read it here."""
from __future__ import annotations

import json
from pathlib import Path

#: File name of a checkpoint's description in its folder.
CHECKPOINT_META = "checkpoint.json"

#: File name of a run's loss curve in its output folder (``{"run": ..., "curve": [...]}``), written
#: at every curve point, so a part-way run's curve lies beside its checkpoint.
CURVE_FILE = "curve.json"


def read_checkpoint_meta(folder: str | Path | None) -> dict | None:
    """The description in ``folder``; None when there is none or it cannot be read (a fresh
    start, or a folder a killed run left before its first checkpoint)."""
    if not folder:
        return None
    try:
        meta = json.loads((Path(folder) / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
