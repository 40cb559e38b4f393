"""A claim's Markdown report: verdict sentence, table, notes, plot, and how it was produced (command,
sweep files, budgets, failed points, run and wall times)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from archsim.reproduce.analysis import SPREAD_SE, Analysis, _is_fp, row_loss, spread_text
from archsim.reproduce.macs import MAC_WORKLOADS
from archsim.reproduce.registry import MID_FP_CEILING, PAPER, Claim, repo_root


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    from tabulate import tabulate

    headers = list(rows[0])
    return tabulate([[r.get(h, "") for h in headers] for r in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


#: The report's first sentence on each budget of :data:`~archsim.reproduce.registry.BUDGETS`.
BUDGET_TEXT = {
    "default": ("Budgets: the default budgets are a small fraction of the paper's (tens of epochs; see "
                "the `--full` sweeps). "),
    "mid": ("Budgets: intermediate (the `--mid` sweeps), at a fraction of the paper's scale (see the "
            "`--full` sweeps), chosen so that floating point ends below "
            f"{MID_FP_CEILING:g} nats/char on War and Peace. "),
    "full": "Budgets: paper scale (the `--full` sweeps). ",
}


def _seeds_paragraph(sweeps: list, outcomes: list, budget: str = "default") -> str:
    """Budgets, seeds per point, and the rule for a change (single-seed wording with one seed)."""
    text = BUDGET_TEXT[budget]
    if budget == "mid":
        text += _mid_check(outcomes)
    seeds = sorted({len(s.spec.seeds) for s in sweeps})
    if seeds[-1] < 2:
        text += ("One seed per point: the verdicts are single-seed, a change is a difference above the "
                 "fixed thresholds above, with no seed spread to judge it by.")
    else:
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
        text += (f"Seeds: {count} per point. The tables give each loss as mean ± sample standard deviation "
                 f"over the seeds (n seeds) and differences of means ± {SPREAD_SE:g} standard errors. A "
                 f"difference counts as a change only where it exceeds the seed spread as well as the "
                 f"fixed threshold above: |mean_a - mean_b| > max(threshold, {SPREAD_SE:g} SE), "
                 f"{spread_text()}. Diverged seeds are counted, not averaged (\"diverged in k of n "
                 "seeds\"); a point counts as diverged when at least half of its finished seeds "
                 "diverged, else by the mean of the others.")
        short = _short_points(outcomes)
        if short:
            text += (f" {short} point{'s have' if short > 1 else ' has'} fewer finished seeds than that "
                     "(still running or failed): shown with the n they have (\"n of N\").")
    return text + " The verdict is about these runs at this budget."


def _mid_check(outcomes: list) -> str:
    """Whether these runs meet the ``mid`` budget's definition: the best floating-point point's mean
    test loss (finished, not diverged seeds) below :data:`MID_FP_CEILING`. Said either way, with the
    number, so that a sweep file changed later cannot keep a sentence it no longer earns."""
    points: dict[tuple, list[float]] = {}
    for outcome in outcomes:
        for r in outcome.rows:
            loss = row_loss(r)
            if _is_fp(r) and loss is not None and math.isfinite(loss):
                points.setdefault((outcome.name, repr(sorted((r.get("values") or {}).items()))),
                                  []).append(loss)
    if not points:
        return ("**No floating-point point has a finished result, so nothing here shows that this "
                "budget meets that definition.** ")
    best = min(sum(v) / len(v) for v in points.values())
    if best < MID_FP_CEILING:
        return f"Here it does: the best floating-point point's mean test loss is {best:.3f}. "
    return (f"**Here it does not: the best floating-point point's mean test loss is {best:.3f}, not "
            f"below {MID_FP_CEILING:g}; these runs are not at the budget the `--mid` sweeps are meant "
            "to be.** ")


def _short_points(outcomes: list) -> int:
    """Points (axis values and kind) with a seed that has no result."""
    points: dict[tuple, bool] = {}
    for outcome in outcomes:
        for r in outcome.rows:
            key = (outcome.name, repr(sorted((r.get("values") or {}).items())), r.get("kind"))
            points[key] = points.get(key, True) and bool(r.get("done"))
    return sum(1 for complete in points.values() if not complete)


def _budget_lines(sweep, outcome, out_dir: Path, partway: list[dict] | None = None) -> list[str]:
    spec = sweep.spec
    try:
        shown = sweep.file.resolve().relative_to(repo_root())
    except ValueError:
        shown = sweep.file
    lines = [f"- Sweep file `{shown}` ({spec.mode} over {', '.join(f'`{a}`' for a in spec.axes)}; "
             f"base workload `{spec.base}`; kind {spec.kind}; seeds {spec.seeds})."]
    if spec.kind in ("train", "both"):
        t = spec.train
        budget = []
        if t.max_chars:
            budget.append(f"max_chars {t.max_chars:,} per run")
        if t.epochs:
            budget.append(f"{t.epochs:g} epoch{'s' if t.epochs != 1 else ''} per run")
        budget.append(f"update mode {t.update_mode or 'trainer default (fast)'}")
        seeds = len(spec.seeds)
        runs = (f"{outcome.points} runs ({outcome.points // seeds} points x {seeds} seeds)" if seeds > 1
                else f"{outcome.points} points")
        lines.append(f"- Training budget: {', '.join(budget)}; {runs}.")
    failed = [r for r in outcome.rows if r.get("failed")]
    if failed:
        lines.append(f"- Failed points: {len(failed)} of {outcome.points} (not in the analysis): "
                     + "; ".join(f"{r['label']}: {r['error']}" for r in failed) + ".")
    progress = _progress_line(outcome, out_dir / "runs" / sweep.name, partway)
    if progress:
        lines.append(progress)
    seconds = [r.get("seconds") for r in outcome.rows if r.get("seconds") is not None]
    if seconds:
        lines.append(f"- Run time: {sum(seconds):.0f} s in total over {len(seconds)} runs "
                     f"(longest {max(seconds):.0f} s; wall clock, as each run measured it over all "
                     "the segments it was resumed in).")
    runs = out_dir / "runs" / sweep.name
    wall = runs / "wall.json"
    if wall.is_file():
        try:
            w = json.loads(wall.read_text())
            lines.append(f"- Wall time of the last run that computed points: {w['wall_s']:.0f} s for "
                         f"{w['computed_points']} points (jobs {w.get('jobs') or 'default'}).")
        except (ValueError, KeyError):
            pass
    lines.append(f"- Results: `runs/{sweep.name}/results.jsonl` (resumable; rerunning the command only "
                 "computes missing points), sweep summary `runs/{0}/summary.md`.".format(sweep.name))
    return lines


def _checkpoint_step(folder: Path) -> tuple[int, int] | None:
    """``(step, total_steps)`` of the checkpoint in ``folder``, None without a readable one."""
    from archsim.functional.checkpoint_meta import read_checkpoint_meta

    meta = read_checkpoint_meta(folder)
    try:
        return (int(meta["step"]), int(meta["total_steps"])) if meta is not None else None
    except (KeyError, TypeError, ValueError):
        return None


#: File beside a sweep's results (``runs/<sweep>/``) holding the curves of its part-way runs, as
#: their checkpoints' ``curve.json`` hold them. Small and committed with the report: a checkpoint
#: too large for the repository is lost with its machine, the curve up to it is not.
PARTWAY_CURVES = "partway_curves.json"


def _read_curve(folder: Path) -> list[dict]:
    """The curve a part-way run wrote beside its checkpoint (``curve.json``); empty without one."""
    from archsim.functional.checkpoint_meta import CURVE_FILE

    try:
        curve = json.loads((folder / CURVE_FILE).read_text()).get("curve") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [c for c in curve if isinstance(c, dict)] if isinstance(curve, list) else []


def _last_curve_point(curve: list[dict]) -> dict | None:
    """The latest curve point with a validation loss (epoch, validation loss, run seconds so far)."""
    points = [c for c in curve if c.get("valid_loss") is not None]
    return points[-1] if points else None


def _hours_or_minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"


def _partway_text(run: dict) -> str:
    """``label at step S of N`` and, from its curve, where its validation loss stood at its
    latest curve point."""
    text = f"{run['label']} at step {run['step']:,} of {run['total_steps']:,}"
    point = _last_curve_point(run["curve"])
    if point is not None:
        where = (f"epoch {float(point['epoch']):.1f}" if point.get("epoch") is not None
                 else f"step {int(point.get('step') or 0):,}")
        text += f" (validation {float(point['valid_loss']):.3f} nats/char at {where}"
        if point.get("seconds"):
            text += f", after {_hours_or_minutes(float(point['seconds']))} of run time"
        text += ")"
    return text


def _short_labels(rows: list[dict]) -> dict[int, str]:
    """Row index -> the axes in which the row differs from some other row, and its seed (a
    paper-scale sweep zips eight axes of which two vary); rows without values keep their label."""
    values = [r.get("values") for r in rows]
    if not values or not all(isinstance(v, dict) for v in values):
        return {}
    varying = [k for k in values[0] if len({repr(v.get(k)) for v in values}) > 1]
    return {i: ", ".join([f"{k}={r['values'].get(k)}" for k in varying] + [f"seed={r.get('seed')}"])
            for i, r in enumerate(rows)}


def partway_runs(outcome, runs: Path) -> list[dict]:
    """The sweep's unfinished runs that a checkpoint under ``runs/checkpoints/`` says are part way:
    label, key, step, total_steps and the curve so far (populations are not included)."""
    from archsim.sweep.runner import CHECKPOINTS

    short = _short_labels(outcome.rows)
    found = []
    for i, r in enumerate(outcome.rows):
        if r.get("done") or r.get("failed") or not r.get("key"):
            continue
        folder = runs / CHECKPOINTS / r["key"]
        at = _checkpoint_step(folder)
        if at is not None:
            label = short.get(i) or r.get("label", r["key"]).replace(", kind=train", "")
            found.append({"label": label, "key": r["key"], "step": at[0], "total_steps": at[1],
                          "curve": _read_curve(folder)})
    return found


def write_partway_curves(outcome, runs: Path, partway: list[dict] | None = None) -> Path | None:
    """Write ``runs/``:data:`PARTWAY_CURVES` with the part-way runs' curves (atomically), or remove
    it when no run is part way; the path written, else None. ``partway``: :func:`partway_runs`
    when the caller has it already (read from the checkpoints otherwise)."""
    from archsim.fsutil import atomic_write_json

    path = runs / PARTWAY_CURVES
    if partway is None:
        partway = partway_runs(outcome, runs)
    found = [r for r in partway if r["curve"]]
    if not found:
        path.unlink(missing_ok=True)
        return None
    return atomic_write_json(path, {
        "about": "Curves of the runs still part way, as their checkpoints hold them (the sweep "
                 "resumes each from its checkpoint; this file goes when none is part way).",
        "runs": found})


def _point_of(row: dict) -> str | None:
    """A row's point: its axis values without the seed (None for a row without values: such rows
    are not told apart)."""
    values = row.get("values")
    return repr(sorted(values.items())) if isinstance(values, dict) else None


def _projected_run_seconds(run: dict) -> float | None:
    """A part-way run's whole-run time at the pace it has kept so far (its latest curve point's
    run seconds, carried from that step to the run's last); None without a usable curve point."""
    point = _last_curve_point(run["curve"])
    if point is not None and point.get("seconds") and point.get("step") and run["total_steps"]:
        return float(point["seconds"]) * run["total_steps"] / int(point["step"])
    return None


