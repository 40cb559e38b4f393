r"""Soft-bounds devices (aihwkit ``SoftBoundsDevice``): the step shrinks linearly to zero at the bound::

    up:   w <- w + step_up_ij  *(1 - w/w_max_ij)*(1 + dw_min_std*xi)
    down: w <- w - step_down_ij*(1 - w/w_min_ij)*(1 + dw_min_std*xi)

Without noise, n up coincidences contract ``w_max_ij - w`` by ``a_up^n`` with
``a_up = 1 - step_up_ij/w_max_ij`` (down: towards ``w_min_ij`` with
``a_down = 1 - step_down_ij/|w_min_ij|``). A mix of n_up and n_down coincidences is applied as
the two contractions interleaved evenly (rates ``l_up = -n_up*ln a_up``, ``l_dn = -n_dn*ln a_down``)::

    w <- w + (l_up*(w_max - w) + l_dn*(w_min - w)) * (1 - exp(-(l_up + l_dn)))/(l_up + l_dn)

which is exact for one direction and differs from a particular order of mixed pulses by
``O(n_up*n_dn*step^2/|w_bound|)``. Cycle-to-cycle noise is added with the variance
``dw_min_std^2*(step_up^2*f_up^2*n_up + step_down^2*f_dn^2*n_dn)`` at the starting state
(``f_up = 1 - w/w_max``, ``f_dn = 1 - w/w_min``): first order in the step. The same move serves
the fast mode (with the expected counts and the binomial count variance) and the exact mode (with
sampled counts, once per chunk of updates).

Each bound keeps at least ``SOFT_BOUND_FLOOR`` (10 %) of its nominal magnitude: a
device-to-device draw putting a bound at 0 would make the step factor ``1 - w/w_bound`` unbounded.
"""
from __future__ import annotations

import torch

from archsim.functional.devices.base import SOFT_BOUND_FLOOR, PulsedDevices, StateDependentSteps


class SoftBoundsDevices(StateDependentSteps, PulsedDevices):
    """Step proportional to the distance to the bound in the direction of the move."""

    kind = "soft_bounds"

    def _draw_family(self, spec, gauss) -> None:
        self.mult_noise = bool(spec.mult_noise)
        # A soft bound at (or near) 0 makes the step factor 1 - w/w_bound unbounded: each
        # bound keeps at least SOFT_BOUND_FLOOR of its nominal magnitude.
        self.w_max.clamp_(min=SOFT_BOUND_FLOOR * spec.w_max)
        self.w_min.clamp_(max=SOFT_BOUND_FLOOR * spec.w_min)

    def _derive(self) -> None:
        super()._derive()
        su, sd = self.step_up, self.step_down
        tiny = torch.finfo(su.dtype).tiny
        ru = (su / self.w_max.clamp(min=tiny)).clamp(max=1.0 - 1e-6)
        rd = (sd / (-self.w_min).clamp(min=tiny)).clamp(max=1.0 - 1e-6)
        self.rate_up = -torch.log1p(-ru)   # contraction rate per up coincidence
        self.rate_down = -torch.log1p(-rd)

    def _mean_var(self, w, n_up, n_dn, v_up, v_dn, idx=None):
        """Mean change (interleaved contractions) and variance (counts + c2c, first order)."""
        w_max, w_min = self._get("w_max", idx), self._get("w_min", idx)
        l_up = self._get("rate_up", idx) * n_up
        l_dn = self._get("rate_down", idx) * n_dn
        lam = l_up + l_dn
        g = torch.where(lam > 1e-6, -torch.expm1(-lam) / lam.clamp(min=1e-6), 1.0 - 0.5 * lam)
        mean = (l_up * (w_max - w) + l_dn * (w_min - w)) * g
        su, sd = self._get("step_up", idx), self._get("step_down", idx)
        eu = su * (1.0 - w / w_max.clamp(min=1e-30)).clamp(min=0.0)
        ed = sd * (1.0 - w / w_min.clamp(max=-1e-30)).clamp(min=0.0)
        return mean, self._variance(eu, su, ed, sd, n_up, n_dn, v_up, v_dn)

    def _variance(self, eu, su, ed, sd, n_up, n_dn, v_up, v_dn):
        """Count variance (``v``) times the squared mean step ``e`` at the starting state, plus
        cycle-to-cycle noise on ``n`` steps: on the whole step ``e`` (``mult_noise``) or on its
        constant part ``s`` only (aihwkit's additive update)."""
        s2 = self.dw_min_std ** 2
        if self.mult_noise:
            return eu * eu * (v_up + s2 * n_up) + ed * ed * (v_dn + s2 * n_dn)
        return eu * eu * v_up + ed * ed * v_dn + s2 * (su * su * n_up + sd * sd * n_dn)
