"""What a worker does with one point: rebuild its specs, run its evaluator, return a JSON-able result.

The same functions run in joblib (loky) worker processes and on Dask workers, so everything here
takes and returns plain dicts, and heavy imports (torch, the engines) happen inside the evaluators.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from archsim.errors import ArchsimError, DivergenceError, SpecError
from archsim.functional.curves import last_epoch_train_loss
from archsim.sweep.expand import PointFailure, point_key, resolve_task, resolved_values


def _estimate(task: dict, workload, arch, device) -> dict[str, Any]:
    """Time/energy estimate of one training run (the estimate engine's JSON result)."""
    from archsim.estimate import estimate  # lazy: keeps the sweep module light

    result = estimate(workload, arch, device, exact=bool(task["options"].get("exact", False)))
    return result.to_json()


def _train(task: dict, workload, arch, device) -> dict[str, Any]:
    """A short training run on the functional simulator; keeps only scalar results (losses, counts)."""
    from archsim.functional.train import train  # lazy: imports torch

    opts = task["options"]
    if opts.get("epochs"):
        workload = workload.model_copy(deep=True)
        workload.training.epochs = int(opts["epochs"])
    kwargs: dict[str, Any] = {"max_chars": opts.get("max_chars"), **train_run_options(task, train)}
    outcome = train(workload, arch, device, **kwargs)
    return train_result(outcome)


def train_run_options(task: dict, train: Callable, default_eval_every: int | None = None) -> dict[str, Any]:
    """The trainer's keyword arguments that every kind of train point shares (the budget and the
    corpus are the caller's): seed, ``train.update_mode``, ``train.torch_device``, the curve
    cadence (a resumed point keeps its checkpoint's; else ``train.eval_every``, else
    ``default_eval_every``, else the trainer's default) and the point's checkpoint folder."""
    opts = task["options"]
    kwargs: dict[str, Any] = {"seed": task["seed"], "progress": False}
    params = inspect.signature(train).parameters
    if opts.get("update_mode") is not None:
        if "update_mode" not in params:
            raise ArchsimError("train.update_mode is set in the sweep, but this archsim's trainer "
                               "has no update_mode option")
        kwargs["update_mode"] = opts["update_mode"]
    if opts.get("torch_device") is not None:
        kwargs["torch_device"] = opts["torch_device"]
    every = resumed_eval_every(task.get("checkpoint_dir"), opts.get("eval_every"))
    if every is None:
        every = default_eval_every
    if every is not None:
        kwargs["eval_every"] = every
    if task.get("checkpoint_dir") and "out_dir" in params:
        # The point's own folder (the runner deletes it once the point is stored): a sweep killed
        # half-way through a long point continues it from its last checkpoint. No plots there.
        kwargs.update(out_dir=task["checkpoint_dir"], resume=True, write_plots=False)
    return kwargs


def resumed_eval_every(checkpoint_dir: str | None, eval_every: int | None) -> int | None:
    """The curve cadence of a point: its checkpoint's when it has one (a resumed run keeps the
    steps its curve points fall on, whatever ``train.eval_every`` says now: the trainer refuses a
    checkpoint made at another cadence), else ``train.eval_every`` (None: the trainer's default)."""
    from archsim.functional.checkpoint_meta import read_checkpoint_meta

    meta = read_checkpoint_meta(checkpoint_dir)
    if meta is not None:
        try:
            return int(meta["eval_every"])
        except (KeyError, TypeError, ValueError):
            pass    # a description without a cadence: as a fresh start
    return None if eval_every is None else int(eval_every)


def _echo(task: dict, workload, arch, device) -> dict[str, Any]:
    """Test evaluator: the resolved value of every axis plus a number drawn from the point's seed."""
    import numpy as np

    if task["options"].get("sleep_s"):
        time.sleep(float(task["options"]["sleep_s"]))
    values = resolved_values(task["values"], (workload, arch, device))
    # Seeded by the point's key (specs + seed), so the number is the same on any worker.
    rng = np.random.default_rng([task["seed"], int(task["key"], 16) % (2**32)])
    return {"values": values, "random": float(rng.random()), "n_weights": workload.model.n_weights()}


#: kind -> evaluator(task, workload, arch, device) -> JSON-able dict.
EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "estimate": _estimate,
    "train": _train,
    "echo": _echo,
}


def resolve_checked(point: dict[str, Any]):
    """The point's (workload, arch, device), rebuilt from the files in this worker.

    They must hash to the key the submitter computed, so a worker that sees different spec files
    (another checkout on a remote Dask worker) fails loudly instead of filing a result under the
    wrong key.
    """
    workload, arch, device = resolve_task(point)
    key = point_key(point, (workload, arch, device))
    if point.get("key") and key != point["key"]:
        raise ArchsimError(f"point {point['index']} of sweep {point['sweep']}: this worker's specs hash "
                           f"to {key}, the submitter's to {point['key']}; workers must see the same "
                           "spec and preset files")
    return workload, arch, device


