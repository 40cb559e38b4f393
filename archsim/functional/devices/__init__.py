"""Resistive device models of one tile: one class per device family, each owning its update rule.

Families and parameter names follow aihwkit, so that configurations move between the tools:

| ``kind``          | class                  | step of one coincidence (before c2c noise), bounds         |
|-------------------|------------------------|------------------------------------------------------------|
| ``constant_step`` | ConstantStepDevices    | ``dw_min_ij``, up/down asymmetric; hard bounds             |
| ``soft_bounds``   | SoftBoundsDevices      | ``dw_min_ij*(1 - w/w_bound_ij)``: zero at the bound        |
| ``linear_step``   | LinearStepDevices      | ``dw_min_ij*(1 - gamma_ij*w/w_ref)``; hard bounds          |
| ``exp_step``      | ExpStepDevices         | ``dw_min_ij*max(1 - A*exp(+-gamma*z), 0)``, ``z`` linear   |
|                   |                        | in ``w``; hard bounds                                      |
| ``pow_step``      | PowStepDevices         | ``dw_min_ij*(distance to the bound/range)^gamma_ij``; hard |
|                   |                        | bounds                                                     |

Every class applies coincidence counts in two ways: ``apply_moments_`` (fast mode: one Gaussian
move per device with the exact model's mean and variance) and ``apply_counts`` (exact mode: sampled
counts, one move per device and chunk of updates). A class whose moves are additive between bounds
(``replays_in_order``) also gives the exact mode a count budget and an in-order replay for devices
near a bound. The nonlinear families (exp_step, pow_step) share the move along the flow of their
step (flow_step.py). A new family is one module here, its ``kind`` in :data:`DEVICE_CLASSES`, its
fields in :class:`archsim.specs.device.DeviceSpec`, and a preset in models/devices/.
"""
from __future__ import annotations

from archsim.functional.devices.base import BOUND_MARGIN_SIGMAS, SOFT_BOUND_FLOOR, PulsedDevices
from archsim.functional.devices.constant_step import ConstantStepDevices
from archsim.functional.devices.exp_step import ExpStepDevices
from archsim.functional.devices.flow_step import FlowStepDevices
from archsim.functional.devices.linear_step import LinearStepDevices
from archsim.functional.devices.pow_step import PowStepDevices
from archsim.functional.devices.soft_bounds import SoftBoundsDevices

#: Device family of each pulsed ``DeviceSpec.kind``.
DEVICE_CLASSES: dict[str, type[PulsedDevices]] = {
    "constant_step": ConstantStepDevices,
    "soft_bounds": SoftBoundsDevices,
    "linear_step": LinearStepDevices,
    "exp_step": ExpStepDevices,
    "pow_step": PowStepDevices,
}

__all__ = ["BOUND_MARGIN_SIGMAS", "SOFT_BOUND_FLOOR", "DEVICE_CLASSES", "PulsedDevices",
           "ConstantStepDevices", "SoftBoundsDevices", "LinearStepDevices", "FlowStepDevices",
           "ExpStepDevices", "PowStepDevices", "make_devices"]


def make_devices(spec, out_size: int, in_size: int, generator, device, dtype) -> PulsedDevices:
    """The devices of one ``[out, in]`` tile, of the family ``spec.kind`` names."""
    cls = DEVICE_CLASSES.get(spec.kind)
    if cls is None:
        raise ValueError(f"no pulsed device family {spec.kind!r}; known: {', '.join(DEVICE_CLASSES)}")
    return cls(spec, out_size, in_size, generator, device, dtype)
