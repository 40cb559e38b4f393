r"""One simulated RPU tile: forward/backward MVM through the periphery and the pulsed update.

The formulas are in :class:`archsim.functional.config.RPUConfig` (periphery, pulse
probabilities) and :mod:`archsim.functional.devices` (device response). This module says how
they are computed efficiently.

Update modes (``RPUConfig.update_mode``), for ``K`` rank-one updates ``x[k], d[k]`` per call:

``exact``
    Pulse trains are sampled (one Bernoulli draw per line per slot, from 16 random bits against
    a threshold that is ``65536 p`` rounded stochastically once per line and update, so the firing
    probability is ``p`` exactly on average; the slots of one line in one update share that
    rounding, a covariance below ``2^-34``) and the coincidences of every device in every update
    counted. The updates are processed in
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
    split by the direction ``-sign(d_i x_j)``), computed from the clipped inputs and errors
    without forming p and q (``_update_fast``), with one-hot input columns summed by index.
    Each device then moves by one Gaussian draw with
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
from dataclasses import dataclass

import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.devices import make_devices
from archsim.functional.quant import level_step

# Accumulators kept on the tile's device (folded into TileActivity on demand, so the hot path
# never waits for an accelerator): indices into AnalogTile._pending.
_SAT, _SLOTS, _ROW, _COL, _COINC = range(5)

_INT_MM_OK: dict[str, bool] = {}


def write_summary(writes: torch.Tensor) -> tuple[float, float]:
    """The largest per-device write count and the 99th percentile (nearest rank) of ``writes``."""
    flat = writes.reshape(-1)
    k = max(1, math.ceil(0.99 * flat.numel()))
    return float(flat.max()), float(torch.kthvalue(flat, k).values)


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


@dataclass
class PreparedForward:
    """Forward MVMs of ``steps x rows`` input rows whose columns ``rec`` are filled in later (the
    recurrent inputs of an LSTM layer); made by :meth:`AnalogTile.prepare_forward`. Its
    tensors are the tile's workspace: valid until the tile prepares again."""

    key: tuple
    rec: slice
    pre: torch.Tensor
    """``[N, out]``: output noise plus the known columns' share of the array result (ADC levels;
    plain values on an ideal tile); each step finishes its rows in place."""
    alpha: torch.Tensor
    """``[N, 1]`` noise-management scale ``max|u|`` of each row (1 without noise management)."""
    div: torch.Tensor
    """``[N, 1]`` DAC divisor ``alpha*in_step``."""
    scale: torch.Tensor | None
    """Factor back to weight units, ``alpha*out_step*post_scale``: ``[out]`` when every alpha
    is 1, else ``[N, out]``."""
    post_scale: torch.Tensor | None
    """``[out]`` digital factor on each output, or None."""
    steps: list
    """Per step: views ``(pre, div, alpha, u[:, rec])`` of its rows and the rows (a slice)."""
    w_rec_t: torch.Tensor
    """``W[:, rec]^T`` (a view of the tile's weights)."""


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
        self.devices = None if config.is_ideal else make_devices(
            config.device, self.out_size, self.in_size, generator, self.device, dtype)
        self.weight = torch.zeros(self.out_size, self.in_size, device=self.device, dtype=dtype)
        if init_std:
            self.weight.normal_(0.0, init_std, generator=generator)
            if self.devices is not None:
                self.devices.clip_(self.weight)
        self._activity = TileActivity()
        self._pending = torch.zeros(5, device=self.device, dtype=torch.float64)
        # Endurance: coincidences (writes) per device, sampled in exact mode and expected values
        # in fast mode, as the scalar coincidence counter (one add per update chunk or call).
        self._writes = None if config.is_ideal else torch.zeros(
            self.out_size, self.in_size, device=self.device, dtype=torch.float64)
        self._pending_sat = self._pending[_SAT]   # a view (saves an indexing op per MVM)
        # Converters in level units (see _one_pass): DAC/ADC full scale in levels, ADC unit.
        self._in_step = level_step(config.inp_res, config.inp_bound)
        self._out_step = level_step(config.out_res, config.out_bound)
        self._in_levels = config.inp_bound / self._in_step if self._in_step > 0 else config.inp_bound
        # Bound management may not make the input resolution coarser than max_bm_res of the range.
        self._bm_res_limit = config.max_bm_res / self._in_step if self._in_step > 0 else math.inf
        self._out_levels = config.out_bound / self._out_step if self._out_step > 0 else config.out_bound
        self._out_unit = self._out_step if self._out_step > 0 else 1.0
        self._sat_level = self._out_levels - (0.5 if self._out_step > 0 else 0.0)
        # addmm factors: array result in ADC levels, output noise in ADC levels.
        self._mm_scale = (self._in_step if self._in_step > 0 else 1.0) / self._out_unit
        self._noise_levels = config.out_noise / self._out_unit
        self._tiny = torch.tensor(torch.finfo(dtype).tiny, device=self.device, dtype=dtype)
        # The DAC clip is a no-op when noise management scales every input into [-1, 1], the
        # range is at least that, and deterministic rounding to integer levels cannot overshoot.
        self._dac_clip = not (config.noise_management == "abs_max" and config.inp_bound >= 1.0
                              and self._in_step > 0 and not config.inp_sto_round
                              and float(self._in_levels).is_integer())
        self._workspace: dict[str, torch.Tensor] = {}
        # Back to weight units after the ADC: out_step, times the digital gain out_scale (the
        # weight in use is out_scale * the device weight; a no-op for floating-point tiles).
        self._out_scale = 1.0 if config.is_ideal else float(config.out_scale)
        self._out_factor = self._out_unit * self._out_scale
        self._out_factor_t = torch.tensor(self._out_factor, device=self.device, dtype=dtype)
        self._noise_management = config.noise_management == "abs_max"
        self._bound_management = config.bound_management == "iterative"
        self._weight_t = self.weight.t()   # a view: stays current, the weights change in place
        self._prepared: PreparedForward | None = None
        # Settings read on every MVM, as plain attributes.
        self._ideal = config.is_ideal
        self._noisy = config.out_noise > 0
        self._inp_sto, self._out_sto = config.inp_sto_round, config.out_sto_round
        self._column_views: dict[tuple[int, int], torch.Tensor] = {}

    # ---- state --------------------------------------------------------------------------
    @torch.no_grad()
    def set_weights(self, w: torch.Tensor) -> None:
        """Program the devices to ``w / out_scale`` (clipped to every device's bounds)."""
        self.weight.copy_(w.to(device=self.device, dtype=self.dtype))
        if self._out_scale != 1.0:
            self.weight.div_(self._out_scale)
        if self.devices is not None:
            self.devices.clip_(self.weight)

    def get_weights(self) -> torch.Tensor:
        """The weights the network uses: ``out_scale`` times the device weights (``weight``)."""
        return self.weight * self._out_scale if self._out_scale != 1.0 else self.weight.clone()

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
            if coinc and self._writes is not None:
                top, p99 = write_summary(self._writes)
                a.writes_max = max(a.writes_max, top)
                a.writes_p99 = max(a.writes_p99, p99)
        return self._activity

    @property
    def device_writes(self) -> torch.Tensor | None:
        """``[out, in]`` coincidences (writes) each device received since it was made or since
        :meth:`reset_activity` (float64; exact mode: sampled counts, fast mode: expected values;
        None for an ideal tile). Unlike the counters, setting ``activity`` leaves it alone: it is
        the devices' wear, saved with their weights in :meth:`state_dict`."""
        return self._writes

    def reset_writes(self) -> None:
        if self._writes is not None:
            self._writes.zero_()

    @activity.setter
    def activity(self, value: TileActivity) -> None:
        self._pending.zero_()
        self._activity = value

    def reset_activity(self) -> TileActivity:
        """Return the counters so far and start new ones (the per-device write counts too)."""
        old = self.activity
        self.activity = TileActivity()
        self.reset_writes()
        return old

    def state_dict(self) -> dict:
        """Weights and per-device parameters (the generator state belongs to its owner)."""
        state = {"weight": self.weight.clone(), "activity": self.activity.to_dict()}
        if self.devices is not None:
            state["devices"] = {k: v.clone() for k, v in self.devices.tensors().items()}
        if self._writes is not None:
            state["device_writes"] = self._writes.clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.weight.copy_(state["weight"])
        if self.devices is not None and "devices" in state:
            self.devices.load_tensors(state["devices"])
        self.activity = TileActivity(**state.get("activity", {}))
        if self._writes is not None and "device_writes" in state:
            self._writes.copy_(state["device_writes"])

    # ---- MVMs -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N, in] -> y [N, out]``: one forward MVM per vector (plus bound-management repeats).

        ``out``: an optional ``[N, out]`` tensor to write the result into (saves an allocation
        in a loop). No autograd graph is built.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.forward(x, out)
        x = self._as_batch(x, self.in_size)
        self._activity.forward_mvms += x.shape[0]
        if self._ideal:
            return torch.mm(x, self._weight_t, out=out)
        return self._analog_mvm(x, False, self._bound_management, out)

    def backward(self, d: torch.Tensor, out: torch.Tensor | None = None,
                 cols: slice | None = None) -> torch.Tensor:
        """``d [N, out] -> z [N, in]``: transposed MVM, same periphery, no bound management.

        ``cols``: return only these outputs ``z[:, cols]``. The others are still counted as
        converted (the hardware digitizes every column) but not simulated: for outputs nobody
        reads (an LSTM's errors at its one-hot inputs), whose only trace would be their share
        of the ADC saturation count.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.backward(d, out, cols)
        d = self._as_batch(d, self.out_size)
        self._activity.backward_mvms += d.shape[0]
        w = self.weight if cols is None else self._columns(cols)
        if self._ideal:
            return torch.mm(d, w, out=out)
        return self._analog_mvm(d, True, False, out, w)

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, in] -> y [N, out]``: forward MVMs through the periphery (noise management,
        DAC, output noise, ADC) without bound-management repeats, not counted as forward MVMs
        (Tiki-Taka's transfer reads: the caller counts them); their conversions and
        saturations are counted."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.read(x)
        x = self._as_batch(x, self.in_size)
        if self._ideal:
            return torch.mm(x, self._weight_t)
        return self._analog_mvm(x, False, False)

    def _columns(self, cols: slice) -> torch.Tensor:
        """``weight[:, cols]`` (a view, made once: the weights change in place)."""
        key = (cols.start, cols.stop)
        view = self._column_views.get(key)
        if view is None:
            view = self._column_views[key] = self.weight[:, cols]
        return view

    def _as_batch(self, v: torch.Tensor, size: int) -> torch.Tensor:
        if v.dim() == 2 and v.shape[1] == size and v.dtype == self.dtype and v.device == self.device:
            return v
        if v.dim() == 1:
            v = v.unsqueeze(0)
        if v.dim() != 2 or v.shape[1] != size:
            raise ValueError(f"expected [N, {size}], got {tuple(v.shape)}")
        return v.to(device=self.device, dtype=self.dtype)

    def _one_pass(self, x: torch.Tensor, alpha: torch.Tensor | None, factor: float,
                  transposed: bool, out: torch.Tensor | None = None,
                  w: torch.Tensor | None = None) -> torch.Tensor:
        """DAC -> array -> output noise -> ADC for inputs ``x`` divided by ``alpha*factor``.

        Works in converter level units to save passes: the DAC output is an integer level
        ``clamp(Q(x/(alpha*beta)/in_step), +-inp_bound/in_step)``; one ``addmm`` multiplies by the
        array, rescales by ``in_step/out_step`` and adds the output noise (in ADC levels); the ADC
        output is returned in levels of ``out_step``, rounded but *not* clipped (the caller clips:
        its saturation check can then skip the clip when nothing saturates). Without quantization
        the "levels" are the values themselves. ``alpha [N, 1]`` (noise management) may be None.
        ``out [N, out]``: where to write the result (else a new tensor); ``w``: the (transposed)
        MVM's matrix when only some outputs are wanted.
        """
        unit = self._in_step if self._in_step > 0 else 1.0
        if alpha is not None:
            # x / (alpha*beta*in_step); + tiny keeps an all-zero row at 0 (it is scaled back by 0).
            v = x / torch.add(self._tiny, alpha, alpha=unit * factor)
        elif unit * factor != 1.0:
            v = x * (1.0 / (unit * factor))
        else:
            v = x.clone()
        self._dac(v)
        if w is None:
            w = self.weight if transposed else self._weight_t
        if out is None:
            out = torch.empty(v.shape[0], w.shape[1], device=v.device, dtype=v.dtype)
        if self._noisy:
            y = out.normal_(generator=self.generator).addmm_(v, w, beta=self._noise_levels,
                                                               alpha=self._mm_scale)
        else:
            y = torch.mm(v, w, out=out)
            if self._mm_scale != 1.0:
                y.mul_(self._mm_scale)
        self._adc_(y)
        n, n_in = x.shape
        a = self._activity
        a.dac_conversions += n * n_in
        a.adc_conversions += n * (self.in_size if transposed else self.out_size)
        return y

    def _analog_mvm(self, x: torch.Tensor, transposed: bool, bound_management: bool,
                    out: torch.Tensor | None = None, w: torch.Tensor | None = None) -> torch.Tensor:
        # max |x| per row (noise management): abs + amax is the inf-norm bit for bit, and cheaper.
        alpha = x.abs().amax(dim=1, keepdim=True) if self._noise_management else None
        y = self._one_pass(x, alpha, 1.0, transposed, out, w)
        return self._finish(x, y, alpha, transposed, bound_management)

    def _may_saturate(self, y: torch.Tensor) -> bool:
        """Whether some output in ADC levels ``y`` may sit on the top level. Saturation is rare:
        on CPU one min/max pass (a ~1 us host check) spares the clip, the count and bound
        management; on an accelerator the answer is always yes (no host round trip)."""
        if not math.isfinite(self._out_levels):
            return False
        if self.device.type != "cpu":
            return True
        lo, hi = torch.aminmax(y)
        return hi.item() >= self._sat_level or lo.item() <= -self._sat_level

    def _finish(self, x, y, alpha, transposed: bool, bound_management: bool) -> torch.Tensor:
        """ADC clipping (with the saturation count and bound management) and the scaling of the
        levels ``y`` back to weight units."""
        scale = alpha
        if self._may_saturate(y):
            scale = self._saturated(x, y, alpha, transposed, bound_management)
        # Back to weight units: levels * out_step * alpha*beta (0-dim tensor constants: a Python
        # float in a binary op costs a conversion per call).
        if scale is not None:
            y.mul_(scale)
        return y.mul_(self._out_factor_t) if self._out_factor != 1.0 else y

    # ---- forward MVMs of a sequence -------------------------------------------------------
    def prepare_forward(self, u: torch.Tensor, rec: slice, rec_bound: float, step_rows: int,
                        onehot=None, post_scale: torch.Tensor | None = None) -> PreparedForward:
        """Precompute the share of the forward MVMs of the rows of ``u [N, in]`` (``N/step_rows``
        steps of ``step_rows`` vectors) that does not depend on the columns ``rec``: those are
        written into ``u`` later, step by step, with ``|value| <= rec_bound``.

        Exact, not an approximation: the DAC converts each input on its own, the array sums all
        columns before the one ADC conversion, and the noise-management scale ``max|u|`` is
        known in advance when the known columns of every row reach ``rec_bound`` (an LSTM's bias
        input 1 against ``|h| <= 1``; checked, ValueError otherwise). The output noise of all
        the MVMs is drawn here, in one call. ``onehot = (s, index)``: columns ``0..s-1`` of
        row k are zero except ``index[k]`` (characters), gathered instead of multiplied.
        ``post_scale [out]``: a digital factor on each output. Finish each step with
        :meth:`forward_prepared`; the MVMs are counted there.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.prepare_forward(u, rec, rec_bound, step_rows, onehot, post_scale)
        u = self._as_batch(u, self.in_size)
        n_in, N, out = self.in_size, u.shape[0], self.out_size
        if not 0 <= rec.start <= rec.stop <= n_in or N % step_rows:
            raise ValueError(f"rec {rec} must lie inside the {n_in} inputs and {step_rows} divide {N}")
        s, index = 0, None
        if onehot is not None and 0 < onehot[0] <= rec.start:
            s, index = onehot[0], onehot[1].reshape(-1, 1).to(self.device)
            hot = u.gather(1, index)
            if not torch.equal(u[:, :s].abs().sum(1, keepdim=True), hot.abs()):
                s, index = 0, None               # not one-hot after all: dense columns
        # Reuse the buffers and per-step views while the inputs stay the same tensor.
        key = (u.data_ptr(), tuple(u.shape), u.stride(), rec.start, rec.stop, step_rows,
               None if post_scale is None else post_scale.data_ptr())
        prep = self._prepared
        if prep is None or prep.key != key:
            kw = dict(device=self.device, dtype=self.dtype)
            pre = torch.empty(N, out, **kw)
            alpha, div = torch.empty(N, 1, **kw), torch.empty(N, 1, **kw)
            steps = [(pre[r], div[r], alpha[r], u[r, rec], r)
                     for r in (slice(k, k + step_rows) for k in range(0, N, step_rows))]
            prep = PreparedForward(key, rec, pre, alpha, div, None, post_scale, steps,
                                   self.weight[:, rec].t())
            self._prepared = prep
        # Known columns: contiguous blocks before and after rec (the one-hot block apart).
        blocks = [b for b in (slice(s, rec.start), slice(rec.stop, n_in)) if b.stop > b.start]
        w_hot = self.weight.t().contiguous().index_select(0, index.view(-1)) if index is not None else None
        pre, cfg = prep.pre, self.config
        if cfg.is_ideal:
            pre.zero_()
            for b in blocks:
                pre.addmm_(u[:, b], self.weight[:, b].t())
            if w_hot is not None:
                pre.addcmul_(w_hot, hot)
            return prep
        unit = self._in_step if self._in_step > 0 else 1.0
        alpha = prep.alpha
        if self._noise_management:
            alpha.zero_()
            for known in (u[:, :rec.start], u[:, rec.stop:]):
                if known.shape[1]:
                    torch.maximum(alpha, known.abs().amax(1, keepdim=True), out=alpha)
            if not bool((alpha >= rec_bound).all()):
                raise ValueError(f"the known inputs of every row must reach {rec_bound} (max |u| "
                                 "would depend on the recurrent inputs)")
        else:
            alpha.fill_(1.0)
        torch.add(self._tiny, alpha, alpha=unit, out=prep.div)
        # Back to weight units: alpha*out_step*post_scale; one vector when every alpha is 1 (the
        # usual case: the bias input is the largest), else per row.
        vec = self._out_factor_t if post_scale is None else post_scale * self._out_factor_t
        if bool((alpha == 1.0).all()):
            prep.scale = vec.expand(out) if vec.dim() == 0 else vec
        else:
            prep.scale = torch.mul(alpha, vec.expand(out), out=self._buffer("prepared_scale", (N, out)))
        # pre = output noise in ADC levels + the known blocks' share of the array result
        if self._noisy:
            pre.normal_(generator=self.generator)
        else:
            pre.zero_()
        beta = self._noise_levels if self._noisy else 1.0
        for b in blocks:
            pre.addmm_(self._dac(u[:, b] / prep.div), self.weight[:, b].t(), beta=beta,
                       alpha=self._mm_scale)
            beta = 1.0
        if beta != 1.0:
            pre.mul_(beta)
        if w_hot is not None:
            pre.addcmul_(w_hot, self._dac(hot / prep.div).mul_(self._mm_scale))
        return prep

    def forward_prepared(self, prepared: PreparedForward, step: int, u: torch.Tensor) -> torch.Tensor:
        """Finish the forward MVMs of ``step`` of ``prepared`` and return their outputs (times
        ``post_scale``; a view into ``prepared``). ``u [rows, in]`` are their full inputs: only the
        ``rec`` columns are read (through the views made at preparation), unless bound
        management repeats a row."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.forward_prepared(prepared, step, u)
        pre, div, alpha, x_rec, rows = prepared.steps[step]
        n = pre.shape[0]
        a = self._activity
        a.forward_mvms += n
        w_rec_t = prepared.w_rec_t
        if self._ideal:
            y = pre.addmm_(x_rec, w_rec_t)
            return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
        y = pre.addmm_(self._dac(x_rec / div), w_rec_t, alpha=self._mm_scale)
        self._adc_(y)
        a.dac_conversions += n * self.in_size
        a.adc_conversions += n * self.out_size
        if self._may_saturate(y):
            rows_scale = self._saturated(u, y, alpha, False, self._bound_management)
            y.mul_(rows_scale).mul_(self._out_factor_t)
            return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
        scale = prepared.scale
        return y.mul_(scale if scale.dim() == 1 else scale[rows])

    def _round_levels(self, v: torch.Tensor, stochastic: bool) -> torch.Tensor:
        """Round to integer levels in place: to nearest, or stochastically (``floor(v + u)``)."""
        if stochastic:
            return v.add_(torch.rand(v.shape, generator=self.generator, device=v.device,
                                     dtype=v.dtype)).floor_()
        return v.round_()

    def _dac(self, v: torch.Tensor) -> torch.Tensor:
        """DAC in level units, in place: ``v`` are inputs already divided by ``alpha*in_step``."""
        if self._in_step > 0:
            self._round_levels(v, self._inp_sto)
        if self._dac_clip:
            v.clamp_(-self._in_levels, self._in_levels)
        return v

    def _adc_(self, y: torch.Tensor) -> torch.Tensor:
        """ADC rounding in level units, in place (clipping is left to :meth:`_finish`)."""
        return self._round_levels(y, self._out_sto) if self._out_step > 0 else y

    def _saturated(self, x, y, alpha, transposed: bool, bound_management: bool):
        """Clip ``y`` (ADC levels) in place, count saturated outputs, and with bound management
        repeat saturated rows with the input halved until none saturates. Returns the per-row
        scale back to weight units (``alpha*beta``; None: ``alpha`` unchanged and no NM)."""
        cfg = self.config
        top = self._out_levels
        y.clamp_(-top, top)
        # An output on the top ADC level counts as saturated (the ADC cannot tell it from larger).
        sat = y.abs() >= self._sat_level
        if not bound_management:
            self._pending_sat += sat.sum()
            return alpha
        per_row = sat.sum(dim=1)
        self._pending_sat += per_row.sum()
        rows = per_row.nonzero().squeeze(1)   # a host sync (on an accelerator: every forward call)
        if not rows.numel():
            return alpha
        scale = alpha.clone() if alpha is not None else y.new_ones(y.shape[0], 1)
        factor = 1
        # aihwkit's stop: after the first factor above max_bm_factor or above max_bm_res/inp_res.
        while rows.numel() and factor <= cfg.max_bm_factor and factor <= self._bm_res_limit:
            factor *= 2
            a_r = alpha.index_select(0, rows) if alpha is not None else None
            yi = self._one_pass(x.index_select(0, rows), a_r, factor, transposed).clamp_(-top, top)
            self._activity.bm_repeats += rows.numel()
            sat_i = yi.abs() >= self._sat_level
            self._pending_sat += sat_i.sum()
            y.index_copy_(0, rows, yi)
            if a_r is None:
                scale.index_fill_(0, rows, factor)
            else:
                scale.index_copy_(0, rows, a_r * factor)
            rows = rows[sat_i.any(dim=1)]
        return scale

    # ---- update -----------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float, onehot=None) -> None:
        """Rank-one updates ``k = 0..K-1`` in order: ``W <- W - lr * sum_k d_k x_k^T`` (SGD, since
        ``d`` is dLoss/dy). ``x [K, in]``, ``d [K, out]``.

        ``onehot = (s, index)`` declares that in the first ``s`` columns row ``k`` of ``x`` is zero
        except at column ``index[k]`` (one-hot characters). The fast update then sums those
        columns by index instead of by matrix product (the same sums, several times cheaper);
        the claim is checked, and ignored when false.
        """
        x = self._as_batch(x, self.in_size)
        d = self._as_batch(d, self.out_size)
        if x.shape[0] != d.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows, d has {d.shape[0]}")
        if x.shape[0] == 0 or lr == 0:
            return
        if lr < 0:  # the same pulses with the direction reversed
            d, lr = -d, -lr
        lr = lr / self._out_scale   # the devices hold weights / out_scale
        self._activity.updates += x.shape[0]
        if self.config.is_ideal:
            self.weight.addmm_(d.t(), x, alpha=-lr)
            return
        scales = self._pulse_scales(x, d, lr)
        bl, a, b, ax, ad = scales[:5]
        self._pending[_SLOTS] += bl.sum() if isinstance(bl, torch.Tensor) else bl * x.shape[0]
        if self.config.update_mode == "fast":
            self._update_fast(x, d, lr, *scales, onehot)
        else:
            p = ax.mul_(a.unsqueeze(1)).clamp_(max=1.0)
            q = ad.mul_(b.unsqueeze(1)).clamp_(max=1.0)
            self._update_exact(x, d, bl, p, q)

    def _buffer(self, name: str, shape) -> torch.Tensor:
        """A workspace tensor kept between calls: the update's ``[K, n]`` temporaries are large, and
        fresh allocations of that size cost more (page faults) than the arithmetic on them."""
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape:
            buf = torch.empty(shape, device=self.device, dtype=self.dtype)
            self._workspace[name] = buf
        return buf

    def _pulse_scales(self, x, d, lr):
        """BL (a number, or ``[K]`` with BL management), the per-update scales ``a, b [K]`` of the
        firing probabilities ``p = min(1, a|x|)``, ``q = min(1, b|d|)`` (``a*b = lr/(dw_min*BL)``;
        update management balances them), ``|x|`` and ``|d|`` (workspace tensors, valid until
        the next update of this tile) and the row maxima of ``|x|`` and ``|d|``."""
        cfg = self.config
        dw_min = self.devices.dw_min
        ax = torch.abs(x, out=self._buffer("abs_x", x.shape))
        ad = torch.abs(d, out=self._buffer("abs_d", d.shape))
        x_max = ax.amax(dim=1)     # inf-norms (bit for bit; cheaper than linalg here)
        d_max = ad.amax(dim=1)
        if cfg.update_bl_management:
            bl = torch.ceil(lr * x_max * d_max / dw_min).clamp_(1, cfg.desired_bl)
            a = torch.sqrt(lr / (dw_min * bl))
        else:
            bl = cfg.desired_bl
            a = torch.full_like(x_max, math.sqrt(lr / (dw_min * bl)))
        b = a
        if cfg.update_management:
            ok = (x_max > 0) & (d_max > 0)
            d_val = d_max
            if cfg.um_rule == "aihwkit":
                # k > BL: shrink d's share so that x's largest probability is exactly 1 (no x
                # clipping); d's probabilities carry the excess and clip (aihwkit).
                k = lr * x_max * d_max / dw_min
                d_val = torch.where(k > bl, d_max * bl / torch.where(k > 0, k, 1.0), d_max)
            ratio = torch.where(ok, d_val / torch.where(ok, x_max, 1.0), 1.0).sqrt_()
            a, b = a * ratio, b / ratio
        return bl, a, b, ax, ad, x_max, d_max

    def _clip_rows(self, v, av, scale, v_max, name):
        """``v`` clipped per row at ``+-1/scale`` (where ``scale*|v|`` would be a probability above
        1) and its absolute value; ``v`` and ``av`` themselves when no row needs it (one host check)."""
        if not bool((v_max * scale > 1.0).any()):
            return v, av
        lim = scale.reciprocal().unsqueeze(1)
        clipped = torch.clamp(v, -lim, lim, out=self._buffer(name, v.shape))
        return clipped, torch.abs(clipped, out=av)

    def _update_fast(self, x, d, lr, bl, a, b, ax, ad, x_max, d_max, onehot=None):
        """The four per-device sums over the K updates (see the module docstring), from

            BL p q = (lr/dw_min) |x~| |d~|      BL (p q)^2 = (lr/dw_min)^2 x~^2 d~^2 / BL

        with ``x~, d~`` = ``x, d`` clipped per row at ``1/a``, ``1/b`` (``p = a|x~|``, ``q = b|d~|``,
        ``a*b*BL = lr/dw_min``): the probabilities themselves are never formed, and without
        clipping (the usual case) the operands are ``|x|, x, x^2, x|x|`` and likewise for ``d``.
        """
        dev = self.devices
        out_in = (self.out_size, self.in_size)
        per_k = isinstance(bl, torch.Tensor)
        K = x.shape[0]
        xt, ax = self._clip_rows(x, ax, a, x_max, "x_clipped")
        dt, ad = self._clip_rows(d, ad, b, d_max, "d_clipped")
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
        d_sides = [ad, dt, torch.mul(dt, dt, out=self._buffer("d2", dt.shape))]
        if n_terms == 4:
            d_sides.append(torch.mul(dt, ad, out=self._buffer("d2s", dt.shape)))
        sums = [self._buffer(name, out_in) for name in ("m_all", "m_sgn", "v_all", "v_sgn")[:n_terms]]
        # Dense columns s.. : matrix products over the K updates, each computed transposed
        # (x side first: 10-20 % faster for these tall operands) and copied into place.
        xd, axd = xt[:, s:], ax[:, s:]
        prod = self._buffer("prod", (xd.shape[1], self.out_size))
        x2 = self._buffer("x_side", xd.shape)
        for j, d_side in enumerate(d_sides):
            if j < 2:
                x_side = (axd, xd)[j]
            else:
                x_side = torch.mul(xd, xd if j == 2 else axd, out=x2)
                if per_k:
                    x_side.div_(bl.unsqueeze(1))
            sums[j][:, s:].copy_(torch.mm(x_side.t(), d_side, out=prod).t())
        if s:
            # One-hot columns: row k adds its d-side terms, weighted by its single x-side value,
            # to column index[k] of each sum (one index_add for all of them).
            weights = [at.abs(), at, at * at, at * at.abs()]
            if per_k:
                weights[2:] = [w / bl.unsqueeze(1) for w in weights[2:]]
            stacked = self._buffer("onehot_terms", (K, n_terms, self.out_size))
            for j, d_side in enumerate(d_sides):
                torch.mul(d_side, weights[j], out=stacked[:, j])
            hot = self._buffer("onehot_sums", (s, n_terms, self.out_size)).zero_()
            hot.index_add_(0, index.view(-1), stacked)
            for j in range(n_terms):
                sums[j][:, :s].copy_(hot[:, j].t())
        m_all, m_sgn, v_all = sums[:3]
        v_sgn = sums[3] if n_terms == 4 else None
        c = lr / dev.dw_min
        c2 = c * c / (1.0 if per_k else bl)
        m_all.mul_(c)
        self._writes.add_(m_all)   # expected coincidences per device (endurance)
        m_sgn.mul_(c)
        v_all.mul_(c2)
        if v_sgn is not None:
            v_sgn.mul_(c2)
        # Pulse counts: row lines fire BL*p, column lines BL*q, coincidences BL*p*q in total.
        x_sum = ax.sum(1)
        d_sum = ad.sum(1)
        pend = self._pending
        pend[_ROW] += (a * x_sum * bl).sum()
        pend[_COL] += (b * d_sum * bl).sum()
        pend[_COINC] += (x_sum * d_sum).sum() * c
        dev.apply_moments_(self.weight, m_all, m_sgn, v_all, v_sgn, self.generator)

    def _random_int16(self, shape) -> torch.Tensor:
        """Uniform int16 values (all 65536 equally likely) from the tile's generator."""
        numel = math.prod(shape)
        raw = torch.empty((numel + 3) // 4, dtype=torch.int64, device=self.device)
        raw.random_(-2**63, None, generator=self.generator)   # full 64-bit range: four int16
        return raw.view(torch.int16)[:numel].view(shape)

    def _thresholds(self, prob: torch.Tensor):
        """int16 thresholds ``t`` with ``P(u < t) = m/65536`` for ``u`` uniform on int16, where
        ``m`` is ``65536*p`` rounded stochastically (one draw per line and update), so the firing
        probability is ``p`` on average exactly; and the lines with ``m = 65536`` (fire in every
        slot; int16 cannot hold that threshold), or None when there are none."""
        scaled = prob.to(torch.float32) * 65536.0             # exact: a power of two
        base = scaled.floor()
        # frac*65536 against a uniform integer 0..65535: P(bump) = ceil(frac*65536)/65536.
        dither = self._random_int16(prob.shape).to(torch.float32).add_(32768.0)
        m = base.add_((dither < scaled.sub_(base).mul_(65536.0)).to(torch.float32))
        always = m > 65535.0
        thr = m.sub_(32768.0).clamp_(max=32767.0).to(torch.int16)
        return thr, (always if bool(always.any()) else None)

    def _pulses(self, thr: torch.Tensor, always: torch.Tensor | None, slots: int) -> torch.Tensor:
        """Sampled pulse trains ``[n, slots, k]`` (bool) for thresholds ``thr [n, k]``: 16 random
        bits per line and slot (updates innermost: the comparison then runs over long rows)."""
        n, k = thr.shape
        fire = self._random_int16((n, slots, k)) < thr.unsqueeze(1)
        if always is not None:
            fire |= always.unsqueeze(1)
        return fire

    def _update_exact(self, x, d, bl, p, q):
        cfg, dev, g = self.config, self.devices, self.generator
        K, slots = x.shape[0], cfg.desired_bl
        w = self.weight
        w_flat = w.view(-1)
        # Line-major layouts [lines, K]: the pulse trains of one line are contiguous.
        thr_x, always_x = self._thresholds(p.t())
        thr_d, always_d = self._thresholds(q.t())
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
        pend = self._pending
        chunk = cfg.exact_chunk or (256 if w.device.type == "cpu" else 1024)
        for k0 in range(0, K, chunk):
            k1 = min(K, k0 + chunk)
            L = (k1 - k0) * slots
            rows = self._pulses(thr_x[:, k0:k1], None if always_x is None else always_x[:, k0:k1],
                                slots)                           # x lines [in, BL, kc]
            cols = self._pulses(thr_d[:, k0:k1], None if always_d is None else always_d[:, k0:k1],
                                slots)                           # d lines [out, BL, kc]
            if slot_ok is not None:
                rows &= slot_ok[:, k0:k1].unsqueeze(0)
                cols &= slot_ok[:, k0:k1].unsqueeze(0)
            r8 = rows.view(torch.int8)
            c8 = cols.view(torch.int8)
            n_all = _count_mm(c8.reshape(-1, L), r8.reshape(-1, L).t(), w.dtype)
            rs = (r8 * sx8[:, k0:k1].unsqueeze(1)).reshape(-1, L)  # signed trains
            cs = (c8 * sd8[:, k0:k1].unsqueeze(1)).reshape(-1, L)
            n_sgn = _count_mm(cs, rs.t(), w.dtype)               # same-sign (down) minus up
            pend[_ROW] += torch.count_nonzero(rows)
            pend[_COL] += torch.count_nonzero(cols)
            pend[_COINC] += n_all.sum()
            self._writes.add_(n_all)   # sampled coincidences per device (endurance)
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
