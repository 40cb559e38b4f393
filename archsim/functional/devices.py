r"""Resistive device models of one tile: per-device parameters and how coincidences move weights.

Parameters fixed per device at tile creation (``xi ~ N(0, 1)``, independent per device and
parameter, drawn from the tile's generator in this order: gain, asymmetry, w_max, w_min)::

    gain_ij      = 1 + dw_min_dtod*xi             r_ij = up_down_dtod*xi
    step_up_ij   = dw_min*(gain_ij + min(up_down, 0) + r_ij)      (clipped at 0)
    step_down_ij = dw_min*(gain_ij - max(up_down, 0) - r_ij)      (clipped at 0)
    w_max_ij     = w_max*(1 + w_max_dtod*xi)      (clipped at 0)
    w_min_ij     = w_min*(1 + w_min_dtod*xi)      (clipped at 0)

Clipping the rare (>3 sigma) draws keeps every step non-negative and 0 inside every device's
range; such a device is stuck in one direction, as a real dead device would be. Soft-bounds
devices keep each bound at no less than 10 % of its nominal magnitude (``SOFT_BOUND_FLOOR``): a
bound at 0 would make their step factor below infinite.

Constant-step device (``constant_step``), one coincidence::

    up:   w <- clip(w + step_up_ij  *(1 + dw_min_std*xi), w_min_ij, w_max_ij)
    down: w <- clip(w - step_down_ij*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

n coincidences in one direction without reaching a bound move ``w`` by
``step*(n + dw_min_std*sqrt(n)*xi)``: with Gaussian cycle-to-cycle noise this is exact in
distribution (a sum of n independent Gaussians), so counts are applied in one draw.

Soft-bounds device (``soft_bounds``): the step shrinks linearly to zero at the bound::

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
(``f_up = 1 - w/w_max``, ``f_dn = 1 - w/w_min``): first order in the step.
"""
from __future__ import annotations

import torch

#: Safety margin (in standard deviations of the cycle-to-cycle noise) used when deciding whether a
#: device could reach a bound inside a chunk of updates in exact mode.
BOUND_MARGIN_SIGMAS = 6.0

#: Soft-bounds devices: the smallest bound magnitude a device-to-device draw may give, as a
#: fraction of the nominal bound (an archsim choice; see PulsedDevices.__init__).
SOFT_BOUND_FLOOR = 0.1


