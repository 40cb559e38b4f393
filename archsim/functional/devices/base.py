r"""What every pulsed device family shares: the per-device parameters drawn at tile creation.

Parameters fixed per device at tile creation (``xi ~ N(0, 1)``, independent per device and
parameter, drawn from the tile's generator in this order: gain, asymmetry, w_max, w_min, then
whatever the family adds)::

    gain_ij      = 1 + dw_min_dtod*xi             r_ij = up_down_dtod*xi
    step_up_ij   = dw_min*(gain_ij + min(up_down, 0) + r_ij)      (clipped at 0)
    step_down_ij = dw_min*(gain_ij - max(up_down, 0) - r_ij)      (clipped at 0)
    w_max_ij     = w_max*(1 + w_max_dtod*xi)      (clipped at 0)
    w_min_ij     = w_min*(1 + w_min_dtod*xi)      (clipped at 0)

Clipping the rare (>3 sigma) draws keeps every step non-negative and 0 inside every device's
range; such a device is stuck in one direction, as a real dead device would be.

Counts are passed as ``n_all`` (coincidences in both directions) and ``n_sgn`` (down minus up):
``n_up = (n_all - n_sgn)/2``, ``n_down = (n_all + n_sgn)/2``. Methods taking ``idx`` work on the
devices with those flat indices (``w`` and counts are then vectors of that length).
"""
from __future__ import annotations

import copy

import torch

#: Safety margin (in standard deviations of the cycle-to-cycle noise) used when deciding whether a
#: device could reach a bound inside a chunk of updates in exact mode.
BOUND_MARGIN_SIGMAS = 6.0

#: Soft-bounds devices: the smallest bound magnitude a device-to-device draw may give, as a
#: fraction of the nominal bound (an archsim choice; see SoftBoundsDevices).
SOFT_BOUND_FLOOR = 0.1


