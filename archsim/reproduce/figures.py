"""The figure every claim's plot draws on, how points over seeds are drawn (means with error bars,
each seed a faint dot), and how a figure is finished and saved as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from archsim.plots import write_png
from archsim.reproduce.analysis import Stats


def _figure():
    from archsim.plots import figure

    fig = figure(6.6, 4.2)
    return fig, fig.subplots()


def seed_errorbars(ax, points: Iterable[tuple[float, Stats]], *, label: str, color: str,
                   offset: float = 0.0, line: bool = True) -> None:
    """Each point's mean ± its seeds' standard deviation at x (+ ``offset``), joined by a line; every
    finite seed a faint dot; a point with diverged seeds marked ``diverged k/n`` at the top."""
    points = [(x + offset, s) for x, s in points if s.n]
    finite = [(x, s) for x, s in points if s.values]
    ax.errorbar([x for x, _ in finite], [s.mean for _, s in finite],
                yerr=[s.sd or 0.0 for _, s in finite], color=color, marker="o", ms=4, capsize=3,
                lw=1.2 if line else 0, label=label)
    for x, s in finite:
        if len(s.values) > 1:
            ax.scatter([x] * len(s.values), list(s.values), color=color, alpha=0.3, s=12, lw=0)
    for x, s in points:
        if s.diverged:
            ax.annotate(f"diverged {s.diverged}/{s.n}", (x, 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="center", fontsize=7, color=color)


def _save(fig, ax, path: Path, legend: bool = True) -> Path:
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return write_png(path, fig, dpi=110)
