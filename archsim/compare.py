"""``compare``: RPU architectures against digital baselines over several workloads.

Builds the rows behind ``archsim compare`` (the library never prints):

- :func:`compare` -- one row per workload x architecture: time and energy per step, ops/s/W, array
  utilization, tiles, modelled area, and for every baseline the speedup and energy ratio::

      speedup      = baseline time per step   / RPU time per step     (> 1: the RPU is faster)
      energy ratio = baseline energy per step / RPU energy per step   (> 1: the RPU uses less)

  Baselines run once per workload (they do not depend on the architecture). GPU energies are board
  power x modelled time (upper bounds); the CPU time is measured here (``cpu=True``).
- :func:`peak_throughput` -- the RPU papers' peak-vs-peak comparison, kept apart from the workload
  rows: array peak op/s = 2 rows cols / t_MVM per tile x tiles on the chip, against GPU datasheet
  peaks.
- :func:`scaling_sweep` -- acceleration factor versus hidden size or batch size (closed-form timing by
  default, which is what makes thousands of tiles affordable), with a SimPy check at the base point.
- :func:`comparison_tables`, :func:`comparison_csv`, :func:`sweep_csv`, :func:`write_compare_set` --
  deterministic renderings (fixed float formats, stable order, no timestamps) so that regenerating the
  committed ``reports/compare/`` set gives byte-identical files.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

#: Name under which the measured CPU baseline appears (the ``cpu_host`` preset).
CPU_BASELINE = "cpu_host"
#: Baselines the headline table (and the README) compares against, when present.
HEADLINE_BASELINES = ("v100", "h100")
#: Architectures the scaling plots use by default (when present among the compared ones): the paper's
#: RPU and the nominal shared-ADC tile. The _optimistic/_conservative presets change only the ADC.
DEFAULT_SWEEP_ARCHS = ("rpu2016", "shared_adc256_nominal")
#: Workload the scaling sweeps vary by default, when it is among those compared (else the first).
DEFAULT_SWEEP_BASE = "lstm2x512"
#: Hidden sizes and batch sizes of the scaling sweeps.
DEFAULT_HIDDEN_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The scaling sweeps' workload: the base workload's vocabulary with a 2-layer LSTM, T = 100, batch 32.
SWEEP_BASE_OVERRIDES = {"model.layers": 2, "training.seq_len": 100, "training.batch_size": 32}
#: How each timing fidelity is described in tables and plots.
_FIDELITY = {"simpy": "SimPy discrete-event, contention included",
             "analytic": "closed form, no contention"}
#: Area components, in the order the area note lists them.
AREA_PARTS = ("array", "dac", "integrator", "adc", "digital", "buffer")


# --- data -------------------------------------------------------------------------------------

@dataclass
class CompareRow:
    """One workload on one architecture, with its ratios against every baseline (SI units)."""

    workload: str
    architecture: str
    fidelity: str
    batch_size: int
    seq_len: int
    tiles: int
    array_utilization: float
    time_per_step_s: float
    energy_per_step_J: float
    ops_per_s: float
    #: Training ops per joule (= op/s per watt).
    ops_per_W: float
    #: Modelled area of the tiles this workload occupies plus their digital units (m^2; 0 = unknown).
    area_m2: float
    #: Components whose area the architecture does not give (0 in the preset): not in ``area_m2``.
    area_missing: list[str]
    energy_breakdown_J: dict[str, float]
    #: baseline name -> {"speedup": ..., "energy_ratio": ...}
    vs: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class BaselineRow:
    """One digital baseline on one workload."""

    workload: str
    name: str
    kind: str
    time_per_step_s: float
    energy_per_step_J: float
    utilization: float | None
    #: "model", "measured here" or "measured here, scaled".
    label: str
    note: str
    scaled_from: dict | None = None


@dataclass
class Comparison:
    """Everything ``archsim compare`` reports, in display order."""

    rows: list[CompareRow]
    baselines: list[BaselineRow]
    baseline_names: list[str]
    peak: list[dict]
    fidelity: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScalingSweep:
    """Acceleration factor of some architectures versus one workload parameter."""

    #: "hidden_size" or "batch_size".
    parameter: str
    values: list[int]
    #: What the swept workload is (name, layers, seq_len, batch_size, hidden_size, vocab).
    base: dict[str, Any]
    fidelity: str
    architectures: list[str]
    baseline_names: list[str]
    #: One per (architecture, value): architecture, value, tiles, n_tiles (chip tiles used by the run),
    #: n_tiles_raised, time_per_step_s, energy_per_step_J, vs {baseline: {speedup, energy_ratio}}.
    points: list[dict]
    #: SimPy against the closed form at the base point, per architecture (empty when not checked).
    fidelity_check: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- helpers ----------------------------------------------------------------------------------

def gpu_baseline_names() -> list[str]:
    """Every GPU baseline preset, slowest peak first (v100, a100, h100, h200)."""
    from archsim import baselines as bl
    from archsim.errors import SpecError
    from archsim.specs import preset_names

    gpus = []
    for name in preset_names("baselines"):
        try:
            gpus.append(bl.load_gpu(name))
        except SpecError:  # not a GPU preset (the CPU host)
            continue
    return [g.name for g in sorted(gpus, key=lambda g: (g.peak_fp32_flops, g.name))]


def default_baselines(workloads: Iterable[WorkloadSpec]) -> list[str]:
    """The union of the workloads' own baselines, in first-seen order (one set of table columns)."""
    out: list[str] = []
    for w in workloads:
        out.extend(b for b in w.baselines if b not in out)
    return out