class PulsedDevices:
    """Per-device parameters of a ``[out, in]`` tile; subclasses own the update rules."""

    #: The ``DeviceSpec.kind`` of the family.
    kind = ""
    #: Moves are additive between hard bounds: the exact mode may realise a chunk's counts at
    #: once and replay in order only the devices that could have touched a bound
    #: (``count_budget`` and ``replay_`` are then defined).
    replays_in_order = False

    def __init__(self, spec, out_size: int, in_size: int, generator: torch.Generator,
                 device: torch.device, dtype: torch.dtype):
        if spec.kind != self.kind:
            raise ValueError(f"{type(self).__name__} models kind {self.kind!r}, got {spec.kind!r}")
        shape = (out_size, in_size)

        def gauss():
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        self.dw_min = float(spec.dw_min)
        self.dw_min_std = float(spec.dw_min_std)
        gain = 1.0 + spec.dw_min_dtod * gauss()
        r = spec.up_down_dtod * gauss()
        self.step_up = (spec.dw_min * (gain + min(spec.up_down, 0.0) + r)).clamp_(min=0.0)
        self.step_down = (spec.dw_min * (gain - max(spec.up_down, 0.0) - r)).clamp_(min=0.0)
        self.w_max = (spec.w_max * (1.0 + spec.w_max_dtod * gauss())).clamp_(min=0.0)
        self.w_min = (spec.w_min * (1.0 + spec.w_min_dtod * gauss())).clamp_(max=0.0)
        self._draw_family(spec, gauss)
        self._derive()

    def _draw_family(self, spec, gauss) -> None:
        """Family-specific per-device parameters, drawn after the common ones."""

    def _derive(self) -> None:
        """Coefficients computed from the drawn parameters (again after a checkpoint is loaded)."""
        su, sd = self.step_up, self.step_down
        # mean = h_diff*n_all - h_sum*n_sgn ; c2c variance = std^2*(c1*n_all + c2*n_sgn)
        self.h_diff = 0.5 * (su - sd)
        self.h_sum = 0.5 * (su + sd)
        self.c1 = 0.5 * (su * su + sd * sd)
        self.c2 = 0.5 * (sd * sd - su * su)
        self.step_max = torch.maximum(su, sd)
        #: Equal up and down steps everywhere (constant step only): the fast update then needs
        #: three per-device sums instead of four.
        self.symmetric = False

    def tensors(self) -> dict[str, torch.Tensor]:
        """Per-device parameters drawn at creation (for checkpoints)."""
        return {"step_up": self.step_up, "step_down": self.step_down,
                "w_max": self.w_max, "w_min": self.w_min}

    def load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)
        self._derive()

    def rows(self, rows: slice) -> "PulsedDevices":
        """The devices of the rows ``rows`` of the array, sharing their parameters (views): a
        population member's devices (:class:`~archsim.functional.tile.AnalogTile`)."""
        part = copy.copy(self)
        n = self.step_up.shape[0]
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == n:
                setattr(part, name, value[rows])
        return part

    def _get(self, name: str, idx):
        t = getattr(self, name)
        return t if idx is None else t.view(-1).index_select(0, idx)

    def clip_(self, w: torch.Tensor, idx=None) -> torch.Tensor:
        """Clip ``w`` in place to every device's own bounds."""
        torch.minimum(w, self._get("w_max", idx), out=w)
        return torch.maximum(w, self._get("w_min", idx), out=w)

    def apply_moments_(self, w: torch.Tensor, m_all, m_sgn, v_all, v_sgn,
                       generator: torch.Generator, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Fast mode: move every device by one Gaussian draw with the exact model's mean and
        variance, then clip. In place.

        ``m_all = sum_k BL p q`` and ``m_sgn = sum_k BL p q sign(d x)`` are the expected counts,
        ``v_all``/``v_sgn`` the same sums of ``BL (p q)^2``; the count variance per direction is
        ``E[n] - sum BL (p q)^2`` (binomial). ``v_sgn`` may be None for symmetric devices.
        Consumes (overwrites) the moment tensors. ``noise``: a tensor of ``w``'s shape to draw
        the Gaussian draws into (a workspace), else a fresh one (the same draws either way).
        """
        raise NotImplementedError

    @staticmethod
    def gaussian(w: torch.Tensor, generator: torch.Generator, out: torch.Tensor | None = None):
        """Standard normal draws of ``w``'s shape, into ``out`` when given (the same draws)."""
        if out is None:
            return torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        return torch.randn(w.shape, generator=generator, out=out)

    def apply_counts(self, w: torch.Tensor, n_all, n_sgn, generator: torch.Generator,
                     idx=None) -> torch.Tensor:
        """Exact mode: new states (clipped) after sampled counts, one move per device."""
        raise NotImplementedError


class StateDependentSteps:
    """Mixin of the device families whose step depends on the weight (soft bounds, exponential
    and power step): mean and variance of a move come from the family's
    ``_mean_var(w, n_up, n_dn, v_up, v_dn, idx)``; the move is that mean plus Gaussian noise of
    that variance, then the bounds. ``clamp_count_variance``: clamp the up/down count variances at
    0 before use (the flow-step families need it; soft bounds keep their historical numerics)."""

    clamp_count_variance = False

    def apply_moments_(self, w, m_all, m_sgn, v_all, v_sgn, generator, noise=None):
        noise = PulsedDevices.gaussian(w, generator, noise)
        n_up, n_dn = 0.5 * (m_all - m_sgn), 0.5 * (m_all + m_sgn)
        v_up = n_up - 0.5 * (v_all - v_sgn)
        v_dn = n_dn - 0.5 * (v_all + v_sgn)
        if self.clamp_count_variance:
            v_up, v_dn = v_up.clamp_(min=0.0), v_dn.clamp_(min=0.0)
        mean, var = self._mean_var(w, n_up, n_dn, v_up, v_dn)
        w.add_(mean).addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
        return self.clip_(w)

    def apply_counts(self, w, n_all, n_sgn, generator, idx=None):
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        n_up, n_dn = 0.5 * (n_all - n_sgn), 0.5 * (n_all + n_sgn)
        mean, var = self._mean_var(w, n_up, n_dn, 0.0, 0.0, idx)
        out = w + mean
        out.addcmul_(var.clamp_(min=0.0).sqrt_(), noise)
        return self.clip_(out, idx)
