"""Running claims: check every sweep file and the backend first, run (or resume) each claim's sweeps
into ``<out>/runs/<sweep name>/``, analyse the rows, and write ``<out>/<claim>.md`` and ``.png``."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from archsim.fsutil import atomic_write_text
from archsim.reproduce.analysis import Analysis
from archsim.reproduce.asymmetry import analyse_asymmetry, plot_asymmetry
from archsim.reproduce.macs import analyse_macs, macs_workloads, plot_macs
from archsim.reproduce.overfitting import add_partway_curves, analyse_overfitting, plot_overfitting
from archsim.reproduce.prefix import run_prefix_sweep
from archsim.reproduce.registry import CLAIMS, budget_flag, check_claims, default_out_dir, sweep_paths
from archsim.reproduce.progress import lost_attempts, partway_runs, write_partway_curves
from archsim.reproduce.render import render_report
from archsim.reproduce.resolution import analyse_resolution, plot_resolution

ANALYSES: dict[str, Callable[[list[dict]], Analysis]] = {
    "asymmetry": analyse_asymmetry, "resolution": analyse_resolution, "overfitting": analyse_overfitting,
}
PLOTS: dict[str, Callable[[Analysis, Path], Path]] = {
    "asymmetry": plot_asymmetry, "resolution": plot_resolution, "overfitting": plot_overfitting,
    "macs": plot_macs,
}


@dataclass
class ClaimReport:
    """A claim run: its analysis and where it was written."""

    claim: str
    analysis: Analysis
    report_path: Path
    plot_path: Path | None
    sweeps: list[Any] = field(default_factory=list)   # SweepOutcome per sweep file
    wall_s: float = 0.0
    computed: int = 0

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Failed points of the claim's sweeps (rows with ``label`` and ``error``)."""
        return [r for outcome in self.sweeps for r in outcome.failures]

    @property
    def verdict(self) -> str:
        return self.analysis.verdict

    @property
    def sentence(self) -> str:
        return self.analysis.sentence


def run_claims(names: Iterable[str] | None = None, *, budget: str = "default",
               sweeps_dir: str | Path | None = None, out: str | Path | None = None,
               backend: str = "local", address: str | None = None, jobs: int | None = None,
               progress: bool = True, command: str | None = None,
               on_claim: Callable[[ClaimReport], None] | None = None,
               connect_timeout: float | None = None, stored_only: bool = False) -> list[ClaimReport]:
    """Run (or resume) the requested claims (all by default) and write their reports.

    Every sweep file, the backend (and the form of a Dask ``address``) and the output folder are
    checked before anything runs. ``command`` is the command line quoted in the reports (default:
    the equivalent ``archsim reproduce`` call). ``on_claim`` is called after each claim's report is
    written. ``connect_timeout`` bounds the wait for the Dask scheduler at ``address``.
    ``stored_only``: compute nothing; write the reports from the results stored so far (a long
    reproduction's partial state: points not run yet count as missing seeds).
    """
    from archsim.fsutil import check_out_dir
    from archsim.sweep import load_sweep
    from archsim.sweep.backends import check_backend

    selected = check_claims(names, budget)
    plan = {name: sweep_paths(CLAIMS[name], budget=budget, sweeps_dir=sweeps_dir) for name in selected}
    for paths in plan.values():
        for path in paths:
            load_sweep(path)   # one-line SpecError before anything runs
    check_backend(backend, address)
    out_dir = Path(out) if out is not None else default_out_dir(budget)
    check_out_dir(out_dir, "--out" if out is not None else "--out (default)")
    reports = []
    for name in selected:
        cmd = command or " ".join(["archsim reproduce", name] + budget_flag(budget)
                                  + ([f"--jobs {jobs}"] if jobs else []))
        report = run_claim(name, budget=budget, sweep_files=plan[name], out=out_dir, backend=backend,
                           address=address, jobs=jobs, progress=progress, command=cmd,
                           connect_timeout=connect_timeout, stored_only=stored_only)
        reports.append(report)
        if on_claim is not None:
            on_claim(report)
    return reports


