r"""Constant-step devices (Gokmen & Vlasov 2016; aihwkit ``ConstantStepDevice``).

One coincidence::

    up:   w <- clip(w + step_up_ij  *(1 + dw_min_std*xi), w_min_ij, w_max_ij)
    down: w <- clip(w - step_down_ij*(1 + dw_min_std*xi), w_min_ij, w_max_ij)

n coincidences in one direction without reaching a bound move ``w`` by
``step*(n + dw_min_std*sqrt(n)*xi)``: with Gaussian cycle-to-cycle noise this is exact in
distribution (a sum of n independent Gaussians), so counts are applied in one draw. Moves are
additive between the bounds, so the exact mode realises a chunk's counts at once and replays in
order only the devices that could have touched a bound (``count_budget``, ``replay_``).
"""
from __future__ import annotations

import torch

from archsim.functional.devices.base import BOUND_MARGIN_SIGMAS, PulsedDevices


class ConstantStepDevices(PulsedDevices):
    """Constant step ``dw_min_ij`` per coincidence, hard bounds ``w_min_ij``, ``w_max_ij``."""

    kind = "constant_step"
    replays_in_order = True

    def _derive(self) -> None:
        super()._derive()
        # One host check at creation: equal steps make the fast update cheaper (no up/down split).
        self.symmetric = bool(torch.equal(self.step_up, self.step_down))

    def apply_moments_(self, w, m_all, m_sgn, v_all, v_sgn, generator, noise=None):
        s2 = self.dw_min_std ** 2
        noise = self.gaussian(w, generator, noise)
        # var = c1*((1+s2) m_all - v_all) + c2*((1+s2) m_sgn - v_sgn)
        var = v_all.neg_().add_(m_all, alpha=1.0 + s2).mul_(self.c1)
        if not self.symmetric:
            var.addcmul_(self.c2, v_sgn.neg_().add_(m_sgn, alpha=1.0 + s2))
            w.addcmul_(self.h_diff, m_all)
        w.addcmul_(self.h_sum, m_sgn, value=-1.0)
        w.addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
        return self.clip_(w)

    def apply_counts(self, w, n_all, n_sgn, generator, idx=None):
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        s2 = self.dw_min_std ** 2
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
