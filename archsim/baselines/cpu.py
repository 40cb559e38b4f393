"""CPU baseline measured on the machine archsim runs on: torch's fp32 LSTM training step, timed.

One step = forward through ``torch.nn.LSTM`` layers and a ``Linear`` output layer, cross-entropy,
backward, ``torch.optim.SGD`` step -- the floating-point training an RPU array would replace. Inputs
are dense (T, N, n_in) tensors (a one-hot input costs a dense GEMM in nn.LSTM too).

When the full step would take longer than ``max_seconds``, the step is timed at two shorter sequence
lengths T' and T'/2 (and, if even one timestep is too long, a smaller batch) and the total is
extrapolated linearly in T through the two points (which keeps the per-step fixed costs such as the
optimizer step fixed), then proportionally in batch; the parts keep the proportions measured at T'.
The result's ``scaled_from`` says what was run. Caveats: proportional batch scaling overestimates
the CPU's time (larger batches run more efficiently), which flatters the accelerator; linear
extrapolation in T underestimates it when the full step's activations outgrow a cache level that the
short ones fit in (seen here: one 64-wide layer at batch 8 ran 2x slower per timestep at T=400 than
at T<=148), which flatters the CPU. Each timing is the fastest of several runs (the machine may be
shared); ``threads`` defaults to every core this process may run on (:func:`machine_cores`: the
CPU affinity set, so a container's or taskset's limit counts), the result says how many it used
(``threads``), and energy scales with it. On a busy machine threads=1 is steadier.

Measurements are cached in ``$ARCHSIM_CACHE`` (default ``~/.cache/archsim``)/cpu_baseline.json,
keyed by shapes, batch, T, max_seconds, threads, torch version and CPU model; written atomically.

Energy = power_per_core_W (preset ``cpu_host``: a server CPU's TDP over its cores, sourced) x threads x
time: a TDP share, not a measurement (CPU package power is not portably readable), so
``energy_is_bound`` is True.
torch is imported inside the functions only.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from archsim.baselines import BaselineResult
from archsim.specs.baseline import CPUSpec

#: Timed repetitions per measured configuration (the minimum is kept: the machine may be shared).
REPEATS = 3
#: Short steps are repeated until this much time was spent timing them (at most MAX_REPEATS runs).
MIN_TIMING_S = 0.2
MAX_REPEATS = 50
#: Cache file name inside the cache directory.
CACHE_FILE = "cpu_baseline.json"
#: Bump when the measurement procedure changes, so that old cache entries are not reused.
_METHOD_VERSION = 4


def load_cpu(name: str = "cpu_host", overrides: dict | None = None) -> CPUSpec:
    """Load a CPU baseline preset (``models/baselines/NAME.yaml``)."""
    from archsim.specs import _read_preset, apply_overrides
    from archsim.specs.loader import validate

    loaded = apply_overrides(_read_preset("baselines", name, "command line"), overrides)
    spec = validate(CPUSpec, loaded)
    spec._sources = loaded.sources
    return spec


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_cores() -> int:
    """Cores this process may run on: the CPU affinity set where the OS has one, else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cache_dir() -> Path:
    return Path(os.environ.get("ARCHSIM_CACHE") or Path.home() / ".cache" / "archsim").expanduser()


def _check_shapes(layer_shapes, output) -> None:
    if not layer_shapes:
        raise ValueError("need at least one LSTM layer")
    for i in range(1, len(layer_shapes)):
        if layer_shapes[i][0] != layer_shapes[i - 1][1]:
            raise ValueError(f"layer {i} input {layer_shapes[i][0]} != layer {i - 1} hidden "
                             f"{layer_shapes[i - 1][1]}")
    if output is not None and output[1] != layer_shapes[-1][1]:
        raise ValueError(f"output hidden {output[1]} != last layer hidden {layer_shapes[-1][1]}")


