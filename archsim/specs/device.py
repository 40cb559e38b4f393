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
Exponential-step device (aihwkit ExpStepDevice): with ``z = 2*a*w/(w_max_ij - w_min_ij) + b``,
``step_up*max(1 - A_up*exp(gamma_up*z), 0)`` and ``step_down*max(1 - A_down*exp(-gamma_down*z), 0)``,
hard bounds (archsim/functional/devices/exp_step.py).
Power-step device (aihwkit PowStepDevice): with the range ``R = w_max_ij - w_min_ij``,
``step_up*((w_max_ij - w)/R)**gamma_up_ij`` and ``step_down*((w - w_min_ij)/R)**gamma_down_ij``,
the exponents drawn per device from ``pow_gamma`` and its variations
(archsim/functional/devices/pow_step.py).
The ideal device is floating point: updates are exact SGD and the periphery is bypassed.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from archsim.specs.base import Joules, Seconds, Spec

# Bounds: the devices are simulated in float32, where a step of 1e-300 is 0 and a bound of 1e300
# is infinite; the limits below are far outside any published device and inside float32.


#: Fields only the linear_step family reads (aihwkit's defaults for dtod: 0.05).
LINEAR_STEP_DTOD_DEFAULT = 0.05
#: Fields only the linear_step family reads.
LINEAR_STEP_FIELDS = ("gamma_up", "gamma_down", "gamma_up_dtod", "gamma_down_dtod", "mean_bound_reference")
#: Fields the exp_step family reads (gamma_up/gamma_down are shared with linear_step, as in aihwkit).
EXP_STEP_FIELDS = ("gamma_up", "gamma_down", "A_up", "A_down", "a", "b")
#: aihwkit's ExpStepDevice exponents, used for kind exp_step when gamma_up/gamma_down are not given
#: (the fields' own default, 0, is LinearStepDevice's).
EXP_STEP_GAMMA_DEFAULTS = {"gamma_up": 12.44625, "gamma_down": 12.78785}
#: Fields only the pow_step family reads.
POW_STEP_FIELDS = ("pow_gamma", "pow_gamma_dtod", "pow_up_down", "pow_up_down_dtod")
#: Device kinds that read each family-specific field.
FAMILY_FIELDS = {"linear_step": LINEAR_STEP_FIELDS, "exp_step": EXP_STEP_FIELDS, "pow_step": POW_STEP_FIELDS}
#: linear_step keeps its slopes at most this (a step falling to 0 at a tenth of the bound).
LINEAR_STEP_GAMMA_MAX = 10.0