def _time_left(outcome, partway: list[dict]) -> str | None:
    """The run time left, summed over the unfinished runs, each (what is left of it) at its own
    point's pace: the mean of that point's finished runs, else of its part-way runs' projected
    whole-run times, else the same over all points. Rows without axis values share one pace, as
    before any point could be told apart. None with no pace to go by."""
    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    finished: dict = {}
    projected: dict = {}
    # Finished runs that trained to the end set the pace (a diverged one stopped early).
    for r in outcome.rows:
        if r.get("done") and r.get("seconds") and not (r.get("result") or {}).get("diverged"):
            finished.setdefault(_point_of(r), []).append(float(r["seconds"]))
    step_of = {p["key"]: p for p in partway}
    point_of_key = {r.get("key"): _point_of(r) for r in outcome.rows}
    for p in partway:
        seconds = _projected_run_seconds(p)
        if seconds is not None:
            projected.setdefault(point_of_key.get(p["key"]), []).append(seconds)
    all_finished = [s for xs in finished.values() for s in xs]
    all_projected = [s for xs in projected.values() for s in xs]
    pooled = ((mean(all_finished), "the finished runs' mean") if all_finished else
              (mean(all_projected), "the part-way runs' pace so far carried to their ends") if all_projected
              else (None, None))
    if pooled[0] is None:
        return None
    short = _short_labels(outcome.rows)
    groups: dict = {}     # point -> [runs left, pace, source, label]
    for i, r in enumerate(outcome.rows):
        if r.get("done") or r.get("failed"):
            continue
        p = step_of.get(r.get("key"))
        left = 1.0 - (p["step"] / p["total_steps"] if p and p["total_steps"] else 0.0)
        point = _point_of(r)
        if point is not None and point in finished:
            pace, source = mean(finished[point]), "its finished runs"
        elif point is not None and point in projected:
            pace, source = mean(projected[point]), "its part-way runs' pace so far"
        else:
            pace, source = pooled
        label = ", ".join(a for a in short.get(i, "").split(", ") if a and not a.startswith("seed="))
        g = groups.setdefault(point, [0.0, pace, source, label])
        g[0] += left
    total = sum(g[0] * g[1] for g in groups.values())
    runs_left = sum(g[0] for g in groups.values())
    if all(g[2] == pooled[1] for g in groups.values()):    # one pace for all: the pooled one
        how = (f"at the finished runs' mean of {pooled[0]:,.0f} s" if all_finished
               else f"at {pooled[0]:,.0f} s a run, {pooled[1]}")
        return f"{_hours_or_minutes(total)} of run time ({runs_left:.2f} runs {how}"
    parts = [f"{g[0]:.2f} runs of {g[3] or 'the other points'} at {g[1]:,.0f} s a run ({g[2]})"
             for g in groups.values()]
    return (f"{_hours_or_minutes(total)} of run time ({runs_left:.2f} runs, each at its own point's pace "
            f"where a seed of that point has finished or is part way, else at {pooled[1]}: "
            + "; ".join(parts))


