"""Run a sweep: expand, skip finished points, run the rest on a backend, stream results, summarise.

Nothing is written until the whole sweep file, the backend (and Dask address) and the output folder
are valid. Results go to ``<out>/results.jsonl`` (default ``reports/sweeps/<sweep name>/``) as they
arrive; at the end the summary table (``summary.md``) and the plot (``plot.png``) are written
atomically. A training point runs with its own checkpoint folder, ``<out>/checkpoints/<key>/``
(a population: ``population-<key of its first point>/``; deleted once stored), so a sweep killed
half-way through a long point resumes it from its last checkpoint (with the local backend, or
Dask workers that share the file system: a minute of work at most is lost) rather than from the
start. Points in progress (with a checkpoint) run first, then the others seed by seed
(:func:`run_order`), so that a long sweep stopped part way leaves whole one-seed curves.

Failed points (see :mod:`archsim.sweep.spec` for the policy) do not stop the sweep: a point the
evaluator could not compute is stored with its error, one whose specs do not validate is listed
without being stored; both appear in the table and under "Failed points" in the summary, and
:attr:`SweepOutcome.failures` lists them.
"""
from __future__ import annotations

import math
import shutil
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archsim import __version__
from archsim.errors import ArchsimError
from archsim.functional.curves import result_last_epoch_train_loss
from archsim.fsutil import atomic_write_bytes, check_out_dir
from archsim.sweep.backends import DEFAULT_CONNECT_TIMEOUT, check_backend, run_points
from archsim.sweep.evaluate import group_populations, run_task
from archsim.sweep.expand import Point, PointFailure, expand, invalid_point_key, make_task, resolve_point
from archsim.sweep.spec import Sweep, load_sweep
from archsim.sweep.store import ResultsStore

#: Result keys shown by default, when the sweep names no columns (first present ones win).
DEFAULT_COLUMNS = {
    "estimate": ["time_per_step_s", "energy_per_step_J", "time_per_epoch_s", "energy_per_epoch_J"],
    "train": ["train_loss", "train_loss_last_epoch", "valid_loss", "test_loss", "chars_seen"],
    "echo": ["random", "n_weights"],
}
MAX_DEFAULT_COLUMNS = 4
#: Exit status of ``archsim sweep`` / ``archsim reproduce`` when the run finished but some points
#: failed (distinct from 1: an error, 2: bad input, 3: divergence of a single run).
EXIT_POINTS_FAILED = 4


class WorkerError(ArchsimError):
    """An ArchsimError raised in a worker, re-raised in the runner with the same message and status."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


@dataclass
class SweepOutcome:
    """What a sweep run did and where it wrote."""

    name: str
    results_path: Path
    points: int             # points expanded (axis combinations x seeds x kinds)
    unique: int             # distinct keys among them (identical resolved points share one)
    skipped: int            # keys already in the results file when the run started
    computed: int           # points this run sent to workers
    new: int                # records this run appended (computed, unless another writer beat it)
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    table: str = ""
    summary_path: Path | None = None
    plot_path: Path | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The failed points' rows (``label``: axis values, seed, kind; ``error``: one line)."""
        return [r for r in self.rows if r.get("failed")]

    @property
    def failures_text(self) -> str:
        """The failed points as a list, one line each (empty when none failed)."""
        return failures_text(self.rows)


def default_out(sweep: Sweep) -> Path:
    return Path("reports") / "sweeps" / sweep.name