def evaluate_point(point: dict[str, Any]) -> dict[str, Any]:
    """Run one point (a task dict from :func:`archsim.sweep.expand.make_task`) and return its result."""
    workload, arch, device = resolve_checked(point)
    point = {**point, "key": point_key(point, (workload, arch, device))}
    with point_failures(point, (workload, arch, device)):
        return EVALUATORS[point["kind"]](point, workload, arch, device)


def _own_specs(task: dict[str, Any], specs: tuple) -> set[str]:
    """How errors name the point's own specs: their names and the files they came from."""
    names = {str(getattr(spec, "name", "")) for spec in specs}
    names |= {str(task.get(k)) for k in ("base", "architecture", "device") if task.get(k)}
    names.discard("")
    return names


@contextmanager
def point_failures(task: dict[str, Any], specs: tuple) -> Iterator[None]:
    """Turn a SpecError about the point's own specs into :class:`PointFailure` (a failed point).

    An error naming the point's workload, architecture or device (a design that needs more tiles
    than the architecture has, say) is that point's answer: the sweep records it and goes on. Any
    other error (a missing text file, a worker whose spec files differ) would hit every point and
    still stops the sweep.
    """
    try:
        yield
    except SpecError as exc:
        if str(exc.file) in _own_specs(task, specs):
            raise PointFailure(str(exc), exit_status=exc.exit_status) from None
        raise


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point of sweeps: :func:`evaluate_point` wrapped by :func:`worker_output`;
    a population group (:func:`group_populations`) gives ``{"outputs": [one per point]}``."""
    if "group" in task:
        return run_population(task)
    return worker_output(task, evaluate_point)


def group_populations(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks with the ``train`` points that differ only in their seed, under
    ``train.population``, gathered into one group task each (``{"group": [tasks], "key",
    "index"}``, in first-seen order); the other tasks as they are."""
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    keys: set[str] = set()
    for task in tasks:
        if task.get("kind") != "train" or not (task.get("options") or {}).get("population_seeds"):
            out.append(task)
            continue
        if task["key"] in keys:       # the same point twice (a repeated seed)
            continue
        keys.add(task["key"])
        same = json.dumps(_population_part(task), sort_keys=True, default=str)
        group = groups.get(same)
        if group is None:
            group = groups[same] = {"group": [], "key": task["key"], "index": task["index"]}
            out.append(group)
        group["group"].append(task)
    # A group of one is a plain point (its population is the sweep's seed list all the same).
    return [g["group"][0] if "group" in g and len(g["group"]) == 1 else g for g in out]


def _population_part(task: dict[str, Any]) -> dict[str, Any]:
    """What the members of one population share: the task without its seed (and, under
    ``population_devices`` and ``population_periphery``, without the values of the axes they
    gather)."""
    part = {k: v for k, v in task.items() if k not in ("seed", "index", "key")}
    opts = task["options"]
    axes = {*(opts.get("population_devices") or ()), *(opts.get("population_periphery") or ())}
    if axes:
        part["values"] = {a: v for a, v in task["values"].items() if a not in axes}
        part["resolved"] = {a: v for a, v in task.get("resolved", {}).items() if a not in axes}
        part["overrides"] = {**task["overrides"], **{
            target: {k: v for k, v in task["overrides"][target].items() if f"{target}.{k}" not in axes}
            for target in ("device", "architecture")}}
    return part


def run_population(group: dict[str, Any]) -> dict[str, Any]:
    """Train a group's points as one population; one :func:`worker_output`-style dict per point
    (``{"error"}`` for the whole group when something outside the points' own specs fails)."""
    tasks = group["group"]
    start = time.perf_counter()
    seeds = [t["seed"] for t in tasks]
    opts = tasks[0]["options"]
    if not (opts.get("population_devices") or opts.get("population_periphery")) \
            and seeds != opts["population_seeds"]:
        # The numbers of a member depend on the whole population: only the keyed one may run.
        return {"key": group["key"], "index": group["index"],
                "error": {"type": "ArchsimError", "exit_status": 1,
                          "message": f"sweep {tasks[0]['sweep']}: population {seeds} is not the "
                                     f"sweep's seed list {tasks[0]['options']['population_seeds']}"}}
    try:
        specs = [resolve_checked(t) for t in tasks]
        workload, arch, device = specs[0]
        with point_failures(tasks[0], specs[0]):
            results = _train_population(tasks, workload, arch, device, [s[2] for s in specs],
                                        group.get("checkpoint_dir"), [s[1] for s in specs])
    except PointFailure as exc:
        seconds = time.perf_counter() - start
        return {"key": group["key"], "outputs": [{"key": t["key"], "index": t["index"], "seconds": seconds,
                             "failure": {"type": type(exc).__name__, "message": exc.reason,
                                         "exit_status": exc.exit_status}} for t in tasks]}
    except ArchsimError as exc:
        return {"key": group["key"], "index": group["index"],
                "error": {"type": type(exc).__name__, "message": str(exc),
                          "exit_status": getattr(exc, "exit_status", 1)}}
    seconds = time.perf_counter() - start
    outputs = []
    for task, result in zip(tasks, results):
        if isinstance(result, DivergenceError):
            result = diverged_result(result)
        else:
            result = train_result(result)
        outputs.append({"key": task["key"], "index": task["index"], "result": result,
                        "seconds": seconds})
    return {"key": group["key"], "outputs": outputs}