def run_claim(name: str, *, budget: str = "default", sweep_files: list[Path] | None = None,
              out: str | Path | None = None, backend: str = "local", address: str | None = None,
              jobs: int | None = None, progress: bool = True, command: str | None = None,
              connect_timeout: float | None = None, stored_only: bool = False) -> ClaimReport:
    """Run one claim's sweeps, analyse them, and write ``<out>/<name>.md`` and ``<out>/<name>.png``.

    Failed points (see :mod:`archsim.sweep.spec`) count as not run in the analysis; the report
    lists them."""
    from archsim.sweep import load_sweep, run_sweep

    claim = CLAIMS[check_claims([name], budget)[0]]
    out_dir = Path(out) if out is not None else default_out_dir(budget)
    if sweep_files is None:
        sweep_files = sweep_paths(claim, budget=budget)
    rerun = " ".join([f"archsim reproduce {name}"] + budget_flag(budget))
    start = time.perf_counter()
    outcomes, rows, sweeps, partway, lost = [], [], [], [], []
    for path in sweep_files:
        sweep = load_sweep(path)
        runs = out_dir / "runs" / sweep.name
        runner = run_prefix_sweep if claim.prefix_data else run_sweep
        extra = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
        if stored_only:
            extra["stored_only"] = True
        outcome = runner(path, backend=backend, address=address, jobs=jobs, out=runs, progress=progress,
                         **extra)
        if outcome.computed:
            _record_wall(runs, time.perf_counter() - start, outcome.computed, jobs, command)
        # Read the part-way runs' checkpoints and the lost attempts once (before the curves file
        # they are read from is rewritten), for that file, the plot and the report.
        partway.append(partway_runs(outcome, runs) if runs.is_dir() else [])
        lost.append(lost_attempts(outcome, runs, partway[-1]) if runs.is_dir() else [])
        if runs.is_dir():
            write_partway_curves(outcome, runs, partway[-1], lost[-1])
        outcomes.append(outcome)
        sweeps.append(sweep)
        rows += _rows_with_records(outcome)
    wall = time.perf_counter() - start
    if name == "macs":
        analysis = analyse_macs(macs_workloads())
    else:
        analysis = ANALYSES[name](rows)
    waiting = _points_without_a_result(rows)
    if waiting:
        # A claim is judged on all its points: with some not run at all (a long reproduction
        # rendered with --stored), the numbers are shown but no verdict is given.
        n_points = len({_point_id(r) for r in rows})
        so_far = "" if analysis.lacks_rows else " On the points stored so far: " + analysis.sentence
        analysis.verdict = "not tested"
        analysis.sentence = (f"Incomplete: {waiting} of {n_points} points have no finished seed "
                             f"yet (rerun `{rerun}` to compute them); no verdict until then.{so_far}")
    if name == "overfitting":     # the only claim plotted against epochs: part-way curves fit in
        add_partway_curves(analysis, rows, [run for runs in partway for run in runs],
                           [attempt for attempts in lost for attempt in attempts])
    plot_path = PLOTS[name](analysis, out_dir / f"{name}.png")
    report_path = out_dir / f"{name}.md"
    text = render_report(claim, analysis, sweeps, outcomes, plot_path.name, command or rerun, out_dir,
                         budget, partway, lost)
    atomic_write_text(report_path, text)
    computed = sum(o.computed for o in outcomes)
    return ClaimReport(name, analysis, report_path, plot_path, outcomes, wall, computed)


def _point_id(row: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in (row.get("values") or {}).items()))


def _points_without_a_result(rows: list[dict]) -> int:
    """Points (axis values, any seed) none of whose rows has finished."""
    done: dict[tuple, bool] = {}
    for r in rows:
        done[_point_id(r)] = done.get(_point_id(r), False) or bool(r.get("done"))
    return sum(1 for ok in done.values() if not ok)


def _rows_with_records(outcome) -> list[dict]:
    """The sweep's rows; a row that carries its key gets its full stored result (curves included)."""
    from archsim.sweep import ResultsStore

    records = ResultsStore(outcome.results_path).load()
    rows = []
    for r in outcome.rows:
        row = dict(r)
        record = records.get(r.get("key")) if r.get("key") else None
        if record is not None and isinstance(record.get("result"), dict) and r.get("done", True):
            row["result"] = {**record["result"], **r["result"]}
        rows.append(row)
    return rows


def _record_wall(runs: Path, wall_s: float, computed: int, jobs: int | None, command: str | None) -> None:
    """Keep the wall time of the last run that computed points (the report quotes it)."""
    atomic_write_text(runs / "wall.json", json.dumps(
        {"wall_s": round(wall_s, 1), "computed_points": computed, "jobs": jobs, "command": command},
        indent=2) + "\n")
