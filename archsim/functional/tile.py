r"""One simulated RPU tile: a weight matrix in resistive devices, its forward, transposed and
read MVMs, and its pulsed update, with the activity counters of all of them.

:class:`AnalogTile` holds the state (device weights, per-device parameters, counters) and wires
three parts together: the periphery (:mod:`archsim.functional.periphery`: DAC, output noise, ADC,
noise and bound management) for every MVM, and one of the two pulsed updates,
:mod:`archsim.functional.update_fast` (moment-matched, the default) and
:mod:`archsim.functional.update_exact` (sampled pulse trains), selected by
``RPUConfig.update_mode``. The device response is the device classes'
(:mod:`archsim.functional.devices`); the formulas are in
:class:`archsim.functional.config.RPUConfig`. This module turns the inputs and errors of an
update into its pulse probabilities (BL, update management), common to both modes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.devices import make_devices
from archsim.functional.periphery_members import make_periphery
from archsim.functional.update_exact import ExactUpdate
from archsim.functional.update_fast import FastUpdate
from archsim.functional.workspace import Workspace

# Accumulators kept on the tile's device (folded into TileActivity on demand, so the hot path
# never waits for an accelerator): indices into AnalogTile._pending.
_SAT, _SLOTS, _ROW, _COL, _COINC = range(5)


def write_summary(writes: torch.Tensor) -> tuple[float, float]:
    """The largest per-device write count and the 99th percentile (nearest rank) of ``writes``."""
    flat = writes.reshape(-1)
    k = max(1, math.ceil(0.99 * flat.numel()))
    return float(flat.max()), float(torch.kthvalue(flat, k).values)


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

    A population (``members``, :class:`~archsim.functional.members.Members` of ``K``): the tile
    holds ``K`` independent matrices of the same shape, one per member, as rows
    ``k*out .. (k+1)*out`` of ``weight [K*out, in]`` (``weight3`` views it as ``[K, out, in]``);
    each row of an MVM or update goes through its member's matrix. ``member_generators`` (one
    per member) draw each member's device-to-device variations, as a one-member tile made with
    that generator draws them; every other draw comes from ``generator``. Weights in and out
    (:meth:`set_weights`, :meth:`get_weights`) are ``[K, out, in]``. ``member_devices`` (one
    device spec per member, default ``config.device`` for all): members may differ in whatever
    their device family draws per device (e.g. ``up_down``, the ``*_dtod`` spreads, the bounds of
    a constant-step device), not in what it keeps as one number for the tile (``dw_min``,
    ``dw_min_std``, ...): ValueError naming those. ``member_configs`` (one configuration per
    member, instead of ``member_devices``): members may also differ in their periphery's
    converters (:data:`~archsim.functional.config.MEMBER_PERIPHERY_FIELDS`: DAC/ADC
    resolution and rounding, ranges, output noise, bound-management limits; see
    :class:`~archsim.functional.periphery_members.MemberPeriphery`).
    """

    def __init__(self, out_size: int, in_size: int, config: RPUConfig, *, generator: torch.Generator,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 init_std: float | None = None, members=None, member_generators=None,
                 member_devices=None, member_configs=None):
        self.out_size, self.in_size = int(out_size), int(in_size)
        if member_configs is not None:
            if member_devices is not None:
                raise ValueError("give member_configs or member_devices, not both")
            member_devices = [c.device for c in member_configs]
        self.config = config
        self._generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        self.members = members
        K = 1 if members is None else members.K
        if generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device}, tile on {self.device}")
        self.devices = None if config.is_ideal else self._make_devices(member_generators,
                                                                       member_devices)
        self.weight = torch.zeros(K * self.out_size, self.in_size, device=self.device, dtype=dtype)
        self.weight3 = self.weight.view(K, self.out_size, self.in_size)
        if init_std:
            self.weight.normal_(0.0, init_std, generator=generator)
            if self.devices is not None:
                self.devices.clip_(self.weight)
        self._activity = TileActivity()
        self._pending = torch.zeros(5, device=self.device, dtype=torch.float64)
        # Endurance: coincidences (writes) per device, sampled in exact mode and expected values
        # in fast mode, as the scalar coincidence counter (one add per update chunk or call).
        self._writes = None if config.is_ideal else torch.zeros(
            K * self.out_size, self.in_size, device=self.device, dtype=torch.float64)
        self._workspace = Workspace(self.device, dtype)
        # The parts keep references to the weights (changed in place only), the counters (0-dim
        # views of _pending) and the generator: no lookup through the tile on their hot paths.
        self.periphery = make_periphery(config, self.weight if members is None else self.weight3,
                                        generator=generator, activity=self._activity,
                                        pending_sat=self._pending[_SAT], members=members,
                                        member_configs=member_configs)
        self._fast = self._exact = None
        if self.devices is not None:
            counters = dict(row_pulses=self._pending[_ROW], col_pulses=self._pending[_COL],
                            coincidences=self._pending[_COINC])
            self._fast = FastUpdate(self.weight, self.devices, self._writes, self._workspace,
                                    generator=generator, members=members, **counters)
            self._counters = counters
            self._exact = self._make_exact()
        # The weight in use is out_scale * the device weight (a no-op for floating-point tiles).
        self._out_scale = self.periphery.out_scale
        # Views that stay current (the weights change in place): the matrix of the MVMs, and
        # its transpose ([K, out, in] and [K, in, out] for a population).
        self._matrix = self.weight if members is None else self.weight3
        self._weight_t = self._matrix.transpose(-1, -2)
        self._prepared: PreparedForward | None = None
        # Settings and periphery entry points used on every MVM, as plain attributes.
        self._ideal = config.is_ideal
        self._bound_management = self.periphery.bound_management
        self._mvm = self.periphery.mvm
        self._finish_prepared = self.periphery.finish_prepared
        self._column_views: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def generator(self) -> torch.Generator:
        """The stream of every random draw (device variations, MVM noise, update pulses)."""
        return self._generator

    @generator.setter
    def generator(self, value: torch.Generator) -> None:
        # The parts draw from it directly: hand them the new one too (Tiki-Taka gives its arrays
        # the block's stream after making them).
        self._generator = value
        exact = self._exact if isinstance(self._exact, list) else [self._exact]
        for part in (self.periphery, self._fast, *exact):
            if part is not None:
                part.generator = value

    def _make_exact(self):
        """The exact update: one, or per member one on its rows of the weights and devices
        (views of their tensors: made again whenever the devices' tensors are replaced)."""
        kw = dict(generator=self._generator, device=self.device, **self._counters)
        if self.members is None:
            return ExactUpdate(self.config, self.weight, self.devices, self._writes, **kw)
        rows = [slice(k * self.out_size, (k + 1) * self.out_size) for k in range(self.members.K)]
        return [ExactUpdate(self.config, self.weight[r], self.devices.rows(r), self._writes[r], **kw)
                for r in rows]

    def _make_devices(self, member_generators, member_devices=None):
        """The devices of every member, drawn from each member's generator (one member: the
        tile's generator) with its device spec."""
        spec, args = self.config.device, (self.device, self.dtype)
        if self.members is None:
            return make_devices(spec, self.out_size, self.in_size, self._generator, *args)
        K = self.members.K
        if member_generators is None or len(member_generators) != K:
            raise ValueError(f"a population tile needs {K} member generators")
        specs = list(member_devices) if member_devices is not None else [spec] * K
        if len(specs) != K:
            raise ValueError(f"a population tile of {K} members got {len(specs)} device specs")
        parts = [make_devices(sp, self.out_size, self.in_size, g, *args)
                 for sp, g in zip(specs, member_generators)]
        # One device object serves all members: its per-device tensors are the members' stacked
        # (drawn ones and those built from the spec alike), its coefficients derived from them.
        stacked = make_devices(spec, K * self.out_size, self.in_size,
                               torch.Generator(device=self.device).manual_seed(0), *args)
        shape = (self.out_size, self.in_size)
        for name, value in vars(parts[0]).items():
            if isinstance(value, torch.Tensor) and tuple(value.shape) == shape:
                setattr(stacked, name, torch.cat([getattr(p, name) for p in parts]))
        stacked._derive()
        # ... which must then be each member's own device on its rows, in every tensor and
        # number (``symmetric`` only selects a cheaper, equal formula).
        rows = [slice(k * self.out_size, (k + 1) * self.out_size) for k in range(K)]
        differ = set()
        for name, value in vars(stacked).items():
            if name == "symmetric":
                continue
            for r, p in zip(rows, parts):
                mine = getattr(p, name, None)
                if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == K * shape[0]:
                    same = isinstance(mine, torch.Tensor) and torch.equal(value[r], mine)
                elif isinstance(value, torch.Tensor):
                    same = isinstance(mine, torch.Tensor) and torch.equal(value, mine)
                else:
                    same = value == mine
                if not same:
                    differ.add(name)
        if differ:
            fields = sorted({k for sp in specs[1:] for k, v in sp.model_dump().items()
                             if v != specs[0].model_dump().get(k)})
            raise ValueError(f"population members' devices differ in {', '.join(fields) or 'nothing'}, "
                             f"which the {parts[0].kind} family does not only draw per device (it "
                             f"changes its {', '.join(sorted(differ))} for the whole tile): members "
                             "may differ only in what is drawn per device")
        return stacked

    # ---- state --------------------------------------------------------------------------
    @torch.no_grad()
    def set_weights(self, w: torch.Tensor) -> None:
        """Program the devices to ``w / out_scale`` (clipped to every device's bounds)."""
        target = self.weight if self.members is None else self.weight3
        target.copy_(w.to(device=self.device, dtype=self.dtype))
        if self._out_scale != 1.0:
            self.weight.div_(self._out_scale)
        if self.devices is not None:
            self.devices.clip_(self.weight)

    def get_weights(self) -> torch.Tensor:
        """The weights the network uses: ``out_scale`` times the device weights (``weight``;
        ``[K, out, in]`` for a population)."""
        w = self.weight if self.members is None else self.weight3
        return w * self._out_scale if self._out_scale != 1.0 else w.clone()

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
        self._activity = self.periphery.activity = value

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
            if self.members is not None:   # the members' exact updates hold views of the old ones
                self._exact = self._make_exact()
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
            if self.members is not None:
                return self.members.mm(x, self._weight_t, out)
            return torch.mm(x, self._weight_t, out=out)
        return self._mvm(x, False, self._bound_management, out)

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
        w = self._matrix if cols is None else self._columns(cols)
        if self._ideal:
            if self.members is not None:
                return self.members.mm(d, w, out)
            return torch.mm(d, w, out=out)
        return self._mvm(d, True, False, out, w)

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
            if self.members is not None:
                return self.members.mm(x, self._weight_t)
            return torch.mm(x, self._weight_t)
        return self._mvm(x, False, False)

    def _columns(self, cols: slice) -> torch.Tensor:
        """``weight[:, cols]`` (a view, made once: the weights change in place)."""
        key = (cols.start, cols.stop)
        view = self._column_views.get(key)
        if view is None:
            view = self._column_views[key] = self._matrix[..., cols]
        return view

    def _as_batch(self, v: torch.Tensor, size: int) -> torch.Tensor:
        if v.dim() == 2 and v.shape[1] == size and v.dtype == self.dtype and v.device == self.device:
            return v
        if v.dim() == 1:
            v = v.unsqueeze(0)
        if v.dim() != 2 or v.shape[1] != size:
            raise ValueError(f"expected [N, {size}], got {tuple(v.shape)}")
        return v.to(device=self.device, dtype=self.dtype)

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
        s, index, hot = 0, None, None
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
                                   self._weight_t[..., rec, :])
            self._prepared = prep
        # Known columns: contiguous blocks before and after rec (the one-hot block apart).
        blocks = [b for b in (slice(s, rec.start), slice(rec.stop, n_in)) if b.stop > b.start]
        w_hot = self._hot_weights(index, s) if index is not None else None
        if self._ideal:
            pre = prep.pre.zero_()
            for b in blocks:
                if self.members is not None:
                    self.members.addmm_(pre, u[:, b], self._weight_t[:, b])
                    continue
                pre.addmm_(u[:, b], self.weight[:, b].t())
            if w_hot is not None:
                pre.addcmul_(w_hot, hot)
            return prep
        self.periphery.prepare(prep, u, rec, rec_bound, blocks, w_hot, hot, post_scale)
        return prep

    def _hot_weights(self, index: torch.Tensor, s: int) -> torch.Tensor:
        """``[N, out]``: for each row, the weights of its one-hot input column ``index`` (< ``s``)."""
        # The one-hot columns' weights transposed (each column a contiguous row), then gathered;
        # both into workspace tensors: a population's are large enough to fault in afresh.
        ws = self._workspace
        cols = self._weight_t[..., :s, :]
        flat = ws("hot_columns", tuple(cols.shape)).copy_(cols).view(-1, self.out_size)
        index = index.view(-1)
        if self.members is not None:
            index = self.members.flat_index(index, s)
        return torch.index_select(flat, 0, index, out=ws("hot_weights", (index.numel(), self.out_size)))

    def forward_prepared(self, prepared: PreparedForward, step: int, u: torch.Tensor) -> torch.Tensor:
        """Finish the forward MVMs of ``step`` of ``prepared`` and return their outputs (times
        ``post_scale``; a view into ``prepared``). ``u [rows, in]`` are their full inputs: only the
        ``rec`` columns are read (through the views made at preparation), unless bound
        management repeats a row."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.forward_prepared(prepared, step, u)
        views = prepared.steps[step]
        pre = views[0]
        self._activity.forward_mvms += pre.shape[0]
        if self._ideal:
            if self.members is not None:
                y = self.members.addmm_(pre, views[3], prepared.w_rec_t)
                return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
            y = pre.addmm_(views[3], prepared.w_rec_t)
            return y if prepared.post_scale is None else y.mul_(prepared.post_scale)
        return self._finish_prepared(prepared, views, u)

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
        if self.members is not None:
            # Each member's rows as one block: the update's sums become batched products.
            x = self.members.member_major(x, out=self._workspace("major_x", x.shape))
            d = self.members.member_major(d, out=self._workspace("major_d", d.shape))
            if onehot is not None:
                onehot = (onehot[0], self.members.member_major(onehot[1].reshape(-1)))
        if self.config.is_ideal:
            if self.members is not None:
                self.weight3.sub_(self.members.outer_sums(d, x), alpha=lr)
                return
            self.weight.addmm_(d.t(), x, alpha=-lr)
            return
        scales = self._pulse_scales(x, d, lr)
        bl, a, b, ax, ad = scales[:5]
        self._pending[_SLOTS] += bl.sum() if isinstance(bl, torch.Tensor) else bl * x.shape[0]
        if self.config.update_mode == "fast":
            self._fast.apply(x, d, lr, *scales, onehot)
        else:
            p = ax.mul_(a.unsqueeze(1)).clamp_(max=1.0)
            q = ad.mul_(b.unsqueeze(1)).clamp_(max=1.0)
            if self.members is None:
                self._exact.apply(x, d, bl, p, q)
                return
            # Member by member, each on its own rows (a block), in their order.
            per_k = isinstance(bl, torch.Tensor)
            n = x.shape[0] // self.members.K
            for k, part in enumerate(self._exact):
                r = slice(k * n, (k + 1) * n)
                part.apply(x[r], d[r], bl[r] if per_k else bl, p[r], q[r])

    def _pulse_scales(self, x, d, lr):
        """BL (a number, or ``[K]`` with BL management), the per-update scales ``a, b [K]`` of the
        firing probabilities ``p = min(1, a|x|)``, ``q = min(1, b|d|)`` (``a*b = lr/(dw_min*BL)``;
        update management balances them), ``|x|`` and ``|d|`` (workspace tensors, valid until
        the next update of this tile) and the row maxima of ``|x|`` and ``|d|``."""
        cfg = self.config
        dw_min = self.devices.dw_min
        ax = torch.abs(x, out=self._workspace("abs_x", x.shape))
        ad = torch.abs(d, out=self._workspace("abs_d", d.shape))
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