def area_m2(arch: ArchitectureSpec, tiles: int) -> tuple[float, list[str]]:
    """Modelled area of ``tiles`` tiles and their digital units; (m^2, components with no area).

    Per tile: the array, one DAC and one integrator per row and per column line (inputs are driven and
    outputs integrated on both sides: forward and transposed MVMs), and ceil(lines / cols_per_adc)
    ADCs per side; plus ceil(tiles / tiles_per_unit) digital units, each with its buffer.
    """
    rows, cols = arch.array.rows, arch.array.cols
    n_adc = math.ceil(rows / arch.adc.cols_per_adc) + math.ceil(cols / arch.adc.cols_per_adc)
    units = math.ceil(tiles / arch.digital.tiles_per_unit)
    parts = {
        "array": tiles * arch.array.area_m2,
        "dac": tiles * (rows + cols) * arch.dac.area_m2,
        "integrator": tiles * (rows + cols) * arch.integrator.area_m2,
        "adc": tiles * n_adc * arch.adc.area_m2,
        "digital": units * arch.digital.area_m2,
        "buffer": units * arch.buffer.area_m2,
    }
    return sum(parts.values()), [p for p in AREA_PARTS if parts[p] <= 0]


def _baseline_row(workload: WorkloadSpec, name: str) -> BaselineRow:
    from archsim import baselines as bl
    from archsim.estimate import run_baseline

    if name == CPU_BASELINE:
        shapes, output = bl.workload_shapes(workload.model)
        tr = workload.training
        res = bl.cpu_training_step(shapes, output if workload.model.output_layer else None,
                                   tr.batch_size, tr.seq_len)
        label = "measured here, scaled" if res.scaled_from else "measured here"
    else:
        res = run_baseline(name, workload)
        label = "measured here, scaled" if res.scaled_from else (
            "measured here" if res.kind == "measured" else "model")
    return BaselineRow(workload=workload.name, name=res.name, kind=res.kind,
                       time_per_step_s=res.time_per_step_s, energy_per_step_J=res.energy_per_step_J,
                       utilization=res.utilization, label=label, note=res.note,
                       scaled_from=res.scaled_from)


def _ratios(base: BaselineRow, time_s: float, energy_J: float) -> dict[str, float]:
    return {"speedup": base.time_per_step_s / time_s, "energy_ratio": base.energy_per_step_J / energy_J}


def _estimate(workload: WorkloadSpec, arch: ArchitectureSpec, fidelity: str, memo: dict | None):
    """``estimate`` without baselines, reusing an identical earlier run from ``memo`` (a dict shared by
    :func:`compare` and :func:`scaling_sweep`: the sweeps' base point is often a table row)."""
    from archsim.estimate import estimate
    from archsim.specs import spec_hash

    key = spec_hash(workload, arch, extra={"fidelity": fidelity})
    if memo is not None and key in memo:
        return memo[key]
    result = estimate(workload, arch, fidelity=fidelity, baselines=[])
    if memo is not None:
        memo[key] = result
    return result


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", delay=1.0, leave=False)


