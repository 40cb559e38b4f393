"""The acceleration curve, not one point: speedup and energy ratio of RPU architectures against each
GPU in its best precision, over hidden size or batch size, with the crossover points.

Timing: the closed form (no contention) at every point, and the SimPy discrete-event run wherever the
chip is small enough to simulate quickly (``simpy_max_tiles``): that is where shared ADCs, buses and
digital units queue, which the closed form cannot see. Beyond that size the contention factor
(SimPy / closed form) of the largest simulated point of the same architecture is carried over, and
the point says so (``timing``). The curves and crossovers use the contention-including numbers; the
closed-form ones stay in the data (``vs_closed_form``).

GPU side: at every point each GPU runs in every precision its preset has and the fastest is taken
(``vs[gpu]["precision"]`` says which), so the curve is against the GPU as a practitioner would run it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from archsim.compare_rows import SWEEP_BASE_OVERRIDES, _bar, _estimate, ratios
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

#: Points with at most this many tiles are also timed with SimPy by default.
DEFAULT_SIMPY_MAX_TILES = 300
#: The metrics whose crossovers are reported.
METRICS = ("speedup", "energy_ratio", "energy_ratio_bound")


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
    #: GPU preset names; each point compares against the GPU's fastest precision there.
    baseline_names: list[str]
    #: One per (architecture, value): architecture, value, tiles, n_tiles, n_tiles_raised,
    #: time_per_step_s / energy_per_step_J (contention included: SimPy, or the closed form times the
    #: carried SimPy factor), closed_form_time_per_step_s, timing, vs {gpu: {speedup, energy_ratio,
    #: energy_ratio_bound, precision}}, vs_closed_form {gpu: {...}}.
    points: list[dict]
    #: SimPy against the closed form at the base point, per architecture (empty when not checked).
    fidelity_check: list[dict] = field(default_factory=list)
    #: Where a ratio crosses 1 (per architecture, GPU and metric), or that it does not in range.
    crossovers: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fit_tiles(arch: ArchitectureSpec, workload: WorkloadSpec) -> tuple[ArchitectureSpec, bool]:
    """``arch`` with ``system.n_tiles`` raised to what ``workload`` needs (and whether it was raised)."""
    from archsim.feasibility import tiles_needed

    # Counted arithmetically (no tile lists), as the schedule will place them.
    need = sum(tiles_needed(workload.model, arch).values())
    if need <= arch.system.n_tiles:
        return arch, False
    return arch.model_copy(update={"system": arch.system.model_copy(update={"n_tiles": need})}), True


def best_gpu(workload: WorkloadSpec, gpu: str) -> dict:
    """The GPU's fastest precision on ``workload``: {precision, time, energy, energy_bound}; on a tie
    (fp16 and bf16 share peak and storage on A100 and later) the preset's default precision wins."""
    from archsim import baselines as bl

    shapes, output = bl.workload_shapes(workload.model)
    if not workload.model.output_layer:
        output = None
    tr = workload.training
    spec = bl.load_gpu(gpu)
    best = None
    modes = spec.available_precisions()
    for p in [spec.default_precision] + [m for m in modes if m != spec.default_precision]:
        r = bl.gpu_training_step(spec, shapes, output, tr.batch_size, tr.seq_len, precision=p)
        if best is None or r.time_per_step_s < best.time_per_step_s:
            best = r
    return {"precision": best.precision, "time_per_step_s": best.time_per_step_s,
            "energy_per_step_J": best.energy_per_step_J, "energy_bound_J": best.energy_bound_J}


def crossovers(points: list[dict], gpus: list[str], archs: list[str],
               metrics: Iterable[str] = METRICS, key: str = "vs") -> list[dict]:
    """Where each ratio crosses 1 between swept values (log-log interpolation), per architecture, GPU
    and metric; one entry saying "none" (with the ratio's range) when it does not cross in range."""
    out = []
    for arch in archs:
        pts = sorted((p for p in points if p["architecture"] == arch), key=lambda p: p["value"])
        for gpu in gpus:
            for metric in metrics:
                xs = [p["value"] for p in pts]
                ys = [p[key][gpu][metric] for p in pts]
                found = []
                for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
                    if (y0 - 1.0) * (y1 - 1.0) < 0:
                        f = -math.log(y0) / (math.log(y1) - math.log(y0))
                        x = math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0)))
                        found.append({"at": x, "between": [x0, x1],
                                      "direction": "RPU stops winning" if y0 > 1 else "RPU starts winning"})
                entry = {"architecture": arch, "baseline": gpu, "metric": metric,
                         "min": min(ys), "max": max(ys), "crossings": found}
                out.append(entry)
    return out


