"""Reproduce the seed paper's claims as shipped sweeps, and say whether each holds in our runs.

The seed paper is Gokmen, Rasch & Haensch, Front. Neurosci. 12:745 (2018) (LSTM training on RPU
arrays). Each claim (:mod:`~archsim.reproduce.registry`) names the sweep files that test it
at each budget of :data:`BUDGETS` (``sweeps/reproduce/<name>.yaml`` at the default budget,
``<name>_mid.yaml`` at an intermediate one, ``<name>_full.yaml`` at paper scale), an
analysis of the sweep's rows, and a plot: one module per claim (:mod:`~archsim.reproduce.asymmetry`,
:mod:`~archsim.reproduce.resolution`, :mod:`~archsim.reproduce.overfitting`,
:mod:`~archsim.reproduce.macs`) on the shared row helpers of :mod:`~archsim.reproduce.analysis`.
:func:`run_claims` (:mod:`~archsim.reproduce.runner`) runs the sweeps (resumable: a rerun only
computes missing points), analyses them and writes ``<out>/<claim>.md`` (verdict sentence, table, the
command and budget that produced it; :mod:`~archsim.reproduce.render`; how far an unfinished sweep has
got: :mod:`~archsim.reproduce.progress`) and ``<out>/<claim>.png``; the sweeps' own results and
summaries go to ``<out>/runs/<sweep name>/``.

Verdicts are ``holds``, ``partly``, ``does not hold`` or ``not tested`` (the budget did not create the
condition the claim is about). Every point runs with several seeds; the analyses take each point's
mean, standard deviation and range over its seeds (:class:`Stats`), and a difference of two points
counts as a change only where it exceeds both the claim's fixed threshold and the seed spread
(:class:`Change`: ``|mean_a - mean_b| > max(threshold, 2*sqrt(sd_a^2/n_a + sd_b^2/n_b))``; with one
seed, the threshold alone). Every threshold the verdicts use is a module constant and is printed in
the report. The library never prints.

The ``overfitting`` claim trains on the first ``training.train_chars / training.train_fraction``
characters of the workload's text (a prefix, split by ``train_fraction`` as usual), so that a model
large enough to overfit does so in minutes; its points run through :func:`run_prefix_sweep`
(:mod:`~archsim.reproduce.prefix`), which uses the sweep machinery (expansion, keys, the resumable
JSONL store, local or Dask backends) with a worker function that builds that prefix corpus. The
trainer itself always uses the whole text.
"""
from __future__ import annotations

from archsim.reproduce.analysis import (
    DELTA, SPREAD_SE, VERDICTS, Analysis, Change, Stats, compare, fmt_change, fmt_stats, row_loss,
)
from archsim.reproduce.asymmetry import (
    CLOSE_TO_FP, FEW_PERCENT, analyse_asymmetry, non_monotone, plot_asymmetry,
)
from archsim.reproduce.macs import (
    MAC_WORKLOADS, MLP_LAYERS, MNIST_TRAIN_IMAGES, PAPER_MAC_RATIO, analyse_macs, corpus_chars,
    macs_workloads, mlp_weights, plot_macs,
)
from archsim.reproduce.overfitting import OVERFIT_GAP, analyse_overfitting, plot_overfitting
from archsim.reproduce.prefix import prefix_corpus, prefix_train_task, run_prefix_sweep
from archsim.reproduce.registry import (
    BUDGETS, CLAIMS, PAPER, Claim, budget_flag, check_claims, claim_names, claim_sweeps, default_out_dir,
    default_sweeps_dir, has_budget, repo_root, sweep_paths,
)
from archsim.reproduce.render import render_report
from archsim.reproduce.resolution import (
    BITS_AXIS, RESOLUTION_TOLERANCE, ROUND_AXIS, analyse_resolution, plot_resolution,
    resolution_threshold,
)
from archsim.reproduce.runner import ANALYSES, PLOTS, ClaimReport, run_claim, run_claims

__all__ = [
    "ANALYSES", "BITS_AXIS", "BUDGETS", "CLAIMS", "CLOSE_TO_FP", "DELTA", "FEW_PERCENT", "MAC_WORKLOADS",
    "MLP_LAYERS", "MNIST_TRAIN_IMAGES", "OVERFIT_GAP", "PAPER", "PAPER_MAC_RATIO", "PLOTS",
    "RESOLUTION_TOLERANCE", "ROUND_AXIS", "SPREAD_SE", "VERDICTS", "Analysis", "Change", "Claim",
    "ClaimReport", "Stats", "analyse_asymmetry", "analyse_macs", "analyse_overfitting",
    "analyse_resolution", "budget_flag", "check_claims", "claim_names", "claim_sweeps", "compare",
    "corpus_chars", "default_out_dir", "default_sweeps_dir", "fmt_change", "fmt_stats", "has_budget",
    "macs_workloads",
    "mlp_weights", "non_monotone", "plot_asymmetry", "plot_macs", "plot_overfitting",
    "plot_resolution", "prefix_corpus", "prefix_train_task", "render_report", "repo_root",
    "resolution_threshold", "row_loss", "run_claim", "run_claims", "run_prefix_sweep", "sweep_paths",
]