class _Step:
    """A torch model and optimizer; ``time(T, N)`` runs timed training steps of that size."""

    def __init__(self, layer_shapes, output, seed: int):
        import torch

        self.torch = torch
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching global state
            torch.manual_seed(seed)
            self.layers = torch.nn.ModuleList(torch.nn.LSTM(n, h) for n, h in layer_shapes)
            self.head = torch.nn.Linear(output[1], output[0]) if output is not None else None
        params = list(self.layers.parameters()) + (list(self.head.parameters()) if self.head else [])
        self.opt = torch.optim.SGD(params, lr=0.01)
        self.n_in = layer_shapes[0][0]
        self.vocab = output[0] if output is not None else None
        self.gen = torch.Generator().manual_seed(seed)

    def _once(self, x, y) -> tuple[float, float, float]:
        torch = self.torch
        t0 = time.perf_counter()
        out = x
        for lstm in self.layers:
            out, _ = lstm(out)
        if self.head is not None:
            logits = self.head(out)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), y)
        else:
            loss = out.square().mean()
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    def time(self, seq_len: int, batch: int, repeats: int = REPEATS) -> dict[str, float]:
        """Fastest timed step after one warm-up: {"forward", "backward", "optimizer"} in seconds.

        At least ``repeats`` steps, and more (up to MAX_REPEATS) until MIN_TIMING_S has been spent:
        the minimum of many short runs is robust to the preemptions of a shared machine.
        """
        torch = self.torch
        x = torch.randn(seq_len, batch, self.n_in, generator=self.gen)
        y = (torch.randint(0, self.vocab, (seq_len * batch,), generator=self.gen)
             if self.vocab else None)
        self._once(x, y)  # warm-up: allocations, first-call dispatch
        runs, spent = [], 0.0
        while len(runs) < repeats or (spent < MIN_TIMING_S and len(runs) < MAX_REPEATS):
            runs.append(self._once(x, y))
            spent += sum(runs[-1])
        best = min(runs, key=sum)
        return dict(zip(("forward", "backward", "optimizer"), best))


def _line(points: dict[int, float]) -> tuple[float, float]:
    """(intercept, slope >= 0) of time vs T through the two longest measured sequences.

    One point: proportional (no fixed cost), the cautious guess. A negative slope is noise on a
    step whose time barely depends on T: the line is flat at the larger time.
    """
    if len(points) == 1:
        (t_b, y_b), = points.items()
        return 0.0, y_b / t_b
    (t_a, y_a), (t_b, y_b) = sorted(points.items())[-2:]
    slope = (y_b - y_a) / (t_b - t_a)
    if slope <= 0:
        return max(y_a, y_b), 0.0
    return y_b - slope * t_b, slope