# --- the comparison ---------------------------------------------------------------------------

def compare(workloads: list[WorkloadSpec], archs: list[ArchitectureSpec], *,
            baselines: list[str] | None = None, cpu: bool = False, fidelity: str = "simpy",
            progress: bool = False, memo: dict | None = None) -> Comparison:
    """Every workload on every architecture against ``baselines`` (default: the workloads' own).

    ``cpu`` adds the CPU baseline measured on this machine (cached by :mod:`archsim.baselines.cpu`).
    Rows are in the order given: workloads outer, architectures inner. ``memo``: see :func:`_estimate`.
    """
    names = list(baselines) if baselines is not None else default_baselines(workloads)
    if cpu and CPU_BASELINE not in names:
        names.append(CPU_BASELINE)
    bar = _bar(progress, len(workloads) * (len(archs) + 1), "comparing")
    rows: list[CompareRow] = []
    base_rows: list[BaselineRow] = []
    try:
        for w in workloads:
            by_name = {}
            for name in names:
                by_name[name] = _baseline_row(w, name)
                base_rows.append(by_name[name])
            if bar is not None:
                bar.update()
            for arch in archs:
                r = _estimate(w, arch, fidelity, memo)
                area, missing = area_m2(arch, r.tiles)
                rows.append(CompareRow(
                    workload=w.name, architecture=arch.name, fidelity=fidelity,
                    batch_size=r.batch_size, seq_len=r.seq_len, tiles=r.tiles,
                    array_utilization=r.array_utilization, time_per_step_s=r.time_per_step_s,
                    energy_per_step_J=r.energy_per_step_J, ops_per_s=r.ops_per_s, ops_per_W=r.ops_per_W,
                    area_m2=area, area_missing=missing, energy_breakdown_J=dict(r.energy_breakdown_J),
                    vs={n: _ratios(b, r.time_per_step_s, r.energy_per_step_J) for n, b in by_name.items()},
                ))
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    notes = [
        "speedup = baseline time per step / RPU time per step; energy ratio = baseline energy per "
        "step / RPU energy per step (> 1: the RPU is better)",
        "GPU times: archsim's fitted LSTM utilization model (archsim/baselines/gpu.py); GPU energy = "
        "board power x time, an upper bound",
        f"RPU timing: {'SimPy discrete-event (shared resources contended)' if fidelity == 'simpy' else 'closed form (no contention)'}; "
        "RPU energy: counted actions x energy per action + leakage of the occupied hardware",
        "ops/s/W counts training ops as DNN+NeuroSim does: 3 x forward ops, forward ops = 2 x MACs",
        "area: arrays + DACs + integrators + ADCs of the occupied tiles + their digital units and "
        "buffers, where the architecture gives an area; parts with no area are listed",
    ]
    if cpu:
        notes.append("cpu_host: torch fp32 training step timed on this machine (shrunk and "
                     "extrapolated where labelled 'scaled'); energy = assumed power per core x time")
    return Comparison(rows=rows, baselines=base_rows, baseline_names=names,
                      peak=peak_throughput(archs, [n for n in names if n != CPU_BASELINE]),
                      fidelity=fidelity, notes=notes)


