"""Markdown pieces shared by the report pages under ``reports/`` that summarize training runs.

A report's ``summarize.py`` regenerates its README.md from the committed curves (``curve.json`` as
written by :func:`archsim.functional.train.train`). The pages share one block: the command that
produced the runs in a code fence, then a table with one row a run (epochs, the last training,
validation and test losses, time and state). :func:`load_curve` reads a curve,
:func:`run_row` renders one row of the table from it and :func:`command_and_run_table` renders the
fence and the table. The functions return text; they neither print nor write files.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

RUN_TABLE_HEAD = ("| run | epochs | train | valid | test (nats/char) | time, state |\n"
                  "|---|---|---|---|---|---|")
"""Header and separator lines of the run table."""

_ROW_KEYS = ("epoch", "train_loss", "seconds")


def load_curve(path: Path) -> list[dict]:
    """The curve points of a ``curve.json`` (its ``"curve"`` list), or ``[]`` where the file does not
    exist (the run has not started)."""
    path = Path(path)
    return json.loads(path.read_text())["curve"] if path.exists() else []


def _loss(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_row(label: str, curve: Sequence[dict], *, unfinished: str) -> str:
    """One row of the run table for the run ``label`` from its curve points.

    An empty curve gives ``not started``. Otherwise the last point gives the epochs (2 decimals),
    training, validation and test loss (3 decimals; ``-`` where a loss is missing) and the time in
    minutes, followed by ``finished`` where the point is marked ``final`` and by ``unfinished``
    (the page's words for a run that stopped early) where it is not.

    Raises :class:`ValueError` if the last point lacks ``epoch``, ``train_loss`` or ``seconds``
    (for example a diverged run's last point, which a page renders in its own words).
    """
    if not curve:
        return f"| {label} | not started | | | | |"
    end = curve[-1]
    missing = [key for key in _ROW_KEYS if end.get(key) is None]
    if missing:
        raise ValueError(f"run {label!r}: the last curve point has no {', '.join(missing)}")
    state = "finished" if end.get("final") else unfinished
    return (f"| {label} | {end['epoch']:.2f} | {end['train_loss']:.3f} | {_loss(end.get('valid_loss'))} | "
            f"{_loss(end.get('test_loss'))} | {end['seconds'] / 60:.0f} min, {state} |")


def command_and_run_table(command: str, rows: Iterable[str]) -> str:
    """The command in a code fence, a blank line, then the run table with ``rows`` (from
    :func:`run_row`, or rows a page renders itself); no trailing newline.

    Raises :class:`ValueError` if the command spans lines or holds a code fence (it would break the
    page), or if there are no rows.
    """
    if "\n" in command or "```" in command:
        raise ValueError("the command must be one line without a code fence")
    rows = list(rows)
    if not rows:
        raise ValueError("a run table needs at least one row")
    return "\n".join(["```", command, "```", "", RUN_TABLE_HEAD, *rows])
