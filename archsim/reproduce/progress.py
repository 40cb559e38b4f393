"""How far an unfinished sweep has got (the report's "Progress" line): its part-way runs, as their
checkpoints under ``runs/<sweep>/checkpoints/`` say, their curves so far (a small file committed with
the report, :data:`PARTWAY_CURVES`), the attempts whose checkpoints were lost with their machine
(:func:`lost_attempts`, compared with the run that started again), and the run time left at each
point's own pace."""
from __future__ import annotations

import json
from pathlib import Path

from archsim.sweep.runner import varying_axes


def _checkpoint_step(folder: Path) -> tuple[int, int] | None:
    """``(step, total_steps)`` of the checkpoint in ``folder``, None without a readable one."""
    from archsim.functional.checkpoint_meta import read_checkpoint_meta

    meta = read_checkpoint_meta(folder)
    try:
        return (int(meta["step"]), int(meta["total_steps"])) if meta is not None else None
    except (KeyError, TypeError, ValueError):
        return None


#: File beside a sweep's results (``runs/<sweep>/``) holding the curves of its part-way runs, as
#: their checkpoints' ``curve.json`` hold them. Small and committed with the report as often as it
#: is written: a checkpoint newer than the one committed is lost with its machine, the curve up to
#: it is not.
PARTWAY_CURVES = "partway_curves.json"


def _read_curve(folder: Path) -> tuple[list[dict], dict | None]:
    """The curve a part-way run wrote beside its checkpoint (``curve.json``; empty without one) and
    the machine it names (:func:`archsim.functional.train.machine`; None if it names none)."""
    from archsim.functional.checkpoint_meta import CURVE_FILE

    try:
        data = json.loads((folder / CURVE_FILE).read_text())
        curve, run = data.get("curve") or [], data.get("run") or {}
    except (OSError, ValueError, AttributeError):
        return [], None
    machine = run.get("machine") if isinstance(run, dict) else None
    return ([c for c in curve if isinstance(c, dict)] if isinstance(curve, list) else [],
            machine if isinstance(machine, dict) else None)


def _last_curve_point(curve: list[dict]) -> dict | None:
    """The latest curve point with a validation loss (epoch, validation loss, run seconds so far)."""
    points = [c for c in curve if c.get("valid_loss") is not None]
    return points[-1] if points else None


def _hours_or_minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"


def _partway_text(run: dict) -> str:
    """``label at step S of N`` and, from its curve, where its validation loss stood at its
    latest curve point."""
    text = f"{run['label']} at step {run['step']:,} of {run['total_steps']:,}"
    point = _last_curve_point(run["curve"])
    if point is not None:
        where = (f"epoch {float(point['epoch']):.1f}" if point.get("epoch") is not None
                 else f"step {int(point.get('step') or 0):,}")
        text += f" (validation {float(point['valid_loss']):.3f} nats/char at {where}"
        if point.get("seconds"):
            text += f", after {_hours_or_minutes(float(point['seconds']))} of run time"
        text += ")"
    return text


def _short_labels(rows: list[dict]) -> dict[int, str]:
    """Row index -> the axes in which the row differs from some other row, and its seed (a
    paper-scale sweep zips eight axes of which two vary); rows without values keep their label."""
    values = [r.get("values") for r in rows]
    if not values or not all(isinstance(v, dict) for v in values):
        return {}
    varying = varying_axes(values)
    return {i: ", ".join([f"{k}={r['values'].get(k)}" for k in varying] + [f"seed={r.get('seed')}"])
            for i, r in enumerate(rows)}


def partway_runs(outcome, runs: Path) -> list[dict]:
    """The sweep's unfinished runs that a checkpoint under ``runs/checkpoints/`` says are part way:
    label, key, step, total_steps, the curve so far and the machine that curve names (if any;
    populations are not included)."""
    from archsim.sweep.runner import CHECKPOINTS

    short = _short_labels(outcome.rows)
    found = []
    for i, r in enumerate(outcome.rows):
        if r.get("done") or r.get("failed") or not r.get("key"):
            continue
        folder = runs / CHECKPOINTS / r["key"]
        at = _checkpoint_step(folder)
        if at is not None:
            label = short.get(i) or r.get("label", r["key"]).replace(", kind=train", "")
            curve, machine = _read_curve(folder)
            found.append({"label": label, "key": r["key"], "step": at[0], "total_steps": at[1],
                          "curve": curve, **({"machine": machine} if machine else {})})
    return found