def _train_population(tasks: list[dict], workload, arch, device, member_devices=None,
                      checkpoint_dir=None, member_archs=None) -> list:
    """The training runs of ``tasks`` (same specs and options but the seed and, under
    ``population_devices`` and ``population_periphery``, the device and the architecture's
    converters) as one population."""
    from archsim.functional.train_population import train_population  # lazy: imports torch

    opts = tasks[0]["options"]
    if opts.get("epochs"):
        workload = workload.model_copy(deep=True)
        workload.training.epochs = int(opts["epochs"])
    kwargs: dict[str, Any] = {"max_chars": opts.get("max_chars")}
    for name in ("update_mode", "torch_device"):
        if opts.get(name) is not None:
            kwargs[name] = opts[name]
    if opts.get("eval_every") is not None:
        # A population's checkpoint keys its cadence (the trainer refuses another, one line).
        kwargs["eval_every"] = int(opts["eval_every"])
    if opts.get("population_devices"):
        kwargs["member_devices"] = member_devices
    if opts.get("population_periphery"):
        kwargs["member_archs"] = member_archs
    if checkpoint_dir:
        kwargs["out_dir"] = checkpoint_dir
    kwargs["where"] = (tasks[0].get("sweep_file") or f"sweep {tasks[0]['sweep']}", "train.population")
    return train_population(workload, arch, device, seeds=[t["seed"] for t in tasks], **kwargs)


def worker_output(task: dict[str, Any], evaluate: Callable[[dict], dict]) -> dict[str, Any]:
    """``{key, result, seconds}``, ``{key, failure, seconds}`` or ``{key, error}`` of
    ``evaluate(task)``; never raises ArchsimError.

    Exceptions with custom constructors (SpecError) do not survive pickling back from a worker, so
    they come back as data and the runner re-raises them. A diverged training run is a result
    (a device too asymmetric to learn is an answer), recorded with ``diverged: true``. A
    :class:`PointFailure` (the point's own specs cannot be computed) comes back as ``failure``: the
    runner records the point as failed and goes on.
    """
    start = time.perf_counter()
    try:
        result = evaluate(task)
    except DivergenceError as exc:
        result = diverged_result(exc)
    except PointFailure as exc:
        return {"key": task.get("key"), "index": task.get("index"),
                "failure": {"type": type(exc).__name__, "message": exc.reason,
                            "exit_status": exc.exit_status},
                "seconds": time.perf_counter() - start}
    except ArchsimError as exc:
        return {"key": task.get("key"), "index": task.get("index"),
                "error": {"type": type(exc).__name__, "message": str(exc),
                          "exit_status": getattr(exc, "exit_status", 1)}}
    return {"key": task.get("key"), "index": task.get("index"), "result": result,
            "seconds": time.perf_counter() - start}


def diverged_result(exc: DivergenceError) -> dict[str, Any]:
    """The stored result of a diverged run: the message, and the seconds it trained when the
    trainer knows them (a resumed run's segments included)."""
    result: dict[str, Any] = {"diverged": True, "error": str(exc)}
    if exc.seconds is not None:
        result["seconds"] = float(exc.seconds)
    return result


def train_result(outcome: Any) -> dict[str, Any]:
    """The stored result of a training run: its scalars (:func:`compact`) and, when its curve
    reaches back one epoch, ``train_loss_last_epoch``: the trainer's own ``train_loss`` is the
    mean over the last tenth of an epoch only."""
    result = compact(outcome)
    loss = last_epoch_train_loss({"curve": getattr(outcome, "curve", None)})
    if loss is not None:
        result["train_loss_last_epoch"] = loss
    return result


def compact(outcome: Any) -> dict[str, Any]:
    """Scalar fields of a result object (dataclass, object with to_json, or dict)."""
    if hasattr(outcome, "to_json"):
        data = outcome.to_json()
    elif dataclasses.is_dataclass(outcome):
        data = dataclasses.asdict(outcome)
    elif isinstance(outcome, dict):
        data = outcome
    else:
        data = vars(outcome)
    out = {}
    for name, value in data.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()  # numpy / torch scalars
        if isinstance(value, (bool, int, str)) or value is None:
            out[name] = value
        elif isinstance(value, float):
            out[name] = value if math.isfinite(value) else str(value)
    return out