def _progress_line(outcome, runs: Path, partway: list[dict] | None = None) -> str | None:
    """How far an unfinished sweep has got: runs finished, each run a checkpoint says is part
    way (the next run of the command resumes it there; with its latest validation loss), and the
    run time left (:func:`_time_left`). None when every run has finished. ``partway``:
    :func:`partway_runs` when the caller has it already."""
    from archsim.sweep.runner import CHECKPOINTS

    finished = sum(1 for r in outcome.rows if r.get("done") or r.get("failed"))
    if finished == outcome.points:
        return None
    if partway is None:
        partway = partway_runs(outcome, runs)
    texts = [_partway_text(r) for r in partway]
    populations = sorted((runs / CHECKPOINTS).glob("population-*"))
    for folder in populations:   # a population's members
        at = _checkpoint_step(folder)
        if at is not None:
            texts.append(f"population {folder.name[len('population-'):]} at step {at[0]:,} of {at[1]:,}")
    text = f"- Progress: {finished} of {outcome.points} runs finished"
    if texts:
        text += ("; part way (the next run of the command continues from the checkpoint under "
                 f"`runs/{runs.name}/{CHECKPOINTS}/`): " + "; ".join(texts))
    if (runs / PARTWAY_CURVES).is_file():
        text += f" (their curves so far: `runs/{runs.name}/{PARTWAY_CURVES}`)"
    # Not for populations: their members share one clock, so no run's seconds are its own.
    in_populations = populations or any(
        "population_seeds" in (getattr(r.get("point"), "options", None) or {}) for r in outcome.rows)
    if in_populations:
        return text + "."
    left = _time_left(outcome, partway)
    if left:
        text += f". Left: about {left}; the command runs --jobs of them at once)"
    return text + "."


