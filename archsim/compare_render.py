"""Rendering of comparisons and scaling sweeps: tables (GitHub Markdown, LaTeX booktabs, CSV), the
README of a report folder, and :func:`write_compare_set`. Deterministic: fixed float formats, stable
order, no timestamps, so that regenerating the committed ``reports/compare/`` gives identical bytes.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from archsim.compare_rows import _FIDELITY, HEADLINE_BASELINES, Comparison, CompareRow
from archsim.compare_scaling import ScalingSweep

# --- rendering --------------------------------------------------------------------------------

def _q(value: float, unit: str) -> str:
    from archsim.units import format_quantity

    return format_quantity(value, unit)


def _big(value: float, unit: str) -> str:
    """Like :func:`_q`, with the P and E prefixes that chip-level peak rates need."""
    for exp, prefix in ((18, "E"), (15, "P")):
        if abs(value) >= 10.0 ** exp:
            return f"{value / 10.0 ** exp:.3g} {prefix}{unit}"
    return _q(value, unit)


def _pct(fraction: float | None) -> str:
    """A percentage that does not round small values to 0.0 %."""
    if fraction is None:
        return ""
    pct = 100.0 * fraction
    if pct == 0 or pct >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%" if pct >= 0.001 else "<0.001%"


def _x(ratio: float) -> str:
    """A ratio with 3 significant figures, without exponent notation up to 10^6."""
    if ratio >= 1000:
        return f"{ratio:,.0f}x"
    return f"{ratio:.3g}x"


def _g(value: float | None) -> str:
    """Fixed CSV float format (6 significant figures): stable bytes across runs."""
    return "" if value is None else f"{value:.6g}"


def _latex(table: str) -> str:
    return table.replace("µ", r"\textmu{}").replace("²", r"\textsuperscript{2}")


def _fmt(fmt: str) -> str:
    return {"github": "github", "latex": "latex_booktabs"}.get(fmt, fmt)


def _area_cell(row: CompareRow) -> str:
    return "n/a" if row.area_m2 <= 0 else f"{row.area_m2 * 1e6:.3g}"


def main_table(c: Comparison, fmt: str = "github", baselines: list[str] | None = None) -> str:
    """workloads x architectures: RPU time, energy, efficiency, tiles, area; ratio per baseline."""
    from tabulate import tabulate

    names = c.baseline_names if baselines is None else [b for b in baselines if b in c.baseline_names]
    headers = ["workload", "architecture", "tiles", "array util.", "time/step", "energy/step",
               "op/s/W", "area (mm²)"]
    for n in names:
        headers += [f"speedup {n}", f"energy ratio {n}", f"energy ratio {n} (bound)"]
    body = []
    for r in c.rows:
        line = [r.workload, r.architecture, r.tiles, _pct(r.array_utilization),
                _q(r.time_per_step_s, "s"), _q(r.energy_per_step_J, "J"), f"{r.ops_per_W:.3g}",
                _area_cell(r)]
        body.append(line + _vs_cells(r, names, bound=True))
    out = tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def _vs_cells(r, names: list[str], bound: bool = False, joined: bool = False) -> list[str]:
    """Speedup and energy ratio (and its bound) against each named baseline (blank where not run).

    ``joined``: the energy ratio cell reads "modelled / bound"."""
    cells: list[str] = []
    for n in names:
        v = r.vs.get(n)
        if joined:
            cells += [_x(v["speedup"]), f"{_x(v['energy_ratio'])} / {_x(v['energy_ratio_bound'])}"] \
                if v else ["", ""]
        elif bound:
            cells += [_x(v["speedup"]), _x(v["energy_ratio"]), _x(v["energy_ratio_bound"])] \
                if v else ["", "", ""]
        else:
            cells += [_x(v["speedup"]), _x(v["energy_ratio"])] if v else ["", ""]
    return cells


def headline_names(names: list[str]) -> list[str]:
    """The baselines of the headline: every precision of the :data:`HEADLINE_BASELINES` GPUs present
    (or the first two baselines when none of them is)."""
    picked = [n for n in names if n.split(":")[0] in HEADLINE_BASELINES]
    return picked or names[:2]


def headline_table(c: Comparison, fmt: str = "github") -> str:
    """The README's headline: workloads x architectures, speedup and energy ratio (modelled GPU power
    / TDP bound) against V100 and H100 in every precision compared."""
    from tabulate import tabulate

    names = headline_names(c.baseline_names)
    headers = ["workload", "architecture", "time/step", "energy/step"]
    for n in names:
        headers += [f"speedup vs {n.upper()}", f"energy ratio vs {n.upper()} (modelled / bound)"]
    body = []
    for r in c.rows:
        line = [r.workload, r.architecture, _q(r.time_per_step_s, "s"), _q(r.energy_per_step_J, "J")]
        body.append(line + _vs_cells(r, names, joined=True))
    out = tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def baselines_table(c: Comparison, fmt: str = "github") -> str:
    """The digital baselines per workload: time, energy, utilization and where the numbers come from."""
    from tabulate import tabulate

    body = [[b.workload, b.name, b.label, _q(b.time_per_step_s, "s"), f"{b.power_W:.0f} W",
             _q(b.energy_per_step_J, "J"), _q(b.energy_bound_J or b.energy_per_step_J, "J"),
             _pct(b.utilization), "" if b.threads is None else str(b.threads)] for b in c.baselines]
    out = tabulate(body, headers=["workload", "baseline:precision", "source", "time/step",
                                  "power (modelled)", "energy/step", "energy/step bound (TDP)",
                                  "utilization of the precision's peak", "CPU threads"],
                   tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def peak_table(c: Comparison, fmt: str = "github") -> str:
    """Peak vs peak (RPU papers' style), NOT workload numbers."""
    from tabulate import tabulate

    body = [[p["name"], p["kind"], _big(p["peak_ops_per_s"], "op/s"), _big(p["peak_ops_per_s_per_W"], "op/s/W"),
             p["basis"]] for p in c.peak]
    out = tabulate(body, headers=["system", "kind", "peak", "peak efficiency", "basis"],
                   tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def area_notes(c: Comparison) -> list[str]:
    """Which parts each architecture's area leaves out (one line per distinct set of parts)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in c.rows:
        archs = groups.setdefault(tuple(r.area_missing), [])
        if r.architecture not in archs:
            archs.append(r.architecture)
    return [f"area of {', '.join(archs)} excludes {', '.join(missing)} (no area in the preset)"
            for missing, archs in groups.items() if missing]


def comparison_tables(c: Comparison, fmt: str = "github") -> list[tuple[str, str]]:
    """(title, table) pairs in display order; formats: github, latex, csv."""
    if fmt == "csv":
        return [("Comparison", comparison_csv(c)), ("Digital baselines", baselines_csv(c)),
                ("Peak throughput (peak vs peak; not achieved on these workloads)", peak_csv(c))]
    return [
        ("Comparison: workloads x architectures vs digital baselines", main_table(c, fmt)),
        ("Digital baselines (same workload, batch and T)", baselines_table(c, fmt)),
        ("Peak throughput, RPU papers' style (peak vs peak; NOT achieved on these workloads)",
         peak_table(c, fmt)),
    ]


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def comparison_csv(c: Comparison) -> str:
    """The main table with SI values (6 significant figures); empty area = unknown."""
    header = ["workload", "architecture", "fidelity", "batch_size", "seq_len", "tiles",
              "array_utilization", "time_per_step_s", "energy_per_step_J", "ops_per_s",
              "ops_per_s_per_W", "area_m2", "area_missing"]
    for n in c.baseline_names:
        header += [f"speedup_{n}", f"energy_ratio_{n}", f"energy_ratio_bound_{n}"]
    rows = []
    for r in c.rows:
        line = [r.workload, r.architecture, r.fidelity, r.batch_size, r.seq_len, r.tiles,
                _g(r.array_utilization), _g(r.time_per_step_s), _g(r.energy_per_step_J),
                _g(r.ops_per_s), _g(r.ops_per_W), _g(r.area_m2) if r.area_m2 > 0 else "",
                " ".join(r.area_missing)]
        for n in c.baseline_names:
            v = r.vs.get(n)
            line += [_g(v["speedup"]), _g(v["energy_ratio"]), _g(v["energy_ratio_bound"])] if v \
                else ["", "", ""]
        rows.append(line)
    return _csv(header, rows)


def baselines_csv(c: Comparison) -> str:
    return _csv(["workload", "baseline", "precision", "kind", "label", "time_per_step_s", "power_W",
                 "energy_per_step_J", "energy_bound_J", "utilization", "threads", "note"],
                [[b.workload, b.name, b.precision, b.kind, b.label, _g(b.time_per_step_s), _g(b.power_W),
                  _g(b.energy_per_step_J), _g(b.energy_bound_J), _g(b.utilization),
                  "" if b.threads is None else b.threads, b.note] for b in c.baselines])


def peak_csv(c: Comparison) -> str:
    return _csv(["system", "kind", "peak_ops_per_s", "peak_ops_per_s_per_W", "basis"],
                [[p["name"], p["kind"], _g(p["peak_ops_per_s"]), _g(p["peak_ops_per_s_per_W"]),
                  p["basis"]] for p in c.peak])


def energy_breakdown_csv(c: Comparison) -> str:
    comps = _components(c)
    return _csv(["workload", "architecture"] + [f"{k}_J" for k in comps] + ["total_J"],
                [[r.workload, r.architecture] + [_g(r.energy_breakdown_J.get(k, 0.0)) for k in comps]
                 + [_g(r.energy_per_step_J)] for r in c.rows])


def _components(c: Comparison) -> list[str]:
    from archsim.energy import COMPONENTS

    return [k for k in COMPONENTS if any(r.energy_breakdown_J.get(k, 0.0) > 0 for r in c.rows)]


def sweep_csv(s: ScalingSweep) -> str:
    header = ["architecture", s.parameter, "tiles", "n_tiles", "n_tiles_raised", "timing",
              "time_per_step_s", "energy_per_step_J", "closed_form_time_per_step_s"]
    for n in s.baseline_names:
        header += [f"precision_{n}", f"speedup_{n}", f"energy_ratio_{n}", f"energy_ratio_bound_{n}",
                   f"closed_form_speedup_{n}"]
    rows = []
    for p in s.points:
        line = [p["architecture"], p["value"], p["tiles"], p["n_tiles"], int(p["n_tiles_raised"]),
                p["timing"], _g(p["time_per_step_s"]), _g(p["energy_per_step_J"]),
                _g(p["closed_form_time_per_step_s"])]
        for n in s.baseline_names:
            v = p["vs"][n]
            line += [v["precision"], _g(v["speedup"]), _g(v["energy_ratio"]), _g(v["energy_ratio_bound"]),
                     _g(p["vs_closed_form"][n]["speedup"])]
        rows.append(line)
    return _csv(header, rows)


def _timing_cell(p: dict) -> str:
    return "SimPy" if p["timing"] == "simpy" else ("closed form" if p["timing"] == "closed form"
                                                   else "closed form x SimPy factor")


def sweep_table(s: ScalingSweep, fmt: str = "github") -> str:
    from tabulate import tabulate

    names = [b for b in HEADLINE_BASELINES if b in s.baseline_names] or s.baseline_names[:2]
    headers = ["architecture", s.parameter, "tiles", "timing", "time/step", "energy/step"]
    for n in names:
        headers += [f"{n.upper()} best precision", f"speedup vs {n.upper()}",
                    f"energy ratio vs {n.upper()} (modelled / bound)"]
    body = []
    for p in s.points:
        line = [p["architecture"], str(p["value"]), f"{p['tiles']}{'*' if p['n_tiles_raised'] else ''}",
                _timing_cell(p), _q(p["time_per_step_s"], "s"), _q(p["energy_per_step_J"], "J")]
        for n in names:
            v = p["vs"][n]
            line += [v["precision"], _x(v["speedup"]),
                     f"{_x(v['energy_ratio'])} / {_x(v['energy_ratio_bound'])}"]
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)


_METRIC_WORDS = {"speedup": "speedup", "energy_ratio": "energy ratio (modelled GPU power)",
                 "energy_ratio_bound": "energy ratio (GPU TDP bound)"}


def crossover_text(entry: dict, parameter: str) -> str:
    """One cell: where the ratio crosses 1, or that it does not in the swept range."""
    if entry["crossings"]:
        return "; ".join(f"{c['direction']} at {parameter} ~{c['at']:.3g} (between {c['between'][0]} "
                         f"and {c['between'][1]})" for c in entry["crossings"])
    side = "RPU wins everywhere" if entry["min"] > 1 else "RPU loses everywhere"
    return f"none in range: {side} ({_x(entry['min'])} .. {_x(entry['max'])})"


def crossover_table(s: ScalingSweep, fmt: str = "github") -> str:
    """Crossover points per architecture, GPU (best precision) and metric."""
    from tabulate import tabulate

    body = [[e["architecture"], e["baseline"].upper(), _METRIC_WORDS[e["metric"]],
             crossover_text(e, s.parameter.replace("_", " "))] for e in s.crossovers]
    return tabulate(body, headers=["architecture", "GPU (best precision)", "metric", "crossover"],
                    tablefmt=_fmt(fmt), disable_numparse=True)


def sweep_title(s: ScalingSweep) -> str:
    b = s.base
    fixed = (f"{b['layers']}-layer LSTM, T = {b['seq_len']}, vocab {b['vocab_size']}, "
             + (f"batch {b['batch_size']}" if s.parameter == "hidden_size" else f"hidden {b['hidden_size']}"))
    timing = ("SimPy timing" if s.fidelity == "simpy"
              else "SimPy where simulated, closed form x SimPy factor beyond")
    return f"Acceleration vs {s.parameter.replace('_', ' ')}: {fixed}; {timing}; GPUs in their best precision"


# --- the committed set ------------------------------------------------------------------------

#: Files :func:`write_compare_set` writes, and what each holds (listed in the README it writes).
SET_FILES = {
    "README.md": "headline table, every table in Markdown, plots, the command that regenerates this folder",
    "comparison.csv": "workloads x architectures, SI values, speedup and energy ratio per baseline",
    "comparison.tex": "the same tables as LaTeX booktabs",
    "baselines.csv": "each digital baseline's time and energy per step per workload",
    "peak_throughput.csv": "peak vs peak (RPU papers' style), not workload numbers",
    "energy_breakdown.csv": "RPU energy per step by component",
    "comparison.json": "everything above in one JSON document",
    "energy_breakdown.png": "plot: energy per step by component, per architecture, one panel per workload",
    "scaling_hidden.csv": "acceleration vs hidden size against each GPU's best precision, SimPy and closed form (data of scaling_hidden.png)",
    "scaling_hidden.png": "plot: speedup and energy ratio vs hidden size (contention included; closed form dotted)",
    "scaling_batch.csv": "acceleration vs batch size against each GPU's best precision, SimPy and closed form (data of scaling_batch.png)",
    "scaling_batch.png": "plot: speedup and energy ratio vs batch size (contention included; closed form dotted)",
}


#: What the numbers include and leave out (README of the committed set).
MODELLED = [
    "Modelled: per-line array reads over the whole driven line (unless `array.line_isolation`), "
    "DAC and ADC conversions, integrations, pulsed updates (line drives and device coincidences), "
    "digital element ops at the 16-bit datapath's energy, bus transfers, BPTT state and working "
    "vectors in tile buffers, a global buffer or DRAM with their bandwidth and contention "
    "(archsim/memory.py), area and static power of every block of the chip, idle tiles leaking "
    "unless `system.power_gating` (archsim/hw/chip.py).",
    "Not modelled: control, clocking, NoC and I/O (no area or power in the presets), the update "
    "translators' area, DRAM background power, weight programming and transfer to a host, data "
    "loading, anything after the training step (evaluation), and the Tiki-Taka family.",
    "GPU baselines: a utilization model fitted to DeepBench (V100) and H200 cuDNN timings per "
    "precision; energy = modelled board power x time (idle + (TDP - idle) x activity), not yet "
    "calibrated on measured power, with board TDP x time as the bound.",
]


def headline_paragraph(c: Comparison, sweeps: list[ScalingSweep]) -> list[str]:
    """The main workload's result on each architecture against the V100 in the precision
    practitioners use, with its dependence on batch size from the batch sweep."""
    rows = [r for r in c.rows if r.workload == "lstm2x512"] or c.rows[:1]
    batch = next((s for s in sweeps if s.parameter == "batch_size"), None)
    out = []
    from archsim.baselines import canonical_name

    for r in rows:
        v100 = canonical_name("v100")     # the precision practitioners train in
        name = v100 if v100 in r.vs else next(iter(r.vs), None)
        if name is None:
            continue
        v = r.vs[name]
        gpu, _, precision = name.partition(":")
        text = (f"- **{r.workload} on {r.architecture}** (batch {r.batch_size}, T {r.seq_len}): "
                f"{_q(r.time_per_step_s, 's')} and {_q(r.energy_per_step_J, 'J')} per step, "
                f"{v['speedup']:.3g}x faster than the {gpu.upper()} in {precision or 'its default precision'} "
                f"and {v['energy_ratio']:.3g}x less energy (modelled GPU power; "
                f"{v['energy_ratio_bound']:.3g}x against its TDP bound)")
        pts = [p for p in (batch.points if batch else []) if p["architecture"] == r.architecture
               and gpu in p["vs"]]
        if len(pts) >= 2:
            lo, hi = pts[0], pts[-1]
            text += (f"; over batch {lo['value']} to {hi['value']} (against the GPU's best precision "
                     f"there) the speedup goes from {lo['vs'][gpu]['speedup']:.3g}x to "
                     f"{hi['vs'][gpu]['speedup']:.3g}x and the energy ratio from "
                     f"{lo['vs'][gpu]['energy_ratio']:.3g}x to {hi['vs'][gpu]['energy_ratio']:.3g}x")
        if r.over_budget:
            text += "; **over budget**: " + "; ".join(r.over_budget)
        out.append(text + ".")
    return out


def readme(c: Comparison, sweeps: list[ScalingSweep], command: str, plots: bool) -> str:
    """The folder's README: the command, the curves and crossovers first, the headline per precision,
    all tables, the sweep tables, notes."""
    lines = ["# archsim compare: RPU architectures vs digital baselines", "",
             "Regenerate this folder (byte-identical; from the repository root):", "",
             "```", command, "```", ""]
    head = headline_paragraph(c, sweeps)
    if head:
        lines += ["## Headline", ""] + head + [""]
    lines += ["## What is and is not modelled", ""] + [f"- {m}" for m in MODELLED] + [""]
    if sweeps:
        lines += ["## The acceleration curves against each GPU in its best precision", "",
                  "Speedup and energy ratio over hidden size and batch size; each point compares with "
                  "the GPU's fastest precision there (tables below say which). RPU timing includes "
                  "contention (SimPy) wherever the chip was simulated, and carries the SimPy factor "
                  "beyond; the closed form alone (dotted) overstates shared-ADC designs.", ""]
        if plots:
            for s in sweeps:
                lines += [f"![{s.parameter}](scaling_{s.parameter.split('_')[0]}.png)", ""]
        for s in sweeps:
            lines += [f"### Crossovers vs {s.parameter.replace('_', ' ')}", "", crossover_table(s), ""]
    lines += ["## Headline: speedup and energy ratio vs V100 and H100, per precision", "",
              headline_table(c), "",
              "Speedup = GPU time per step / RPU time per step; energy ratio = GPU energy per step / "
              "RPU energy per step (> 1: the RPU is better), given as modelled / bound: modelled GPU "
              "energy = (idle + (TDP - idle) x activity) x time, not calibrated on measured power; "
              "bound = board TDP x time. `gpu:precision`: fp32 strict, tf32, fp16/bf16 mixed precision "
              "(bf16/fp16 on A100/H100/H200 extrapolated from the H200 TF32 fit; `archsim calibrate`). "
              f"RPU timing: {_FIDELITY[c.fidelity]}.", ""]
    for title, table in comparison_tables(c, "github"):
        lines += [f"## {title}", "", table, ""]
    if area_notes(c):
        lines += ["Area (mm²): " + "; ".join(area_notes(c)) + ".", ""]
    for s in sweeps:
        lines += [f"## {sweep_title(s)}", "", sweep_table(s), ""]
        if any(p["n_tiles_raised"] for p in s.points):
            lines += ["`*`: the architecture's `system.n_tiles` was raised to fit this point.", ""]
        for chk in s.fidelity_check:
            lines.append(
                f"- SimPy check at {s.parameter} {chk['value']} on {chk['architecture']}: SimPy step "
                f"{_q(chk['simpy_time_per_step_s'], 's')} = {chk['simpy_over_analytic']:.3g}x the "
                "closed form's.")
        lines += [f"- {n}" for n in s.notes] + [""]
    if plots:
        lines += ["## Energy breakdown", "", "![energy breakdown](energy_breakdown.png)", ""]
    lines += ["## Files", ""]
    lines += [f"- `{f}`: {what}" for f, what in SET_FILES.items()
              if plots or not (f.endswith(".png") or f.startswith("scaling_"))]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in c.notes] + [""]
    return "\n".join(lines)


def latex_document(c: Comparison) -> str:
    parts = ["% archsim compare tables (LaTeX booktabs; needs \\usepackage{booktabs})", ""]
    for title, table in comparison_tables(c, "latex"):
        parts += [f"% {title}", table, ""]
    return "\n".join(parts)


def write_compare_set(c: Comparison, sweeps: list[ScalingSweep], out: str | Path, command: str,
                      *, plots: bool = True) -> list[Path]:
    """Write the tables, data and plots of a comparison into ``out`` (atomically); the paths written.

    Deterministic: stable ordering, fixed float formats, no timestamps; PNGs without a Software tag.
    """
    import json

    from archsim.fsutil import atomic_write_bytes, atomic_write_text

    out = Path(out)
    written = []

    def text(name: str, content: str) -> None:
        written.append(atomic_write_text(out / name, content))

    text("comparison.csv", comparison_csv(c))
    text("comparison.tex", latex_document(c))
    text("baselines.csv", baselines_csv(c))
    text("peak_throughput.csv", peak_csv(c))
    text("energy_breakdown.csv", energy_breakdown_csv(c))
    doc = {"comparison": c.to_json(), "sweeps": [s.to_json() for s in sweeps], "command": command}
    text("comparison.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    for s in sweeps:
        text(f"scaling_{s.parameter.split('_')[0]}.csv", sweep_csv(s))
    if plots:
        from archsim import plots as pl

        written.append(atomic_write_bytes(out / "energy_breakdown.png", pl.energy_breakdown_png(c)))
        for s in sweeps:
            written.append(atomic_write_bytes(out / f"scaling_{s.parameter.split('_')[0]}.png",
                                              pl.scaling_png(s)))
    text("README.md", readme(c, sweeps, command, plots))
    return written
