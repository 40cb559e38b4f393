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

# Bounds: the devices are simulated in float32, where a step of 1e-300 is 0 and a bound of 1e300
# is infinite; the limits below are far outside any published device and inside float32.


class DeviceSpec(Spec):
    """One device model and its variations."""

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    kind: Literal["ideal", "constant_step", "soft_bounds"] = Field(description="Device model.")
    dw_min: float = Field(0.001, ge=1e-9, le=10, description="Mean weight step per coincidence (1e-9 to 10).")
    dw_min_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of the step (relative, 0 to 10).")
    dw_min_std: float = Field(0.3, ge=0, le=10, description="Cycle-to-cycle spread of each step (relative, 0 to 10).")
    w_max: float = Field(0.6, gt=0, le=1e3, description="Mean upper weight bound (at most 1000).")
    w_min: float = Field(-0.6, lt=0, ge=-1e3, description="Mean lower weight bound (at least -1000).")
    w_max_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of w_max (relative, 0 to 10).")
    w_min_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of w_min (relative, 0 to 10).")
    up_down: float = Field(0.0, gt=-1, lt=1, description="Global up/down step asymmetry.")
    up_down_dtod: float = Field(0.01, ge=0, le=10, description="Device-to-device asymmetry spread (0 to 10).")

    @property
    def is_ideal(self) -> bool:
        return self.kind == "ideal"
