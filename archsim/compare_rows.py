"""Comparison rows: every workload on every RPU architecture against digital baselines, the modelled
area, and the peak-vs-peak table (the library never prints)::

    speedup            = baseline time per step   / RPU time per step     (> 1: the RPU is faster)
    energy ratio       = baseline energy per step / RPU energy per step   (> 1: the RPU uses less)
    energy ratio bound = baseline TDP x time      / RPU energy per step   (the GPU's upper bound)

Baselines are named ``gpu:precision`` (a bare GPU name means the preset's default precision, the one a
practitioner would train in) or ``cpu_host``; they run once per workload. GPU energies are modelled
power x time (archsim/baselines/gpu.py), with board TDP x time beside them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

#: Name under which the measured CPU baseline appears (the ``cpu_host`` preset).
CPU_BASELINE = "cpu_host"
#: GPUs the headline table (and the README) compares against, in every precision present.
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
    #: Area of the whole chip (archsim.hw.chip), every block whose preset gives one (m^2; 0 = unknown).
    area_m2: float
    #: Components whose area the architecture does not give (0 in the preset): not in ``area_m2``.
    area_missing: list[str]
    energy_breakdown_J: dict[str, float]
    #: Static power of the chip while it runs the workload (W).
    static_W: float = 0.0
    #: One line per chip limit (area, power) the design exceeds.
    over_budget: list[str] = field(default_factory=list)
    #: baseline name ("gpu:precision" or "cpu_host") -> {"speedup", "energy_ratio", "energy_ratio_bound"}
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
    precision: str = "fp32"
    #: Upper bound of the energy (GPU: board TDP x time).
    energy_bound_J: float | None = None
    #: Power behind energy_per_step_J (W): modelled for GPUs, assumed for the CPU.
    power_W: float = 0.0
    #: CPU threads used by the measurement (None for GPUs).
    threads: int | None = None


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
    return BaselineRow(workload=workload.name, name=name, kind=res.kind,
                       time_per_step_s=res.time_per_step_s, energy_per_step_J=res.energy_per_step_J,
                       utilization=res.utilization, label=label, note=res.note,
                       scaled_from=res.scaled_from, precision=res.precision,
                       energy_bound_J=res.energy_bound_J, power_W=res.power_W, threads=res.threads)


def ratios(base_time_s: float, base_energy_J: float, base_bound_J: float | None,
           time_s: float, energy_J: float) -> dict[str, float]:
    """Speedup, energy ratio (modelled) and energy ratio against the baseline's energy bound."""
    bound = base_energy_J if base_bound_J is None else base_bound_J
    return {"speedup": base_time_s / time_s, "energy_ratio": base_energy_J / energy_J,
            "energy_ratio_bound": bound / energy_J}


def _ratios(base: BaselineRow, time_s: float, energy_J: float) -> dict[str, float]:
    return ratios(base.time_per_step_s, base.energy_per_step_J, base.energy_bound_J, time_s, energy_J)


def resolve_baselines(names: Iterable[str], all_modes: bool = False) -> list[str]:
    """Canonical baseline names: ``gpu:precision`` (bare GPU names get the preset's default
    precision, or every precision with ``all_modes``), the CPU as ``cpu_host``; duplicates dropped."""
    from archsim import baselines as bl

    out: list[str] = []
    for name in names:
        expanded = bl.all_precisions(name) if all_modes and ":" not in name else [bl.canonical_name(name)]
        out.extend(n for n in expanded if n not in out)
    return out


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
            progress: bool = False, memo: dict | None = None, all_modes: bool = False) -> Comparison:
    """Every workload on every architecture against ``baselines`` (default: the workloads' own).

    Baselines are reported under canonical names (:func:`resolve_baselines`): a bare GPU name is its
    default precision, or every precision with ``all_modes``. ``cpu`` adds the CPU baseline measured
    on this machine (cached by :mod:`archsim.baselines.cpu`). Rows are in the order given: workloads
    outer, architectures inner. ``memo``: see :func:`_estimate`.
    """
    names = resolve_baselines(list(baselines) if baselines is not None else default_baselines(workloads),
                              all_modes)
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
                rows.append(CompareRow(
                    workload=w.name, architecture=arch.name, fidelity=fidelity,
                    batch_size=r.batch_size, seq_len=r.seq_len, tiles=r.tiles,
                    array_utilization=r.array_utilization, time_per_step_s=r.time_per_step_s,
                    energy_per_step_J=r.energy_per_step_J, ops_per_s=r.ops_per_s, ops_per_W=r.ops_per_W,
                    area_m2=r.area_m2["chip"], area_missing=list(r.chip["area_not_modelled"]),
                    static_W=r.static_W["chip"], over_budget=list(r.chip["exceeded"]),
                    energy_breakdown_J=dict(r.energy_breakdown_J),
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
        "GPU times: archsim's fitted LSTM utilization model per precision (archsim/baselines/gpu.py; "
        "gpu:precision names the mode: fp32 strict, tf32, fp16/bf16 mixed precision); GPU energy = "
        "modelled power (idle + (TDP - idle) x activity) x time, not calibrated on measured power; "
        "'bound' = board TDP x time, the upper bound",
        f"RPU timing: {'SimPy discrete-event (shared resources contended)' if fidelity == 'simpy' else 'closed form (no contention)'}; "
        "RPU energy: counted actions x energy per action + static power of the chip x time (every "
        "tile unless the architecture power-gates idle ones)",
        "ops/s/W counts training ops as DNN+NeuroSim does: 3 x forward ops, forward ops = 2 x MACs",
        "area: the whole chip (every tile with its periphery, digital units, buffers, buses, global "
        "buffer; archsim/hw/chip.py), where the architecture gives an area; parts with no area are listed",
    ]
    if cpu:
        notes.append("cpu_host: torch fp32 training step timed on this machine on all its cores (threads "
                     "in baselines.csv; shrunk and extrapolated where labelled 'scaled'); energy = a "
                     "sourced TDP share per core x threads x time")
    return Comparison(rows=rows, baselines=base_rows, baseline_names=names,
                      peak=peak_throughput(archs, list(dict.fromkeys(
                          n.split(":")[0] for n in names if n != CPU_BASELINE))),
                      fidelity=fidelity, notes=notes)


def peak_throughput(archs: list[ArchitectureSpec], gpus: list[str]) -> list[dict]:
    """Peak op/s and op/s/W: RPU chips (all ``system.n_tiles`` tiles busy) and GPU datasheets.

    RPU: one forward MVM of a full array is 2 rows cols ops in t_MVM = max(t_forward, ADC time); the
    energy counted is array reads + DACs + integrators + ADCs of that MVM (no digital, buffer, bus or
    update). GPU: datasheet fp32 and tensor-core peaks at board power. Neither is achieved on LSTM
    training; this is the RPU papers' peak-vs-peak style, reported apart from the workload rows.
    """
    from archsim.baselines import peak_throughput_comparison

    from archsim.hw.components import build_components

    out = []
    for arch in archs:
        rows, cols = arch.array.rows, arch.array.cols
        hw = build_components(arch)
        t_mvm = max(hw["array"].forward_cycle().latency_s, hw["adc"].convert_lines_time_s(rows))
        e_mvm = (rows * cols * hw["array"].read_cell().energy_J + cols * hw["dac"].convert().energy_J
                 + rows * (hw["integrator"].integrate().energy_J + hw["adc"].convert().energy_J))
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


