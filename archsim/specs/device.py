"""Device spec (aihwkit parameter names): how one resistive device responds to update pulses.

Constant-step device (Gokmen & Vlasov 2016; aihwkit ConstantStepDevice), fixed per device at start::

    w_max_ij = w_max*(1 + w_max_dtod*xi)      w_min_ij = w_min*(1 + w_min_dtod*xi)
    gain_ij  = 1 + dw_min_dtod*xi             r_ij = up_down_dtod*xi
    step_up_ij   = dw_min*(gain_ij + min(up_down, 0) + r_ij)
    step_down_ij = dw_min*(gain_ij - max(up_down, 0) - r_ij)
    per coincidence: w <- clip(w +- step*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

Soft-bounds device (aihwkit SoftBoundsDevice): the step shrinks linearly to zero at the bound,
``step_up * (1 - w/w_max_ij)`` and ``step_down * (1 - w/w_min_ij)``.
The ideal device is floating point: updates are exact SGD and the periphery is bypassed.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from archsim.specs.base import Spec


class DeviceSpec(Spec):
    """One device model and its variations."""

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    kind: Literal["ideal", "constant_step", "soft_bounds"] = Field(description="Device model.")
    dw_min: float = Field(0.001, gt=0, description="Mean weight step per coincidence.")
    dw_min_dtod: float = Field(0.3, ge=0, description="Device-to-device spread of the step (relative).")
    dw_min_std: float = Field(0.3, ge=0, description="Cycle-to-cycle spread of each step (relative).")
    w_max: float = Field(0.6, gt=0, description="Mean upper weight bound.")
    w_min: float = Field(-0.6, lt=0, description="Mean lower weight bound.")
    w_max_dtod: float = Field(0.3, ge=0, description="Device-to-device spread of w_max (relative).")
    w_min_dtod: float = Field(0.3, ge=0, description="Device-to-device spread of w_min (relative).")
    up_down: float = Field(0.0, gt=-1, lt=1, description="Global up/down step asymmetry.")
    up_down_dtod: float = Field(0.01, ge=0, description="Device-to-device asymmetry spread.")

    @property
    def is_ideal(self) -> bool:
        return self.kind == "ideal"
