r"""The moment-matched pulsed update of one RPU tile (``RPUConfig.update_mode = "fast"``, the
default).

For ``K`` rank-one updates ``x[k], d[k]`` per call, no pulses are sampled. The coincidence count
of device ij in update k is ``Binomial(BL_k, p_jk q_ik)`` in exact mode, independent over k, so
the per-call totals in each direction have mean ``sum_k BL_k p q`` and variance
``sum_k BL_k p q (1 - p q)``; both are matrix products over k (``(BL q)^T p``, ``(BL q^2)^T p^2``
and their sign-weighted versions, split by the direction ``-sign(d_i x_j)``), computed from the
clipped inputs and errors without forming p and q (:meth:`FastUpdate.apply`), with one-hot input
columns summed by index. Each device then moves by one Gaussian draw with the exact model's mean
and variance (count variance and cycle-to-cycle variance), and is clipped to its bounds once per
call. Not matched: (1) correlations between devices sharing a row or column pulse train (exact
mode has them; the fast draws are independent per device); (2) the shape of the distribution
(Gaussian instead of a sum of discrete steps; the means and variances agree, and so do sums over
many calls); (3) ordering and clipping within one call: a device that would hit a bound and come
back inside the call is clipped only at the end; (4) for soft-bounds devices the variance uses
the step factor at the start of the call.
"""
from __future__ import annotations

import torch

from archsim.functional.workspace import Workspace