def run_sweep(sweep_path: str | Path, *, backend: str = "local", address: str | None = None,
              jobs: int | None = None, out: str | Path | None = None,
              progress: bool = True, worker: Callable[[dict], dict] = run_task,
              connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
              stored_only: bool = False) -> SweepOutcome:
    """Run (or resume) the sweep in ``sweep_path``; see the module docstring for what is written.

    ``worker`` evaluates one task (a top-level function, so process pools and Dask can ship it);
    the default runs the sweep's kind through :mod:`archsim.sweep.evaluate`. ``connect_timeout``
    bounds the wait for the Dask scheduler at ``address``. ``stored_only``: compute nothing, only
    summarise what the store holds (points not run yet are rows without a result).
    """
    sweep = load_sweep(sweep_path)
    check_backend(backend, address)
    out_dir = Path(out) if out is not None else default_out(sweep)
    check_out_dir(out_dir, "--out" if out is not None else "--out (default)")
    points = expand(sweep)
    planned: list[tuple[Point, dict, str]] = []
    invalid: dict[int, str] = {}   # point index -> why its specs do not validate
    first_invalid: PointFailure | None = None
    for point in points:
        try:
            task, key = resolve_point(sweep, point)  # a bad axis value: one line, before anything runs
        except PointFailure as exc:
            first_invalid = first_invalid or exc
            task = {**make_task(sweep, point), "resolved": dict(point.values)}
            key = invalid_point_key(task)
            invalid[point.index] = exc.reason
        planned.append((point, task, key))
    if first_invalid is not None and len(invalid) == len(planned):
        raise first_invalid  # no point is valid: a mistake in the sweep or its base, not a result

    store = ResultsStore(out_dir / "results.jsonl")
    done = set(store.load())
    todo: dict[str, tuple[Point, dict]] = {}
    for point, task, key in planned:
        if point.index not in invalid and key not in done and key not in todo:
            todo[key] = (point, task)
    unique = len({key for _, _, key in planned})
    skipped = len({key for _, _, key in planned if key in done})

    new = 0
    if todo and not stored_only:
        # Connects to the Dask scheduler (or starts the pool) before the output folder exists.
        # Under train.population, the seeds of one axis combination run as one task: the whole
        # population again when some of its points are missing (the stored ones are not
        # re-recorded; the same population gives them the same numbers).
        valid = [task for point, task, _ in planned if point.index not in invalid]
        tasks = [t for t in group_populations(valid)
                 if any(m["key"] in todo for m in t.get("group", [t]))]
        for task in tasks:
            # Absolute: the workers may run elsewhere (a Dask worker needs the same file system
            # for a killed point to resume there; otherwise it starts over, as before).
            if "group" in task or task.get("kind") == "train":
                task["checkpoint_dir"] = str(checkpoint_folder(out_dir, task).resolve())
        tasks = run_order(tasks, sweep.spec.seeds, out_dir)
        outputs = run_points(worker, tasks, backend=backend,
                             address=address, jobs=jobs, connect_timeout=connect_timeout)
        bar = None
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="pt", file=sys.stderr,
                       disable=not progress, dynamic_ncols=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            for output in _each_point(outputs, out_dir):
                if "error" in output:
                    err = output["error"]
                    raise WorkerError(err["message"], int(err.get("exit_status", 1)))
                if output["key"] not in todo:     # a stored point of a population run again
                    continue
                point, _task = todo[output["key"]]
                record = {
                    "key": output["key"], "point": point.values, "seed": point.seed,
                    "kind": point.kind, "seconds": round(float(output["seconds"]), 6),
                    "archsim_version": __version__,
                }
                if "failure" in output:   # the point's own specs cannot be computed: its answer
                    record.update(failed=True, error=output["failure"])
                else:
                    record["result"] = output["result"]
                new += int(store.append(record))
                _drop_checkpoint(out_dir, output["key"])
                bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            close = getattr(outputs, "close", None)
            if close is not None:
                with warnings.catch_warnings():   # joblib warns about the tasks it cancels
                    warnings.simplefilter("ignore")
                    close()  # stop the pool / release the cluster if we left early

    records = store.load()
    rows = [{**_row(point, task, records.get(key), invalid.get(point.index)), "key": key}
            for point, task, key in planned]
    columns = _columns(sweep, rows)
    outcome = SweepOutcome(sweep.name, store.path, len(points), unique, skipped,
                           0 if stored_only else len(todo), new, rows, columns)
    outcome.table = summary_table(sweep, rows, columns)
    if rows:
        out_dir.mkdir(parents=True, exist_ok=True)
        outcome.summary_path = out_dir / "summary.md"
        atomic_write_bytes(outcome.summary_path, _summary_markdown(sweep, outcome).encode())
        outcome.plot_path = write_plot(sweep, rows, columns, out_dir / "plot.png")
    return outcome