def peak_throughput(archs: list[ArchitectureSpec], gpus: list[str]) -> list[dict]:
    """Peak op/s and op/s/W: RPU chips (all ``system.n_tiles`` tiles busy) and GPU datasheets.

    RPU: one forward MVM of a full array is 2 rows cols ops in t_MVM = max(t_forward, ADC time); the
    energy counted is array reads + DACs + integrators + ADCs of that MVM (no digital, buffer, bus or
    update). GPU: datasheet fp32 and tensor-core peaks at board power. Neither is achieved on LSTM
    training; this is the RPU papers' peak-vs-peak style, reported apart from the workload rows.
    """
    from archsim.baselines import peak_throughput_comparison

    out = []
    for arch in archs:
        rows, cols = arch.array.rows, arch.array.cols
        t_mvm = max(arch.array.t_forward_s, arch.adc_time_s())
        e_mvm = (rows * cols * arch.array.e_read_cell_J + cols * arch.dac.e_conv_J
                 + rows * (arch.integrator.e_integrate_J + arch.adc.e_conv_J))
        ops = 2.0 * rows * cols
        out.append({
            "name": arch.name, "kind": "RPU chip",
            "peak_ops_per_s": ops / t_mvm * arch.system.n_tiles,
            "peak_ops_per_s_per_W": ops / e_mvm,
            "basis": (f"{arch.system.n_tiles} tiles x 2 x {rows} x {cols} / "
                      f"{t_mvm * 1e9:.4g} ns; forward MVM energy: array + DAC + integrator + ADC"),
        })
    for g in peak_throughput_comparison(tuple(gpus)) if gpus else []:
        out.append({"name": f"{g['name']} fp32", "kind": "GPU datasheet",
                    "peak_ops_per_s": g["peak_fp32_ops_per_s"],
                    "peak_ops_per_s_per_W": g["peak_fp32_ops_per_s_per_W"],
                    "basis": f"fp32 peak at {g['board_power_W']:g} W board power"})
        out.append({"name": f"{g['name']} tensor", "kind": "GPU datasheet",
                    "peak_ops_per_s": g["peak_tensor_ops_per_s"],
                    "peak_ops_per_s_per_W": g["peak_tensor_ops_per_s_per_W"],
                    "basis": f"tensor-core (reduced precision) peak at {g['board_power_W']:g} W"})
    return out


# --- scaling sweeps ---------------------------------------------------------------------------

def _fit_tiles(arch: ArchitectureSpec, workload: WorkloadSpec) -> tuple[ArchitectureSpec, bool]:
    """``arch`` with ``system.n_tiles`` raised to what ``workload`` needs (and whether it was raised)."""
    from archsim.mapping import map_workload

    need = map_workload(workload.model, arch.array.rows, arch.array.cols).n_tiles
    if need <= arch.system.n_tiles:
        return arch, False
    return arch.model_copy(update={"system": arch.system.model_copy(update={"n_tiles": need})}), True


