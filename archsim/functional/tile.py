r"""One simulated RPU tile: forward/backward MVM through the periphery and the pulsed update.

The formulas are in :class:`archsim.functional.config.RPUConfig` (periphery, pulse
probabilities) and :mod:`archsim.functional.devices` (device response). This module says how
they are computed efficiently.

Update modes (``RPUConfig.update_mode``), for ``K`` rank-one updates ``x[k], d[k]`` per call:

``exact``
    Pulse trains are sampled (one Bernoulli draw per line per slot, from 32-bit uniforms) and
    the coincidences of every device in every update counted. The updates are processed in
    chunks of ``exact_chunk``: per chunk, two integer matrix products over all ``chunk*BL``
    slots give every device's counts (``N = C^T R``, ``S = (sign(d) C)^T (sign(x) R)``,
    ``n_up = (N - S)/2``, ``n_down = (N + S)/2``), which keeps the correlation of devices that
    share a pulse train. Order and clipping, constant-step devices:

    - each device has a count budget (``PulsedDevices.count_budget``): while its coincidences
      since the budget was set stay below it, it cannot have touched a bound (6-sigma margin on
      the cycle-to-cycle noise), so its counts are summed and applied once at the end: the same
      result as in order, because nothing was clipped;
    - a device over budget is followed chunk by chunk from then on: if all its coincidences
      in the chunk go one way the path is monotone and clipping at the end of the chunk equals
      clipping after every update; otherwise its chunk is replayed update by update from its own
      gathered pulse trains (exact counts), clipped after every update;
    - clipping after each rank-one update equals clipping after each coincidence for this device,
      because all of a device's coincidences in one update go the same way;
    - when many devices are over budget, the others' sums are applied and budgets restart.

    Not exact: a device whose cycle-to-cycle noise exceeds the 6-sigma margin, or a single step
    whose noise flips its sign (``xi < -1/dw_min_std``), may be clipped at the end of the call
    instead of in order; the result is still inside its bounds. Soft-bounds devices are moved
    once per chunk with the interleaved-contraction formula (devices.py): exact for one
    direction, an ``O(n_up*n_down*step^2/|w_bound|)`` ordering error when both occur in a chunk.

``fast`` (default)
    No pulses are sampled. The coincidence count of device ij in update k is
    ``Binomial(BL_k, p_jk q_ik)`` in exact mode, independent over k, so the per-call totals in
    each direction have mean ``sum_k BL_k p q`` and variance ``sum_k BL_k p q (1 - p q)``; both are
    matrix products over k (``(BL q)^T p``, ``(BL q^2)^T p^2`` and their sign-weighted versions,
    split by the direction ``-sign(d_i x_j)``). Each device then moves by one Gaussian draw with
    the exact model's mean and variance (count variance and cycle-to-cycle variance), and is
    clipped to its bounds once per call. Not matched: (1) correlations between devices sharing a
    row or column pulse train (exact mode has them; the fast draws are independent per device);
    (2) the shape of the distribution (Gaussian instead of a sum of discrete steps; the means and
    variances agree, and so do sums over many calls); (3) ordering and clipping within one call:
    a device that would hit a bound and come back inside the call is clipped only at the end;
    (4) for soft-bounds devices the variance uses the step factor at the start of the call.
"""
from __future__ import annotations

import math

import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.devices import PulsedDevices
from archsim.functional.quant import level_step

# Accumulators kept on the tile's device (folded into TileActivity on demand, so the hot path
# never waits for an accelerator): indices into AnalogTile._pending.
_SAT, _SLOTS, _ROW, _COL, _COINC = range(5)

_INT_MM_OK: dict[str, bool] = {}


