r"""The sampled-pulse update of one RPU tile (``RPUConfig.update_mode = "exact"``): pulse trains
drawn, the coincidences of every device in every update counted, bounds applied in order.

For ``K`` rank-one updates ``x[k], d[k]`` per call, pulse trains are sampled (one Bernoulli draw
per line per slot, from 16 random bits against a threshold that is ``65536 p`` rounded
stochastically once per line and update, so the firing probability is ``p`` exactly on average;
the slots of one line in one update share that rounding, a covariance below ``2^-34``) and the
coincidences of every device in every update counted. The updates are processed in chunks of
``exact_chunk``: per chunk, two integer matrix products over all ``chunk*BL`` slots give every
device's counts (``N = C^T R``, ``S = (sign(d) C)^T (sign(x) R)``, ``n_up = (N - S)/2``,
``n_down = (N + S)/2``), which keeps the correlation of devices that share a pulse train. Order
and clipping, constant-step devices:

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
instead of in order; the result is still inside its bounds. Soft-bounds devices are moved once
per chunk with the interleaved-contraction formula (devices/soft_bounds.py): exact for one
direction, an ``O(n_up*n_down*step^2/|w_bound|)`` ordering error when both occur in a chunk. The
other families whose moves are not additive between bounds (``replays_in_order`` False) are
likewise moved once per chunk, by their own rule.
"""
from __future__ import annotations

import math

import torch

from archsim.functional.config import RPUConfig

_INT_MM_OK: dict[str, bool] = {}