def _stored_curves(runs: Path) -> dict[str, list[dict]]:
    """The entries of ``runs/``:data:`PARTWAY_CURVES`: ``runs`` (part way when it was written) and
    ``lost`` (:func:`lost_attempts`); empty lists without a readable file."""
    try:
        data = json.loads((runs / PARTWAY_CURVES).read_text())
    except (OSError, ValueError):
        data = None
    stored = {"runs": [], "lost": []}
    for name in stored:
        entries = data.get(name) if isinstance(data, dict) else None
        if isinstance(entries, list):
            stored[name] = [e for e in entries if isinstance(e, dict) and e.get("key")
                            and isinstance(e.get("curve"), list) and isinstance(e.get("step"), int)]
    return stored


def lost_attempts(outcome, runs: Path, partway: list[dict] | None = None) -> list[dict]:
    """Unfinished runs that an earlier attempt had taken further than any checkpoint here: the
    checkpoint was lost with its machine (one newer than any committed), only its curve,
    committed in :data:`PARTWAY_CURVES`, was not, and the run started again from step 0 (or from
    an older checkpoint). Each: label, key, step, total_steps
    and the curve the attempt had reached, read from that file: an entry recorded as part way
    whose run is now behind its step, or one recorded as lost already. Kept until the run
    finishes, so that the loss stays visible and the new attempt can be checked against it (the
    same seed gives the same losses bit for bit on one machine; another CPU's kernels round
    differently, and the curves drift apart slightly)."""
    if partway is None:
        partway = partway_runs(outcome, runs)
    unfinished = {r.get("key") for r in outcome.rows
                  if r.get("key") and not (r.get("done") or r.get("failed"))}
    now = {p["key"]: p["step"] for p in partway}
    stored = _stored_curves(runs)
    lost: dict[str, dict] = {}
    for entry in stored["lost"] + [e for e in stored["runs"] if e["step"] > now.get(e["key"], 0)]:
        key = entry["key"]
        if key in unfinished and (key not in lost or entry["step"] > lost[key]["step"]):
            lost[key] = {k: entry[k] for k in ("label", "key", "step", "total_steps", "curve", "machine")
                         if k in entry}
    return list(lost.values())


def write_partway_curves(outcome, runs: Path, partway: list[dict] | None = None,
                         lost: list[dict] | None = None) -> Path | None:
    """Write ``runs/``:data:`PARTWAY_CURVES` with the part-way runs' curves and the lost attempts
    (:func:`lost_attempts`, read from the file before it is rewritten), atomically, or remove it
    when there is neither; the path written, else None. ``partway`` and ``lost``:
    :func:`partway_runs` and :func:`lost_attempts` when the caller has them already (read from
    the checkpoints and the file otherwise)."""
    from archsim.fsutil import atomic_write_json

    path = runs / PARTWAY_CURVES
    if partway is None:
        partway = partway_runs(outcome, runs)
    if lost is None:
        lost = lost_attempts(outcome, runs, partway)
    found = [r for r in partway if r["curve"]]
    if not found and not lost:
        path.unlink(missing_ok=True)
        return None
    return atomic_write_json(path, {
        "about": "Curves of the runs still part way, as their checkpoints hold them (the sweep "
                 "resumes each from its checkpoint; this file goes when none is part way), and "
                 "under 'lost' those of earlier attempts whose checkpoints were lost with their "
                 "machine (kept until the run finishes).",
        "runs": found, "lost": lost})


def _curve_agreement(lost: dict, run: dict | None) -> str:
    """How the run that started again compares with the lost attempt at the curve points both
    have reached (losses at the same step): identical, or the largest difference."""
    if run is None:
        return "no checkpoint here yet"
    now = {c.get("step"): c for c in run["curve"]}
    pairs = [(c, now[c["step"]]) for c in lost["curve"] if c.get("step") is not None and c["step"] in now]
    diffs = [abs(float(a[k]) - float(b[k])) for a, b in pairs for k in ("train_loss", "valid_loss")
             if a.get(k) is not None and b.get(k) is not None]
    where = f"now at step {run['step']:,}"
    if not diffs:
        return f"{where}, no curve point in common yet"
    n = len({a["step"] for a, _ in pairs})
    at = "at the one curve point both reached" if n == 1 else f"at the {n} curve points both reached"
    if max(diffs) == 0.0:
        return f"{where}; its losses equal the lost attempt's exactly {at}"
    return f"{where}; its losses differ from the lost attempt's by up to {max(diffs):.2g} nats/char {at}"


