"""Device spec (aihwkit parameter names): how one resistive device responds to update pulses.

Constant-step device (Gokmen & Vlasov 2016; aihwkit ConstantStepDevice), fixed per device at start::

    w_max_ij = w_max*(1 + w_max_dtod*xi)      w_min_ij = w_min*(1 + w_min_dtod*xi)
    gain_ij  = 1 + dw_min_dtod*xi             r_ij = up_down_dtod*xi
    step_up_ij   = dw_min*(gain_ij + min(up_down, 0) + r_ij)
    step_down_ij = dw_min*(gain_ij - max(up_down, 0) - r_ij)
    per coincidence: w <- clip(w +- step*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

Soft-bounds device (aihwkit SoftBoundsDevice): the step shrinks linearly to zero at the bound,
``step_up * (1 - w/w_max_ij)`` and ``step_down * (1 - w/w_min_ij)``.
Linear-step device (aihwkit LinearStepDevice): the step falls linearly with the weight,
``step_up*(1 - gamma_up*w/w_max)`` and ``step_down*(1 - gamma_down*w/w_min)``, with hard bounds
(archsim/functional/devices/linear_step.py).
The ideal device is floating point: updates are exact SGD and the periphery is bypassed.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from archsim.specs.base import Spec

# Bounds: the devices are simulated in float32, where a step of 1e-300 is 0 and a bound of 1e300
# is infinite; the limits below are far outside any published device and inside float32.


#: Fields only the linear_step family reads (aihwkit's defaults for dtod: 0.05).
LINEAR_STEP_DTOD_DEFAULT = 0.05
#: Fields only the linear_step family reads.
LINEAR_STEP_FIELDS = ("gamma_up", "gamma_down", "gamma_up_dtod", "gamma_down_dtod", "mean_bound_reference")


class DeviceSpec(Spec):
    """One device model and its variations."""

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    kind: Literal["ideal", "constant_step", "soft_bounds", "linear_step"] = Field(description="Device model.")
    dw_min: float = Field(0.001, ge=1e-9, le=10, description="Mean weight step per coincidence (1e-9 to 10).")
    dw_min_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of the step (relative, 0 to 10).")
    dw_min_std: float = Field(0.3, ge=0, le=10, description="Cycle-to-cycle spread of each step (relative, 0 to 10).")
    w_max: float = Field(0.6, gt=0, le=1e3, description="Mean upper weight bound (at most 1000).")
    w_min: float = Field(-0.6, lt=0, ge=-1e3, description="Mean lower weight bound (at least -1000).")
    w_max_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of w_max (relative, 0 to 10).")
    w_min_dtod: float = Field(0.3, ge=0, le=10, description="Device-to-device spread of w_min (relative, 0 to 10).")
    up_down: float = Field(0.0, gt=-1, lt=1, description="Global up/down step asymmetry.")
    up_down_dtod: float = Field(0.01, ge=0, le=10, description="Device-to-device asymmetry spread (0 to 10).")
    mult_noise: bool = Field(True, description=(
        "soft_bounds, linear_step: cycle-to-cycle noise multiplies the whole (state-dependent) "
        "step (true, aihwkit's default) or only its constant part (false); constant-step "
        "devices are the same either way."))
    gamma_up: float = Field(0.0, ge=0, le=10, description=(
        "linear_step: the up step falls as 1 - gamma_up*w/w_ref (0: constant step; 1 with device "
        "references: soft bounds); aihwkit LinearStepDevice.gamma_up."))
    gamma_down: float = Field(0.0, ge=0, le=10, description=(
        "linear_step: the down step falls as 1 - gamma_down*w/w_ref (w_ref < 0)."))
    gamma_up_dtod: float | None = Field(None, ge=0, le=10, description=(
        "linear_step: device-to-device spread of gamma_up, added (gamma_ij = |gamma + dtod*xi|); "
        "default 0.05 as aihwkit."))
    gamma_down_dtod: float | None = Field(None, ge=0, le=10, description=(
        "linear_step: device-to-device spread of gamma_down; default 0.05 as aihwkit."))
    mean_bound_reference: bool = Field(True, description=(
        "linear_step: the slope refers to the mean bounds w_max/w_min (true, aihwkit's default) "
        "or to each device's own."))

    @model_validator(mode="after")
    def _family_fields(self):
        if self.kind != "linear_step":
            set_here = [f for f in LINEAR_STEP_FIELDS if f in self.model_fields_set
                        and getattr(self, f) != DeviceSpec.model_fields[f].default]
            if self.kind != "soft_bounds" and "mult_noise" in self.model_fields_set and not self.mult_noise:
                set_here.append("mult_noise")
            if set_here:
                raise ValueError(f"{', '.join(set_here)}: only for kind linear_step"
                                 f"{' or soft_bounds' if set_here == ['mult_noise'] else ''} (kind is {self.kind})")
        return self

    @property
    def is_ideal(self) -> bool:
        return self.kind == "ideal"