#: Folder of the training points' checkpoints under a sweep's output folder.
CHECKPOINTS = "checkpoints"


def checkpoint_folder(out_dir: Path, task: dict) -> Path:
    """Where a task's checkpoint lives under the sweep's output folder."""
    name = f"population-{task['key']}" if "group" in task else task["key"]
    return out_dir / CHECKPOINTS / name


def run_order(tasks: list[dict], seeds: list[int], out_dir: Path) -> list[dict]:
    """The order the tasks are handed to the backend: points that a killed run left a checkpoint
    for first (so that no half-done point waits behind new ones), then seed by seed: every axis
    combination's first seed before any combination's second. A long sweep that is stopped part
    way therefore leaves whole curves, one seed after another, rather than a few points with all
    their seeds. Within a round the sweep's own order is kept; the order changes no result (each
    point is keyed and seeded on its own), and a population task (all seeds at once) keeps its
    place in the first round."""
    rank = {seed: i for i, seed in enumerate(dict.fromkeys(seeds))}

    def in_progress(task: dict) -> bool:
        folder = checkpoint_folder(out_dir, task)
        return folder.is_dir() and any(folder.iterdir())

    def round_of(task: dict) -> int:
        return 0 if "group" in task else rank.get(task.get("seed"), 0)

    order = sorted(range(len(tasks)), key=lambda i: (not in_progress(tasks[i]), round_of(tasks[i]), i))
    return [tasks[i] for i in order]


def _each_point(outputs, out_dir: Path):
    """The per-point outputs of the workers' outputs (a population's one by one; its checkpoint
    folder is deleted after its last point was handed on)."""
    for output in outputs:
        yield from output.get("outputs", [output])
        if "outputs" in output:
            _drop_checkpoint(out_dir, f"population-{output['key']}")


def _drop_checkpoint(out_dir: Path, key: str) -> None:
    """Delete a stored point's checkpoint folder (and the checkpoints folder once empty)."""
    folder = out_dir / CHECKPOINTS / key
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:
            pass


