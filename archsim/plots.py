"""Plots of ``archsim compare`` (matplotlib, Agg, PNG bytes that are identical on every run).

Matplotlib is imported inside the functions (``import archsim`` stays light). Each function returns
PNG bytes; the caller writes them atomically. Figures are drawn on a private ``Figure`` with the
Agg canvas (no pyplot global state) under matplotlib's default rc settings (a user's matplotlibrc
cannot change the bytes), and saved without the ``Software`` tag, which carries the version.
"""
from __future__ import annotations

import io
import math

#: Fixed colours (matplotlib's tab10), assigned by position in a fixed order.
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


def _label_log_axis(ax) -> None:
    """Plain numbers on a log y axis; label 2x and 5x minor ticks when it spans under 3 decades."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_ylim()
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 99.0

    def major(v, _pos):
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e") if v >= 1e6 else f"{v:g}"

    def minor(v, _pos):
        if span >= 3 or v <= 0:
            return ""
        lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
        return f"{v:g}" if lead in (2, 5) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(major))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def figure(width: float, height: float):
    """A new matplotlib Figure on an Agg canvas, outside pyplot (no global state, no display): the
    one way every plot in archsim (comparisons, training curves, sweeps, reproductions) starts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


_figure = figure


def write_png(path, fig, dpi: int = 100):
    """Save ``fig`` as a PNG atomically, without a timestamp (the same plot gives the same bytes)."""
    from archsim.fsutil import atomic_write_bytes

    return atomic_write_bytes(path, _png(fig, dpi))


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _defaults():
    """A context with matplotlib's built-in defaults (ignoring any matplotlibrc)."""
    import matplotlib

    ctx = matplotlib.rc_context()
    ctx.__enter__()
    matplotlib.rcdefaults()
    matplotlib.rcParams["svg.hashsalt"] = "archsim"
    return ctx


def _scale(max_value: float, unit: str) -> tuple[float, str]:
    """(divisor, label) with an engineering prefix that suits ``max_value``."""
    if max_value <= 0:
        return 1.0, unit
    exp = max(-15, min(12, int(math.floor(math.log10(max_value) / 3) * 3)))
    prefix = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T"}[exp]
    return 10.0 ** exp, prefix + unit


def energy_breakdown_png(c) -> bytes:
    """Stacked bars: RPU energy per step by component, one bar per architecture, one panel per workload."""
    from archsim.compare import _components

    comps = _components(c)
    workloads = list(dict.fromkeys(r.workload for r in c.rows))
    ncols = min(3, len(workloads))
    nrows = math.ceil(len(workloads) / ncols)
    ctx = _defaults()
    try:
        n_arch = max(sum(1 for r in c.rows if r.workload == w) for w in workloads)
        fig = _figure(max(4.2, 1.0 + 0.9 * n_arch) * ncols + 1.2, 4.3 * nrows + 0.6)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for i, w in enumerate(workloads):
            ax = axes[i // ncols][i % ncols]
            rows = [r for r in c.rows if r.workload == w]
            div, unit = _scale(max(r.energy_per_step_J for r in rows), "J")
            x = list(range(len(rows)))
            bottom = [0.0] * len(rows)
            for k, comp in enumerate(comps):
                vals = [r.energy_breakdown_J.get(comp, 0.0) / div for r in rows]
                ax.bar(x, vals, bottom=bottom, width=0.65, color=_TAB10[k % 10],
                       label=comp if i == 0 else None)
                bottom = [b + v for b, v in zip(bottom, vals)]
            ax.set_xticks(x)
            ax.set_xticklabels([r.architecture.replace("shared_adc256_", "shared_adc256_\n") for r in rows],
                               fontsize=7)
            ax.set_ylabel(f"energy per training step ({unit})")
            r0 = rows[0]
            ax.set_title(f"{w} (batch {r0.batch_size}, T {r0.seq_len})", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        for j in range(len(workloads), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles, labels = axes[0][0].get_legend_handles_labels()
        # Legend top to bottom in stacking order (top of the bar first).
        fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=8, frameon=False,
                   title="component")
        fig.suptitle("RPU energy per training step by component "
                     f"({'SimPy' if c.fidelity == 'simpy' else 'closed-form'} timing; leakage charged "
                     "to its component)", fontsize=10)
        fig.tight_layout(rect=(0, 0, 0.88, 0.96))
        return _png(fig)
    finally:
        ctx.__exit__(None, None, None)


def scaling_png(s) -> bytes:
    """Speedup (top row) and energy ratio (bottom row) vs the swept parameter; one column per
    architecture, one line per GPU in its best precision at each point; contention-including RPU
    timing solid, the closed form alone dotted; the TDP-bound energy ratio dashed; parity line at 1."""
    from archsim.compare import sweep_title

    archs = s.architectures
    ctx = _defaults()
    try:
        fig = _figure(5.0 * len(archs) + 0.5, 8.0)
        axes = fig.subplots(2, len(archs), squeeze=False, sharex=True)
        xlabel = "hidden size H (units per layer)" if s.parameter == "hidden_size" else "batch size"
        for j, arch in enumerate(archs):
            pts = [p for p in s.points if p["architecture"] == arch]
            xs = [p["value"] for p in pts]
            raised = [p["value"] for p in pts if p["n_tiles_raised"]]
            for row, (metric, ylabel) in enumerate((
                    ("speedup", "speedup = GPU time / RPU time per step"),
                    ("energy_ratio", "energy ratio = GPU energy / RPU energy per step"))):
                ax = axes[row][j]
                lows = []
                for k, name in enumerate(s.baseline_names):
                    colour = _TAB10[k % 10]
                    ys = [p["vs"][name][metric] for p in pts]
                    lows += ys
                    ax.plot(xs, ys, marker="o", ms=3.5, color=colour, ls="-",
                            label=f"{name.upper()} (best precision)")
                    closed = [p["vs_closed_form"][name][metric] for p in pts]
                    ax.plot(xs, closed, color=colour, ls=":", lw=1.0,
                            label="closed form, no contention" if k == 0 else None)
                    if metric == "energy_ratio":
                        bound = [p["vs"][name]["energy_ratio_bound"] for p in pts]
                        lows += bound
                        ax.plot(xs, bound, color=colour, ls="--", lw=1.0,
                                label="vs GPU TDP x time (bound)" if k == 0 else None)
                # Parity (RPU = GPU); on the energy row only when the data come near it.
                if metric == "speedup" or min(lows) < 10:
                    ax.axhline(1.0, color="black", lw=0.8, ls="-.")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                _label_log_axis(ax)
                ax.grid(True, which="both", alpha=0.25)
                ax.set_ylabel(ylabel, fontsize=8)
                if row == 1:
                    ax.set_xlabel(xlabel)
                if row == 0:
                    title = arch + (f"\n(n_tiles raised to fit for {s.parameter} >= {min(raised)})"
                                    if raised else "")
                    ax.set_title(title, fontsize=9)
                ax.legend(fontsize=7, loc="best")
            axes[1][j].set_xticks(xs)
            axes[1][j].set_xticklabels([str(v) for v in xs], fontsize=7)
        fig.suptitle(sweep_title(s).replace("; ", ";\n", 1), fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.94))
        return _png(fig)
    finally:
        ctx.__exit__(None, None, None)