def _count_mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` for int8 matrices holding 0/+-1 (exact integer counts), returned as ``dtype``.

    CPU: integer GEMM (``torch._int_mm``, about 3x faster than float32 here) when available;
    elsewhere float32, which is exact for these integer sums (< 2^24).
    """
    kind = a.device.type
    if kind == "cpu" and _INT_MM_OK.get(kind, True) and hasattr(torch, "_int_mm"):
        try:
            return torch._int_mm(a, b).to(dtype)
        except RuntimeError:
            _INT_MM_OK[kind] = False
    return torch.mm(a.to(torch.float32), b.to(torch.float32)).to(dtype)


def _tmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^T b`` for ``a [K, m]``, ``b [K, n]`` (contiguous ``[m, n]``).

    Computed as ``(b^T a)^T``: the same products summed in the same order (bit-identical results
    with MKL), but about 25 % faster for the update's tall operands on CPU; the transposing copy
    costs less than the mixed-layout elementwise passes it avoids in the device update.
    """
    return torch.mm(b.t(), a).t().contiguous()


class AnalogTile:
    """A weight matrix ``W [out, in]`` stored in resistive devices, with its periphery.

    ``forward(x)`` computes ``x W^T``, ``backward(d)`` computes ``d W`` (both through DAC, output
    noise, ADC, noise and bound management), ``update(x, d, lr)`` applies
    ``W <- W - lr * sum_k d_k x_k^T`` by stochastic pulses. With the ideal device all three are
    exact floating point. The methods do not build autograd graphs. Every random draw comes
    from ``generator``, which must live on ``device``.
    """

    def __init__(self, out_size: int, in_size: int, config: RPUConfig, *, generator: torch.Generator,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 init_std: float | None = None):
        self.out_size, self.in_size = int(out_size), int(in_size)
        self.config = config
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        if generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device}, tile on {self.device}")
        self.devices = None if config.is_ideal else PulsedDevices(
            config.device, self.out_size, self.in_size, generator, self.device, dtype)
        self.weight = torch.zeros(self.out_size, self.in_size, device=self.device, dtype=dtype)
        if init_std:
            self.weight.normal_(0.0, init_std, generator=generator)
            if self.devices is not None:
                self.devices.clip_(self.weight)
        self._activity = TileActivity()
        self._pending = torch.zeros(5, device=self.device, dtype=torch.float64)
        self._pending_sat = self._pending[_SAT]   # a view (saves an indexing op per MVM)
        # Converters in level units (see _one_pass): DAC/ADC full scale in levels, ADC unit.
        self._in_step = level_step(config.inp_res, config.inp_bound)
        self._out_step = level_step(config.out_res, config.out_bound)
        self._in_levels = config.inp_bound / self._in_step if self._in_step > 0 else config.inp_bound
        self._out_levels = config.out_bound / self._out_step if self._out_step > 0 else config.out_bound
        self._out_unit = self._out_step if self._out_step > 0 else 1.0
        self._sat_level = self._out_levels - (0.5 if self._out_step > 0 else 0.0)

    # ---- state --------------------------------------------------------------------------
    @torch.no_grad()
    def set_weights(self, w: torch.Tensor) -> None:
        """Program the devices to ``w`` (clipped to every device's bounds)."""
        self.weight.copy_(w.to(device=self.device, dtype=self.dtype))
        if self.devices is not None:
            self.devices.clip_(self.weight)

    def get_weights(self) -> torch.Tensor:
        return self.weight.clone()

    @property
    def activity(self) -> TileActivity:
        """Counters so far (reading them waits for the accelerator once)."""
        if bool(self._pending.any()):
            sat, slots, row, col, coinc = self._pending.tolist()
            a = self._activity
            a.adc_saturations += int(round(sat))
            a.pulse_slots += int(round(slots))
            a.row_pulses += row
            a.col_pulses += col
            a.coincidences += coinc
            a.x_line_slots += int(round(slots)) * self.in_size
            a.d_line_slots += int(round(slots)) * self.out_size
            a.device_slots += int(round(slots)) * self.in_size * self.out_size
            self._pending.zero_()
        return self._activity

    @activity.setter
    def activity(self, value: TileActivity) -> None:
        self._pending.zero_()
        self._activity = value

    def reset_activity(self) -> TileActivity:
        """Return the counters so far and start new ones."""
        old = self.activity
        self.activity = TileActivity()
        return old

    def state_dict(self) -> dict:
        """Weights and per-device parameters (the generator state belongs to its owner)."""
        state = {"weight": self.weight.clone(), "activity": self.activity.to_dict()}
        if self.devices is not None:
            state["devices"] = {k: v.clone() for k, v in self.devices.tensors().items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.weight.copy_(state["weight"])
        if self.devices is not None and "devices" in state:
            self.devices.load_tensors(state["devices"])
        self.activity = TileActivity(**state.get("activity", {}))

    # ---- MVMs -------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, in] -> y [N, out]``: one forward MVM per vector (plus bound-management repeats)."""
        x = self._as_batch(x, self.in_size)
        self._activity.forward_mvms += x.shape[0]
        if self.config.is_ideal:
            return x @ self.weight.t()
        return self._analog_mvm(x, transposed=False,
                                bound_management=self.config.bound_management == "iterative")

    @torch.no_grad()
    def backward(self, d: torch.Tensor) -> torch.Tensor:
        """``d [N, out] -> z [N, in]``: transposed MVM, same periphery, no bound management."""
        d = self._as_batch(d, self.out_size)
        self._activity.backward_mvms += d.shape[0]
        if self.config.is_ideal:
            return d @ self.weight
        return self._analog_mvm(d, transposed=True, bound_management=False)

    def _as_batch(self, v: torch.Tensor, size: int) -> torch.Tensor:
        if v.dim() == 1:
            v = v.unsqueeze(0)
        if v.dim() != 2 or v.shape[1] != size:
            raise ValueError(f"expected [N, {size}], got {tuple(v.shape)}")
        return v.to(device=self.device, dtype=self.dtype)

    def _one_pass(self, x: torch.Tensor, inv_scale: torch.Tensor, transposed: bool) -> torch.Tensor:
        """DAC -> array -> output noise -> ADC for inputs ``x`` scaled by ``inv_scale [N, 1]``.

        Works in converter level units to save passes: the DAC output is an integer level
        ``clamp(Q(x/(alpha*beta)/in_step), +-inp_bound/in_step)``, the array result is rescaled by
        ``in_step``, and the ADC output is returned in levels of ``out_step`` (multiply by
        ``self._out_unit``). Without quantization the "levels" are the values themselves.
        """
        cfg, g = self.config, self.generator
        in_step = self._in_step
        v = x * (inv_scale / in_step if in_step > 0 else inv_scale)
        if in_step > 0:
            if cfg.inp_sto_round:
                v = v.add_(torch.rand(v.shape, generator=g, device=v.device, dtype=v.dtype)).floor_()
            else:
                v = v.round_()
        v = v.clamp_(-self._in_levels, self._in_levels)
        y = v @ self.weight if transposed else v @ self.weight.t()
        if in_step > 0:
            y.mul_(in_step)
        if cfg.out_noise > 0:
            y.add_(torch.randn(y.shape, generator=g, device=y.device, dtype=y.dtype), alpha=cfg.out_noise)
        if self._out_step > 0:
            y.mul_(1.0 / self._out_step)
            if cfg.out_sto_round:
                y.add_(torch.rand(y.shape, generator=g, device=y.device, dtype=y.dtype)).floor_()
            else:
                y.round_()
        if math.isfinite(self._out_levels):
            y.clamp_(-self._out_levels, self._out_levels)
        n, n_in = x.shape
        a = self._activity
        a.dac_conversions += n * n_in
        a.adc_conversions += n * y.shape[1]
        return y

    def _analog_mvm(self, x: torch.Tensor, transposed: bool, bound_management: bool) -> torch.Tensor:
        cfg = self.config
        if cfg.noise_management == "abs_max":
            # max |x| per row: the inf-norm, bit for bit, at a fraction of linalg's cost here.
            alpha = x.abs().amax(dim=1, keepdim=True)
            inv = alpha.masked_fill(alpha == 0, 1.0).reciprocal_()   # = 1 / where(alpha > 0, alpha, 1)
        else:
            alpha = inv = torch.ones(x.shape[0], 1, device=x.device, dtype=x.dtype)
        unit = self._out_unit
        y = self._one_pass(x, inv, transposed)
        if not math.isfinite(self._out_levels):
            return y.mul_(alpha * unit)
        # An output on the top ADC level counts as saturated (the ADC cannot tell it from larger).
        sat = y.abs() >= self._sat_level
        if not bound_management:
            self._pending_sat += sat.sum()
            return y.mul_(alpha * unit)
        per_row = sat.sum(dim=1)
        self._pending_sat += per_row.sum()
        rows = per_row.nonzero().squeeze(1)   # the only host sync of a forward call
        if not rows.numel():
            return y.mul_(alpha * unit)
        scale = alpha.clone()
        factor = 1
        while rows.numel() and factor * 2 <= cfg.max_bm_factor:
            factor *= 2
            yi = self._one_pass(x.index_select(0, rows), inv.index_select(0, rows) / factor, transposed)
            self._activity.bm_repeats += rows.numel()
            sat_i = yi.abs() >= self._sat_level
            self._pending[_SAT] += sat_i.sum()
            y.index_copy_(0, rows, yi)
            scale.index_copy_(0, rows, alpha.index_select(0, rows) * factor)   # alpha * beta
            rows = rows[sat_i.any(dim=1)]
        return y.mul_(scale * unit)

    # ---- update -----------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        """Rank-one updates ``k = 0..K-1`` in order: ``W <- W - lr * sum_k d_k x_k^T`` (SGD, since
        ``d`` is dLoss/dy). ``x [K, in]``, ``d [K, out]``."""
        x = self._as_batch(x, self.in_size)
        d = self._as_batch(d, self.out_size)
        if x.shape[0] != d.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows, d has {d.shape[0]}")
        if x.shape[0] == 0 or lr == 0:
            return
        if lr < 0:  # the same pulses with the direction reversed
            d, lr = -d, -lr
        self._activity.updates += x.shape[0]
        if self.config.is_ideal:
            self.weight.addmm_(d.t(), x, alpha=-lr)
            return
        bl, p, q = self._pulse_probabilities(x, d, lr)
        self._pending[_SLOTS] += bl.sum()
        if self.config.update_mode == "fast":
            self._update_fast(x, d, bl, p, q)
        else:
            self._update_exact(x, d, bl, p, q)

    def _pulse_probabilities(self, x, d, lr):
        """BL per update ``[K]`` and signed firing probabilities ``sign(x) p [K, in]``,
        ``sign(d) q [K, out]`` (``p = min(1, A|x|)`` is ``clamp(A x, -1, 1)`` up to the sign)."""
        cfg = self.config
        dw_min = self.devices.dw_min
        x_max = x.abs().amax(dim=1)     # inf-norms (bit for bit; cheaper than linalg here)
        d_max = d.abs().amax(dim=1)
        if cfg.update_bl_management:
            bl = torch.ceil(lr * x_max * d_max / dw_min).clamp_(1, cfg.desired_bl)
        else:
            bl = torch.full_like(x_max, float(cfg.desired_bl))
        a = torch.sqrt(lr / (dw_min * bl))
        b = a
        if cfg.update_management:
            ok = (x_max > 0) & (d_max > 0)
            ratio = torch.where(ok, d_max / torch.where(ok, x_max, 1.0), 1.0).sqrt_()
            a, b = a * ratio, b / ratio
        ps = (a.unsqueeze(1) * x).clamp_(-1.0, 1.0)
        qs = (b.unsqueeze(1) * d).clamp_(-1.0, 1.0)
        return bl, ps, qs

    def _update_fast(self, x, d, bl, ps, qs):
        dev = self.devices
        # BL goes on the x side (in <= out for LSTM tiles: fewer elements to scale).
        pbs = ps * bl.unsqueeze(1)                     # BL_k sign(x) p
        pb = pbs.abs()
        q = qs.abs()
        m_all = _tmm(q, pb)                            # sum_k BL p q           (all coincidences)
        m_sgn = _tmm(qs, pbs)                          # sum_k BL p q sign(d x) (down minus up)
        pa = ps.abs()
        v_all = _tmm(q * q, pb * pa)                   # sum_k BL (p q)^2
        v_sgn = None
        if not dev.symmetric:
            v_sgn = _tmm(qs.mul_(q), pbs.mul_(pa))     # sum_k BL (p q)^2 sign(d x)
        q_sum = q.sum(1)
        pb_sum = pb.sum(1)
        pend = self._pending
        pend[_ROW] += pb_sum.sum()
        pend[_COL] += (q_sum * bl).sum()
        pend[_COINC] += (q_sum * pb_sum).sum()
        dev.apply_moments_(self.weight, m_all, m_sgn, v_all, v_sgn, self.generator)

    @staticmethod
    def _thresholds(prob: torch.Tensor) -> torch.Tensor:
        """int32 thresholds t with P(u < t) = floor(p*2^32)/2^32 for u uniform on int32."""
        t = torch.floor(prob.to(torch.float64) * 4294967296.0) - 2147483648.0
        return t.clamp_(-2147483648.0, 2147483647.0).to(torch.int32)

    def _pulses(self, thr: torch.Tensor, slots: int) -> torch.Tensor:
        """Sampled pulse trains ``[n, k, slots]`` (bool) for thresholds ``thr [n, k]``."""
        n, k = thr.shape
        numel = n * k * slots
        raw = torch.empty((numel + 1) // 2, dtype=torch.int64, device=thr.device)
        raw.random_(-2**63, None, generator=self.generator)   # full 64-bit range: two int32 draws
        u = raw.view(torch.int32)[:numel].view(n, k, slots)
        return u < thr.unsqueeze(2)

    def _update_exact(self, x, d, bl, ps, qs):
        cfg, dev, g = self.config, self.devices, self.generator
        K, slots = x.shape[0], cfg.desired_bl
        w = self.weight
        w_flat = w.view(-1)
        # Line-major layouts [lines, K]: the pulse trains of one line are contiguous.
        thr_x = self._thresholds(ps.abs().t())
        thr_d = self._thresholds(qs.abs().t())
        sx8 = torch.sign(ps).t().to(torch.int8)
        sd8 = torch.sign(qs).t().to(torch.int8)
        # Sign factors for _signed's two-slots-per-int16 product: +1 -> 1, -1 -> 255, 0 -> 0.
        sx16 = sx8.to(torch.int16).bitwise_and_(255) if slots % 2 == 0 else None
        sd16 = sd8.to(torch.int16).bitwise_and_(255) if slots % 2 == 0 else None
        slot_ok = None
        if cfg.update_bl_management:
            slot_ok = torch.arange(slots, device=x.device).unsqueeze(0) < bl.unsqueeze(1)  # [K, slots]
        constant = dev.kind == "constant_step"
        if constant:
            n_tot = torch.zeros_like(w)          # counts since the budgets were set
            s_tot = torch.zeros_like(w)
            budget = dev.count_budget(w)
            flag = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            # Replaying a device costs about as much per chunk as ~1/256 of a full-array pass:
            # restart the budgets when that many more devices than those at a bound are followed.
            rebase_every = max(1024, w.numel() // 256)
            rebase_at = rebase_every + int((budget < 1).sum())
        pend = self._pending
        chunk = cfg.exact_chunk or (256 if w.device.type == "cpu" else 1024)
        for k0 in range(0, K, chunk):
            k1 = min(K, k0 + chunk)
            L = (k1 - k0) * slots
            rows = self._pulses(thr_x[:, k0:k1], slots)          # x lines [in, kc, BL]
            cols = self._pulses(thr_d[:, k0:k1], slots)          # d lines [out, kc, BL]
            if slot_ok is not None:
                rows &= slot_ok[k0:k1].unsqueeze(0)
                cols &= slot_ok[k0:k1].unsqueeze(0)
            r8 = rows.view(torch.int8)
            c8 = cols.view(torch.int8)
            n_all = _count_mm(c8.reshape(-1, L), r8.reshape(-1, L).t(), w.dtype)
            rs = self._signed(r8, sx8[:, k0:k1], sx16[:, k0:k1]).reshape(-1, L)
            cs = self._signed(c8, sd8[:, k0:k1], sd16[:, k0:k1]).reshape(-1, L)
            n_sgn = _count_mm(cs, rs.t(), w.dtype)               # same-sign (down) minus up
            pend[_ROW] += torch.count_nonzero(rows)
            pend[_COL] += torch.count_nonzero(cols)
            pend[_COINC] += n_all.sum()
            if not constant:   # soft bounds: one interleaved move per chunk (see devices.py)
                w.copy_(dev.apply_counts(w, n_all, n_sgn, g))
                continue
            n_tot += n_all
            s_tot += n_sgn
            # Devices that could have touched a bound since the budgets were set (host sync).
            cand = (n_tot >= budget).view(-1).nonzero().squeeze(1)
            if cand.numel() == 0:
                continue
            new = cand[~flag.index_select(0, cand)]
            if new.numel():
                # Realise their moves of the earlier chunks (no bound could be touched there);
                # from now on they are followed chunk by chunk.
                prev_n = n_tot.view(-1).index_select(0, new) - n_all.view(-1).index_select(0, new)
                prev_s = s_tot.view(-1).index_select(0, new) - n_sgn.view(-1).index_select(0, new)
                w_flat.index_copy_(0, new, dev.apply_counts(
                    w_flat.index_select(0, new), prev_n, prev_s, g, idx=new))
                flag.index_fill_(0, new, True)
            n_c = n_all.view(-1).index_select(0, cand)
            s_c = n_sgn.view(-1).index_select(0, cand)
            # Moves in one direction only within this chunk are monotone: clipping at the end of
            # the chunk equals clipping after every update. Mixed directions are replayed in order.
            mixed = n_c > s_c.abs()
            mono = cand[~mixed]
            if mono.numel():
                w_flat.index_copy_(0, mono, dev.apply_counts(
                    w_flat.index_select(0, mono), n_c[~mixed], s_c[~mixed], g, idx=mono))
            mixed = cand[mixed]
            if mixed.numel():
                self._replay(w_flat, mixed, rows, cols, sx8[:, k0:k1], sd8[:, k0:k1])
            if cand.numel() > rebase_at:
                # Many budgets spent (mostly far from any bound): apply the others' totals now and
                # set new budgets from the current states.
                self._apply_unflagged(n_tot, s_tot, cand)
                n_tot.zero_()
                s_tot.zero_()
                flag.zero_()
                budget = dev.count_budget(w)
                rebase_at = rebase_every + int((budget < 1).sum())
        if constant:
            self._apply_unflagged(n_tot, s_tot, flag.nonzero().squeeze(1))

    @staticmethod
    def _signed(p8: torch.Tensor, s8: torch.Tensor, s16: torch.Tensor | None) -> torch.Tensor:
        """Pulse trains ``p8 [n, k, slots]`` (int8 0/1) times the line signs ``s8 [n, k]``.

        With an even number of slots, two slots are multiplied at once as one int16: a byte 0/1
        times 255 is 0/0xFF (-1 as int8) without a carry into the next byte, so the factor
        ``s16`` (1, 255 or 0) gives exactly ``p8 * s8`` bytewise, with half the (broadcast) work.
        """
        if s16 is None or not p8.is_contiguous():
            return p8 * s8.unsqueeze(2)
        return (p8.view(torch.int16) * s16.unsqueeze(2)).view(torch.int8)

    def _apply_unflagged(self, n_tot, s_tot, flagged):
        """Apply accumulated counts to every device except ``flagged`` (already current)."""
        w_flat = self.weight.view(-1)
        keep = w_flat.index_select(0, flagged)
        self.weight.copy_(self.devices.apply_counts(self.weight, n_tot, s_tot, self.generator))
        w_flat.index_copy_(0, flagged, keep)

    @staticmethod
    def _pack(bits: torch.Tensor) -> torch.Tensor:
        """Pulse trains ``[n, k, slots]`` (bool) as words of up to 16 slots: int32 ``[n, k, groups]``.

        A small matrix product does the bit packing (exact: values < 2^16 in float32); it is much
        faster than shifting strided slices.
        """
        n, k, slots = bits.shape
        groups = (slots + 15) // 16
        s = torch.arange(slots, device=bits.device)
        pack = torch.zeros(slots, groups, device=bits.device, dtype=torch.float32)
        pack[s, s // 16] = torch.pow(2.0, (s % 16).to(torch.float32))
        words = bits.view(torch.int8).reshape(n * k, slots).to(torch.float32) @ pack
        return words.to(torch.int32).view(n, k, groups)

    def _popcount_table(self, bits: int) -> torch.Tensor:
        """Number of set bits of 0 .. 2^bits - 1 (float), for gathering coincidence counts."""
        table = getattr(self, "_popcount_cache", None)
        if table is None or table.numel() != 1 << bits:
            v = torch.arange(1 << bits, device=self.device)
            table = torch.zeros(1 << bits, device=self.device, dtype=self.dtype)
            for b in range(bits):
                table += (v >> b) & 1
            self._popcount_cache = table
        return table

    def _replay(self, w_flat, flagged, rows, cols, sx8, sd8):
        """In-order, per-update application of one chunk for the devices ``flagged`` (flat)."""
        n_in = rows.shape[0]
        i = torch.div(flagged, n_in, rounding_mode="floor")
        j = flagged - i * n_in
        table = self._popcount_table(min(16, rows.shape[2]))
        counts = None
        pc, pr = self._pack(cols), self._pack(rows)
        for grp in range(pc.shape[2]):
            both = pc[:, :, grp].index_select(0, i).bitwise_and_(pr[:, :, grp].index_select(0, j))
            c = table.index_select(0, both.view(-1)).view(both.shape)           # coincidences
            counts = c if counts is None else counts + c
        # signed counts (+ up, - down), [f, kc]; most are 0: keep each device's nonzero updates,
        # in order, left-aligned (the rest are no-ops).
        signed = counts.mul_(sd8.index_select(0, i) * sx8.index_select(0, j)).neg_()
        nonzero = signed != 0
        pos = nonzero.cumsum(1)
        m = int(pos[:, -1].max()) if pos.numel() else 0      # host sync
        if m == 0:
            return
        width = 1 << (m - 1).bit_length()                     # a power of two for the tree
        events = signed.new_zeros(signed.shape[0], width + 1)
        events.scatter_(1, torch.where(nonzero, pos - 1, width), signed)
        w_flat.index_copy_(0, flagged, self.devices.replay_(
            w_flat.index_select(0, flagged), flagged, events[:, :width], self.generator))
