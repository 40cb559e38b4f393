"""A claim's Markdown report: verdict sentence, table, notes, plot, and how it was produced (command,
sweep files, budgets, failed points, run and wall times)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from archsim.reproduce.analysis import SPREAD_SE, Analysis, _is_fp, row_loss, spread_text
from archsim.reproduce.macs import MAC_WORKLOADS
from archsim.reproduce.progress import progress_line
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


def _budget_lines(sweep, outcome, out_dir: Path, partway: list[dict] | None = None,
                  lost: list[dict] | None = None) -> list[str]:
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
    progress = progress_line(outcome, out_dir / "runs" / sweep.name, partway, lost)
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


def render_report(claim: Claim, analysis: Analysis, sweeps: list, outcomes: list, plot_name: str,
                  command: str, out_dir: Path, budget: str = "default",
                  partway: list[list[dict]] | None = None, lost: list[list[dict]] | None = None) -> str:
    """The report's Markdown. ``partway`` and ``lost``: per outcome, its part-way runs and lost
    attempts (:func:`~archsim.reproduce.progress.partway_runs`,
    :func:`~archsim.reproduce.progress.lost_attempts`) when the caller has read them already (they
    are read from the checkpoints and the curves file otherwise)."""
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
        lines += _budget_lines(sweep, outcome, out_dir, partway[i] if partway is not None else None,
                               lost[i] if lost is not None else None)
    if not sweeps:
        lines.append("- No training: the counts come from the shipped workload files "
                     f"({', '.join(f'`workloads/{n}.yaml`' for n in MAC_WORKLOADS)}).")
    lines.append("")
    return "\n".join(lines)