def scaling_sweep(base: str | Path, parameter: str, values: Iterable[int],
                  archs: list[ArchitectureSpec], baselines: list[str], *,
                  fidelity: str = "analytic", check: bool = True,
                  progress: bool = False, memo: dict | None = None) -> ScalingSweep:
    """Speedup and energy ratio against ``baselines`` as ``parameter`` takes ``values``.

    The workload is the YAML file ``base`` with :data:`SWEEP_BASE_OVERRIDES` (2 layers, T = 100,
    batch 32) and ``parameter`` ("hidden_size" or "batch_size") set to each value. Where a point needs
    more tiles than the architecture has, ``system.n_tiles`` is raised to fit (``n_tiles_raised``).
    With ``check`` and a closed-form sweep, the base point is also timed with SimPy
    (``fidelity_check``): the closed form has no contention, so it can overstate the speedup.
    ``memo``: see :func:`_estimate`.
    """
    from archsim.specs import load_workload

    if parameter not in ("hidden_size", "batch_size"):
        raise ValueError(f"parameter must be 'hidden_size' or 'batch_size', not {parameter!r}")
    values = sorted(set(int(v) for v in values))
    dotted = "model.hidden_size" if parameter == "hidden_size" else "training.batch_size"
    base_wl = load_workload(base, overrides=SWEEP_BASE_OVERRIDES)
    bar = _bar(progress, len(values) * (len(archs) + 1), f"sweeping {parameter}")
    points: list[dict] = []
    by_value: dict[int, tuple[WorkloadSpec, dict[str, BaselineRow]]] = {}
    try:
        for v in values:
            wl = load_workload(base, overrides={**SWEEP_BASE_OVERRIDES, dotted: v})
            by_value[v] = (wl, {n: _baseline_row(wl, n) for n in baselines})
            if bar is not None:
                bar.update()
        for arch in archs:
            for v in values:
                wl, base_rows = by_value[v]
                fitted, raised = _fit_tiles(arch, wl)
                r = _estimate(wl, fitted, fidelity, memo)
                points.append({
                    "architecture": arch.name, "value": v, "tiles": r.tiles,
                    "n_tiles": fitted.system.n_tiles, "n_tiles_raised": raised,
                    "time_per_step_s": r.time_per_step_s, "energy_per_step_J": r.energy_per_step_J,
                    "vs": {n: _ratios(b, r.time_per_step_s, r.energy_per_step_J)
                           for n, b in base_rows.items()},
                })
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    checks = []
    if check and fidelity == "analytic":
        ref = base_wl.model.hidden_size if parameter == "hidden_size" else base_wl.training.batch_size
        for arch in archs:
            fitted, _ = _fit_tiles(arch, base_wl)
            sim = _estimate(base_wl, fitted, "simpy", memo)
            closed_s = _estimate(base_wl, fitted, "analytic", memo).time_per_step_s
            checks.append({"architecture": arch.name, "value": ref,
                           "simpy_time_per_step_s": sim.time_per_step_s,
                           "analytic_time_per_step_s": closed_s,
                           "simpy_energy_per_step_J": sim.energy_per_step_J,
                           "simpy_over_analytic": sim.time_per_step_s / closed_s})
    m, t = base_wl.model, base_wl.training
    raised = sorted({p["architecture"] for p in points if p["n_tiles_raised"]})
    notes = [f"timing: {'closed form, no contention (fast for thousands of tiles)' if fidelity == 'analytic' else 'SimPy'}"]
    if raised:
        notes.append("system.n_tiles raised to fit the workload for: " + ", ".join(
            f"{a} ({parameter} >= {min(p['value'] for p in points if p['architecture'] == a and p['n_tiles_raised'])})"
            for a in raised))
    return ScalingSweep(
        parameter=parameter, values=values,
        base={"workload": base_wl.name, "layers": m.layers, "seq_len": t.seq_len,
              "batch_size": t.batch_size, "hidden_size": m.hidden_size, "vocab_size": m.n_output},
        fidelity=fidelity, architectures=[a.name for a in archs], baseline_names=list(baselines),
        points=points, fidelity_check=checks, notes=notes)


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
        headers += [f"speedup {n}", f"energy ratio {n}"]
    body = []
    for r in c.rows:
        line = [r.workload, r.architecture, r.tiles, _pct(r.array_utilization),
                _q(r.time_per_step_s, "s"), _q(r.energy_per_step_J, "J"), f"{r.ops_per_W:.3g}",
                _area_cell(r)]
        body.append(line + _vs_cells(r, names))
    out = tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def _vs_cells(r, names: list[str]) -> list[str]:
    """Speedup and energy ratio against each named baseline (blank where it was not run)."""
    cells: list[str] = []
    for n in names:
        v = r.vs.get(n)
        cells += [_x(v["speedup"]), _x(v["energy_ratio"])] if v else ["", ""]
    return cells


def headline_table(c: Comparison, fmt: str = "github") -> str:
    """The README's headline: workloads x architectures, speedup and energy ratio vs V100 and H100."""
    from tabulate import tabulate

    names = [b for b in HEADLINE_BASELINES if b in c.baseline_names] or c.baseline_names[:2]
    headers = ["workload", "architecture", "time/step", "energy/step"]
    for n in names:
        headers += [f"speedup vs {n.upper()}", f"energy ratio vs {n.upper()}"]
    body = []
    for r in c.rows:
        line = [r.workload, r.architecture, _q(r.time_per_step_s, "s"), _q(r.energy_per_step_J, "J")]
        body.append(line + _vs_cells(r, names))
    out = tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)
    return _latex(out) if fmt == "latex" else out


def baselines_table(c: Comparison, fmt: str = "github") -> str:
    """The digital baselines per workload: time, energy, utilization and where the numbers come from."""
    from tabulate import tabulate

    body = [[b.workload, b.name, b.label, _q(b.time_per_step_s, "s"), _q(b.energy_per_step_J, "J"),
             _pct(b.utilization)] for b in c.baselines]
    out = tabulate(body, headers=["workload", "baseline", "source", "time/step", "energy/step (bound)",
                                  "fp32 utilization"], tablefmt=_fmt(fmt), disable_numparse=True)
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
        header += [f"speedup_{n}", f"energy_ratio_{n}"]
    rows = []
    for r in c.rows:
        line = [r.workload, r.architecture, r.fidelity, r.batch_size, r.seq_len, r.tiles,
                _g(r.array_utilization), _g(r.time_per_step_s), _g(r.energy_per_step_J),
                _g(r.ops_per_s), _g(r.ops_per_W), _g(r.area_m2) if r.area_m2 > 0 else "",
                " ".join(r.area_missing)]
        for n in c.baseline_names:
            v = r.vs.get(n)
            line += [_g(v["speedup"]), _g(v["energy_ratio"])] if v else ["", ""]
        rows.append(line)
    return _csv(header, rows)


