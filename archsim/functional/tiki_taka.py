"""The Tiki-Taka family on one tile block: Tiki-Taka v1 (Gokmen & Haensch 2020, "Algorithm for
Training Neural Networks on Resistive Device Arrays", Front. Neurosci. 14:103), TTv2 (Gokmen 2021,
"Enabling Training of Neural Networks on Noisy Hardware", Front. Artif. Intell. 4:699148) and
chopped TTv2 (Rasch et al. 2024, "Fast and robust analog in-memory deep neural network training",
Nat. Commun.): aihwkit's TransferCompound, BufferedTransferCompound and ChoppedTransferCompound
with two devices (IBM/aihwkit src/aihwkit/simulator/configs/compounds.py and
src/rpucuda/rpu_transfer_device.cpp read at commit 1384c5646e0cd9b1aebdcb4604fa28fed07e3c80;
src/rpucuda/rpu_buffered_transfer_device.cpp, BufferedTransferRPUDevice::readAndUpdate, at commit
1df17450f9a0481e1e2a262fd90bad55c9b39a46; src/rpucuda/rpu_chopped_transfer_device.cpp,
ChoppedTransferRPUDevice::readAndUpdate and doDenseUpdate/doSparseUpdate, at commit
06a3c3f96081e9986a300fad3ecb0990d1472cdc).

The block holds two arrays of the same device model: the fast array A takes the pulsed SGD
updates; after every ``transfer_every``-th rank-one update of an update call (one call per
training step: the T x B updates of the block, so the count restarts each step and the step
program of :mod:`archsim.program` places every transfer), ``n_reads_per_transfer`` columns of A,
taken in turn and wrapping around, are read by forward MVMs of one-hot inputs through the
periphery (noise management, DAC, output noise, ADC; no bound-management repeats). What happens to
a read column ``y`` (of column ``j``) depends on the algorithm:

``tiki_taka`` (v1): ``y`` is written onto the same column of the slow array C by one pulsed
rank-one update with ``x = one-hot(j)``, ``d = -y`` and learning rate ``transfer_lr`` (so
``C[:, j] += transfer_lr * y`` in expectation), with the same pulse machinery as the SGD updates.

``tiki_taka_v2`` (TTv2): ``y`` goes through a digital buffer ``H`` (one float per device of the
block, zero at the start, kept by the digital unit), per device ``i`` of the column::

    omega  = H[i, j] + lr_H * y[i]               lr_H = transfer_lr (x gamma when gamma > 0)
    n[i]   = clamp(trunc(omega / thr), -BL, BL)   thr = thres_scale * dw_min
                                                 BL = transfer_desired_bl
    H[i, j] = momentum * omega                  if n[i] != 0 and forget_buffer
            = omega - (1 - momentum) * n[i] * thr   if n[i] != 0 and not forget_buffer
            = omega                             if n[i] == 0

and C's column gets one pulsed rank-one update with ``x = one-hot(j)``, ``d = -n`` and learning
rate ``dw_min`` (aihwkit's ``step`` = 1) under C's own update settings: ``transfer_desired_bl``
pulse slots, update management and BL management off (aihwkit's ``transfer_update`` of
BufferedTransferCompound). With BL = 1 the one-hot line and every line with ``n[i] != 0`` fire
with probability 1: device ``i`` gets exactly one pulse in the direction of ``n[i]``, and only
those devices are written (with BL > 1 the probabilities are ``sqrt(1/BL)`` and
``min(1, |n[i]|/sqrt(BL))``, as aihwkit's pulsed update has them). ``dw_min`` is the device
preset's (aihwkit's weight granularity of C); ``thr``, ``H`` and the learning rates are in
network units (times the tile's ``out_scale``, so that one pulse is ``dw_min`` of the device).
``momentum`` defaults to aihwkit's 0.1 (:attr:`UpdateSpec.buffer_momentum`). aihwkit skips the
write when no device of the column fired; here the update of C is always issued (every step
runs the same program: the schedule prices a fixed transfer update, in which nothing fires).

``chopped_tiki_taka_v2``: TTv2 with an input chopper ``c[j] = +-1`` per column of A (out
choppers and ``auto_scale``/``auto_granularity``/``correct_gradient_magnitudes`` are not
modelled): A's rank-one updates use ``x * c`` (aihwkit flips the coincidences of the column), the
read is ``c[j] * y`` before it enters ``H``, and after each read of column ``j`` its chopper flips
with probability ``in_chop_prob`` (aihwkit's ``in_chop_random``). aihwkit starts every chopper
at -1 (``in_chopper_`` true); here at +1, so that ``in_chop_prob = 0`` is TTv2 bit for bit (on
a device symmetric under a sign change the two starts are the same in distribution). aihwkit's
threshold is ``buffer_granularity`` times A's dw_min: ``thres_scale`` here, A and C sharing one
device model; it needs gamma = 0 (A hidden) and allows one read per transfer, archsim any.

A is not reset after a transfer in any of them.

The network's weight is ``gamma*A + C``. Forward and transposed MVMs read it in one array cycle
through one periphery (aihwkit reads the gamma-weighted weight in one MVM): with ``gamma = 0``
they are C's own MVMs; otherwise a third tile object, the reader, holds ``gamma*A + C`` (refreshed
after every update call) and does the MVMs. Either way one MVM per vector, with one conversion
per line (the schedule prices the cells of both arrays read when ``gamma > 0``).

Random draws: A is made first from the tile's generator, as an SGD tile would be; C's (and the
reader's) device-to-device variations come from a generator seeded from the state of the tile's
generator after A was made (reading it consumes nothing), so that without transfers a Tiki-Taka
network draws exactly what the SGD network does. Every draw after construction (MVM noise, update
noise, chopper flips) comes from the tile's generator.

Counters (:class:`~archsim.functional.activity.TileActivity`): MVMs and their conversions as an
SGD tile counts them; A's SGD updates under ``updates``/``pulse_slots``/...; the transfer reads
under ``transfer_reads`` (their conversions and saturations in ``dac_conversions``,
``adc_conversions``, ``adc_saturations``); C's updates under ``transfer_updates``,
``transfer_pulse_slots`` and ``transfer_coincidences``. Endurance: A's per-device write counts
under ``writes_max``/``writes_p99``, C's under ``transfer_writes_max``/``transfer_writes_p99``
(each array keeps its own :attr:`AnalogTile.device_writes`). TTv2: the values of ``H`` read and
written back, :attr:`TikiTakaTile.buffer_values` (the schedule's ``transfer_buffer`` traffic).
"""
from __future__ import annotations