def render_report(claim: Claim, analysis: Analysis, sweeps: list, outcomes: list, plot_name: str,
                  command: str, out_dir: Path, budget: str = "default",
                  partway: list[list[dict]] | None = None) -> str:
    """The report's Markdown. ``partway``: per outcome, its :func:`partway_runs` when the caller
    has read them already (they are read from the checkpoints otherwise)."""
    lines = [f"# Reproduction: {claim.title}", "",
             f"**Claim** ({PAPER}): {claim.statement}", "",
             f"**Verdict: {analysis.verdict}.** {analysis.sentence}", "",
             _markdown_table(analysis.table), ""]
    for note in analysis.notes:          # one paragraph each
        lines += [note, ""]
    lines += [f"![{claim.name}]({plot_name})", "", "## How this was produced", "", f"    {command}", ""]
    if sweeps:
        lines += [_seeds_paragraph(sweeps, outcomes, budget), ""]
    if claim.prefix_data:
        lines += ["The runs train on a prefix of the text: `training.train_chars / training.train_fraction` "
                  "characters, split into training, validation and test text by `training.train_fraction` as usual "
                  "(see `archsim/reproduce/prefix.py`).", ""]
    for i, (sweep, outcome) in enumerate(zip(sweeps, outcomes)):
        lines += _budget_lines(sweep, outcome, out_dir, partway[i] if partway is not None else None)
    if not sweeps:
        lines.append("- No training: the counts come from the shipped workload files "
                     f"({', '.join(f'`workloads/{n}.yaml`' for n in MAC_WORKLOADS)}).")
    lines.append("")
    return "\n".join(lines)