def scaling_sweep(base: str | Path, parameter: str, values: Iterable[int],
                  archs: list[ArchitectureSpec], baselines: list[str], *,
                  fidelity: str = "analytic", check: bool = True,
                  simpy_max_tiles: int = DEFAULT_SIMPY_MAX_TILES,
                  progress: bool = False, memo: dict | None = None,
                  base_overrides: dict | None = None) -> ScalingSweep:
    """Speedup and energy ratio against each GPU of ``baselines`` (best precision per point) as
    ``parameter`` takes ``values``.

    The workload is the YAML file ``base`` with ``base_overrides`` (default
    :data:`SWEEP_BASE_OVERRIDES`: 2 layers, T = 100, batch 32; ``{}`` keeps the workload as it is) and
    ``parameter`` ("hidden_size" or "batch_size") set to each value. Where a point needs
    more tiles than the architecture has, ``system.n_tiles`` is raised to fit (``n_tiles_raised``).
    With a closed-form sweep, points of at most ``simpy_max_tiles`` tiles are also run in SimPy and
    the curve uses SimPy there (module docstring); ``check`` adds the SimPy run at the base point.
    ``memo``: see :func:`archsim.compare_rows._estimate`.
    """
    from archsim import baselines as bl
    from archsim.specs import load_workload

    if parameter not in ("hidden_size", "batch_size"):
        raise ValueError(f"parameter must be 'hidden_size' or 'batch_size', not {parameter!r}")
    gpus = list(dict.fromkeys(bl.split_name(b)[0] for b in baselines))
    values = sorted(set(int(v) for v in values))
    dotted = "model.hidden_size" if parameter == "hidden_size" else "training.batch_size"
    fixed = SWEEP_BASE_OVERRIDES if base_overrides is None else dict(base_overrides)
    base_wl = load_workload(base, overrides=fixed or None)
    bar = _bar(progress, len(values) * (len(archs) + 1), f"sweeping {parameter}")
    points: list[dict] = []
    by_value: dict[int, tuple[WorkloadSpec, dict[str, dict]]] = {}
    try:
        for v in values:
            wl = load_workload(base, overrides={**fixed, dotted: v})
            by_value[v] = (wl, {g: best_gpu(wl, g) for g in gpus})
            if bar is not None:
                bar.update()
        for arch in archs:
            factor, factor_at = None, None
            for v in values:
                wl, gpu_rows = by_value[v]
                fitted, raised = _fit_tiles(arch, wl)
                closed = _estimate(wl, fitted, "analytic", memo)
                if fidelity == "simpy" or (simpy_max_tiles > 0 and closed.tiles <= simpy_max_tiles):
                    sim = _estimate(wl, fitted, "simpy", memo)
                    t, e = sim.time_per_step_s, sim.energy_per_step_J
                    factor, factor_at = t / closed.time_per_step_s, v
                    timing = "simpy"
                elif factor is not None:
                    t = closed.time_per_step_s * factor
                    e = closed.energy_per_step_J + closed.leakage_W * (t - closed.time_per_step_s)
                    timing = f"closed form x SimPy factor {factor:.3g} from {parameter} {factor_at}"
                else:
                    t, e, timing = closed.time_per_step_s, closed.energy_per_step_J, "closed form"
                points.append({
                    "architecture": arch.name, "value": v, "tiles": closed.tiles,
                    "n_tiles": fitted.system.n_tiles, "n_tiles_raised": raised,
                    "time_per_step_s": t, "energy_per_step_J": e,
                    "closed_form_time_per_step_s": closed.time_per_step_s,
                    "closed_form_energy_per_step_J": closed.energy_per_step_J, "timing": timing,
                    "vs": {g: dict(ratios(r["time_per_step_s"], r["energy_per_step_J"], r["energy_bound_J"],
                                          t, e), precision=r["precision"]) for g, r in gpu_rows.items()},
                    "vs_closed_form": {g: ratios(r["time_per_step_s"], r["energy_per_step_J"],
                                                 r["energy_bound_J"], closed.time_per_step_s,
                                                 closed.energy_per_step_J) for g, r in gpu_rows.items()},
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
    if fidelity == "simpy":
        notes = ["timing: SimPy at every point (contention included)"]
    else:
        notes = [f"timing: SimPy (contention included) at points of <= {simpy_max_tiles} tiles; beyond, "
                 "the closed form times the SimPy/closed-form factor of the largest simulated point "
                 "of the same architecture (column 'timing')"]
    notes.append("GPU: fastest precision of each GPU at each point (column precision_GPU); energy ratio "
                 "against modelled GPU power, 'bound' against board TDP x time")
    if raised:
        notes.append("system.n_tiles raised to fit the workload for: " + ", ".join(
            f"{a} ({parameter} >= {min(p['value'] for p in points if p['architecture'] == a and p['n_tiles_raised'])})"
            for a in raised))
    return ScalingSweep(
        parameter=parameter, values=values,
        base={"workload": base_wl.name, "layers": m.layers, "seq_len": t.seq_len,
              "batch_size": t.batch_size, "hidden_size": m.hidden_size, "vocab_size": m.n_output},
        fidelity=fidelity, architectures=[a.name for a in archs], baseline_names=gpus,
        points=points, fidelity_check=checks,
        crossovers=crossovers(points, gpus, [a.name for a in archs]), notes=notes)


def workload_curves(workload_file: str | Path, arch: ArchitectureSpec, gpus: list[str], *,
                    hidden_sizes: Iterable[int] = (64, 128, 256, 512, 1024, 2048, 4096),
                    batch_sizes: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
                    simpy_max_tiles: int = 0, memo: dict | None = None) -> list[ScalingSweep]:
    """The acceleration curves of one workload as it is (its own layers, T and batch) on one
    architecture against each GPU's best precision: [hidden-size sweep, batch-size sweep], each with
    its crossovers. Closed form by default (``simpy_max_tiles`` > 0 adds SimPy where affordable), so
    that ``archsim estimate`` can print them in about a second."""
    return [scaling_sweep(workload_file, parameter, values, [arch], gpus, check=False,
                          simpy_max_tiles=simpy_max_tiles, memo=memo, base_overrides={})
            for parameter, values in (("hidden_size", hidden_sizes), ("batch_size", batch_sizes))]
