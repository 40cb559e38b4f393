"""Activity profile: the data-dependent quantities that set RPU training cost.

Nominal values (no training run) are stated bounds; ``archsim run`` measures them from a
functional training run and ``archsim estimate --activity FILE`` re-prices a saved profile.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, ValidationError

from archsim.errors import SpecError
from archsim.specs.base import Fraction, Spec


def _writes(what: str):
    """An endurance field of a measured profile (None: not measured; archsim.endurance)."""
    return Field(None, ge=0, description=f"Endurance (measured): {what}.")


class ActivityProfile(Spec):
    """Mean activity per operation (per MVM cycle, per rank-one update)."""

    bm_repeats_per_mvm: float = Field(
        0.0, ge=0, description="Mean extra forward MVM cycles per input vector from bound management.")
    pulse_slots_per_update: float | None = Field(
        None, gt=0, description="Mean BL actually used per rank-one update (None: the architecture's desired_bl).")
    x_fire_prob: Fraction = Field(
        1.0, description="Mean probability that a line carrying x (an array column, input side) fires "
        "in a pulse slot (1.0 = upper bound).")
    d_fire_prob: Fraction = Field(
        1.0, description="Mean probability that a line carrying delta (an array row, output side) "
        "fires in a pulse slot (1.0 = upper bound).")
    transfer_pulse_slots_per_update: float | None = Field(
        None, gt=0, description="Tiki-Taka: mean BL per transfer update (None: the architecture's desired_bl).")
    coincidence_prob: Fraction | None = Field(
        None, description="Mean probability of a coincidence per device per slot (None: x_fire_prob * d_fire_prob).")
    adc_saturation_rate: Fraction = Field(0.0, description="Share of ADC conversions that saturated (reported).")
    writes_mean_per_update: float | None = _writes(
        "coincidences per device of the updated array (Tiki-Taka: A) per rank-one update, mean over "
        "its devices (None: from the schedule)")
    writes_max_per_update: float | None = _writes(
        "the most-written device's coincidences over the run per rank-one update of its tile")
    writes_p99_per_update: float | None = _writes("the 99th percentile over devices of the same")
    transfer_writes_mean_per_update: float | None = _writes(
        "Tiki-Taka: coincidences per device of C per transfer update, mean over its devices")
    transfer_writes_max_per_update: float | None = _writes(
        "Tiki-Taka: the most-written device of C per transfer update")
    transfer_writes_p99_per_update: float | None = _writes(
        "Tiki-Taka: the 99th percentile over C's devices per transfer update")
    source: str = Field("nominal: upper bounds (every line fires in every slot, no bound-management repeats)",
                        description="Where these numbers come from.")
    spec_hash: str | None = Field(None, description="Hash of the specs of the run that measured this profile.")
    seed: int | None = Field(None, description="Seed of the run that measured this profile.")
    per_matrix: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="Optional overrides of the fields above per matrix "
        "(key 'lstm1') or per tile of a split matrix (key 'lstm1[2]', the block index).")

    def for_matrix(self, name: str, block: int | None = None) -> "ActivityProfile":
        """The profile of one matrix (or one tile of it): tile over matrix over global values."""
        update: dict = {}
        for key in (name, f"{name}[{block}]" if block is not None else None):
            over = self.per_matrix.get(key) if key else None
            if over:
                update.update({k: v for k, v in over.items()
                               if k in _RATE_FIELDS and v is not None})
        return self.model_copy(update=update) if update else self

    def pulse_slots(self, desired_bl: int) -> float:
        return desired_bl if self.pulse_slots_per_update is None else self.pulse_slots_per_update

    def transfer_pulse_slots(self, desired_bl: int) -> float:
        s = self.transfer_pulse_slots_per_update
        return desired_bl if s is None else s

    def coincidence(self) -> float:
        if self.coincidence_prob is not None:
            return self.coincidence_prob
        return self.x_fire_prob * self.d_fire_prob


#: Fields that may differ per matrix or tile.
_RATE_FIELDS = ("bm_repeats_per_mvm", "pulse_slots_per_update", "x_fire_prob", "d_fire_prob",
                "coincidence_prob", "adc_saturation_rate", "transfer_pulse_slots_per_update",
                "writes_mean_per_update", "writes_max_per_update", "writes_p99_per_update",
                "transfer_writes_mean_per_update", "transfer_writes_max_per_update",
                "transfer_writes_p99_per_update")

NOMINAL = ActivityProfile()


#: Largest activity profile read.
MAX_ACTIVITY_BYTES = 64 << 20


def load_activity(path: str | Path) -> ActivityProfile:
    """Read an activity profile saved by ``archsim run`` (JSON: the profile itself or a report
    holding it under ``activity``)."""
    from archsim.specs.loader import read_spec_bytes

    path = Path(path)
    # A regular file of bounded size (per-tile profiles of big chips run to a few MB).
    raw = read_spec_bytes(path, limit=MAX_ACTIVITY_BYTES, what="JSON activity file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(path, "", str(exc).split(":")[0], "expected a JSON activity profile") from None
    if isinstance(data, dict) and "activity" in data and isinstance(data["activity"], dict):
        data = data["activity"]
    try:
        return ActivityProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        allowed = err["msg"].replace("Input should be", "expected").replace(
            "Extra inputs are not permitted", "unknown field of an activity profile")
        raise SpecError(path, f"activity.{loc}", err.get("input"), allowed) from None