def _count_mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` for int8 matrices holding 0/+-1 (exact integer counts), returned as ``dtype``.

    CPU: integer GEMM (``torch._int_mm``, about 3x faster than float32 here) when available;
    elsewhere float32, which is exact for these integer sums (< 2^24). An inner size of 1 (one
    update of one pulse slot: Tiki-Taka v2's transfers) always takes float32: torch 2.13's CPU
    ``_int_mm`` returns garbage for it, contiguous or not (tests/test_tile_parts.py).
    """
    kind = a.device.type
    if (kind == "cpu" and a.shape[1] > 1 and _INT_MM_OK.get(kind, True)
            and hasattr(torch, "_int_mm")):
        try:
            return torch._int_mm(a, b).to(dtype)
        except RuntimeError:
            _INT_MM_OK[kind] = False
    return torch.mm(a.to(torch.float32), b.to(torch.float32)).to(dtype)


class ExactUpdate:
    """The exact update of one tile's devices ``weight [out, in]`` (changed in place).

    ``writes`` accumulates each device's sampled coincidences (endurance); ``row_pulses``,
    ``col_pulses`` and ``coincidences`` are 0-dim views of the tile's on-device counters.
    ``generator`` is the tile's (it replaces it here whenever it replaces its own)."""

    def __init__(self, config: RPUConfig, weight: torch.Tensor, devices, writes: torch.Tensor, *,
                 generator: torch.Generator, device: torch.device, row_pulses: torch.Tensor,
                 col_pulses: torch.Tensor, coincidences: torch.Tensor):
        self.config, self.weight, self.devices, self.writes = config, weight, devices, writes
        self.generator = generator
        self.device = device
        self.row_pulses, self.col_pulses, self.coincidences = row_pulses, col_pulses, coincidences
        self._popcount_cache: torch.Tensor | None = None

    # ---- pulse trains -----------------------------------------------------------------------
    def random_int16(self, shape) -> torch.Tensor:
        """Uniform int16 values (all 65536 equally likely) from the tile's generator."""
        numel = math.prod(shape)
        raw = torch.empty((numel + 3) // 4, dtype=torch.int64, device=self.device)
        raw.random_(-2**63, None, generator=self.generator)   # full 64-bit range: four int16
        return raw.view(torch.int16)[:numel].view(shape)

    def thresholds(self, prob: torch.Tensor):
        """int16 thresholds ``t`` with ``P(u < t) = m/65536`` for ``u`` uniform on int16, where
        ``m`` is ``65536*p`` rounded stochastically (one draw per line and update), so the firing
        probability is ``p`` on average exactly; and the lines with ``m = 65536`` (fire in every
        slot; int16 cannot hold that threshold), or None when there are none."""
        scaled = prob.to(torch.float32) * 65536.0             # exact: a power of two
        base = scaled.floor()
        # frac*65536 against a uniform integer 0..65535: P(bump) = ceil(frac*65536)/65536.
        dither = self.random_int16(prob.shape).to(torch.float32).add_(32768.0)
        m = base.add_((dither < scaled.sub_(base).mul_(65536.0)).to(torch.float32))
        always = m > 65535.0
        thr = m.sub_(32768.0).clamp_(max=32767.0).to(torch.int16)
        return thr, (always if bool(always.any()) else None)

    def pulses(self, thr: torch.Tensor, always: torch.Tensor | None, slots: int) -> torch.Tensor:
        """Sampled pulse trains ``[n, slots, k]`` (bool) for thresholds ``thr [n, k]``: 16 random
        bits per line and slot (updates innermost: the comparison then runs over long rows)."""
        n, k = thr.shape
        fire = self.random_int16((n, slots, k)) < thr.unsqueeze(1)
        if always is not None:
            fire |= always.unsqueeze(1)
        return fire

    # ---- the update -------------------------------------------------------------------------
    def apply(self, x, d, bl, p, q):
        """The updates ``x [K, in]``, ``d [K, out]`` with ``BL`` slots (a number, or ``[K]`` with
        BL management) and firing probabilities ``p [K, in]``, ``q [K, out]`` (see the module
        docstring)."""
        cfg, dev, g = self.config, self.devices, self.generator
        K, slots = x.shape[0], cfg.desired_bl
        w = self.weight
        w_flat = w.view(-1)
        # Line-major layouts [lines, K]: the pulse trains of one line are contiguous.
        thr_x, always_x = self.thresholds(p.t())
        thr_d, always_d = self.thresholds(q.t())
        sx8 = torch.sign(x).t().to(torch.int8)
        sd8 = torch.sign(d).t().to(torch.int8)
        slot_ok = None
        if cfg.update_bl_management:
            slot_ok = torch.arange(slots, device=x.device).unsqueeze(1) < bl.unsqueeze(0)  # [slots, K]
        constant = dev.replays_in_order
        if constant:
            n_tot = torch.zeros_like(w)          # counts since the budgets were set
            s_tot = torch.zeros_like(w)
            budget = dev.count_budget(w)
            flag = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            # Replaying a device costs about as much per chunk as ~1/256 of a full-array pass:
            # restart the budgets when that many more devices than those at a bound are followed.
            rebase_every = max(1024, w.numel() // 256)
            rebase_at = rebase_every + int((budget < 1).sum())
        chunk = cfg.exact_chunk or (256 if w.device.type == "cpu" else 1024)
        for k0 in range(0, K, chunk):
            k1 = min(K, k0 + chunk)
            L = (k1 - k0) * slots
            rows = self.pulses(thr_x[:, k0:k1], None if always_x is None else always_x[:, k0:k1],
                               slots)                            # x lines [in, BL, kc]
            cols = self.pulses(thr_d[:, k0:k1], None if always_d is None else always_d[:, k0:k1],
                               slots)                            # d lines [out, BL, kc]
            if slot_ok is not None:
                rows &= slot_ok[:, k0:k1].unsqueeze(0)
                cols &= slot_ok[:, k0:k1].unsqueeze(0)
            r8 = rows.view(torch.int8)
            c8 = cols.view(torch.int8)
            n_all = _count_mm(c8.reshape(-1, L), r8.reshape(-1, L).t(), w.dtype)
            rs = (r8 * sx8[:, k0:k1].unsqueeze(1)).reshape(-1, L)  # signed trains
            cs = (c8 * sd8[:, k0:k1].unsqueeze(1)).reshape(-1, L)
            n_sgn = _count_mm(cs, rs.t(), w.dtype)               # same-sign (down) minus up
            self.row_pulses += torch.count_nonzero(rows)
            self.col_pulses += torch.count_nonzero(cols)
            self.coincidences += n_all.sum()
            self.writes.add_(n_all)   # sampled coincidences per device (endurance)
            if not constant:   # soft bounds, linear step: one move per chunk (see devices/)
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
                self._replay(w_flat, mixed, rows.transpose(1, 2), cols.transpose(1, 2),
                             sx8[:, k0:k1], sd8[:, k0:k1])
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

    def _apply_unflagged(self, n_tot, s_tot, flagged):
        """Apply accumulated counts to every device except ``flagged`` (already current)."""
        w_flat = self.weight.view(-1)
        keep = w_flat.index_select(0, flagged)
        self.weight.copy_(self.devices.apply_counts(self.weight, n_tot, s_tot, self.generator))
        w_flat.index_copy_(0, flagged, keep)

    # ---- in-order replay of the devices near a bound ---------------------------------------
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
        table = self._popcount_cache
        if table is None or table.numel() != 1 << bits:
            v = torch.arange(1 << bits, device=self.device)
            table = torch.zeros(1 << bits, device=self.device, dtype=self.weight.dtype)
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
