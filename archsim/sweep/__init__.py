"""Design-space sweeps: a base workload, axes over any spec field, run on a local process pool
(joblib) or a Dask cluster, with results streamed to a resumable JSONL file.

Importing this package is light (no torch, dask or matplotlib); those load when a sweep runs.
"""
from __future__ import annotations

from archsim.sweep.evaluate import EVALUATORS, evaluate_point
from archsim.sweep.expand import Point, expand, make_task, point_key, resolve_point, resolve_task
from archsim.sweep.runner import SweepOutcome, run_sweep
from archsim.sweep.spec import Sweep, SweepSpec, load_sweep
from archsim.sweep.store import ResultsStore

__all__ = [
    "EVALUATORS", "Point", "ResultsStore", "Sweep", "SweepOutcome", "SweepSpec", "evaluate_point",
    "expand", "load_sweep", "make_task", "point_key", "resolve_point", "resolve_task", "run_sweep",
]