# -- summary -------------------------------------------------------------------------------
def flatten(result: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested result dict -> dotted keys of scalar leaves."""
    flat: dict[str, Any] = {}
    for name, value in (result or {}).items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, key + "."))
        elif not isinstance(value, list):
            flat[key] = value
    return flat


def _row(point: Point, task: dict, record: dict | None, invalid: str | None = None) -> dict[str, Any]:
    """A table row. ``done``: the point has a result; ``failed``: it has an error instead (its specs
    do not validate, or its evaluator could not compute it), with the one-line ``error``."""
    failed = invalid is not None or bool(record is not None and record.get("failed"))
    error = invalid if invalid is not None else (_record_error(record) if failed else None)
    done = record is not None and not failed
    return {"point": point, "values": point.values, "resolved": task["resolved"],
            "seed": point.seed, "kind": point.kind, "label": point.label(),
            "done": done, "failed": failed, "error": error,
            "result": _shown_result(record.get("result")) if done else {},
            "seconds": _point_seconds(record) if record else None}


def _point_seconds(record: dict) -> float | None:
    """Seconds a point took. A training run's own clock (its result's ``seconds``) when it has
    one: it adds up the segments of a run that was stopped and resumed from its checkpoint,
    where the record's ``seconds`` is the last segment's alone."""
    own = (record.get("result") or {}).get("seconds") if record.get("kind") == "train" else None
    if isinstance(own, (int, float)) and not isinstance(own, bool) and math.isfinite(own):
        return float(own)
    return record.get("seconds")


def _shown_result(result: dict[str, Any] | None) -> dict[str, Any]:
    """A stored result's scalar leaves (:func:`flatten`). A training run stored before
    ``train_loss_last_epoch`` was (:func:`archsim.sweep.evaluate.train_result`) gets it from its
    stored curve when it has one."""
    flat = flatten(result)
    if isinstance(result, dict) and result.get("curve"):
        loss = result_last_epoch_train_loss(result)
        if loss is not None:
            flat["train_loss_last_epoch"] = loss
    return flat


#: What a summary table's column means, for columns whose name does not say it all.
COLUMN_NOTES = {
    "train_loss": "the trainer's mean training loss over the last tenth of an epoch",
    "train_loss_last_epoch": "the mean training loss over the last epoch, from the run's curve",
    "s": "seconds the point took (wall clock; a training run's own clock, summed over the "
         "segments it was resumed in)",
}


def _record_error(record: dict) -> str:
    err = record.get("error")
    message = err.get("message") if isinstance(err, dict) else err
    return " ".join(str(message or "failed").split())   # one line


def failures_text(rows: list[dict]) -> str:
    """``Failed points:`` and one ``- <axis values, seed, kind>: <error>`` line per failed point."""
    failed = [r for r in rows if r.get("failed")]
    if not failed:
        return ""
    lines = [f"Failed points ({len(failed)} of {len(rows)}):"]
    lines += [f"- {r['label']}: {r['error']}" for r in failed]
    return "\n".join(lines)


def _shown_path(path) -> str:
    """A path as written in reports: relative to the working folder when inside it (no home dirs)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _columns(sweep: Sweep, rows: list[dict]) -> list[str]:
    """Result keys in the table: the sweep's ``columns``, else the first few numeric ones per kind."""
    if sweep.spec.columns:
        cols = list(sweep.spec.columns)
    else:
        cols = []
        for kind in sweep.spec.kinds():
            present = [r["result"] for r in rows if r["kind"] == kind and r["done"]]
            if not present:
                continue
            numeric = [k for k, v in present[0].items() if _is_number(v)]
            preferred = [k for k in DEFAULT_COLUMNS.get(kind, []) if k in numeric]
            picked = preferred or numeric[:MAX_DEFAULT_COLUMNS]
            cols += [c for c in picked if c not in cols]
    if sweep.spec.plot.y and sweep.spec.plot.y not in cols:
        cols.append(sweep.spec.plot.y)
    return cols


def summary_table(sweep: Sweep, rows: list[dict], columns: list[str]) -> str:
    from tabulate import tabulate

    headers = list(sweep.spec.axes) + ["seed", "kind"] + columns + ["s"]
    body = []
    for r in rows:
        line = [r["values"].get(a) for a in sweep.spec.axes] + [r["seed"], r["kind"]]
        if r.get("failed"):
            line += ["failed"] + [""] * len(columns)
        elif not r["done"]:
            line += ["(not run)"] + [""] * len(columns)
        else:
            diverged = r["result"].get("diverged")
            line += [r["result"].get(c, "diverged" if diverged else "") for c in columns]
            line.append(r["seconds"])
        n_keys = len(sweep.spec.axes) + 2
        # Results formatted here, so a column holding "failed" or "(not run)" keeps short numbers.
        line = line[:n_keys] + [format(v, ".4g") if isinstance(v, float) else v for v in line[n_keys:]]
        body.append(line[: len(headers)])
    return tabulate(body, headers=headers, tablefmt="github", floatfmt=".4g")


