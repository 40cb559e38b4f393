"""A claim's Markdown report: verdict sentence, table, notes, plot, and how it was produced (command,
sweep files, budgets, failed points, run and wall times)."""
from __future__ import annotations

import json
from pathlib import Path

from archsim.reproduce.analysis import Analysis
from archsim.reproduce.macs import MAC_WORKLOADS
from archsim.reproduce.registry import PAPER, Claim, repo_root


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    from tabulate import tabulate

    headers = list(rows[0])
    return tabulate([[r.get(h, "") for h in headers] for r in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


def _budget_lines(sweep, outcome, out_dir: Path) -> list[str]:
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
            budget.append(f"{t.epochs} epochs per run")
        budget.append(f"update mode {t.update_mode or 'trainer default (fast)'}")
        lines.append(f"- Training budget: {', '.join(budget)}; {outcome.points} points.")
    failed = [r for r in outcome.rows if r.get("failed")]
    if failed:
        lines.append(f"- Failed points: {len(failed)} of {outcome.points} (not in the analysis): "
                     + "; ".join(f"{r['label']}: {r['error']}" for r in failed) + ".")
    seconds = [r.get("seconds") for r in outcome.rows if r.get("seconds") is not None]
    if seconds:
        lines.append(f"- Run time per point: {sum(seconds):.0f} s in total over {len(seconds)} points "
                     f"(longest {max(seconds):.0f} s).")
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
                  command: str, out_dir: Path) -> str:
    lines = [f"# Reproduction: {claim.title}", "",
             f"**Claim** ({PAPER}): {claim.statement}", "",
             f"**Verdict: {analysis.verdict}.** {analysis.sentence}", "",
             _markdown_table(analysis.table), ""]
    lines += [f"{n}" for n in analysis.notes] + [""]
    lines += [f"![{claim.name}]({plot_name})", "", "## How this was produced", "", f"    {command}", ""]
    if sweeps:
        lines += ["Budgets: the default budgets are a small fraction of the paper's (tens of epochs, "
                  "several seeds; see the `--full` sweeps), one seed per point. The verdict is about "
                  "these runs at this budget, with the thresholds above.", ""]
    if claim.prefix_data:
        lines += ["The runs train on a prefix of the text: `training.train_chars / training.train_fraction` "
                  "characters, split into training, validation and test text by `training.train_fraction` as usual "
                  "(see `archsim/reproduce/prefix.py`).", ""]
    for sweep, outcome in zip(sweeps, outcomes):
        lines += _budget_lines(sweep, outcome, out_dir)
    if not sweeps:
        lines.append("- No training: the counts come from the shipped workload files "
                     f"({', '.join(f'`workloads/{n}.yaml`' for n in MAC_WORKLOADS)}).")
    lines.append("")
    return "\n".join(lines)