def _machines(lost: dict, run: dict | None) -> str:
    """Where the lost attempt and the new one ran, when both curves name their machines."""
    def name(m: dict) -> str:
        return f"{m.get('cpu', '?')} ({m.get('cpu_capability', '?')}, torch {m.get('torch', '?')})"

    old, new = lost.get("machine"), (run or {}).get("machine")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ""
    return (f" (both on {name(new)})" if old == new else
            f" (the lost attempt ran on {name(old)}, this one on {name(new)})")


def _lost_text(lost: dict, run: dict | None) -> str:
    reached = _partway_text({**lost, "label": lost.get("label") or lost["key"]})
    return (reached.replace(" at step ", " had reached step ", 1) + f", {_curve_agreement(lost, run)}"
            + _machines(lost, run))


def _point_of(row: dict) -> str | None:
    """A row's point: its axis values without the seed (None for a row without values: such rows
    are not told apart)."""
    values = row.get("values")
    return repr(sorted(values.items())) if isinstance(values, dict) else None


def _projected_run_seconds(run: dict) -> float | None:
    """A part-way run's whole-run time at the pace it has kept so far (its latest curve point's
    run seconds, carried from that step to the run's last); None without a usable curve point."""
    point = _last_curve_point(run["curve"])
    if point is not None and point.get("seconds") and point.get("step") and run["total_steps"]:
        return float(point["seconds"]) * run["total_steps"] / int(point["step"])
    return None


def _time_left(outcome, partway: list[dict], lost: list[dict] = ()) -> str | None:
    """The run time left, summed over the unfinished runs, each (what is left of it) at its own
    point's pace: the mean of that point's finished runs, else of its part-way runs' projected
    whole-run times, else of its lost attempts' (:func:`lost_attempts`; they ran on another
    machine). A point with none of these borrows the pace of the points with one that share the
    most of its varying axis values (floating point with dropout goes at floating point's pace,
    not at the mean of floating point and a device twice as slow); one that shares none goes at
    the pooled pace, the same over all points. Rows without axis values share one pace, as before
    any point could be told apart. None with no pace to go by."""
    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    finished: dict = {}
    projected: dict = {}
    # Finished runs that trained to the end set the pace (a diverged one stopped early).
    for r in outcome.rows:
        if r.get("done") and r.get("seconds") and not (r.get("result") or {}).get("diverged"):
            finished.setdefault(_point_of(r), []).append(float(r["seconds"]))
    step_of = {p["key"]: p for p in partway}
    point_of_key = {r.get("key"): _point_of(r) for r in outcome.rows}
    for p in partway:
        seconds = _projected_run_seconds(p)
        if seconds is not None:
            projected.setdefault(point_of_key.get(p["key"]), []).append(seconds)
    earlier: dict = {}
    for p in lost:
        seconds = _projected_run_seconds(p)
        if seconds is not None:
            earlier.setdefault(point_of_key.get(p["key"]), []).append(seconds)
    # Where a pace comes from, most trusted first: finished runs, then part-way runs carried to
    # their ends, then attempts lost on another machine. (text for one point, text for the pool)
    sources = [(finished, "its finished runs", "the finished runs' mean"),
               (projected, "its part-way runs' pace so far",
                "the part-way runs' pace so far carried to their ends"),
               (earlier, "its lost attempts' pace, on their machine",
                "the lost attempts' pace, on their machine")]

    def pace_of(points, pooled_text: bool = False) -> tuple:
        """The mean run time of ``points``' runs from the first source that has any, and that
        source's name; (None, None) when none has."""
        for by_point, own_text, pool_text in sources:
            xs = [s for q in points for s in by_point.get(q, ())]
            if xs:
                return mean(xs), pool_text if pooled_text else own_text
        return None, None

    pooled = pace_of(list(dict.fromkeys(q for by_point, _, _ in sources for q in by_point)),
                     pooled_text=True)
    if pooled[0] is None:
        return None
    short = _short_labels(outcome.rows)
    label_of: dict = {}   # point -> its varying axis values, without the seed
    values_of: dict = {}  # point -> its axis values
    for i, r in enumerate(outcome.rows):
        point = _point_of(r)
        label_of.setdefault(point, ", ".join(a for a in short.get(i, "").split(", ")
                                             if a and not a.startswith("seed=")))
        if point is not None:
            values_of.setdefault(point, r["values"])
    own: dict = {}        # point -> (pace, source) from its own runs
    for point in label_of:
        pace = pace_of([point]) if point is not None else (None, None)
        if pace[0] is not None:
            own[point] = pace
    varying = varying_axes(list(values_of.values()))

    def nearest(point) -> tuple:
        """The pace of the paced points that share the most varying axis values with ``point``."""
        if point is None or not varying:
            return pooled
        shared = {q: sum(values_of[q].get(k) == values_of[point].get(k) for k in varying) for q in own}
        best = max(shared.values(), default=0)
        if best == 0:
            return pooled
        near = [q for q in own if shared[q] == best]
        return (mean([own[q][0] for q in near]),
                "the pace of the nearest started point, "
                + " and ".join(label_of[q] or "an unlabelled point" for q in near))

    groups: dict = {}     # point -> [runs left, pace, source, label]
    for r in outcome.rows:
        if r.get("done") or r.get("failed"):
            continue
        p = step_of.get(r.get("key"))
        left = 1.0 - (p["step"] / p["total_steps"] if p and p["total_steps"] else 0.0)
        point = _point_of(r)
        pace, source = own.get(point) or nearest(point)
        g = groups.setdefault(point, [0.0, pace, source, label_of.get(point, "")])
        g[0] += left
    total = sum(g[0] * g[1] for g in groups.values())
    runs_left = sum(g[0] for g in groups.values())
    if all(g[2] == pooled[1] for g in groups.values()):    # one pace for all: the pooled one
        how = (f"at the finished runs' mean of {pooled[0]:,.0f} s"
               if pooled[1] == sources[0][2] else f"at {pooled[0]:,.0f} s a run, {pooled[1]}")
        return f"{_hours_or_minutes(total)} of run time ({runs_left:.2f} runs {how}"
    parts = [f"{g[0]:.2f} runs of {g[3] or 'the other points'} at {g[1]:,.0f} s a run ({g[2]})"
             for g in groups.values()]
    return (f"{_hours_or_minutes(total)} of run time ({runs_left:.2f} runs, each at its own point's pace "
            "where a seed of that point has finished, is part way or was lost part way, else at the "
            f"nearest such point's (most axis values in common), else at {pooled[1]}: " + "; ".join(parts))


