r"""Linear-step devices (aihwkit ``LinearStepDevice``): the step falls linearly with the weight,
with hard bounds as for constant-step devices::

    up:   w <- clip(w + step_up_ij  *(1 - gamma_up_ij  *w/w_ref_up)*(1 + dw_min_std*xi), w_min_ij, w_max_ij)
    down: w <- clip(w - step_down_ij*(1 - gamma_down_ij*w/w_ref_dn)*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

with ``gamma_ij = |gamma + gamma_dtod*xi|`` (aihwkit; drawn after the common parameters: up, then down)
and ``w_ref`` the mean bounds ``w_max``, ``w_min`` (``mean_bound_reference: true``, aihwkit's
default) or each device's own. ``gamma = 1`` with device references is the soft-bounds device;
``gamma = 0`` is the constant-step device; ECRAM and capacitor cells are fitted with gammas in
between (aihwkit presets). A step factor below zero (``gamma > 1`` past ``w_ref/gamma``) is
clamped at zero: the device saturates there.

Between the bounds, n up coincidences contract ``t_up - w`` geometrically towards
``t_up = w_ref_up/gamma_up`` with ``a_up = 1 - x_up``, ``x_up = step_up*gamma_up/|w_ref_up|``, as
soft-bounds devices contract towards their bound; mixed counts are applied as the two contractions
interleaved evenly (see soft_bounds.py)::

    w <- w + (n_up*k_up - n_dn*k_dn - (l_up + l_dn)*w) * (1 - exp(-(l_up + l_dn)))/(l_up + l_dn)
    l = -n*ln(1 - x),   k = step*phi(x),   phi(x) = -ln(1 - x)/x  (-> 1 as x -> 0)

written with ``k = rate*|t|`` so that ``gamma -> 0`` gives the constant step ``n_up*step_up -
n_dn*step_down`` without an infinite target. The cycle-to-cycle variance is first order at the
starting state, as for soft bounds; the hard bounds are applied after the move.
"""
from __future__ import annotations

import torch

from archsim.functional.devices.base import SOFT_BOUND_FLOOR
from archsim.functional.devices.soft_bounds import SoftBoundsDevices
from archsim.specs.device import LINEAR_STEP_DTOD_DEFAULT


def _phi(x: torch.Tensor) -> torch.Tensor:
    """-ln(1 - x)/x for x in [0, 1), continuous at 0 (series below 1e-4)."""
    series = 1.0 + x * (0.5 + x / 3.0)
    return torch.where(x > 1e-4, -torch.log1p(-x) / x.clamp(min=1e-4), series)


class LinearStepDevices(SoftBoundsDevices):
    """Step ``dw_min_ij*(1 - gamma_ij*w/w_ref)`` per coincidence, hard bounds."""

    kind = "linear_step"

    def _draw_family(self, spec, gauss) -> None:
        self.mult_noise = bool(spec.mult_noise)
        # aihwkit: gamma_ij = |gamma + gamma_dtod*xi| (an added spread, folded at 0).
        up_dtod = LINEAR_STEP_DTOD_DEFAULT if spec.gamma_up_dtod is None else spec.gamma_up_dtod
        down_dtod = LINEAR_STEP_DTOD_DEFAULT if spec.gamma_down_dtod is None else spec.gamma_down_dtod
        self.gamma_up = (spec.gamma_up + up_dtod * gauss()).abs_()
        self.gamma_down = (spec.gamma_down + down_dtod * gauss()).abs_()
        self.mean_bound_reference = bool(spec.mean_bound_reference)
        if self.mean_bound_reference:
            self.ref_up = torch.full_like(self.w_max, spec.w_max)
            self.ref_down = torch.full_like(self.w_min, spec.w_min)
        else:
            # The device's own bound is the reference: keep it away from 0, as for soft bounds.
            self.w_max.clamp_(min=SOFT_BOUND_FLOOR * spec.w_max)
            self.w_min.clamp_(max=SOFT_BOUND_FLOOR * spec.w_min)
            self.ref_up, self.ref_down = self.w_max, self.w_min

    def _derive(self) -> None:
        super(SoftBoundsDevices, self)._derive()
        x_up = (self.step_up * self.gamma_up / self.ref_up).clamp_(min=0.0, max=1.0 - 1e-6)
        x_dn = (self.step_down * self.gamma_down / (-self.ref_down)).clamp_(min=0.0, max=1.0 - 1e-6)
        self.rate_up = -torch.log1p(-x_up)
        self.rate_down = -torch.log1p(-x_dn)
        self.k_up = self.step_up * _phi(x_up)
        self.k_down = self.step_down * _phi(x_dn)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = super().tensors()
        out.update(gamma_up=self.gamma_up, gamma_down=self.gamma_down)
        return out

    def _mean_var(self, w, n_up, n_dn, v_up, v_dn, idx=None):
        l_up = self._get("rate_up", idx) * n_up
        l_dn = self._get("rate_down", idx) * n_dn
        lam = l_up + l_dn
        g = torch.where(lam > 1e-6, -torch.expm1(-lam) / lam.clamp(min=1e-6), 1.0 - 0.5 * lam)
        mean = (self._get("k_up", idx) * n_up - self._get("k_down", idx) * n_dn - lam * w) * g
        f_up = (1.0 - self._get("gamma_up", idx) * w / self._get("ref_up", idx)).clamp(min=0.0)
        f_dn = (1.0 - self._get("gamma_down", idx) * w / self._get("ref_down", idx)).clamp(min=0.0)
        su, sd = self._get("step_up", idx), self._get("step_down", idx)
        return mean, self._variance(su * f_up, su, sd * f_dn, sd, n_up, n_dn, v_up, v_dn)
