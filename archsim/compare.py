"""``compare``: RPU architectures against digital baselines over several workloads.

Split by responsibility (the library never prints):

- :mod:`archsim.compare_rows` -- the comparison rows (workloads x architectures x baselines), the
  modelled area and the peak-vs-peak table;
- :mod:`archsim.compare_scaling` -- the acceleration curves over hidden and batch size against each
  GPU's best precision (SimPy where contention matters) and their crossover points;
- :mod:`archsim.compare_render` -- tables, CSV, LaTeX, the report folder's README and the
  deterministic writer of ``reports/compare/``; the plots are :mod:`archsim.plots`.

This module re-exports the names ``archsim compare`` and its users import.
"""
from __future__ import annotations

from archsim.compare_render import (  # noqa: F401
    SET_FILES, _components, area_notes, baselines_csv, baselines_table, comparison_csv,
    comparison_tables, crossover_table, crossover_text, energy_breakdown_csv, headline_names,
    headline_table, latex_document, main_table, peak_csv, peak_table, readme, sweep_csv, sweep_table,
    sweep_title, write_compare_set,
)
from archsim.compare_rows import (  # noqa: F401
    CPU_BASELINE, DEFAULT_BATCH_SIZES, DEFAULT_HIDDEN_SIZES, DEFAULT_SWEEP_ARCHS,
    DEFAULT_SWEEP_BASE, HEADLINE_BASELINES, SWEEP_BASE_OVERRIDES, BaselineRow, CompareRow, Comparison,
    compare, default_baselines, gpu_baseline_names, peak_throughput, ratios, resolve_baselines,
)
from archsim.compare_scaling import (  # noqa: F401
    DEFAULT_SIMPY_MAX_TILES, ScalingSweep, best_gpu, crossovers, scaling_sweep, workload_curves,
)
from archsim.compare_scaling import _fit_tiles  # noqa: F401
