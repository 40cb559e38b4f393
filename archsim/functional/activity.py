"""Counters of what one simulated tile did: the data-dependent activity that sets hardware cost.

No torch here: the tile keeps device-side accumulators and folds them in when asked
(``AnalogTile.activity``), so the hot path never waits for the accelerator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


#: Per-device summaries (not sums): two sets of counters combine them by ``max``.
MAX_FIELDS = frozenset({"writes_max", "writes_p99", "transfer_writes_max", "transfer_writes_p99"})


def _combine(name: str, a, b):
    return max(a, b) if name in MAX_FIELDS else a + b


@dataclass
class TileActivity:
    """Activity counters of one tile (addable: ``a + b``, ``a += b``).

    Forward/backward counts are per input vector (one vector = one array MVM cycle). Update
    counts: ``pulse_slots`` sums the BL actually used per rank-one update; the pulse and
    coincidence counts are sampled in exact update mode and expected values (floats) in fast mode.
    "x lines" carry the input x during the update (index j), "d lines" carry the error d (index i).
    """

    forward_mvms: int = 0
    """Input vectors sent through forward MVMs (without bound-management repeats)."""
    backward_mvms: int = 0
    """Error vectors sent through transposed (backward) MVMs."""
    bm_repeats: int = 0
    """Extra forward MVM cycles caused by bound management (one per repeated vector per repeat)."""
    dac_conversions: int = 0
    """Input-line conversions (every MVM cycle, repeats included)."""
    adc_conversions: int = 0
    """Output-line conversions (every MVM cycle, repeats included)."""
    adc_saturations: float = 0
    """ADC conversions that ended at +-out_bound (every MVM cycle, repeats included)."""
    updates: int = 0
    """Rank-one updates applied."""
    pulse_slots: float = 0
    """Sum over rank-one updates of the BL used (the update time is pulse_slots * t_pulse)."""
    row_pulses: float = 0
    """Pulses sent on x lines (input side), summed over slots and updates."""
    col_pulses: float = 0
    """Pulses sent on d lines (output side), summed over slots and updates."""
    coincidences: float = 0
    """Device coincidences (row pulse meets column pulse), summed over devices and updates."""
    x_line_slots: float = 0
    """Sum over updates of BL * number of x lines (denominator of the x firing probability)."""
    d_line_slots: float = 0
    """Sum over updates of BL * number of d lines."""
    device_slots: float = 0
    """Sum over updates of BL * number of devices (denominator of the coincidence probability)."""
    transfer_reads: int = 0
    """Tiki-Taka: columns of the fast array A read (one forward MVM of a one-hot input each,
    without bound management; their conversions are in dac_/adc_conversions)."""
    transfer_updates: int = 0
    """Tiki-Taka: rank-one updates of the slow array C (one per column read; not in updates)."""
    transfer_pulse_slots: float = 0
    """Tiki-Taka: sum over transfer updates of the BL used (not in pulse_slots)."""
    transfer_coincidences: float = 0
    """Tiki-Taka: device coincidences of the transfer updates on C (not in coincidences)."""
    writes_max: float = 0
    """Endurance: the largest number of coincidences (writes) one device of the array that takes
    the rank-one updates (Tiki-Taka: A) received, since the tile's per-device counts started
    (``AnalogTile.device_writes``). Combined by ``max`` when counters are added."""
    writes_p99: float = 0
    """Endurance: the 99th percentile over those devices of the same counts (nearest rank);
    combined by ``max`` (over several tiles: an upper bound of the union's percentile)."""
    transfer_writes_max: float = 0
    """Tiki-Taka: ``writes_max`` of the slow array C (its writes are the transfer coincidences)."""
    transfer_writes_p99: float = 0
    """Tiki-Taka: ``writes_p99`` of the slow array C."""

    def __add__(self, other: "TileActivity") -> "TileActivity":
        if not isinstance(other, TileActivity):
            return NotImplemented
        return TileActivity(**{f.name: _combine(f.name, getattr(self, f.name), getattr(other, f.name))
                               for f in fields(self)})

    def __iadd__(self, other: "TileActivity") -> "TileActivity":
        if not isinstance(other, TileActivity):
            return NotImplemented
        for f in fields(self):
            setattr(self, f.name, _combine(f.name, getattr(self, f.name), getattr(other, f.name)))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def rates(self) -> dict[str, float | None]:
        """Per-operation means under ``archsim.activity.ActivityProfile`` field names."""
        def div(a, b):
            return a / b if b else None
        return {
            "bm_repeats_per_mvm": div(self.bm_repeats, self.forward_mvms) or 0.0,
            "pulse_slots_per_update": div(self.pulse_slots, self.updates),
            "transfer_pulse_slots_per_update": div(self.transfer_pulse_slots, self.transfer_updates),
            "x_fire_prob": div(self.row_pulses, self.x_line_slots),
            "d_fire_prob": div(self.col_pulses, self.d_line_slots),
            "coincidence_prob": div(self.coincidences, self.device_slots),
            "adc_saturation_rate": div(self.adc_saturations, self.adc_conversions) or 0.0,
        }