def progress_line(outcome, runs: Path, partway: list[dict] | None = None,
                  lost: list[dict] | None = None) -> str | None:
    """How far an unfinished sweep has got: runs finished, each run a checkpoint says is part
    way (the next run of the command resumes it there; with its latest validation loss), the
    attempts lost with their machine, and the run time left (:func:`_time_left`). None when every
    run has finished. ``partway`` and ``lost``: :func:`partway_runs` and :func:`lost_attempts`
    when the caller has them already."""
    from archsim.sweep.runner import CHECKPOINTS

    finished = sum(1 for r in outcome.rows if r.get("done") or r.get("failed"))
    if finished == outcome.points:
        return None
    if partway is None:
        partway = partway_runs(outcome, runs)
    texts = [_partway_text(r) for r in partway]
    populations = sorted((runs / CHECKPOINTS).glob("population-*"))
    for folder in populations:   # a population's members
        at = _checkpoint_step(folder)
        if at is not None:
            texts.append(f"population {folder.name[len('population-'):]} at step {at[0]:,} of {at[1]:,}")
    text = f"- Progress: {finished} of {outcome.points} runs finished"
    if texts:
        text += ("; part way (the next run of the command continues from the checkpoint under "
                 f"`runs/{runs.name}/{CHECKPOINTS}/`): " + "; ".join(texts))
    if lost is None:
        lost = lost_attempts(outcome, runs, partway)
    if lost:
        by_key = {p["key"]: p for p in partway}
        text += ("; lost with their machine (a checkpoint newer than any committed; the run "
                 "started again from the checkpoint found here, else from step 0): "
                 + "; ".join(_lost_text(r, by_key.get(r["key"])) for r in lost))
    if (runs / PARTWAY_CURVES).is_file():
        text += f" (their curves so far: `runs/{runs.name}/{PARTWAY_CURVES}`)"
    # Not for populations: their members share one clock, so no run's seconds are its own.
    in_populations = populations or any(
        "population_seeds" in (getattr(r.get("point"), "options", None) or {}) for r in outcome.rows)
    if in_populations:
        return text + "."
    left = _time_left(outcome, partway, lost)
    if left:
        text += f". Left: about {left}; the command runs --jobs of them at once)"
    return text + "."
