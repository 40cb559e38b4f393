r"""The periphery of a population tile whose members' converters differ (DAC/ADC resolution,
stochastic or deterministic rounding, ranges, output noise, bound-management limits).

:class:`~archsim.functional.periphery.Periphery` keeps its converters as numbers; here each of
them is one number per member, and every MVM uses each row's member's value: a ``[K, 1]`` column
per constant, gathered to ``[R, 1]`` per row (made once per batch size), so the formulas of
:class:`~archsim.functional.config.RPUConfig` hold row by row::

    v_r  = clip(Q_k(x_r / (alpha_r*beta_r*in_step_k)), +-inp_bound_k/in_step_k)     DAC, levels
    y_r  = (in_step_k/out_unit_k) * v_r W_k^T + (out_noise_k/out_unit_k) * xi_r     array, noise
    y^_r = clip(Q'_k(y_r), +-out_bound_k/out_unit_k) * out_unit_k * out_scale * alpha_r*beta_r

with ``k`` row ``r``'s member, ``Q_k`` rounding to nearest, stochastically, or not at all as the
member's converter does. Each member's constants are those of its own one-member
:class:`Periphery` (made from its configuration), so a member computes what the separate run with
its settings computes (the same numbers up to float rounding where nothing is random, the same
distribution where something is: tests/test_population_periphery.py). The cost over the scalar
path is a few elementwise ops per MVM (a step of 1.4x that of like members at 2x64 on a CPU,
``benchmarks/functional_step.py --unlike-periphery``); members with equal settings keep that path
(:func:`make_periphery`).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from archsim.functional.config import MEMBER_PERIPHERY_FIELDS, RPUConfig
from archsim.functional.periphery import Periphery



def member_config_differences(config: RPUConfig, member_configs) -> tuple[list[str], list[str]]:
    """The fields in which ``member_configs`` differ from ``config``: those a population may
    batch (:data:`MEMBER_PERIPHERY_FIELDS`) and the others (its device aside: the devices are
    checked on their own, per tensor)."""
    batchable, other = set(), set()
    for c in member_configs:
        for f in dataclasses.fields(RPUConfig):
            if f.name != "device" and getattr(c, f.name) != getattr(config, f.name):
                (batchable if f.name in MEMBER_PERIPHERY_FIELDS else other).add(f.name)
    return sorted(batchable), sorted(other)


def make_periphery(config: RPUConfig, weight: torch.Tensor, *, member_configs=None, **kw) -> Periphery:
    """The periphery of a tile: :class:`MemberPeriphery` when a population's members differ in
    their converters, else :class:`Periphery` (ValueError when they differ in something else)."""
    if member_configs is not None:
        batchable, other = member_config_differences(config, member_configs)
        if other:
            raise ValueError(f"population members' tile settings differ in {', '.join(other)}: "
                             f"members may differ only in {', '.join(MEMBER_PERIPHERY_FIELDS)} "
                             "(and in what their devices draw per device)")
        if batchable and not config.is_ideal:
            return MemberPeriphery(config, weight, member_configs=member_configs, **kw)
    return Periphery(config, weight, **kw)


class MemberPeriphery(Periphery):
    """:class:`Periphery` with one set of converter constants per member (``member_configs``,
    one :class:`RPUConfig` per member of ``members``)."""

    def __init__(self, config: RPUConfig, weight: torch.Tensor, *, member_configs, members,
                 **kw):
        super().__init__(config, weight, members=members, **kw)
        if members is None or len(member_configs) != members.K:
            raise ValueError(f"{len(member_configs)} member configurations for a population of "
                             f"{getattr(members, 'K', 1)}")
        parts = [Periphery(c, weight, members=members, **kw) for c in member_configs]

        def column(values, dtype=self.dtype):
            return torch.tensor(values, device=self.device, dtype=dtype).view(-1, 1)

        unit = [p.in_step if p.in_step > 0 else 1.0 for p in parts]
        sto_in = [p.in_step > 0 and p.inp_sto for p in parts]
        sto_out = [p.out_step > 0 and p.out_sto for p in parts]
        # Per member, each a [K, 1] column (rows gathered from them by _rows).
        self._per_member = dict(
            unit=column(unit), in_levels=column([p.in_levels for p in parts]),
            mm=column([p.mm_scale for p in parts]), noise=column([p.noise_levels for p in parts]),
            top=column([p.out_levels for p in parts]), sat=column([p.sat_level for p in parts]),
            factor=column([p.out_factor for p in parts]),
            q_in=column([p.in_step > 0 for p in parts], torch.bool),
            q_out=column([p.out_step > 0 for p in parts], torch.bool),
            s_in=column(sto_in, torch.bool), s_out=column(sto_out, torch.bool),
            # bound management repeats a row while its factor is at most this
            limit=column([min(p.max_bm_factor, p.bm_res_limit) for p in parts], torch.float64))
        # Which rounding each converter needs at all (elementwise selects only where mixed).
        self._dac_kind = (any(p.in_step > 0 for p in parts), all(p.in_step > 0 for p in parts),
                          any(sto_in))
        self._adc_kind = (any(p.out_step > 0 for p in parts), all(p.out_step > 0 for p in parts),
                          any(sto_out))
        self.noisy = any(p.noisy for p in parts)
        self.saturation_known = (None if any(p.saturation_known is None for p in parts)
                                 else any(p.saturation_known for p in parts))
        self._by_size: dict[tuple[int, int], SimpleNamespace] = {}

    # ---- per-row constants --------------------------------------------------------------------
    def _rows(self, R: int, rows: torch.Tensor | None = None) -> SimpleNamespace:
        """Every per-member constant as ``[R, 1]``, one per row of a batch of ``R`` rows (or of
        the batch rows ``rows``)."""
        if rows is None:
            key = (R, self.members.B)
            found = self._by_size.get(key)
            if found is not None:
                return found
            member = self.members.member_rows(R, self.device)
        else:
            member = self.members.member_of(rows)
        c = SimpleNamespace(**{k: v.index_select(0, member) for k, v in self._per_member.items()})
        c.neg_in_levels, c.neg_top = -c.in_levels, -c.top
        if rows is None:
            self._by_size[key] = c
        return c

    def _round(self, v: torch.Tensor, kind, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Round rows to integer levels in place: to nearest, stochastically (``floor(v + u)``) or
        not at all, as each row's member's converter does."""
        any_q, all_q, any_s = kind
        if not any_q:
            return v
        r = v.round()
        if any_s:
            u = torch.rand(v.shape, generator=self.generator, device=v.device, dtype=v.dtype)
            r = torch.where(s, u.add_(v).floor_(), r)
        return v.copy_(r if all_q else torch.where(q, r, v))

    def _dac(self, v: torch.Tensor, c: SimpleNamespace) -> torch.Tensor:
        # Always clipped: where a member's scalar path skips the clip, it is a no-op.
        self._round(v, self._dac_kind, c.q_in, c.s_in)
        return torch.maximum(torch.minimum(v, c.in_levels, out=v), c.neg_in_levels, out=v)

    def _adc(self, y: torch.Tensor, c: SimpleNamespace) -> torch.Tensor:
        return self._round(y, self._adc_kind, c.q_out, c.s_out)

    def _may_saturate(self, y: torch.Tensor, c: SimpleNamespace) -> bool:
        if self.saturation_known is not None:
            return self.saturation_known
        # NaN anywhere answers yes (as Periphery.may_saturate).
        return not bool((y.abs() < c.sat).all())

    # ---- Periphery's steps, row by row --------------------------------------------------------
    def one_pass(self, x, alpha, factor, transposed, out=None, w=None, rows=None):
        c = self._rows(x.shape[0], rows)
        whole = rows is None  # else bound management's repeats: fresh temporaries (_temporary)
        v = self._temporary(f"dac_in_{transposed}", x.shape, keep=whole)
        if alpha is not None:
            torch.div(x, torch.addcmul(self.tiny, alpha, c.unit, value=factor), out=v)
        else:
            torch.div(x, c.unit * factor, out=v)
        self._dac(v, c)
        if w is None:
            w = self.weight if transposed else self.weight_t
        y = self.members.mm(v, w, out, rows).mul_(c.mm)
        if self.noisy:
            noise = self._temporary(f"noise_{transposed}", y.shape, keep=whole)
            y.addcmul_(noise.normal_(generator=self.generator), c.noise)
        self._adc(y, c)
        n, n_in = x.shape
        self.activity.dac_conversions += n * n_in
        self.activity.adc_conversions += n * (self.in_size if transposed else self.out_size)
        return y

    def finish(self, x, y, alpha, transposed: bool, bound_management: bool) -> torch.Tensor:
        c = self._rows(y.shape[0])
        scale = alpha
        if self._may_saturate(y, c):
            scale = self.saturated(x, y, alpha, transposed, bound_management)
        if scale is not None:
            y.mul_(scale)
        return y.mul_(c.factor)

    def clip_(self, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        c = self._rows(y.shape[0], rows)
        return torch.maximum(torch.minimum(y, c.top, out=y), c.neg_top, out=y)

    def at_top(self, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return y.abs() >= self._rows(y.shape[0], rows).sat

    def repeating(self, rows: torch.Tensor, factor: int) -> torch.Tensor:
        limit = self._per_member["limit"].view(-1).index_select(0, self.members.member_of(rows))
        return rows[limit >= factor]

    def prepare(self, prep, u, rec, rec_bound, blocks, w_hot, hot, post_scale) -> None:
        N, out = u.shape[0], self.out_size
        c = self._rows(N)
        alpha = self.prepared_alpha(prep, u, rec, rec_bound)
        torch.addcmul(self.tiny, alpha, c.unit, out=prep.div)
        scale = alpha * c.factor
        buf = self._kept("row_scales", (N, out))
        prep.scale = (buf.copy_(scale.expand(N, out)) if post_scale is None
                      else torch.mul(scale, post_scale, out=buf))
        pre = prep.pre
        if self.noisy:
            pre.normal_(generator=self.generator).mul_(c.noise)
        else:
            pre.zero_()
        for b in blocks:
            width = b.stop - b.start
            v = self._dac(torch.div(u[:, b], prep.div, out=self._temporary(f"prepare_dac_in_{b.start}",
                                                                             (N, width))), c)
            pre.addcmul_(self.members.mm(v, self.weight_t[:, b], self._temporary("prepare_product", (N, out))),
                         c.mm)
        if w_hot is not None:
            pre.addcmul_(w_hot, self._dac(hot / prep.div, c).mul_(c.mm))

    def finish_prepared(self, prepared, views, u: torch.Tensor) -> torch.Tensor:
        pre, div, alpha, x_rec, rows = views
        n = pre.shape[0]
        c = self._rows(n)
        y = pre.addcmul_(self.members.mm(self._dac(x_rec / div, c), prepared.w_rec_t), c.mm)
        self._adc(y, c)
        self.activity.dac_conversions += n * self.in_size
        self.activity.adc_conversions += n * self.out_size
        if self._may_saturate(y, c):
            rows_scale = self.saturated(u, y, alpha, False, self.bound_management)
            y.mul_(rows_scale).mul_(c.factor)
            return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
        return y.mul_(prepared.scale[rows])
