r"""Exponential-step devices (aihwkit ``ExpStepDevice``): the step is an exponential function of
the weight, with hard bounds.

The rule, from aihwkit's ``update_once`` in src/rpucuda/rpu_expstep_device.cpp (IBM/aihwkit
@1384c564) and the ``ExpStepDevice`` docstring in src/aihwkit/simulator/configs/devices.py
(@adbd9780), with aihwkit's parameter names::

    z      = 2*a*w/(w_max_ij - w_min_ij) + b
    up:    w <- clip(w + step_up_ij  *max(1 - A_up  *exp( gamma_up  *z), 0)*(1 + dw_min_std*xi), w_min_ij, w_max_ij)
    down:  w <- clip(w - step_down_ij*max(1 - A_down*exp(-gamma_down*z), 0)*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

``A_up``, ``A_down``, ``gamma_up``, ``gamma_down``, ``a``, ``b`` are the same for every device (no
device-to-device spread, as in aihwkit); the step, its up/down asymmetry and the bounds vary per
device as for every family (base.py). A device with ``w_max_ij = w_min_ij`` does not move
(aihwkit). Not modelled: aihwkit's ``write_noise_std`` (a read-out noise on a hidden persistent
weight) and its ``dw_min_std_add``/``dw_min_std_slope`` cycle-to-cycle terms (archsim has no spec
fields for them).

**Flow** (see flow_step.py for how counts are applied). With ``y = 1 - A*exp(+-gamma*z)`` the step
factor, ``v = exp(-+gamma*z)`` obeys ``dv/dn = -kappa*(v - A)``, ``kappa = gamma*c*step``,
``c = 2*a/(w_max_ij - w_min_ij)``: linear, so n coincidences in one direction from ``w`` (with
``y_0 > 0``) give in closed form::

    w_n = w +- step*n*Psi(y_0, kappa*n),     Psi(y, t) = -ln(1 + y*(exp(-t) - 1))/t   (-> y as t -> 0)
    y_n = y_0*exp(-t)/(1 + y_0*(exp(-t) - 1))

``y_0 <= 0`` (past the saturation point where aihwkit's ``max(., 0)`` stops the device) gives no
move. With ``A < 0`` and a step that grows in the direction of the move (``y > 1``, ``t > 0``) the
flow reaches infinity at ``t = ln(y_0/(y_0 - 1))``: the device then runs into its hard bound.

**Pulse scale.** aihwkit converts the learning rate into pulses with the device's weight
granularity, for this family ``dw_min*(1 - max(up_down, 0))*max(1 - A_down*exp(-gamma_down*b), 0)``,
the mean down step at ``w = 0`` (``calcWeightGranularity`` in src/rpucuda/rpu_expstep_device.h
@06a3c3f9, which averages the down step with itself); archsim's tile does the same with ``dw_min``
below.
"""
from __future__ import annotations

import math

import torch

from archsim.functional.devices.flow_step import FACTOR_MAX, FlowStepDevices

#: Largest exponent evaluated (exp(60)*|A| stays far inside float32).
EXPONENT_MAX = 60.0


