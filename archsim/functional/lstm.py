"""A character LSTM whose weight matrices live on analog tiles (Gokmen, Rasch & Haensch 2018).

Layer ``l`` (input width ``n``, ``h`` units) is one matrix ``W_l`` of ``4h x (n+h+1)`` fed
``u_t = [x_t; h_{t-1}; 1]`` (the last column is the bias); layer 1 reads one-hot characters. Per
timestep, with the rows of ``W_l`` in torch.nn.LSTM's gate order (i, f, g, o)::

    z_t = W_l u_t                      analog forward MVM (periphery: DAC, noise, ADC, NM/BM)
    i, f, o = sigmoid(z_i, z_f, z_o)   g = tanh(z_g)                            digital
    c_t = f*c_{t-1} + i*g              h_t = o*tanh(c_t)                        digital

The output layer ``V x (h+1)`` maps ``[h_t; 1]`` to logits. BPTT runs backwards through the same
tiles (transposed MVMs); the weights stay fixed during a sequence's forward and backward sweeps and
then each tile applies the ``K = T*B`` rank-one updates ``W <- W - lr * sum_k d_k u_k^T`` it saw
(``u_k`` its inputs, ``d_k`` the errors at its outputs), as pulsed updates on devices.

A matrix larger than the architecture's array is cut by :func:`archsim.mapping.split_matrix` (the
same split the time/energy engine uses); the partial sums of a split input dimension are added
digitally. Torch autograd does the digital BPTT arithmetic; the tiles enter it through
:class:`_TileMVM`, whose forward is the tile's forward MVM and whose backward is its transposed MVM.

Options: dropout (rate ``dropout``) on the non-recurrent connections, i.e. the inputs of layers
2..L and of the output layer, masks drawn from a seeded stream; ``grad_clip`` clips every
element of the error at a tile's outputs to +-grad_clip, for the update and for the transposed
MVM alike (the errors BPTT carries are clipped too). Initial weights are drawn as torch.nn.LSTM
draws them, U(-1/sqrt(h), 1/sqrt(h)), from a seeded stream, and programmed into the tiles, which
clip them to every device's own bounds.

Loss convention: the reported loss is the mean cross-entropy per character (nats/char); the SGD
gradient is that of the loss *summed over the T timesteps and averaged over the B sequences*
(Zaremba et al. 2014), so ``learning_rate`` is per sequence, independent of T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archsim.mapping import TileBlock, split_matrix


class _TileMVM(torch.autograd.Function):
    """``y = W u`` through a :class:`TiledMatrix`; backward is the tiles' transposed MVM.

    ``anchor`` is an empty tensor that requires grad: it keeps this node in the graph even when
    ``u`` does not require grad (the first timestep of layer 1), so the error at the tile's outputs
    is still recorded for the update.
    """

    @staticmethod
    def forward(ctx, u, anchor, matrix):
        ctx.matrix = matrix
        ctx.slot = matrix._record_input(u)
        return matrix.mvm(u)

    @staticmethod
    def backward(ctx, dy):
        matrix = ctx.matrix
        dy = matrix._record_delta(ctx.slot, dy)
        du = matrix.mvm_t(dy) if ctx.needs_input_grad[0] else None
        return du, None, None


class TiledMatrix:
    """One weight matrix on one or more tiles, split exactly as :func:`split_matrix` splits it."""

    def __init__(self, name: str, rows: int, cols: int, config, array_rows: int, array_cols: int,
                 *, generator: torch.Generator, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, grad_clip: float | None = None, tile_cls=None):
        if tile_cls is None:
            from archsim.functional.tile import AnalogTile as tile_cls
        self.name, self.rows, self.cols = name, rows, cols
        self.device, self.dtype = torch.device(device), dtype
        self.grad_clip = grad_clip
        self.blocks: list[TileBlock] = split_matrix(rows, cols, array_rows, array_cols, name)
        self.tiles = [tile_cls(b.rows, b.cols, config, generator=generator, device=device, dtype=dtype)
                      for b in self.blocks]
        self.single = len(self.blocks) == 1
        self._inputs: list[torch.Tensor] = []
        self._deltas: list[torch.Tensor | None] = []

    # -- weights -------------------------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """The whole matrix, assembled from its tiles (a copy)."""
        if self.single:
            return self.tiles[0].weight.detach().clone()
        w = torch.empty(self.rows, self.cols, device=self.device, dtype=self.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            w[b.r0:b.r1, b.c0:b.c1] = tile.weight
        return w

    def set_weights(self, w: torch.Tensor) -> None:
        w = w.to(device=self.device, dtype=self.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            tile.set_weights(w[b.r0:b.r1, b.c0:b.c1].contiguous())

    # -- MVMs ----------------------------------------------------------------------------------
    def mvm(self, u: torch.Tensor) -> torch.Tensor:
        """Forward MVM of a batch ``u`` [N, cols] -> [N, rows]; split inputs summed digitally."""
        if self.single:
            return self.tiles[0].forward(u)
        y = torch.zeros(u.shape[0], self.rows, device=u.device, dtype=u.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            y[:, b.r0:b.r1] += tile.forward(u[:, b.c0:b.c1])
        return y

    def mvm_t(self, d: torch.Tensor) -> torch.Tensor:
        """Transposed MVM of errors ``d`` [N, rows] -> [N, cols]."""
        if self.single:
            return self.tiles[0].backward(d)
        du = torch.zeros(d.shape[0], self.cols, device=d.device, dtype=d.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            du[:, b.c0:b.c1] += tile.backward(d[:, b.r0:b.r1])
        return du

    def __call__(self, u: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Forward MVM inside autograd, recording ``u`` and (in backward) the output errors."""
        return _TileMVM.apply(u, anchor, self)

    # -- recording and update ------------------------------------------------------------------
    def _record_input(self, u: torch.Tensor) -> int:
        self._inputs.append(u.detach())
        self._deltas.append(None)
        return len(self._inputs) - 1

    def _record_delta(self, slot: int, dy: torch.Tensor) -> torch.Tensor:
        if self.grad_clip is not None:
            dy = dy.clamp(-self.grad_clip, self.grad_clip)
        self._deltas[slot] = dy
        return dy

    def reset_records(self) -> None:
        self._inputs.clear()
        self._deltas.clear()

    def apply_update(self, lr: float) -> int:
        """Apply the recorded rank-one updates (in recording order); returns how many."""
        if not self._inputs:
            return 0
        if any(d is None for d in self._deltas):
            raise RuntimeError(f"{self.name}: backward did not reach every recorded MVM")
        x = self._inputs[0] if len(self._inputs) == 1 else torch.cat(self._inputs)
        d = self._deltas[0] if len(self._deltas) == 1 else torch.cat(self._deltas)
        self.reset_records()
        if self.single:
            self.tiles[0].update(x, d, lr)
        else:
            for b, tile in zip(self.blocks, self.tiles):
                tile.update(x[:, b.c0:b.c1], d[:, b.r0:b.r1], lr)
        return x.shape[0]

    def activity(self):
        total = None
        for tile in self.tiles:
            total = tile.activity if total is None else total + tile.activity
        return total