class DeviceSpec(Spec):
    """One device model and its variations."""

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    kind: Literal["ideal", "constant_step", "soft_bounds", "linear_step", "exp_step", "pow_step"] = Field(
        description="Device model.")
    dw_min: float = Field(0.001, ge=1e-9, le=10, description="Mean weight step per coincidence (1e-9 to 10).")
    e_pulse_cell_J: Joules | None = Field(None, description=(
        "Energy dissipated in one device per update coincidence, for this device technology "
        "(~V_w^2 * G * t_w); None: the architecture's update.e_pulse_cell_J."))
    endurance_cycles: float | None = Field(None, gt=0, le=1e20, description=(
        "Endurance: write pulses (update coincidences) one device survives, as published for "
        "this technology (a lower bound where the source says '>'); None: no figure given. "
        "archsim estimate divides it by the writes per device per epoch for the array's lifetime."))
    t_pulse_s: Seconds | None = Field(None, description=(
        "Write pulse width of this device technology: the shortest pulse it was shown to switch "
        "with, as published; an update pulse slot lasts max(architecture update.t_pulse_s, this) "
        "(archsim.hw.components.UpdateDriver). None: no figure published, the architecture's "
        "slot applies."))
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
    gamma_up: float = Field(0.0, ge=0, le=100, description=(
        "linear_step: the up step falls as 1 - gamma_up*w/w_ref (0: constant step; 1 with device "
        "references: soft bounds; at most 10); aihwkit LinearStepDevice.gamma_up. exp_step: the "
        "exponent of the up step 1 - A_up*exp(gamma_up*z) (default 12.44625 as aihwkit's "
        "ExpStepDevice)."))
    gamma_down: float = Field(0.0, ge=0, le=100, description=(
        "linear_step: the down step falls as 1 - gamma_down*w/w_ref (w_ref < 0; at most 10). "
        "exp_step: the exponent of the down step 1 - A_down*exp(-gamma_down*z) (default 12.78785)."))
    gamma_up_dtod: float | None = Field(None, ge=0, le=10, description=(
        "linear_step: device-to-device spread of gamma_up, added (gamma_ij = |gamma + dtod*xi|); "
        "default 0.05 as aihwkit."))
    gamma_down_dtod: float | None = Field(None, ge=0, le=10, description=(
        "linear_step: device-to-device spread of gamma_down; default 0.05 as aihwkit."))
    mean_bound_reference: bool = Field(True, description=(
        "linear_step: the slope refers to the mean bounds w_max/w_min (true, aihwkit's default) "
        "or to each device's own."))
    A_up: float = Field(0.00081, ge=-1000, le=1000, description=(
        "exp_step: factor of the up step max(1 - A_up*exp(gamma_up*z), 0), "
        "z = 2*a*w/(w_max_ij - w_min_ij) + b (aihwkit ExpStepDevice.A_up; no device-to-device spread)."))
    A_down: float = Field(0.36833, ge=-1000, le=1000, description=(
        "exp_step: factor of the down step max(1 - A_down*exp(-gamma_down*z), 0) (aihwkit ExpStepDevice.A_down)."))
    a: float = Field(0.244, ge=-100, le=100, description=(
        "exp_step: slope of z = 2*a*w/(w_max_ij - w_min_ij) + b (aihwkit ExpStepDevice.a)."))
    b: float = Field(0.2425, ge=-100, le=100, description=(
        "exp_step: offset of z = 2*a*w/(w_max_ij - w_min_ij) + b (aihwkit ExpStepDevice.b)."))
    pow_gamma: float = Field(1.0, ge=0, le=10, description=(
        "pow_step: exponent of the step: up step*((w_max_ij - w)/R)^gamma_up, down "
        "step*((w - w_min_ij)/R)^gamma_down, R = w_max_ij - w_min_ij (aihwkit PowStepDevice.pow_gamma)."))
    pow_gamma_dtod: float = Field(0.1, ge=0, le=10, description=(
        "pow_step: device-to-device spread of the exponent, relative to pow_gamma."))
    pow_up_down: float = Field(0.0, gt=-1, lt=1, description=(
        "pow_step: up/down bias of the exponent (as up_down for the step)."))
    pow_up_down_dtod: float = Field(0.0, ge=0, le=10, description=(
        "pow_step: device-to-device spread of the exponent's up/down bias, relative to pow_gamma."))

    @model_validator(mode="before")
    @classmethod
    def _exp_step_gamma_defaults(cls, data):
        # aihwkit's ExpStepDevice defaults for the exponents, which share their names with
        # LinearStepDevice's slopes (default 0 there).
        if isinstance(data, dict) and data.get("kind") == "exp_step":
            data = {**EXP_STEP_GAMMA_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _family_fields(self):
        # A family's own fields, set to anything but their default for another kind, are an error.
        wrong: dict[str, list[str]] = {}
        for field in dict.fromkeys(f for fields in FAMILY_FIELDS.values() for f in fields):
            kinds = [k for k, fields in FAMILY_FIELDS.items() if field in fields]
            if (self.kind not in kinds and field in self.model_fields_set
                    and getattr(self, field) != DeviceSpec.model_fields[field].default):
                wrong.setdefault(" or ".join(kinds), []).append(field)
        for kinds, fields in wrong.items():
            raise ValueError(f"{', '.join(fields)}: only for kind {kinds} (kind is {self.kind})")
        if (self.kind not in ("soft_bounds", "linear_step") and "mult_noise" in self.model_fields_set
                and not self.mult_noise):
            raise ValueError(f"mult_noise: only for kind linear_step or soft_bounds (kind is {self.kind})")
        if self.kind == "linear_step":
            steep = [f for f in ("gamma_up", "gamma_down") if getattr(self, f) > LINEAR_STEP_GAMMA_MAX]
            if steep:
                raise ValueError(f"{', '.join(steep)}: at most {LINEAR_STEP_GAMMA_MAX:g} for kind linear_step")
        return self

    @property
    def is_ideal(self) -> bool:
        return self.kind == "ideal"
