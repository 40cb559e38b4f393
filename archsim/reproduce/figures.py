"""The figure every claim's plot draws on, and how it is finished and saved as PNG."""
from __future__ import annotations

from pathlib import Path

from archsim.plots import write_png


def _figure():
    from archsim.plots import figure

    fig = figure(6.6, 4.2)
    return fig, fig.subplots()


def _save(fig, ax, path: Path, legend: bool = True) -> Path:
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return write_png(path, fig, dpi=110)