def baselines_csv(c: Comparison) -> str:
    return _csv(["workload", "baseline", "kind", "label", "time_per_step_s", "energy_per_step_J",
                 "utilization", "note"],
                [[b.workload, b.name, b.kind, b.label, _g(b.time_per_step_s), _g(b.energy_per_step_J),
                  _g(b.utilization), b.note] for b in c.baselines])


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
    header = ["architecture", s.parameter, "tiles", "n_tiles", "n_tiles_raised", "time_per_step_s",
              "energy_per_step_J"]
    for n in s.baseline_names:
        header += [f"speedup_{n}", f"energy_ratio_{n}"]
    rows = []
    for p in s.points:
        line = [p["architecture"], p["value"], p["tiles"], p["n_tiles"], int(p["n_tiles_raised"]),
                _g(p["time_per_step_s"]), _g(p["energy_per_step_J"])]
        for n in s.baseline_names:
            line += [_g(p["vs"][n]["speedup"]), _g(p["vs"][n]["energy_ratio"])]
        rows.append(line)
    return _csv(header, rows)


def sweep_table(s: ScalingSweep, fmt: str = "github") -> str:
    from tabulate import tabulate

    names = [b for b in HEADLINE_BASELINES if b in s.baseline_names] or s.baseline_names[:2]
    headers = ["architecture", s.parameter, "tiles", "time/step", "energy/step"]
    for n in names:
        headers += [f"speedup vs {n.upper()}", f"energy ratio vs {n.upper()}"]
    body = []
    for p in s.points:
        line = [p["architecture"], str(p["value"]), f"{p['tiles']}{'*' if p['n_tiles_raised'] else ''}",
                _q(p["time_per_step_s"], "s"), _q(p["energy_per_step_J"], "J")]
        for n in names:
            line += [_x(p["vs"][n]["speedup"]), _x(p["vs"][n]["energy_ratio"])]
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=_fmt(fmt), disable_numparse=True)


def sweep_title(s: ScalingSweep) -> str:
    b = s.base
    fixed = (f"{b['layers']}-layer LSTM, T = {b['seq_len']}, vocab {b['vocab_size']}, "
             + (f"batch {b['batch_size']}" if s.parameter == "hidden_size" else f"hidden {b['hidden_size']}"))
    timing = "closed-form timing (no contention)" if s.fidelity == "analytic" else "SimPy timing"
    return f"Acceleration vs {s.parameter.replace('_', ' ')}: {fixed}; {timing}"


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
    "scaling_hidden.csv": "acceleration vs hidden size (data of scaling_hidden.png)",
    "scaling_hidden.png": "plot: speedup and energy ratio vs hidden size",
    "scaling_batch.csv": "acceleration vs batch size (data of scaling_batch.png)",
    "scaling_batch.png": "plot: speedup and energy ratio vs batch size",
}


def readme(c: Comparison, sweeps: list[ScalingSweep], command: str, plots: bool) -> str:
    """The folder's README: the exact command, the headline table, all tables, the plots, notes."""
    lines = ["# archsim compare: RPU architectures vs digital baselines", "",
             "Regenerate this folder (byte-identical; from the repository root):", "",
             "```", command, "```", "",
             "## Headline: speedup and energy ratio vs V100 and H100", "",
             headline_table(c), "",
             "Speedup = GPU time per step / RPU time per step; energy ratio = GPU energy per step / RPU "
             "energy per step (> 1: the RPU is better). GPU energy is board power x time (an upper bound); "
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
                "closed form's, so the closed-form speedups at this point are "
                f"{chk['simpy_over_analytic']:.3g}x the SimPy (contended) ones.")
        lines += [f"- {n}" for n in s.notes] + [""]
    if plots:
        lines += ["## Plots", ""]
        lines += ["![energy breakdown](energy_breakdown.png)", ""]
        for s in sweeps:
            lines += [f"![{s.parameter}](scaling_{s.parameter.split('_')[0]}.png)", ""]
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
