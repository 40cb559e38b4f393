r"""The periphery of one RPU tile: DAC, output noise and ADC around the array, with noise and
bound management, as the MVMs of :class:`archsim.functional.tile.AnalogTile` go through them.

The formulas are in :class:`archsim.functional.config.RPUConfig`; this module says how they are
computed efficiently. Everything works in converter level units: the DAC output is an integer
level, one ``addmm`` multiplies by the array, rescales to ADC levels and adds the output noise,
and the ADC rounds to integer levels; the result goes back to weight units once, at the end.
ADC clipping, the saturation count and bound management run only when some output may sit on the
top level (one cheap host check on CPU). The periphery also counts the conversions, saturations
and bound-management repeats (into its tile's :class:`~archsim.functional.activity.TileActivity`
and on-device accumulator). A population whose members' converters differ uses the subclass
:class:`~archsim.functional.periphery_members.MemberPeriphery` (one set of constants per member).
"""
from __future__ import annotations

import math

import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.quant import level_step
from archsim.functional.workspace import Workspace


class Periphery:
    """The converters of one tile's array ``weight [out, in]`` (a tensor the tile changes in
    place only, so the references kept here stay current).

    ``generator`` (every draw: output noise, stochastic rounding) and ``activity`` (the counters)
    are the tile's: it replaces them here whenever it replaces its own. ``pending_sat`` is the
    tile's on-device saturation accumulator (a 0-dim view).

    ``members`` (a population, :mod:`archsim.functional.members`): ``weight`` is then
    ``[K, out, in]`` and every array product picks each row's member's matrix."""

    def __init__(self, config: RPUConfig, weight: torch.Tensor, *, generator: torch.Generator,
                 activity: TileActivity, pending_sat: torch.Tensor, members=None):
        self.weight = weight
        self.members = members
        # a view: stays current, the weights change in place
        self.weight_t = weight.transpose(-1, -2)
        self.out_size, self.in_size = weight.shape[-2:]
        self.device, self.dtype = weight.device, weight.dtype
        self.generator = generator
        self.activity = activity
        self.pending_sat = pending_sat
        self.max_bm_factor = config.max_bm_factor
        # Converters in level units (see one_pass): DAC/ADC full scale in levels, ADC unit.
        self.in_step = level_step(config.inp_res, config.inp_bound)
        self.out_step = level_step(config.out_res, config.out_bound)
        self.in_levels = config.inp_bound / self.in_step if self.in_step > 0 else config.inp_bound
        # Bound management may not make the input resolution coarser than max_bm_res of the range.
        self.bm_res_limit = config.max_bm_res / self.in_step if self.in_step > 0 else math.inf
        self.out_levels = config.out_bound / self.out_step if self.out_step > 0 else config.out_bound
        self.out_unit = self.out_step if self.out_step > 0 else 1.0
        self.sat_level = self.out_levels - (0.5 if self.out_step > 0 else 0.0)
        # may_saturate's answer where it needs no look at the outputs: never without an output
        # range, always on an accelerator; None: check on the host (CPU).
        finite = math.isfinite(self.out_levels)
        self.saturation_known = None if finite and self.device.type == "cpu" else finite
        # addmm factors: array result in ADC levels, output noise in ADC levels.
        self.mm_scale = (self.in_step if self.in_step > 0 else 1.0) / self.out_unit
        self.noise_levels = config.out_noise / self.out_unit
        self.tiny = torch.tensor(torch.finfo(self.dtype).tiny, device=self.device, dtype=self.dtype)
        # The DAC clip is a no-op when noise management scales every input into [-1, 1], the
        # range is at least that, and deterministic rounding to integer levels cannot overshoot.
        self.dac_clip = not (config.noise_management == "abs_max" and config.inp_bound >= 1.0
                             and self.in_step > 0 and not config.inp_sto_round
                             and float(self.in_levels).is_integer())
        # Back to weight units after the ADC: out_step, times the digital gain out_scale (the
        # weight in use is out_scale * the device weight; a no-op for floating-point tiles).
        self.out_scale = 1.0 if config.is_ideal else float(config.out_scale)
        self.out_factor = self.out_unit * self.out_scale
        self.out_factor_t = torch.tensor(self.out_factor, device=self.device, dtype=self.dtype)
        self.noise_management = config.noise_management == "abs_max"
        self.bound_management = config.bound_management == "iterative"
        # Settings read on every MVM, as plain attributes.
        self.noisy = config.out_noise > 0
        self.inp_sto, self.out_sto = config.inp_sto_round, config.out_sto_round
        # _temporary's large tensors and prepare()'s [N, out] scales, kept between calls
        self._kept = Workspace(self.device, self.dtype)

    #: Temporaries of at least this many elements are kept between calls (:meth:`_temporary`).
    KEEP_NUMEL = 1 << 20

    def _temporary(self, name: str, shape, keep: bool = True) -> torch.Tensor:
        """A tensor of ``shape`` for one call's use (contents undefined). Large ones (a whole
        sequence's MVMs, the more so in a population) are kept by name and reused while the
        shape stays: allocated afresh, each would fault in its pages again on every call.
        ``keep=False`` always gives a fresh one (bound management's repeats: their row count
        changes from call to call, so a kept tensor would be remade each time anyway)."""
        if not keep or math.prod(shape) < self.KEEP_NUMEL:
            return torch.empty(shape, device=self.device, dtype=self.dtype)
        return self._kept(name, shape)

    # ---- one MVM --------------------------------------------------------------------------
    def mvm(self, x: torch.Tensor, transposed: bool, bound_management: bool,
            out: torch.Tensor | None = None, w: torch.Tensor | None = None) -> torch.Tensor:
        """The MVMs of the rows of ``x`` through the periphery, in weight units: ``x W^T``, or
        ``x W`` when ``transposed`` (``w``: that matrix when only some outputs are wanted)."""
        # max |x| per row (noise management): abs + amax is the inf-norm bit for bit, and cheaper.
        # (The kept temporaries are named by direction: a tile may run whole sequences both ways.)
        alpha = torch.abs(x, out=self._temporary(f"abs_{transposed}", x.shape)).amax(dim=1, keepdim=True) \
            if self.noise_management else None
        y = self.one_pass(x, alpha, 1.0, transposed, out, w)
        return self.finish(x, y, alpha, transposed, bound_management)

    def one_pass(self, x: torch.Tensor, alpha: torch.Tensor | None, factor: float,
                 transposed: bool, out: torch.Tensor | None = None,
                 w: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """DAC -> array -> output noise -> ADC for inputs ``x`` divided by ``alpha*factor``.

        Works in converter level units to save passes: the DAC output is an integer level
        ``clamp(Q(x/(alpha*beta)/in_step), +-inp_bound/in_step)``; one ``addmm`` multiplies by the
        array, rescales by ``in_step/out_step`` and adds the output noise (in ADC levels); the ADC
        output is returned in levels of ``out_step``, rounded but *not* clipped (the caller clips:
        its saturation check can then skip the clip when nothing saturates). Without quantization
        the "levels" are the values themselves. ``alpha [N, 1]`` (noise management) may be None.
        ``out [N, out]``: where to write the result (else a new tensor); ``w``: the (transposed)
        MVM's matrix when only some outputs are wanted; ``rows``: in a population, the batch
        rows that ``x``'s rows are, when they are a subset (bound management's repeats).
        """
        unit = self.in_step if self.in_step > 0 else 1.0
        v = self._temporary(f"dac_in_{transposed}", x.shape, keep=rows is None)
        if alpha is not None:
            # x / (alpha*beta*in_step); + tiny keeps an all-zero row at 0 (it is scaled back by 0).
            torch.div(x, torch.add(self.tiny, alpha, alpha=unit * factor), out=v)
        elif unit * factor != 1.0:
            torch.mul(x, 1.0 / (unit * factor), out=v)
        else:
            v.copy_(x)
        self.dac(v)
        if w is None:
            w = self.weight if transposed else self.weight_t
        if out is None:
            out = torch.empty(v.shape[0], w.shape[-1], device=v.device, dtype=v.dtype)
        members = self.members
        if self.noisy:
            y = out.normal_(generator=self.generator)
            if members is None:
                y.addmm_(v, w, beta=self.noise_levels, alpha=self.mm_scale)
            elif rows is None:
                members.addmm_(y, v, w, beta=self.noise_levels, alpha=self.mm_scale)
            else:
                y.mul_(self.noise_levels).add_(members.mm(v, w, rows=rows), alpha=self.mm_scale)
        else:
            y = torch.mm(v, w, out=out) if members is None else members.mm(v, w, out, rows)
            if self.mm_scale != 1.0:
                y.mul_(self.mm_scale)
        self.adc_(y)
        n, n_in = x.shape
        a = self.activity
        a.dac_conversions += n * n_in
        a.adc_conversions += n * (self.in_size if transposed else self.out_size)
        return y

    def may_saturate(self, y: torch.Tensor) -> bool:
        """Whether some output in ADC levels ``y`` may sit on the top level. Saturation is rare:
        on CPU one min/max pass (a ~1 us host check) spares the clip, the count and bound
        management; on an accelerator the answer is always yes (no host round trip)."""
        if self.saturation_known is not None:
            return self.saturation_known
        lo, hi = torch.aminmax(y)
        # Written so that a NaN anywhere answers yes: the other rows (in a population, the other
        # members) are then still clipped where they saturate.
        return not (hi.item() < self.sat_level and lo.item() > -self.sat_level)

    def finish(self, x, y, alpha, transposed: bool, bound_management: bool) -> torch.Tensor:
        """ADC clipping (with the saturation count and bound management) and the scaling of the
        levels ``y`` back to weight units."""
        scale = alpha
        if self.may_saturate(y):
            scale = self.saturated(x, y, alpha, transposed, bound_management)
        # Back to weight units: levels * out_step * alpha*beta (0-dim tensor constants: a Python
        # float in a binary op costs a conversion per call).
        if scale is not None:
            y.mul_(scale)
        return y.mul_(self.out_factor_t) if self.out_factor != 1.0 else y

    def saturated(self, x, y, alpha, transposed: bool, bound_management: bool):
        """Clip ``y`` (ADC levels) in place, count saturated outputs, and with bound management
        repeat saturated rows with the input halved until none saturates. Returns the per-row
        scale back to weight units (``alpha*beta``; None: ``alpha`` unchanged and no NM)."""
        self.clip_(y)
        sat = self.at_top(y)
        if not bound_management:
            self.pending_sat += sat.sum()
            return alpha
        per_row = sat.sum(dim=1)
        self.pending_sat += per_row.sum()
        rows = per_row.nonzero().squeeze(1)   # a host sync (on an accelerator: every forward call)
        if not rows.numel():
            return alpha
        scale = alpha.clone() if alpha is not None else y.new_ones(y.shape[0], 1)
        factor = 1
        while rows.numel():
            rows = self.repeating(rows, factor)
            if not rows.numel():
                break
            factor *= 2
            a_r = alpha.index_select(0, rows) if alpha is not None else None
            yi = self.clip_(self.one_pass(x.index_select(0, rows), a_r, factor, transposed,
                                          rows=rows), rows)
            self.activity.bm_repeats += rows.numel()
            sat_i = self.at_top(yi, rows)
            self.pending_sat += sat_i.sum()
            y.index_copy_(0, rows, yi)
            if a_r is None:
                scale.index_fill_(0, rows, factor)
            else:
                scale.index_copy_(0, rows, a_r * factor)
            rows = rows[sat_i.any(dim=1)]
        return scale

    def clip_(self, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The ADC's clip of outputs ``y`` (levels) to the top level, in place (``rows``: which
        rows of a batch ``y``'s are, in a population whose members' converters differ)."""
        return y.clamp_(-self.out_levels, self.out_levels)

    def at_top(self, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Which clipped outputs count as saturated: those on the top ADC level (the ADC cannot
        tell them from larger ones)."""
        return y.abs() >= self.sat_level

    def repeating(self, rows: torch.Tensor, factor: int) -> torch.Tensor:
        """The saturated ``rows`` that bound management repeats after one at ``factor``:
        aihwkit's stop comes after the first factor above max_bm_factor or above
        max_bm_res/inp_res."""
        return rows if factor <= self.max_bm_factor and factor <= self.bm_res_limit else rows[:0]

    # ---- converters -------------------------------------------------------------------------
    def round_levels(self, v: torch.Tensor, stochastic: bool) -> torch.Tensor:
        """Round to integer levels in place: to nearest, or stochastically (``floor(v + u)``)."""
        if stochastic:
            return v.add_(torch.rand(v.shape, generator=self.generator, device=v.device,
                                     dtype=v.dtype)).floor_()
        return v.round_()

    def dac(self, v: torch.Tensor) -> torch.Tensor:
        """DAC in level units, in place: ``v`` are inputs already divided by ``alpha*in_step``."""
        if self.in_step > 0:
            self.round_levels(v, self.inp_sto)
        if self.dac_clip:
            v.clamp_(-self.in_levels, self.in_levels)
        return v

    def adc_(self, y: torch.Tensor) -> torch.Tensor:
        """ADC rounding in level units, in place (clipping is left to :meth:`finish`)."""
        return self.round_levels(y, self.out_sto) if self.out_step > 0 else y

    # ---- forward MVMs of a sequence (AnalogTile.prepare_forward) ----------------------------
    def prepare(self, prep, u: torch.Tensor, rec: slice, rec_bound: float, blocks, w_hot, hot,
                post_scale: torch.Tensor | None) -> None:
        """Fill ``prep`` (a :class:`~archsim.functional.tile.PreparedForward` of the inputs
        ``u [N, in]``) with its noise-management scales, DAC divisors, output scales, and the
        output noise plus the known columns' share of the array result, in ADC levels: the
        column ``blocks`` multiplied, the one-hot columns' weights ``w_hot`` gathered (times
        their values ``hot``; None: no one-hot block). ValueError when the noise-management
        scale ``max|u|`` of a row could depend on the columns ``rec`` (``|value| <= rec_bound``)."""
        N, out = u.shape[0], self.out_size
        unit = self.in_step if self.in_step > 0 else 1.0
        alpha = self.prepared_alpha(prep, u, rec, rec_bound)
        torch.add(self.tiny, alpha, alpha=unit, out=prep.div)
        # Back to weight units: alpha*out_step*post_scale; one vector when every alpha is 1 (the
        # usual case: the bias input is the largest), else per row.
        vec = self.out_factor_t if post_scale is None else post_scale * self.out_factor_t
        if bool((alpha == 1.0).all()):
            prep.scale = vec.expand(out) if vec.dim() == 0 else vec
        else:
            prep.scale = torch.mul(alpha, vec.expand(out), out=self._kept("row_scales", (N, out)))
        # pre = output noise in ADC levels + the known blocks' share of the array result
        pre = prep.pre
        if self.noisy:
            pre.normal_(generator=self.generator)
        else:
            pre.zero_()
        beta = self.noise_levels if self.noisy else 1.0
        for b in blocks:
            v = self.dac(torch.div(u[:, b], prep.div, out=self._temporary(
                f"prepare_dac_in_{b.start}", (u.shape[0], b.stop - b.start))))
            if self.members is None:
                pre.addmm_(v, self.weight[:, b].t(), beta=beta, alpha=self.mm_scale)
            else:
                self.members.addmm_(pre, v, self.weight_t[:, b], beta=beta, alpha=self.mm_scale)
            beta = 1.0
        if beta != 1.0:
            pre.mul_(beta)
        if w_hot is not None:
            pre.addcmul_(w_hot, self.dac(hot / prep.div).mul_(self.mm_scale))

    def prepared_alpha(self, prep, u: torch.Tensor, rec: slice, rec_bound: float) -> torch.Tensor:
        """Fill ``prep.alpha`` with the rows' noise-management scales ``max|u|`` over the known
        columns (1 without noise management); ValueError where one could depend on ``rec``."""
        alpha = prep.alpha
        if self.noise_management:
            alpha.zero_()
            for known in (u[:, :rec.start], u[:, rec.stop:]):
                if known.shape[1]:
                    absolute = torch.abs(known, out=self._temporary(f"prepare_abs_{known.shape[1]}",
                                                                    known.shape))
                    torch.maximum(alpha, absolute.amax(1, keepdim=True), out=alpha)
            if not bool((alpha >= rec_bound).all()):
                raise ValueError(f"the known inputs of every row must reach {rec_bound} (max |u| "
                                 "would depend on the recurrent inputs)")
        else:
            alpha.fill_(1.0)
        return alpha

    def finish_prepared(self, prepared, views, u: torch.Tensor) -> torch.Tensor:
        """The rest of one step's forward MVMs of ``prepared`` (``views``: that step's entry of
        ``prepared.steps``): DAC of the ``rec`` columns, their array share, ADC, and the scaling
        back (times ``post_scale``), in place in ``prepared.pre``. ``u`` are the step's full
        inputs, read only when bound management repeats a row."""
        pre, div, alpha, x_rec, rows = views
        n = pre.shape[0]
        if self.members is None:
            y = pre.addmm_(self.dac(x_rec / div), prepared.w_rec_t, alpha=self.mm_scale)
        else:
            y = self.members.addmm_(pre, self.dac(x_rec / div), prepared.w_rec_t, alpha=self.mm_scale)
        self.adc_(y)
        a = self.activity
        a.dac_conversions += n * self.in_size
        a.adc_conversions += n * self.out_size
        if self.may_saturate(y):
            rows_scale = self.saturated(u, y, alpha, False, self.bound_management)
            y.mul_(rows_scale).mul_(self.out_factor_t)
            return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
        scale = prepared.scale
        return y.mul_(scale if scale.dim() == 1 else scale[rows])
