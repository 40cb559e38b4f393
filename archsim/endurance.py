"""Endurance: how often each device is written (coincidences per device), and how long it lasts.

A device is written once per coincidence (a row pulse meeting a column pulse in one slot). Per
array of each matrix (an SGD matrix's one array; Tiki-Taka's fast array A, written by the SGD
updates, and slow array C, written by the transfer updates) and per training step:

- ``mean``: the step's coincidences on those arrays / their devices. From the schedule's
  coincidence count (nominal profile: every line fires in every slot, so an SGD device is written
  ``updates x BL`` times a step), or from the functional run's counts where the profile has them
  (``writes_mean_per_update``: the same for SGD; for C the measured transfer coincidences, which
  the schedule prices with A's coincidence probability);
- ``max`` and ``p99`` (measured profiles only): the largest and the 99th-percentile device of a
  tile over the run (``AnalogTile.device_writes``), per rank-one update of that tile
  (``writes_max_per_update``, ...), times the tile's updates per step; over several tiles the
  largest (for the percentile an upper bound of the percentile over all of them).

Per epoch = per step x steps per epoch. With the device's ``endurance_cycles`` (write pulses a
device survives), the array survives ``endurance / (max writes per device per epoch)`` epochs,
or ``endurance / (mean writes per device per epoch)`` where only the mean is known (``basis``).
"""
from __future__ import annotations

from typing import Any

#: The percentile over devices that measured profiles carry.
PERCENTILE = 99

#: Profile fields (per tile): per-device writes per rank-one update (transfer update for C).
WRITE_FIELDS = ("writes_mean_per_update", "writes_max_per_update", "writes_p99_per_update",
                "transfer_writes_mean_per_update", "transfer_writes_max_per_update",
                "transfer_writes_p99_per_update")

#: Update op kind -> (the arrays it writes, the profile's field prefix).
_KINDS = {"rank_one_update": "", "transfer_update": "transfer_"}


def write_rates(c: dict) -> dict[str, float | None]:
    """Per-device writes per rank-one update of one tile, from its functional counters (a
    ``TileActivity`` dict): mean = coincidences / (devices x updates); max and p99 = the
    per-device summaries / updates. None where the tile took no updates of that kind."""
    slots = c.get("pulse_slots", 0)
    devices = c.get("device_slots", 0) / slots if slots else 0
    out: dict[str, float | None] = {}
    for prefix, updates, coinc in (("", "updates", "coincidences"),
                                   ("transfer_", "transfer_updates", "transfer_coincidences")):
        n = c.get(updates, 0)
        ok = bool(n and devices)
        out[f"{prefix}writes_mean_per_update"] = c.get(coinc, 0) / (devices * n) if ok else None
        for stat in ("max", "p99"):
            out[f"{prefix}writes_{stat}_per_update"] = (
                c.get(f"{prefix}writes_{stat}", 0) / n if ok else None)
    return out


def lifetime_epochs(endurance: float | None, writes_per_epoch: float | None) -> float | None:
    """Epochs a device survives: ``endurance / writes per epoch`` (None if either is unknown or
    nothing is written)."""
    if endurance is None or not writes_per_epoch:
        return None
    return endurance / writes_per_epoch


def endurance_block(schedule, device, steps_per_epoch: int) -> dict[str, Any]:
    """Writes per device per step and per epoch, per matrix and array, and the lifetime: the
    ``endurance`` block of an estimate. ``schedule``: one step's schedule (its activity profile
    says whether max/p99 were measured)."""
    from archsim.schedule import KIND_ROLES

    coinc: dict[tuple[str, str], float] = {}
    tiles: dict[tuple[str, str], dict[tuple[int, int], dict]] = {}
    for op in schedule.ops:
        prefix = _KINDS.get(op.kind)
        if prefix is None:
            continue
        key = (op.matrix, prefix)
        coinc[key] = coinc.get(key, 0.0) + op.actions.get(("array", "coincidence"), 0.0)
        per = tiles.setdefault(key, {})
        for p in schedule.placements[op.matrix]:
            if p.role in KIND_ROLES[op.kind]:
                t = per.setdefault((p.copy, p.block), {"placement": p, "updates": 0})
                t["updates"] += op_vectors(op, p)
    endurance = getattr(device, "endurance_cycles", None)
    rows = []
    for (matrix, prefix), per in tiles.items():
        devices = sum(t["placement"].rows * t["placement"].cols for t in per.values())
        acts = [(t, schedule.activity.for_matrix(matrix, t["placement"].block)) for t in per.values()]
        rates = {stat: [getattr(a, f"{prefix}writes_{stat}_per_update", None) for _, a in acts]
                 for stat in ("mean", "max", "p99")}
        if all(r is not None for r in rates["mean"]):
            mean = sum(r * t["updates"] * t["placement"].rows * t["placement"].cols
                       for r, (t, _) in zip(rates["mean"], acts)) / devices
            mean_source = "measured"
        else:
            mean, mean_source = coinc[(matrix, prefix)] / devices, "schedule"
        measured = all(r is not None for r in rates["max"])
        top = max(r * t["updates"] for r, (t, _) in zip(rates["max"], acts)) if measured else None
        p99 = (max(r * t["updates"] for r, (t, _) in zip(rates["p99"], acts))
               if measured and all(r is not None for r in rates["p99"]) else None)
        basis, worst = ("max", top) if top is not None else ("mean", mean)
        rows.append({
            "matrix": matrix, "array": _array_name(per, prefix), "devices": devices,
            "updates_per_step": sum(t["updates"] for t in per.values()),
            "mean_per_step": mean, "max_per_step": top, "p99_per_step": p99,
            "mean_per_epoch": mean * steps_per_epoch,
            "max_per_epoch": None if top is None else top * steps_per_epoch,
            "p99_per_epoch": None if p99 is None else p99 * steps_per_epoch,
            "mean_source": mean_source,
            "lifetime_epochs": lifetime_epochs(endurance, worst * steps_per_epoch),
            "lifetime_basis": basis,
        })
    lives = [r["lifetime_epochs"] for r in rows if r["lifetime_epochs"] is not None]
    return {
        "endurance_cycles": endurance, "percentile": PERCENTILE, "steps_per_epoch": steps_per_epoch,
        "measured": any(r["max_per_step"] is not None for r in rows),
        "arrays": rows,
        "lifetime_epochs": min(lives) if lives else None,
        "note": "writes = coincidences per device; lifetime = endurance_cycles / writes per device "
                "per epoch of the most-written device (max) where measured, else of the mean device",
    }


def op_vectors(op, p) -> int:
    """Rank-one updates a tile placement ``p`` takes in one op (as the schedule counts them)."""
    name = f"tile{p.tile}.array"
    return next((st.count for b in op.tile_branches for st in b if st.resource == name), 0)


def _array_name(per: dict, prefix: str) -> str:
    role = next(iter(per.values()))["placement"].role
    return role or ("C" if prefix else "array")