def _measure(layer_shapes, output, batch: int, seq_len: int, max_seconds: float,
             seed: int) -> tuple[dict[str, float], dict | None]:
    """(breakdown of one full step in seconds, scaled_from or None).

    Probes with single timed steps to find the longest sequence T' (and, if one timestep is too
    long, the largest batch N') whose step fits in ``max_seconds``; measures the full step when it
    fits, else T' and T'/2 and extrapolates linearly in T (then proportionally in batch).
    """
    step = _Step(layer_shapes, output, seed)
    n = batch
    probes = {1: sum(step.time(1, n).values())}
    while probes[1] > max_seconds and n > 1:
        n = max(1, n // 2)
        probes = {1: sum(step.time(1, n).values())}
    # Longest T predicted to fit; refine the prediction with a few single-step probes.
    for _ in range(4):
        intercept, slope = _line(probes)
        fit = seq_len if slope == 0 else min(seq_len, max(1, int((max_seconds - intercept) / slope)))
        if fit in probes:
            if len(probes) > 1 or fit >= seq_len:
                break
            # One probe gives no slope, and its proportional guess charges the fixed costs to
            # every timestep: when they fill most of the budget that guess is T = 1 again.
            fit = min(seq_len, 2 * fit)
        probes[fit] = sum(step.time(fit, n).values())
        if probes[fit] > max_seconds:  # over-predicted: step back under the budget
            del probes[fit]
            back = max(1, fit // 2)
            if back in probes:   # already timed: the next fit would ask the same question again
                break
            probes[back] = sum(step.time(back, n).values())
    # Two distinct lengths are needed for the line (T = 1 alone would scale the fixed costs too).
    t_b = max(min(2, seq_len), max(t for t, y in probes.items() if y <= max_seconds or t == 1))
    if t_b >= seq_len and n == batch:
        return step.time(seq_len, batch), None
    t_a = max(1, t_b // 2)
    meas_b = step.time(t_b, n)
    meas_a = step.time(t_a, n) if t_a != t_b else meas_b
    # Extrapolate the total (the per-part times of single runs are too noisy to fit one by one)
    # and split it in the proportions measured at the longer length.
    if t_b != t_a:
        intercept, slope = _line({t_a: sum(meas_a.values()), t_b: sum(meas_b.values())})
        total = intercept + slope * seq_len
    else:
        total = sum(meas_b.values()) * seq_len / t_b
    share = sum(meas_b.values())
    breakdown = {key: total * value / share * batch / n for key, value in meas_b.items()}
    scaled_from = {
        "seq_len": sorted({t_a, t_b}), "batch": n,
        "times_s": [sum(meas_a.values()), sum(meas_b.values())] if t_a != t_b else [sum(meas_b.values())],
        "method": ("timed at the shorter sequence lengths listed, extrapolated linearly in T"
                   + ("" if n == batch else f" and proportionally in batch from {n} to {batch}")),
        "target": {"seq_len": seq_len, "batch": batch},
    }
    return breakdown, scaled_from


def _cache_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, record: dict) -> None:
    """Merge one record into the cache file atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read_cache(path)
    data[key] = record
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cpu_baseline.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cpu_training_step(layer_shapes: list[tuple[int, int]], output: tuple[int, int] | None,
                      batch: int, seq_len: int, *, max_seconds: float = 2.0,
                      cpu: CPUSpec | str = "cpu_host", threads: int | None = None,
                      use_cache: bool = True, seed: int = 0) -> BaselineResult:
    """Measure (or read from the cache) torch's fp32 LSTM training step on this CPU.

    ``layer_shapes`` is ``[(n_in, hidden), ...]``, ``output`` is ``(V, hidden)`` or None.
    ``max_seconds`` bounds how long one timed step may take before the step is shrunk and
    extrapolated (see ``scaled_from`` in the result). ``threads`` sets torch's intra-op threads for
    the measurement (default: :func:`machine_cores`, every core this process may use); the result
    records it in ``threads`` and charges power_per_core_W per thread.
    """
    import torch

    from archsim.baselines.gpu import training_flops

    layer_shapes = [tuple(map(int, s)) for s in layer_shapes]
    output = tuple(map(int, output)) if output is not None else None
    _check_shapes(layer_shapes, output)
    if batch <= 0 or seq_len <= 0 or max_seconds <= 0:
        raise ValueError("need batch > 0, seq_len > 0 and max_seconds > 0")
    spec = load_cpu(cpu) if isinstance(cpu, str) else cpu
    old_threads = torch.get_num_threads()
    if threads is not None and threads < 1:
        raise ValueError("need threads >= 1")
    n_threads = threads or machine_cores()
    payload = {"layers": layer_shapes, "output": output, "batch": batch, "seq_len": seq_len,
               "max_seconds": max_seconds, "threads": n_threads, "torch": torch.__version__,
               "cpu": cpu_model(), "seed": seed, "method": _METHOD_VERSION}
    key = _cache_key(payload)
    path = cache_dir() / CACHE_FILE
    record = _read_cache(path).get(key) if use_cache else None
    cached = record is not None
    if record is None:
        try:
            torch.set_num_threads(n_threads)
            with torch.enable_grad():
                breakdown, scaled_from = _measure(layer_shapes, output, batch, seq_len,
                                                  max_seconds, seed)
        finally:
            torch.set_num_threads(old_threads)
        record = dict(payload, breakdown=breakdown, scaled_from=scaled_from,
                      measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        if use_cache:
            _write_cache(path, key, record)
    breakdown = {k: float(v) for k, v in record["breakdown"].items()}
    total = sum(breakdown.values())
    power = spec.power_per_core_W * n_threads
    how = "extrapolated from a shrunk step" if record["scaled_from"] else "timed"
    return BaselineResult(
        name=spec.name,
        time_per_step_s=total,
        energy_per_step_J=power * total,
        utilization=None,
        flops_per_step=training_flops(layer_shapes, output, batch, seq_len),
        breakdown=breakdown,
        energy_is_bound=True,
        power_W=power,
        kind="measured",
        scaled_from=record["scaled_from"],
        note=(f"torch {payload['torch']} fp32 LSTM training step {how} on {payload['cpu']} with "
              f"{n_threads} thread(s) of {machine_cores()} core(s){' (cached ' + record['measured_at'] + ')' if cached else ''}; "
              f"energy = {spec.power_per_core_W:g} W/core (a TDP share) x {n_threads}, an estimate"),
        threads=n_threads,
    )