class PulsedDevices:
    """Per-device parameters of a ``[out, in]`` tile and the rules that apply coincidences.

    Counts are passed as ``n_all`` (coincidences in both directions) and ``n_sgn`` (down minus
    up): ``n_up = (n_all - n_sgn)/2``, ``n_down = (n_all + n_sgn)/2``. For constant-step devices the
    mean and variance of the change are then linear in (n_all, n_sgn) with per-device
    coefficients precomputed here, which keeps the number of full-array passes small.
    Methods taking ``idx`` work on the devices with those flat indices (``w`` and counts are then
    vectors of that length).
    """

    def __init__(self, spec, out_size: int, in_size: int, generator: torch.Generator,
                 device: torch.device, dtype: torch.dtype):
        if spec.kind not in ("constant_step", "soft_bounds"):
            raise ValueError(f"PulsedDevices needs a pulsed device kind, got {spec.kind!r}")
        shape = (out_size, in_size)

        def gauss():
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        self.kind = spec.kind
        self.dw_min = float(spec.dw_min)
        self.dw_min_std = float(spec.dw_min_std)
        gain = 1.0 + spec.dw_min_dtod * gauss()
        r = spec.up_down_dtod * gauss()
        self.step_up = (spec.dw_min * (gain + min(spec.up_down, 0.0) + r)).clamp_(min=0.0)
        self.step_down = (spec.dw_min * (gain - max(spec.up_down, 0.0) - r)).clamp_(min=0.0)
        self.w_max = (spec.w_max * (1.0 + spec.w_max_dtod * gauss())).clamp_(min=0.0)
        self.w_min = (spec.w_min * (1.0 + spec.w_min_dtod * gauss())).clamp_(max=0.0)
        if spec.kind == "soft_bounds":
            # A soft bound at (or near) 0 makes the step factor 1 - w/w_bound unbounded: each
            # bound keeps at least SOFT_BOUND_FLOOR of its nominal magnitude.
            self.w_max.clamp_(min=SOFT_BOUND_FLOOR * spec.w_max)
            self.w_min.clamp_(max=SOFT_BOUND_FLOOR * spec.w_min)
        self._derive()

    def _derive(self) -> None:
        su, sd = self.step_up, self.step_down
        # mean = h_diff*n_all - h_sum*n_sgn ; c2c variance = std^2*(c1*n_all + c2*n_sgn)
        self.h_diff = 0.5 * (su - sd)
        self.h_sum = 0.5 * (su + sd)
        self.c1 = 0.5 * (su * su + sd * sd)
        self.c2 = 0.5 * (sd * sd - su * su)
        self.step_max = torch.maximum(su, sd)
        # One host check at creation: equal steps make the fast update cheaper (no up/down split).
        self.symmetric = self.kind == "constant_step" and bool(torch.equal(su, sd))
        if self.kind == "soft_bounds":
            tiny = torch.finfo(su.dtype).tiny
            ru = (su / self.w_max.clamp(min=tiny)).clamp(max=1.0 - 1e-6)
            rd = (sd / (-self.w_min).clamp(min=tiny)).clamp(max=1.0 - 1e-6)
            self.rate_up = -torch.log1p(-ru)   # contraction rate per up coincidence
            self.rate_down = -torch.log1p(-rd)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Per-device parameters drawn at creation (for checkpoints)."""
        return {"step_up": self.step_up, "step_down": self.step_down,
                "w_max": self.w_max, "w_min": self.w_min}

    def load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)
        self._derive()

    def _get(self, name: str, idx):
        t = getattr(self, name)
        return t if idx is None else t.view(-1).index_select(0, idx)

    def clip_(self, w: torch.Tensor, idx=None) -> torch.Tensor:
        """Clip ``w`` in place to every device's own bounds."""
        torch.minimum(w, self._get("w_max", idx), out=w)
        return torch.maximum(w, self._get("w_min", idx), out=w)

    # ---- soft bounds -------------------------------------------------------------------------
    def _soft_mean_var(self, w, n_up, n_dn, v_up, v_dn, idx=None):
        """Mean change (interleaved contractions) and variance (counts + c2c, first order)."""
        w_max, w_min = self._get("w_max", idx), self._get("w_min", idx)
        l_up = self._get("rate_up", idx) * n_up
        l_dn = self._get("rate_down", idx) * n_dn
        lam = l_up + l_dn
        g = torch.where(lam > 1e-6, -torch.expm1(-lam) / lam.clamp(min=1e-6), 1.0 - 0.5 * lam)
        mean = (l_up * (w_max - w) + l_dn * (w_min - w)) * g
        eu = self._get("step_up", idx) * (1.0 - w / w_max.clamp(min=1e-30)).clamp(min=0.0)
        ed = self._get("step_down", idx) * (1.0 - w / w_min.clamp(max=-1e-30)).clamp(min=0.0)
        s2 = self.dw_min_std ** 2
        var = eu * eu * (v_up + s2 * n_up) + ed * ed * (v_dn + s2 * n_dn)
        return mean, var

    # ---- fast mode ---------------------------------------------------------------------------
    def apply_moments_(self, w: torch.Tensor, m_all, m_sgn, v_all, v_sgn,
                       generator: torch.Generator) -> torch.Tensor:
        """Fast mode: move every device by one Gaussian draw with the exact model's mean and
        variance, then clip. In place.

        ``m_all = sum_k BL p q`` and ``m_sgn = sum_k BL p q sign(d x)`` are the expected counts,
        ``v_all``/``v_sgn`` the same sums of ``BL (p q)^2``; the count variance per direction is
        ``E[n] - sum BL (p q)^2`` (binomial). ``v_sgn`` may be None for symmetric devices.
        Consumes (overwrites) the moment tensors.
        """
        s2 = self.dw_min_std ** 2
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        if self.kind == "soft_bounds":
            n_up, n_dn = 0.5 * (m_all - m_sgn), 0.5 * (m_all + m_sgn)
            v_up = n_up - 0.5 * (v_all - v_sgn)
            v_dn = n_dn - 0.5 * (v_all + v_sgn)
            mean, var = self._soft_mean_var(w, n_up, n_dn, v_up, v_dn)
            w.add_(mean).addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
            return self.clip_(w)
        # var = c1*((1+s2) m_all - v_all) + c2*((1+s2) m_sgn - v_sgn)
        var = v_all.neg_().add_(m_all, alpha=1.0 + s2).mul_(self.c1)
        if not self.symmetric:
            var.addcmul_(self.c2, v_sgn.neg_().add_(m_sgn, alpha=1.0 + s2))
            w.addcmul_(self.h_diff, m_all)
        w.addcmul_(self.h_sum, m_sgn, value=-1.0)
        w.addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
        return self.clip_(w)

    # ---- exact mode --------------------------------------------------------------------------
    def apply_counts(self, w: torch.Tensor, n_all, n_sgn, generator: torch.Generator,
                     idx=None) -> torch.Tensor:
        """New states (clipped) after sampled counts, applied as one move per device."""
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        s2 = self.dw_min_std ** 2
        if self.kind == "soft_bounds":
            n_up, n_dn = 0.5 * (n_all - n_sgn), 0.5 * (n_all + n_sgn)
            mean, var = self._soft_mean_var(w, n_up, n_dn, 0.0, 0.0, idx)
            out = w + mean
        else:
            var = self._get("c1", idx) * n_all
            if not self.symmetric:
                var.addcmul_(self._get("c2", idx), n_sgn)
            var.mul_(s2)
            out = torch.addcmul(w, self._get("h_sum", idx), n_sgn, value=-1.0)
            if not self.symmetric:
                out.addcmul_(self._get("h_diff", idx), n_all)
        out.addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
        return self.clip_(out, idx)

    def count_budget(self, w: torch.Tensor) -> torch.Tensor:
        """Constant-step: coincidence count below which a device cannot have touched a bound.

        A device that received T coincidences (either direction) since ``w`` moved at most
        ``step_max*(T + k*dw_min_std*sqrt(T))`` (k = BOUND_MARGIN_SIGMAS, a margin on the
        cycle-to-cycle noise); the budget is the T at which that reaches the nearer bound.
        Returned at least 0.5, so that a device with no coincidences is never flagged.
        """
        head = torch.minimum(self.w_max - w, w - self.w_min).clamp_(min=0.0)
        b = head / self.step_max.clamp(min=1e-30)
        k = BOUND_MARGIN_SIGMAS * self.dw_min_std
        root = 0.5 * (torch.sqrt(k * k + 4.0 * b) - k)
        return (root * root).clamp_(min=0.5)

    def replay_(self, w_f: torch.Tensor, idx: torch.Tensor, signed_counts: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        """Constant-step devices ``idx``: apply per-update counts in order k = 0.., clipping after
        every update. ``signed_counts[f, k]`` is +n for n up coincidences, -n for n down.

        Each update is the map ``w -> clamp(w + m, lo, hi)``; maps of the form
        ``clamp(w + c, L, H)`` are closed under composition (g then h gives
        ``c = c_g + c_h``, ``L = clamp(L_g + c_h, L_h, H_h)``, ``H = clamp(H_g + c_h, L_h, H_h)``),
        so the ordered sequence is reduced as a balanced tree (log2(k) vector steps) instead of
        a loop over updates. The result equals the sequential loop up to float rounding.
        """
        hi = self._get("w_max", idx).unsqueeze(1)
        lo = self._get("w_min", idx).unsqueeze(1)
        counts = signed_counts.abs()
        noise = torch.randn(counts.shape, generator=generator, device=counts.device, dtype=counts.dtype)
        mag = torch.addcmul(counts, counts.sqrt(), noise, value=self.dw_min_std)
        step = torch.where(signed_counts > 0, self._get("step_up", idx).unsqueeze(1),
                           -self._get("step_down", idx).unsqueeze(1))
        c = step.mul_(mag)                                   # move of every update  [f, k]
        # Zero moves (padding) are identities for states inside [lo, hi], which all states are.
        low, high = lo, hi
        while c.shape[1] > 1:
            if c.shape[1] % 2:
                c = torch.cat([c, c.new_zeros(c.shape[0], 1)], 1)
                low = torch.cat([low.expand(-1, c.shape[1] - 1), lo], 1)
                high = torch.cat([high.expand(-1, c.shape[1] - 1), hi], 1)
            cg, ch = c[:, 0::2], c[:, 1::2]
            lg, hg = (low, high) if low.shape[1] == 1 else (low[:, 0::2], high[:, 0::2])
            lh, hh = (lo, hi) if low.shape[1] == 1 else (low[:, 1::2], high[:, 1::2])
            low = torch.clamp(lg + ch, lh, hh)
            high = torch.clamp(hg + ch, lh, hh)
            c = cg + ch
        return torch.clamp(w_f.unsqueeze(1) + c, low, high).squeeze(1)