@dataclass
class LSTMShape:
    """Sizes of the network."""

    vocab_size: int
    hidden_size: int
    layers: int

    def lstm_shapes(self) -> list[tuple[int, int]]:
        h, n, out = self.hidden_size, self.vocab_size, []
        for _ in range(self.layers):
            out.append((4 * h, n + h + 1))
            n = h
        return out


class AnalogLSTM:
    """Stacked character LSTM with every matrix on analog tiles (see the module docstring).

    ``config`` is the tile configuration of the LSTM layers (and of the output layer unless
    ``output_config`` is given: the workload's ``output_layer: false`` keeps the output layer in
    floating point by passing an ideal configuration there). ``seed`` seeds three streams:
    initial weights (CPU, so CPU and CUDA start alike), the tiles' device variations and noise,
    and dropout. ``tile_cls`` replaces :class:`AnalogTile` (same constructor and methods).
    """

    def __init__(self, vocab_size: int, hidden_size: int, layers: int, config, *, array_rows: int,
                 array_cols: int, output_config=None, seed: int = 0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, dropout: float = 0.0,
                 grad_clip: float | None = None, init_scale: float | None = None, tile_cls=None):
        self.shape = LSTMShape(vocab_size, hidden_size, layers)
        self.device, self.dtype = torch.device(device), dtype
        self.dropout, self.grad_clip = float(dropout), grad_clip
        # Three independent streams, so that e.g. dropout does not shift the devices' noise.
        self.init_generator = torch.Generator().manual_seed(seed)
        self.tile_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.dropout_generator = torch.Generator(device=self.device).manual_seed(seed + 2)
        kw = dict(generator=self.tile_generator, device=self.device, dtype=dtype,
                  grad_clip=grad_clip, tile_cls=tile_cls)
        self.layers = [TiledMatrix(f"lstm{i + 1}", r, c, config, array_rows, array_cols, **kw)
                       for i, (r, c) in enumerate(self.shape.lstm_shapes())]
        self.output = TiledMatrix("output", vocab_size, hidden_size + 1, output_config or config,
                                  array_rows, array_cols, **kw)
        # torch.nn.LSTM's default initialisation, U(-1/sqrt(h), 1/sqrt(h)), from the seeded stream.
        scale = init_scale if init_scale is not None else 1.0 / math.sqrt(hidden_size)
        for m in self.matrices:
            w = (torch.rand(m.rows, m.cols, generator=self.init_generator, dtype=torch.float64) * 2 - 1) * scale
            m.set_weights(w.to(dtype))
        self._anchor = torch.empty(0, device=self.device, dtype=dtype, requires_grad=True)

    @property
    def matrices(self) -> list[TiledMatrix]:
        return [*self.layers, self.output]

    @property
    def n_tiles(self) -> int:
        return sum(len(m.tiles) for m in self.matrices)

    def zero_state(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        z = torch.zeros(batch_size, self.shape.hidden_size, device=self.device, dtype=self.dtype)
        return [(z, z) for _ in self.layers]

    # -- forward -------------------------------------------------------------------------------
    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.dropout
        mask = torch.rand(x.shape, generator=self.dropout_generator, device=x.device, dtype=x.dtype)
        return x * ((mask < keep).to(x.dtype) / keep)

    def forward(self, ids: torch.Tensor, state, *, train: bool):
        """Logits [T, B, V] of the characters ``ids`` [T, B] and the final state.

        ``train=True`` records every tile's inputs and (during ``backward``) its output errors.
        """
        T, B = ids.shape
        H = self.shape.hidden_size
        ones = torch.ones(B, 1, device=self.device, dtype=self.dtype)
        # Per-timestep inputs as a list: indexing a stacked tensor would make autograd build a
        # full-size zero gradient for every timestep (the costliest op in a profile).
        xs = F.one_hot(ids.to(self.device), self.shape.vocab_size).to(self.dtype).unbind(0)
        new_state = []
        for li, matrix in enumerate(self.layers):
            if train and li > 0 and self.dropout > 0:
                xs = self._dropout(torch.stack(xs)).unbind(0)
            h, c = state[li]
            hs = []
            for x_t in xs:
                u = torch.cat((x_t, h, ones), 1)
                z = matrix(u, self._anchor) if train else matrix.mvm(u)
                i, f, _, o = torch.sigmoid(z).split(H, 1)
                g = torch.tanh(z[:, 2 * H:3 * H])
                c = torch.addcmul(f * c, i, g)
                h = o * torch.tanh(c)
                hs.append(h)
            xs = hs
            new_state.append((h, c))
        x = torch.stack(xs)
        if train and self.dropout > 0:
            x = self._dropout(x)
        top = torch.cat((x.reshape(T * B, H),
                         torch.ones(T * B, 1, device=self.device, dtype=self.dtype)), 1)
        logits = self.output(top, self._anchor) if train else self.output.mvm(top)
        return logits.view(T, B, -1), new_state

    # -- training ------------------------------------------------------------------------------
    def train_step(self, ids: torch.Tensor, targets: torch.Tensor, state, lr: float):
        """One truncated-BPTT step: forward, backward, then every tile's pulsed update.

        Returns ``(mean loss in nats/char, detached final state)``.
        """
        for m in self.matrices:
            m.reset_records()
        T = ids.shape[0]
        logits, new_state = self.forward(ids, state, train=True)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.to(self.device).reshape(-1))
        (loss * T).backward()
        for m in self.matrices:
            m.apply_update(lr)
        return float(loss.detach()), [(h.detach(), c.detach()) for h, c in new_state]

    @torch.no_grad()
    def loss(self, ids: torch.Tensor, targets: torch.Tensor, state):
        """Summed cross-entropy (nats) of ``targets`` given ``ids`` and the next state; no update."""
        logits, new_state = self.forward(ids, state, train=False)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                targets.to(self.device).reshape(-1), reduction="sum")
        return float(total), new_state

    # -- bookkeeping ---------------------------------------------------------------------------
    def activity(self):
        """Summed :class:`TileActivity` of all tiles."""
        total = None
        for m in self.matrices:
            a = m.activity()
            total = a if total is None else total + a
        return total

    def weights(self) -> dict[str, torch.Tensor]:
        return {m.name: m.weight for m in self.matrices}