import dataclasses
import hashlib

import torch

from archsim.functional.activity import TileActivity
from archsim.functional.tile import AnalogTile

#: Counters of C's (transfer) updates, moved out of the SGD update counters.
_UPDATE_FIELDS = ("updates", "pulse_slots", "row_pulses", "col_pulses", "coincidences",
                  "x_line_slots", "d_line_slots", "device_slots", "writes_max", "writes_p99")


def _derived_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator seeded from ``generator``'s current state, without drawing from it."""
    digest = hashlib.sha256(generator.get_state().cpu().numpy().tobytes()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class TikiTakaTile:
    """A tile block trained with Tiki-Taka (v1, v2 or chopped v2, as ``config.algorithm`` says):
    fast array ``fast`` (A), slow array ``slow`` (C), weight ``gamma*A + C``, TTv2's buffer
    ``buffer`` (H) and chopped TTv2's ``chopper``; the constructor and methods of
    :class:`AnalogTile`."""

    def __init__(self, out_size: int, in_size: int, config, *, generator: torch.Generator,
                 device="cpu", dtype=torch.float32):
        self.out_size, self.in_size = int(out_size), int(in_size)
        self.config, self.generator = config, generator
        self.gamma = float(config.gamma)
        self.every, self.n_reads = int(config.transfer_every), int(config.n_reads_per_transfer)
        self.transfer_lr = float(config.transfer_lr)
        self.buffered = config.algorithm in ("tiki_taka_v2", "chopped_tiki_taka_v2")
        self.chopped = config.algorithm == "chopped_tiki_taka_v2"
        slow_config = config
        if self.buffered:   # aihwkit's transfer_update: BL transfer_desired_bl, no UM or BLM
            slow_config = dataclasses.replace(config, desired_bl=config.transfer_desired_bl,
                                              update_management=False, update_bl_management=False)
        kw = dict(device=device, dtype=dtype)
        self.fast = AnalogTile(out_size, in_size, config, generator=generator, **kw)
        own = _derived_generator(generator, self.fast.device)
        self.slow = AnalogTile(out_size, in_size, slow_config, generator=own, **kw)
        self.slow.generator = generator
        self.reader = self.slow
        if self.gamma != 0.0:
            self.reader = AnalogTile(out_size, in_size, config, generator=own, **kw)
            self.reader.generator = generator
        self.device, self.dtype = self.fast.device, dtype
        self._next_col = 0
        self._reads = 0
        self._base = TileActivity()
        self._read_rows = torch.arange(self.n_reads, device=self.device)
        self.buffer = self.chopper = None
        self.buffer_values = 0
        if self.buffered:
            # One pulse of C moves a device by dw_min: dw_min * out_scale in network units.
            unit = float(config.device.dw_min) * float(config.out_scale)
            self.threshold = float(config.thres_scale) * unit
            self._write_lr = unit
            self._h_lr = self.transfer_lr * (self.gamma if self.gamma > 0 else 1.0)
            self.buffer = torch.zeros(out_size, in_size, device=self.device, dtype=dtype)
        if self.chopped:
            self.chopper = torch.ones(in_size, device=self.device, dtype=dtype)

    # ---- state ------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """The reader's weights ``gamma*A + C`` (in place: its views stay valid)."""
        if self.reader is not self.slow:
            torch.add(self.slow.weight, self.fast.weight, alpha=self.gamma, out=self.reader.weight)

    @torch.no_grad()
    def set_weights(self, w: torch.Tensor) -> None:
        """Program C to ``w`` and A to 0 (so ``gamma*A + C = w``, clipped to C's bounds)."""
        self.slow.set_weights(w)
        self.fast.set_weights(torch.zeros_like(w))
        self._refresh()

    def get_weights(self) -> torch.Tensor:
        """The network's weights ``gamma*A + C``."""
        w = self.slow.get_weights()
        return w.add_(self.fast.get_weights(), alpha=self.gamma) if self.gamma else w

    @property
    def activity(self) -> TileActivity:
        c = self.slow.activity
        moved = dataclasses.replace(c, **dict.fromkeys(_UPDATE_FIELDS, 0))
        total = self._base + self.fast.activity + moved
        if self.reader is not self.slow:
            total += self.reader.activity
        total.transfer_reads += self._reads
        total.transfer_updates += c.updates
        total.transfer_pulse_slots += c.pulse_slots
        total.transfer_coincidences += c.coincidences
        total.transfer_writes_max = max(total.transfer_writes_max, c.writes_max)
        total.transfer_writes_p99 = max(total.transfer_writes_p99, c.writes_p99)
        return total

    @activity.setter
    def activity(self, value: TileActivity) -> None:
        # Counters only: the arrays' per-device write counts stay (restoring counters after an
        # evaluation, or with load_state_dict, must not forget the devices' wear).
        for t in self._arrays():
            t.activity = TileActivity()
        self._reads = 0
        self.buffer_values = 0
        self._base = value

    def _arrays(self):
        return {id(t): t for t in (self.fast, self.slow, self.reader)}.values()

    def reset_writes(self) -> None:
        """Forget the per-device write counts of A and C (as :meth:`AnalogTile.reset_writes`)."""
        for t in self._arrays():
            t.reset_writes()

    reset_activity = AnalogTile.reset_activity   # through the property and setter above

    def state_dict(self) -> dict:
        state = {"fast": self.fast.state_dict(), "slow": self.slow.state_dict(),
                 "next_col": self._next_col, "activity": self.activity.to_dict()}
        for name in ("buffer", "chopper"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.fast.load_state_dict(state["fast"])
        self.slow.load_state_dict(state["slow"])
        self._next_col = int(state["next_col"])
        self.activity = TileActivity(**state.get("activity", {}))
        for name in ("buffer", "chopper"):
            if getattr(self, name) is not None and name in state:
                getattr(self, name).copy_(state[name])
        self._refresh()

    # ---- MVMs of the network's weight ---------------------------------------------------------
    def forward(self, x, out=None):
        return self.reader.forward(x, out)

    def backward(self, d, out=None, cols=None):
        return self.reader.backward(d, out, cols)

    def prepare_forward(self, *args, **kwargs):
        return self.reader.prepare_forward(*args, **kwargs)

    def forward_prepared(self, prepared, step, u):
        return self.reader.forward_prepared(prepared, step, u)

    # ---- update and transfers -----------------------------------------------------------------
    @torch.no_grad()
    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float, onehot=None) -> None:
        """The rank-one updates ``x [K, in]``, ``d [K, out]`` on A in order, with a transfer after
        every ``transfer_every``-th of them (counted from the start of this call)."""
        K, n = x.shape[0], self.every
        if self.chopped:        # A's updates of column j carry its chopper's sign
            onehot = None
        if K < n:
            self._update_fast(x, d, lr, onehot)
        else:
            for k0 in range(0, K, n):
                k1 = min(K, k0 + n)
                hot = None if onehot is None else (onehot[0], onehot[1].reshape(-1)[k0:k1])
                self._update_fast(x[k0:k1], d[k0:k1], lr, hot)
                if k1 - k0 == n:
                    self.transfer()
        self._refresh()

    def _update_fast(self, x, d, lr, onehot) -> None:
        if self.chopped:
            x = x * self.chopper.to(x.device)
        self.fast.update(x, d, lr, onehot=onehot)

    @torch.no_grad()
    def transfer(self) -> None:
        """Read the next ``n_reads_per_transfer`` columns of A and pulse them onto C (TTv2:
        through the buffer H)."""
        cols = (self._next_col + self._read_rows) % self.in_size
        self._next_col = (self._next_col + self.n_reads) % self.in_size
        e = torch.zeros(self.n_reads, self.in_size, device=self.device, dtype=self.dtype)
        e[self._read_rows, cols] = 1.0
        y = self.fast.read(e)
        self._reads += self.n_reads
        if not self.buffered:
            self.slow.update(e, y.neg_(), self.transfer_lr)
            return
        # Reads of one column twice in a transfer (more reads than columns) go through H one
        # after the other, in runs of distinct columns.
        for k0 in range(0, self.n_reads, self.in_size):
            k1 = min(self.n_reads, k0 + self.in_size)
            self._through_buffer(e[k0:k1], y[k0:k1], cols[k0:k1])

    def _through_buffer(self, e: torch.Tensor, y: torch.Tensor, cols: torch.Tensor) -> None:
        """TTv2 (see the module docstring): reads ``y [n, out]`` of the distinct columns ``cols``
        into H, the pulse counts where |H| reached the threshold onto C, H reduced."""
        cfg = self.config
        if self.chopped:
            y = y * self.chopper[cols].unsqueeze(1)
        omega = self.buffer[:, cols].t().add_(y, alpha=self._h_lr)      # a copy of H's columns
        bl = float(cfg.transfer_desired_bl)
        steps = torch.trunc(omega / self.threshold).clamp_(-bl, bl)
        if cfg.forget_buffer:
            omega = torch.where(steps != 0, omega * cfg.momentum, omega)
        else:
            omega.sub_(steps * ((1.0 - cfg.momentum) * self.threshold))
        self.buffer[:, cols] = omega.t()
        self.buffer_values += omega.numel()
        self.slow.update(e, steps.neg_(), self._write_lr)
        if self.chopped and cfg.in_chop_prob > 0:
            flip = torch.rand(cols.numel(), generator=self.generator, device=self.device,
                              dtype=self.dtype) < cfg.in_chop_prob
            self.chopper[cols] = torch.where(flip, -self.chopper[cols], self.chopper[cols])