def _psi(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``-ln(1 + y*expm1(-t))/t`` for ``y > 0``: the mean step factor over a flow of ``t = kappa*n``.

    Written as ``1 + ln(y + (1 - y)*exp(t))/|t|`` for ``t < -30`` (no overflow of ``exp(-t)``),
    with its series where ``|t|*(1 + y) < 1e-4``; infinite where the flow runs away (``A < 0``)."""
    small = t.abs() * (1.0 + y) < 1e-4
    series = y - y * (1.0 - y) * t / 2.0 + y * (1.0 - y) * (1.0 - 2.0 * y) * t * t / 6.0
    t_safe = torch.where(small, torch.ones_like(t), t)
    pos = t_safe > 0
    tp = t_safe.clamp(min=0.0)
    q_pos = y * torch.expm1(-tp)                                      # t > 0: 1 + q = (1 - y) + y*exp(-t)
    arg_pos = (1.0 - y) + y * torch.exp(-tp)
    tiny = torch.finfo(y.dtype).tiny
    log_pos = torch.where(q_pos.abs() < 0.5, torch.log1p(q_pos.clamp(min=-0.5)), torch.log(arg_pos.clamp(min=tiny)))
    tn = t_safe.clamp(max=0.0).abs()                                  # t < 0
    near = tn < 30.0
    psi_near = torch.log1p(y * torch.expm1(tn.clamp(max=30.0))) / tn.clamp(min=tiny)
    yc = y.clamp(min=tiny)                                            # ln(y + (1 - y)*exp(-|t|))
    psi_far = 1.0 + (torch.log(yc) + torch.log1p((1.0 / yc - 1.0) * torch.exp(-tn))) / tn.clamp(min=tiny)
    out = torch.where(small, series, torch.where(pos, -log_pos / t_safe, torch.where(near, psi_near, psi_far)))
    return torch.where(~small & pos & (arg_pos <= 0.0), torch.full_like(out, math.inf), out)


class ExpStepDevices(FlowStepDevices):
    """Step ``dw_min_ij*max(1 - A*exp(+-gamma*z), 0)`` per coincidence, hard bounds."""

    kind = "exp_step"

    def _draw_family(self, spec, gauss) -> None:
        # Tile-wide fitting parameters (aihwkit: no device-to-device spread); nothing is drawn.
        self.A_up, self.A_down = float(spec.A_up), float(spec.A_down)
        self.gamma_up, self.gamma_down = float(spec.gamma_up), float(spec.gamma_down)
        self.a, self.b = float(spec.a), float(spec.b)
        # aihwkit's weight granularity: the pulse scale of the update (see the module docstring).
        scale_down = spec.dw_min * (1.0 - max(spec.up_down, 0.0))
        y0 = 1.0 - spec.A_down * math.exp(min(-spec.gamma_down * spec.b, EXPONENT_MAX))
        granularity = scale_down * max(y0, 0.0)
        self.dw_min = granularity if granularity > 0.0 else float(spec.dw_min)

    def _derive(self) -> None:
        super()._derive()
        span = self.w_max - self.w_min
        self.c = torch.where(span > 0, 2.0 * self.a / span.clamp(min=1e-30), 0.0)
        self.kappa_up = self.gamma_up * self.c * self.step_up
        self.kappa_down = self.gamma_down * self.c * self.step_down

    def _factor(self, w, up, idx=None):
        z = self._get("c", idx) * w + self.b
        if up:
            y = 1.0 - self.A_up * torch.exp((self.gamma_up * z).clamp(max=EXPONENT_MAX))
        else:
            y = 1.0 - self.A_down * torch.exp((-self.gamma_down * z).clamp(max=EXPONENT_MAX))
        return y.clamp(min=0.0, max=FACTOR_MAX)

    def _slope(self, w, up, idx=None):
        # up: d/dw (1 - A*exp(gamma*z)) = (y - 1)*gamma*c; down: (1 - y)*gamma*c; 0 past saturation.
        y = self._factor(w, up, idx)
        c = self._get("c", idx)
        slope = (y - 1.0) * self.gamma_up * c if up else (1.0 - y) * self.gamma_down * c
        return torch.where(y > 0, slope, 0.0).clamp(-FACTOR_MAX, FACTOR_MAX)

    def _flow(self, w, n, f0, up, idx=None):
        step = self._get("step_up" if up else "step_down", idx)
        t = self._get("kappa_up" if up else "kappa_down", idx) * n
        psi = _psi(f0, t)
        bound = self._get("w_max" if up else "w_min", idx)
        move = step * n * torch.where(torch.isinf(psi), 0.0, psi)
        out = w + move if up else w - move
        out = torch.where(torch.isinf(psi) & (step * n > 0), bound, out)
        # Past the saturation point (y <= 0) the device does not move.
        return torch.where(f0 > 0, out, w)