def _summary_markdown(sweep: Sweep, outcome: SweepOutcome) -> str:
    lines = [f"# Sweep {sweep.name}", ""]
    if sweep.spec.description:
        lines += [sweep.spec.description, ""]
    lines += [f"Sweep file: `{_shown_path(sweep.file)}`; base workload: `{sweep.spec.base}`; mode {sweep.spec.mode}; "
              f"kind {sweep.spec.kind}; seeds {sweep.spec.seeds}.",
              f"{outcome.points} points, {outcome.unique} distinct; "
              f"results in `{outcome.results_path.name}`.",
              "", outcome.table, ""]
    notes = [f"`{c}`: {COLUMN_NOTES[c]}" for c in [*outcome.columns, "s"] if c in COLUMN_NOTES]
    if notes:
        lines += ["Columns: " + "; ".join(notes) + ".", ""]
    if outcome.failures:
        lines += ["## Failed points", "",
                  f"{len(outcome.failures)} of {outcome.points} points failed; a failure stored in "
                  f"`{outcome.results_path.name}` is not retried on resume (see the sweep docs).", ""]
        lines += [f"- {r['label']}: {_md_code(r['error'])}" for r in outcome.failures] + [""]
    return "\n".join(lines)


def _md_code(text: str) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def varying_axes(values: list[dict]) -> list[str]:
    """The axes (keys of the first values dict) whose value differs between some of ``values``."""
    return [k for k in (values[0] if values else {}) if len({repr(v.get(k)) for v in values}) > 1]


def _legend_axes(rows: list[dict], x_axis: str) -> tuple[list[str], list[tuple[str, Any]]]:
    """The axes that name a plot's lines: those other than ``x_axis`` whose value varies over
    all of the sweep's rows (finished or not, so a line keeps its name as runs finish); and the
    others as (axis, value), the same for every line, to be said once (a paper-scale sweep zips
    eight axes of which two vary, and eight in every label run off the figure)."""
    values = [r["values"] for r in rows]
    varying = [a for a in varying_axes(values) if a != x_axis]
    constant = [(a, values[0][a]) for a in (values[0] if values else {})
                if a != x_axis and a not in varying]
    return varying, constant


def write_plot(sweep: Sweep, rows: list[dict], columns: list[str], path: Path) -> Path | None:
    """Plot ``plot.y`` against ``plot.x`` (one line per other-axes combination and kind; mean over
    seeds). Returns the PNG path, or None when there is nothing numeric to plot."""
    x_axis = sweep.spec.plot.x or next(iter(sweep.spec.axes))
    y_key = sweep.spec.plot.y or (columns[0] if columns else None)
    if y_key is None:
        return None
    varying, constant = _legend_axes(rows, x_axis)
    groups: dict[tuple, dict[Any, list[float]]] = {}
    for r in rows:
        y = r["result"].get(y_key)
        if not r["done"] or not _is_number(y) or not math.isfinite(y):
            continue
        label = tuple((a, r["values"].get(a)) for a in varying)
        if len(sweep.spec.kinds()) > 1:
            label += (("kind", r["kind"]),)
        groups.setdefault(label, {}).setdefault(_hashable(r["resolved"][x_axis]), []).append(float(y))
    if not groups:
        return None

    from archsim.plots import figure, write_png

    xs_all = [x for g in groups.values() for x in g]
    numeric_x = all(_is_number(x) for x in xs_all)
    categories = list(dict.fromkeys(_hashable(r["resolved"][x_axis]) for r in rows))
    fig = figure(6.4, 4.2)
    ax = fig.subplots()
    for label, series in groups.items():
        xs = sorted(series, key=lambda v: v if numeric_x else categories.index(v))
        pos = xs if numeric_x else [categories.index(x) for x in xs]
        ys = [sum(series[x]) / len(series[x]) for x in xs]
        name = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in label) or None
        ax.plot(pos, ys, marker="o", label=name)
    if not numeric_x:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([str(c) for c in categories], rotation=20, ha="right")
    if sweep.spec.plot.logx and numeric_x:
        ax.set_xscale("log")
    if sweep.spec.plot.logy:
        ax.set_yscale("log")
    same = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in constant)
    ax.set_xlabel(x_axis + ("\n" + textwrap.fill(f"(every line: {same})", 80) if same else ""),
                  fontsize=None if not same else "small")
    ax.set_ylabel(y_key + (" (mean over seeds)" if len(sweep.spec.seeds) > 1 else ""))
    ax.set_title(f"sweep {sweep.name}")
    if any(label for label in groups):
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return write_png(path, fig, dpi=120)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


