r"""Power-step devices (aihwkit ``PowStepDevice``; a shifted form of the Fusi & Abbott 2007 synapse,
see Frascaroli et al. 2018): the step is a power of the distance to the bound, with hard bounds.

The rule, from aihwkit's ``update_once`` and ``populate`` in src/rpucuda/rpu_powstep_device.cpp
(IBM/aihwkit @05affed7) and the ``PowStepDevice`` docstring in src/aihwkit/simulator/configs/devices.py
(@adbd9780), with aihwkit's parameter names (``pow_gamma`` etc.; ``ps_gamma`` etc. in the C++)::

    R = w_max_ij - w_min_ij
    up:    w <- clip(w + step_up_ij  *((w_max_ij - w)/R)^gamma_up_ij  *(1 + dw_min_std*xi), w_min_ij, w_max_ij)
    down:  w <- clip(w - step_down_ij*((w - w_min_ij)/R)^gamma_down_ij*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

with the exponents drawn per device after the common parameters (``xi ~ N(0, 1)``: gain, then r),
as the step is from ``up_down`` (base.py)::

    gain_ij = 1 + pow_gamma_dtod*xi          r_ij = pow_up_down_dtod*xi
    gamma_up_ij   = |pow_gamma*(gain_ij + min(pow_up_down, 0) + r_ij)|
    gamma_down_ij = |pow_gamma*(gain_ij - max(pow_up_down, 0) - r_ij)|

(``|.|``: aihwkit's ``enforce_consistency``, on by default). ``pow_gamma = 1`` without spread is a
soft-bounds device with the range ``R`` as reference; ``pow_gamma = 0`` a constant step. A device
with ``R = 0`` does not move (aihwkit). Not modelled: aihwkit's ``write_noise_std`` (0 by default).

**Flow** (see flow_step.py for how counts are applied). The distance ``u = (w_max_ij - w)/R``
(up; ``(w - w_min_ij)/R`` down) obeys ``du/dn = -(step/R)*u^gamma``; with ``beta = 1 - gamma``, n
coincidences in one direction give in closed form::

    u_n = u_0*exp(ln(1 - beta*eps)/beta),    eps = step*n/(R*u_0^beta)    (u_n = u_0*exp(-eps) at gamma = 1)

and ``u_n = 0`` (the bound) once ``beta*eps >= 1``: for ``gamma < 1`` the flow reaches the bound in
finitely many coincidences, for ``gamma >= 1`` only asymptotically.

**Pulse scale.** aihwkit converts the learning rate into pulses with the weight granularity
``dw_min*0.5^pow_gamma`` (the step at the centre of the range; ``calcWeightGranularity`` in
src/rpucuda/rpu_powstep_device.h @199f592a); archsim's tile does the same with ``dw_min`` below.
"""
from __future__ import annotations

import torch

from archsim.functional.devices.flow_step import FACTOR_MAX, FlowStepDevices


class PowStepDevices(FlowStepDevices):
    """Step ``dw_min_ij*(distance to the bound / range)^gamma_ij`` per coincidence, hard bounds."""

    kind = "pow_step"

    def _draw_family(self, spec, gauss) -> None:
        gain = 1.0 + spec.pow_gamma_dtod * gauss()
        r = spec.pow_up_down_dtod * gauss()
        up_bias, down_bias = min(spec.pow_up_down, 0.0), -max(spec.pow_up_down, 0.0)
        self.gamma_up = (spec.pow_gamma * (gain + up_bias + r)).abs_()
        self.gamma_down = (spec.pow_gamma * (gain + down_bias - r)).abs_()
        # aihwkit's weight granularity: the pulse scale of the update (see the module docstring).
        self.dw_min = float(spec.dw_min) * 0.5 ** float(spec.pow_gamma)

    def _derive(self) -> None:
        super()._derive()
        span = self.w_max - self.w_min
        self.span = span.clamp(min=1e-30)
        self.moves = span > 0

    def tensors(self) -> dict[str, torch.Tensor]:
        out = super().tensors()
        out.update(gamma_up=self.gamma_up, gamma_down=self.gamma_down)
        return out

    def _distance(self, w, up, idx=None):
        span = self._get("span", idx)
        if up:
            return ((self._get("w_max", idx) - w) / span).clamp(min=0.0, max=1.0)
        return ((w - self._get("w_min", idx)) / span).clamp(min=0.0, max=1.0)

    def _factor(self, w, up, idx=None):
        gamma = self._get("gamma_up" if up else "gamma_down", idx)
        f = torch.pow(self._distance(w, up, idx), gamma).clamp(max=FACTOR_MAX)
        return torch.where(self._get("moves", idx), f, 0.0)

    def _slope(self, w, up, idx=None):
        # up: d/dw u^gamma = -gamma*u^(gamma - 1)/R; down: +gamma*l^(gamma - 1)/R (infinite at the
        # bound for gamma < 1: capped).
        gamma = self._get("gamma_up" if up else "gamma_down", idx)
        u = self._distance(w, up, idx).clamp(min=1e-30)
        slope = (gamma * torch.pow(u, gamma - 1.0) / self._get("span", idx)).clamp(max=FACTOR_MAX)
        return torch.where(self._get("moves", idx), -slope if up else slope, 0.0)

    def _flow(self, w, n, f0, up, idx=None):
        gamma = self._get("gamma_up" if up else "gamma_down", idx)
        step = self._get("step_up" if up else "step_down", idx)
        span = self._get("span", idx)
        u0 = self._distance(w, up, idx)
        beta = 1.0 - gamma
        eps = torch.where(step * n > 0, step * n / span * torch.pow(u0.clamp(min=1e-30), -beta), 0.0)
        q = beta * eps
        flat = beta.abs() < 1e-6
        beta_safe = torch.where(flat, torch.ones_like(beta), beta)
        log_ratio = torch.where(flat, -eps * (1.0 + 0.5 * q),
                                torch.log1p(-q.clamp(max=1.0 - 1e-7)) / beta_safe)
        u_n = torch.where((q >= 1.0) | (u0 <= 0.0), 0.0, u0 * torch.exp(log_ratio))
        out = self._get("w_max", idx) - span * u_n if up else self._get("w_min", idx) + span * u_n
        return torch.where(self._get("moves", idx) & (f0 > 0), out, w)