class FastUpdate:
    """The fast update of one tile's devices ``weight [out, in]`` (changed in place).

    ``writes`` accumulates each device's expected coincidences (endurance); ``row_pulses``,
    ``col_pulses`` and ``coincidences`` are 0-dim views of the tile's on-device counters.
    ``generator`` is the tile's (it replaces it here whenever it replaces its own).
    ``members``: a population (:mod:`archsim.functional.members`); ``weight`` is then the
    members' matrices stacked, ``[K*out, in]``, the rows come member-major
    (:meth:`Members.member_major <archsim.functional.members.Members.member_major>`) and each
    member's sums run over its own rows."""

    def __init__(self, weight: torch.Tensor, devices, writes: torch.Tensor, workspace: Workspace, *,
                 generator: torch.Generator, row_pulses: torch.Tensor, col_pulses: torch.Tensor,
                 coincidences: torch.Tensor, members=None):
        self.weight, self.devices, self.writes = weight, devices, writes
        self.members = members
        self.workspace = workspace
        self.generator = generator
        self.row_pulses, self.col_pulses, self.coincidences = row_pulses, col_pulses, coincidences

    def clip_rows(self, v, av, scale, v_max, name):
        """``v`` clipped per row at ``+-1/scale`` (where ``scale*|v|`` would be a probability above
        1) and its absolute value; ``v`` and ``av`` themselves when no row needs it (one host check)."""
        if not bool((v_max * scale > 1.0).any()):
            return v, av
        lim = scale.reciprocal().unsqueeze(1)
        clipped = torch.clamp(v, -lim, lim, out=self.workspace(name, v.shape))
        return clipped, torch.abs(clipped, out=av)

    def apply(self, x, d, lr, bl, a, b, ax, ad, x_max, d_max, onehot=None):
        """The four per-device sums over the K updates (see the module docstring), from

            BL p q = (lr/dw_min) |x~| |d~|      BL (p q)^2 = (lr/dw_min)^2 x~^2 d~^2 / BL

        with ``x~, d~`` = ``x, d`` clipped per row at ``1/a``, ``1/b`` (``p = a|x~|``, ``q = b|d~|``,
        ``a*b*BL = lr/dw_min``): the probabilities themselves are never formed, and without
        clipping (the usual case) the operands are ``|x|, x, x^2, x|x|`` and likewise for ``d``.
        The arguments are those of :meth:`AnalogTile._pulse_scales
        <archsim.functional.tile.AnalogTile._pulse_scales>`; ``onehot`` as in
        :meth:`AnalogTile.update <archsim.functional.tile.AnalogTile.update>`.
        """
        dev, buffer = self.devices, self.workspace
        members = self.members
        out_in = tuple(self.weight.shape)
        K = 1 if members is None else members.K
        out_size = out_in[0] // K
        per_k = isinstance(bl, torch.Tensor)
        n_rows = x.shape[0]
        xt, ax = self.clip_rows(x, ax, a, x_max, "x_clipped")
        dt, ad = self.clip_rows(d, ad, b, d_max, "d_clipped")
        n_terms = 3 if dev.symmetric else 4
        s, index, at = 0, None, None
        if onehot is not None and onehot[0] > 0:
            s, index = onehot
            index = index.reshape(-1, 1)
            at = xt.gather(1, index)                 # the one nonzero per row (signed)
            if not torch.equal(ax[:, :s].sum(1, keepdim=True), at.abs()):
                s, index = 0, None                   # not one-hot after all: dense sums
        # Per device: sum_k of  |x~||d~|,  x~ d~,  x~^2 d~^2 / BL,  x~|x~| d~|d~| / BL  (times
        # lr/dw_min or its square: m_all, m_sgn, v_all, v_sgn).
        d_sides = [ad, dt, torch.mul(dt, dt, out=buffer("d2", dt.shape))]
        if n_terms == 4:
            d_sides.append(torch.mul(dt, ad, out=buffer("d2s", dt.shape)))
        sums = [buffer(name, out_in) for name in ("m_all", "m_sgn", "v_all", "v_sgn")[:n_terms]]
        # Dense columns s.. : matrix products over the K updates, each computed transposed
        # (x side first: 10-20 % faster for these tall operands) and copied into place.
        xd, axd = xt[:, s:], ax[:, s:]
        prod = buffer("prod", (xd.shape[1], out_size) if members is None else (K, xd.shape[1], out_size))
        x2 = buffer("x_side", xd.shape)
        for j, d_side in enumerate(d_sides):
            if j < 2:
                x_side = (axd, xd)[j]
            else:
                x_side = torch.mul(xd, xd if j == 2 else axd, out=x2)
                if per_k:
                    x_side.div_(bl.unsqueeze(1))
            if members is None:
                sums[j][:, s:].copy_(torch.mm(x_side.t(), d_side, out=prod).t())
            else:
                sums[j].view(K, out_size, -1)[..., s:].copy_(
                    members.outer_sums(x_side, d_side, out=prod).transpose(1, 2))
        if s:
            # One-hot columns: row k adds its d-side terms, weighted by its single x-side value,
            # to column index[k] of each sum (one index_add for all of them).
            weights = [at.abs(), at, at * at, at * at.abs()]
            if per_k:
                weights[2:] = [w / bl.unsqueeze(1) for w in weights[2:]]
            stacked = buffer("onehot_terms", (n_rows, n_terms, out_size))
            for j, d_side in enumerate(d_sides):
                torch.mul(d_side, weights[j], out=stacked[:, j])
            # A population's members add into their own blocks of s columns.
            flat = index.view(-1) if members is None else members.major_flat_index(index.view(-1), s)
            hot = buffer("onehot_sums", (K * s, n_terms, out_size)).zero_()
            hot.index_add_(0, flat, stacked)
            hot = hot.view(K, s, n_terms, out_size)
            for j in range(n_terms):
                sums[j].view(K, out_size, -1)[..., :s].copy_(hot[:, :, j].transpose(1, 2))
        m_all, m_sgn, v_all = sums[:3]
        v_sgn = sums[3] if n_terms == 4 else None
        c = lr / dev.dw_min
        c2 = c * c / (1.0 if per_k else bl)
        m_all.mul_(c)
        # Expected coincidences per device (endurance), counted in float64: an in-place add of
        # a float32 tensor would cast it into a fresh float64 copy first.
        same = self.writes.dtype == m_all.dtype
        self.writes.add_(m_all if same else buffer("m_all_wide", out_in, self.writes.dtype).copy_(m_all))
        m_sgn.mul_(c)
        v_all.mul_(c2)
        if v_sgn is not None:
            v_sgn.mul_(c2)
        # Pulse counts: row lines fire BL*p, column lines BL*q, coincidences BL*p*q in total.
        x_sum = ax.sum(1)
        d_sum = ad.sum(1)
        # nansum: a population member whose step went NaN (it is retired after this step) adds
        # nothing, instead of turning the whole population's counters into NaN for good.
        self.row_pulses += torch.nansum(a * x_sum * bl)
        self.col_pulses += torch.nansum(b * d_sum * bl)
        self.coincidences += torch.nansum(x_sum * d_sum) * c
        dev.apply_moments_(self.weight, m_all, m_sgn, v_all, v_sgn, self.generator,
                           noise=buffer("noise", out_in))
