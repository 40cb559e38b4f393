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

What runs is the step program of :mod:`archsim.program`, the one the time/energy schedule times:
the matrices and their tile blocks come from its mapping (a split input dimension's partial sums
are added digitally), and :meth:`AnalogLSTM.train_step` walks its sweeps: every forward sweep (an
LSTM layer over the timesteps, the input share of all its MVMs computed at once where the program
says which inputs the sweep itself produces; the output layer as one batched MVM), every backward
sweep (the transposed MVMs it lists, so the first layer's skipped one at t = 0 is skipped here
too) and every update sweep (the T x B rank-one updates of a matrix). This module holds the LSTM's
numerics (gates, BPTT derivatives) and the torch kernels, not a list of ops of its own.

BPTT is written out (no autograd): the digital gate derivatives are computed from the stored
activations, and the errors travel through the tiles' transposed MVMs; activations and errors
live in buffers reused from step to step. With ``bptt_state="recompute"`` (the architecture's
``system.bptt_state``) the program has a recompute sweep before each LSTM layer's backward sweep:
the gates and tanh(c_t) that BPTT reads are computed again from the kept inputs and cell states
by a second, independently noisy forward MVM of every timestep on the same tiles, as hardware
that keeps only h_t and c_t would.

Options: dropout (rate ``dropout``) on the non-recurrent connections, i.e. the inputs of layers
2..L and of the output layer, masks drawn from a seeded stream; ``grad_clip`` clips every
element of the error at a tile's outputs to +-grad_clip, for the update and for the transposed
MVM alike (the errors BPTT carries are clipped too). Initial weights are drawn as torch.nn.LSTM
draws them, U(-1/sqrt(h), 1/sqrt(h)), from a seeded stream, and programmed into the tiles, which
clip them to every device's own bounds. With weight mapping (``RPUConfig.weight_scaling_omega``,
the architecture's ``periphery.weight_scaling_omega``) each tile block is programmed with its
initial weights divided by a digital output gain chosen from them (:func:`weight_mapping_scales`).

Loss convention: the reported loss is the mean cross-entropy per character (nats/char); the SGD
gradient is that of the loss *summed over the T timesteps and averaged over the B sequences*
(Zaremba et al. 2014), so ``learning_rate`` is per sequence, independent of T.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math

import torch
import torch.nn.functional as F

from archsim.functional.members import Members
from archsim.mapping import MatrixMapping, TileBlock
from archsim.program import NetworkShape, StepProgram, Sweep, Transfer, build_program, map_network

#: Op kinds of the step program this simulator has kernels for (the transfer kinds only on
#: Tiki-Taka matrices, whose tiles run them inside their updates).
KERNEL_KINDS = frozenset({"forward_mvm", "backward_mvm", "rank_one_update", "recompute_mvm"})
TRANSFER_KINDS = frozenset({"transfer_read", "transfer_update"})


def population_seed(seeds) -> int:
    """The seed of a population's shared streams (noise, dropout): a hash of its members' seeds,
    so that it replays none of a member's own streams."""
    digest = hashlib.sha256(("population:" + ",".join(str(int(s)) for s in seeds)).encode()).digest()
    return int.from_bytes(digest[:6], "big")


def weight_mapping_scales(w: torch.Tensor, blocks, omega: float, device_spec) -> list[float]:
    """The digital output gain of each tile block under weight mapping with ``omega``:
    ``alpha_b = max|w_b| / (omega * w_range)``, ``w_range = min(w_max, -w_min)`` of the device's
    nominal bounds (1 for an all-zero block), so that ``w_b / alpha_b`` puts the block's largest
    weight at ``omega`` of the device range.

    aihwkit's layer-wise weight scaling, per physical tile as its ``TileModuleArray.set_weights``
    scales each tile of a split layer on its own (IBM/aihwkit
    src/aihwkit/simulator/tiles/periphery.py ``apply_weight_scaling``, commit 1f51fa2c;
    src/aihwkit/simulator/tiles/array.py, commit 067a8a0b), with omega as a fraction of the range
    where aihwkit's is an absolute device weight (``alpha = max|W| / omega``).
    """
    if not 0 < omega <= 1e3:
        raise ValueError(f"weight_scaling_omega must be in (0, 1000], got {omega!r}")
    w_range = min(float(device_spec.w_max), -float(device_spec.w_min))
    scales = []
    for b in blocks:
        m = float(w[b.r0:b.r1, b.c0:b.c1].abs().max()) if b.rows and b.cols else 0.0
        scales.append(m / (omega * w_range) if m > 0 else 1.0)
    return scales


class TiledMatrix:
    """One weight matrix on the tile blocks the mapping gives it (one tile per block).

    ``init_weight`` (optional): the initial weights, programmed into the tiles. With weight
    mapping (``config.weight_scaling_omega > 0`` on a non-ideal device) it also chooses each
    block's digital output gain (:func:`weight_mapping_scales`, kept in ``mapping_scales``): the
    block's tile gets its own copy of ``config`` with ``out_scale`` set to that gain, so the tile
    programs ``w / out_scale``, multiplies every forward and transposed MVM output by it and
    pulses its devices with ``lr / out_scale`` (:class:`AnalogTile`). Per tile block rather than
    per matrix, as aihwkit does for a layer split over tiles: the gain sits behind each tile's own
    ADCs and a split input dimension's partial sums are added after it, so the blocks need not
    share one.
    """

    def __init__(self, mapped: MatrixMapping, config, *, generator: torch.Generator,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 tile_cls=None, init_weight: torch.Tensor | None = None, members=None,
                 member_generators=None, member_devices=None, member_configs=None):
        if members is not None and (getattr(config, "tiki_taka", False) or tile_cls is not None):
            raise ValueError("a population runs on plain analog tiles (no Tiki-Taka, no other tile class)")
        if tile_cls is None and getattr(config, "tiki_taka", False):
            from archsim.functional.tiki_taka import TikiTakaTile as tile_cls
        elif tile_cls is None:
            from archsim.functional.tile import AnalogTile as tile_cls
        self.name, self.rows, self.cols = mapped.name, mapped.rows, mapped.cols
        self.device, self.dtype = torch.device(device), dtype
        self.blocks: list[TileBlock] = list(mapped.blocks)
        self.members = members
        #: The weights' shape: ``(rows, cols)``, or ``(K, rows, cols)`` for a population.
        self.shape = (self.rows, self.cols) if members is None else (members.K, self.rows, self.cols)
        if init_weight is not None and tuple(init_weight.shape) != self.shape:
            raise ValueError(f"{self.name}: initial weights {tuple(init_weight.shape)}, matrix "
                             f"{self.shape}")
        configs = [config] * len(self.blocks)
        #: Per block, the digital output gain chosen by weight mapping (None: no mapping).
        self.mapping_scales: list[float] | None = None
        omega = float(getattr(config, "weight_scaling_omega", 0.0) or 0.0)
        if omega > 0 and not config.is_ideal:
            if members is not None:
                raise ValueError("weight mapping chooses one output gain per tile from its initial "
                                 "weights: a population's members would each need their own")
            if init_weight is None:
                raise ValueError(f"{self.name}: weight mapping needs the initial weights")
            if config.out_scale != 1.0:
                raise ValueError("weight_scaling_omega chooses each tile's output gain itself: "
                                 f"out_scale must be 1 with it (got {config.out_scale})")
            self.mapping_scales = weight_mapping_scales(init_weight, self.blocks, omega,
                                                        config.device)
            configs = [dataclasses.replace(config, out_scale=a) for a in self.mapping_scales]
        extra = {} if members is None else dict(members=members, member_generators=member_generators,
                                                member_devices=member_devices)
        if member_configs is not None:
            extra.update(member_devices=None, member_configs=member_configs)
        self.tiles = [tile_cls(b.rows, b.cols, c, generator=generator, device=device, dtype=dtype,
                               **extra) for b, c in zip(self.blocks, configs)]
        self.single = len(self.blocks) == 1
        self.recorded: tuple[torch.Tensor, torch.Tensor] | None = None
        self._onehot = None
        if init_weight is not None:
            self.set_weights(init_weight)

    # -- weights -------------------------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """The whole matrix, assembled from its tiles (a copy; ``[K, rows, cols]`` for a population)."""
        if self.single:
            return self.tiles[0].get_weights()
        w = torch.empty(self.shape, device=self.device, dtype=self.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            w[..., b.r0:b.r1, b.c0:b.c1] = tile.get_weights()
        return w

    def set_weights(self, w: torch.Tensor) -> None:
        w = w.to(device=self.device, dtype=self.dtype)
        for b, tile in zip(self.blocks, self.tiles):
            tile.set_weights(w[..., b.r0:b.r1, b.c0:b.c1].contiguous())

    # -- MVMs ----------------------------------------------------------------------------------
    def mvm(self, u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Forward MVM of a batch ``u`` [N, cols] -> [N, rows] (into ``out`` if given); the partial
        sums of a split input dimension are added digitally."""
        if self.single:
            return self.tiles[0].forward(u, out)
        y = out.zero_() if out is not None else u.new_zeros(u.shape[0], self.rows)
        for b, tile in zip(self.blocks, self.tiles):
            y[:, b.r0:b.r1] += tile.forward(u[:, b.c0:b.c1])
        return y

    def mvm_t(self, d: torch.Tensor, out: torch.Tensor | None = None,
              cols: slice | None = None) -> torch.Tensor:
        """Transposed MVM of errors ``d`` [N, rows] -> [N, cols] (into ``out`` if given);
        ``cols``: only those outputs (see :meth:`AnalogTile.backward`)."""
        if self.single:
            return self.tiles[0].backward(d, out, cols)
        du = d.new_zeros(d.shape[0], self.cols)
        for b, tile in zip(self.blocks, self.tiles):
            du[:, b.c0:b.c1] += tile.backward(d[:, b.r0:b.r1])
        if cols is not None:
            du = du[:, cols]
        return du if out is None else out.copy_(du)

    def prepare_forward(self, u: torch.Tensor, rec: slice, rec_bound: float, step_rows: int,
                        onehot=None, post_scale=None):
        """:meth:`AnalogTile.prepare_forward` for a matrix on one tile; None when it is split
        (the caller then runs full MVMs with :meth:`mvm`)."""
        if not self.single:
            return None
        return self.tiles[0].prepare_forward(u, rec, rec_bound, step_rows, onehot, post_scale)

    def forward_prepared(self, prepared, step: int, u: torch.Tensor) -> torch.Tensor:
        return self.tiles[0].forward_prepared(prepared, step, u)

    # -- recording and update ------------------------------------------------------------------
    def record(self, x: torch.Tensor, d: torch.Tensor, onehot=None) -> None:
        """The ``K`` rank-one updates of the next :meth:`apply_update`: inputs ``x [K, cols]`` and
        output errors ``d [K, rows]``, in the order the MVMs ran (kept by reference).
        ``onehot = (s, index)``: the first ``s`` input columns are one-hot at ``index [K]``
        (see :meth:`AnalogTile.update`)."""
        self.recorded = (x, d)
        self._onehot = onehot

    def reset_records(self) -> None:
        self.recorded = None

    def apply_update(self, lr: float) -> int:
        """Apply the recorded rank-one updates (in recording order); returns how many."""
        if self.recorded is None:
            return 0
        x, d = self.recorded
        self.recorded = None
        if self.single:
            self.tiles[0].update(x, d, lr, onehot=self._onehot)
        else:
            for b, tile in zip(self.blocks, self.tiles):
                tile.update(x[:, b.c0:b.c1], d[:, b.r0:b.r1], lr)
        return x.shape[0]

    def activity(self):
        total = None
        for tile in self.tiles:
            total = tile.activity if total is None else total + tile.activity
        return total


class AnalogLSTM:
    """Stacked character LSTM with every matrix on analog tiles (see the module docstring).

    ``config`` is the tile configuration of the LSTM layers (and of the output layer unless
    ``output_config`` is given: the workload's ``output_layer: false`` keeps the output layer in
    floating point by passing an ideal configuration there). ``seed`` seeds three streams:
    initial weights (CPU, so CPU and CUDA start alike), the tiles' device variations and noise,
    and dropout. ``tile_cls`` replaces :class:`AnalogTile` (same constructor and methods).

    ``seeds`` (two or more): a population of ``K = len(seeds)`` independent networks trained as
    one batched computation on the same data (:mod:`archsim.functional.members`). Member ``k``'s
    initial weights and device variations are those of a one-member network with ``seed =
    seeds[k]``; the per-op draws (noise, rounding, update, dropout) come from population streams
    seeded from all the seeds. The methods then take and give ``K*B`` rows ordered (member,
    sequence): :meth:`zero_state` makes them, :meth:`train_step` and :meth:`loss` return one
    value per member, :meth:`weights` gives ``[K, rows, cols]``; ``seed`` is ignored.
    ``member_devices`` (one device spec per member; default ``config.device``) lets the members'
    devices differ in what is drawn per device (:class:`AnalogTile`), on the LSTM layers and on
    an analog output layer alike. ``member_configs`` (one :class:`RPUConfig` per member, instead
    of ``member_devices``) lets them differ in their periphery's converters too (the fields of
    :data:`~archsim.functional.config.MEMBER_PERIPHERY_FIELDS`); a floating-point
    ``output_config`` stays the same for all.
    """

    def __init__(self, vocab_size: int, hidden_size: int, layers: int, config, *, array_rows: int,
                 array_cols: int, output_config=None, seed: int = 0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, dropout: float = 0.0,
                 grad_clip: float | None = None, init_scale: float | dict | None = None, tile_cls=None,
                 bptt_state: str = "store", seeds=None, member_devices=None, member_configs=None):
        self.shape = NetworkShape(vocab_size, hidden_size, layers)
        if seeds is not None and len(seeds) == 1:
            seed, seeds = int(seeds[0]), None      # a population of one is one network
        self.seeds = [int(s) for s in seeds] if seeds is not None else None
        self.members = Members(len(self.seeds)) if self.seeds else None
        #: Population: 1 for a member still training, 0 for one retired (:meth:`retire`).
        self.alive = None if self.members is None else [1] * self.members.K
        self.bptt_state = bptt_state
        # The functional network always has its output layer (in floating point when the
        # workload does not map it: an ideal ``output_config``).
        self.mapping = map_network(self.shape, array_rows, array_cols)
        # Tiki-Taka (the tiles' configuration says): two arrays per block, transfers in the program.
        configs = {m.name: (output_config or config) if m.kind == "output" else config
                   for m in self.mapping.matrices}
        self._transfer, self._transfer_algorithm = None, "tiki_taka"
        for m in self.mapping.matrices:
            if configs[m.name].tiki_taka:
                m.arrays = 2
                c = configs[m.name]
                settings = (c.transfer_every, c.n_reads_per_transfer)
                if self._transfer not in (None, settings):
                    raise ValueError("the Tiki-Taka matrices of one network share their transfer settings")
                self._transfer, self._transfer_algorithm = settings, c.algorithm
        self.device, self.dtype = torch.device(device), dtype
        if self.device.type == "cpu":
            # Subnormal floats (below 1.2e-38 in float32: saturated gates, vanished errors) make
            # x86 arithmetic many times slower and carry nothing a converter could resolve;
            # flush them to zero (the calling thread and the threads it starts after this: one
            # torch thread, the default at small sizes, is all; benchmarks/denormals.py measures it).
            torch.set_flush_denormal(True)
        self.dropout, self.grad_clip = float(dropout), grad_clip
        # Three independent streams, so that e.g. dropout does not shift the devices' noise.
        member_seeds = self.seeds or [seed]
        if self.members is not None:
            seed = population_seed(self.seeds)
        self.init_generator = torch.Generator().manual_seed(seed)
        self.tile_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.dropout_generator = torch.Generator(device=self.device).manual_seed(seed + 2)
        kw = dict(generator=self.tile_generator, device=self.device, dtype=dtype, tile_cls=tile_cls)
        if self.members is not None:
            # Each member's device variations from its own stream, as its one-member network's.
            kw.update(members=self.members, member_devices=member_devices, member_generators=[
                torch.Generator(device=self.device).manual_seed(s + 1) for s in self.seeds])
        elif member_devices is not None or member_configs is not None:
            raise ValueError("member_devices and member_configs need a population (two or more seeds)")
        if member_configs is not None and len(member_configs) != self.members.K:
            raise ValueError(f"{len(member_configs)} member configurations for {self.members.K} seeds")
        mapped = {m.name: m for m in self.mapping.matrices}
        # torch.nn.LSTM's default initialisation, U(-1/sqrt(h), 1/sqrt(h)), from the seeded stream
        # (drawn before the tiles are made: weight mapping chooses their output gains from it).
        # init_scale: one range for every matrix, or {matrix name: range} (others the default).
        default = 1.0 / math.sqrt(hidden_size)
        scales = (dict.fromkeys(mapped, init_scale if init_scale is not None else default)
                  if not isinstance(init_scale, dict) else {n: init_scale.get(n, default) for n in mapped})
        init = {}
        inits = ([self.init_generator] if self.members is None else
                 [torch.Generator().manual_seed(s) for s in member_seeds])
        for name in [*(f"lstm{i + 1}" for i in range(layers)), "output"]:
            m = mapped[name]
            u = torch.stack([torch.rand(m.rows, m.cols, generator=g, dtype=torch.float64)
                             for g in inits])
            init[name] = ((u * 2 - 1) * scales[name]).to(dtype)
            if self.members is None:
                init[name] = init[name][0]
        layer_kw = kw if member_configs is None else dict(kw, member_configs=member_configs)
        self.layers = [TiledMatrix(mapped[f"lstm{i + 1}"], config, init_weight=init[f"lstm{i + 1}"],
                                   **layer_kw) for i in range(layers)]
        self.output = TiledMatrix(mapped["output"], output_config or config,
                                  init_weight=init["output"],
                                  **(layer_kw if output_config is None else kw))
        self._by_name = {m.name: m for m in self.matrices}
        self._kinds = {m.name: m.kind for m in self.mapping.matrices}
        self._tiki_taka = {m.name: m.tiki_taka for m in self.mapping.matrices}
        self._programs: dict[int, StepProgram] = {}
        self._sweep_cache: dict[tuple, tuple] = {}
        self._buffers: dict[str, torch.Tensor] = {}
        self._views: dict[tuple, list] = {}
        self._c = {v: torch.tensor(v, device=self.device, dtype=dtype) for v in (-1.0, 2.0)}
        # 2 on the g-gate rows, 1 elsewhere: tanh(z) = 2*sigmoid(2z) - 1 (one sigmoid for all gates)
        H = hidden_size
        self._g_doubled = torch.ones(4 * H, device=self.device, dtype=dtype)
        self._g_doubled[2 * H:3 * H] = 2.0
        self._masks: list[torch.Tensor] = []
        self._pending_backward: tuple[int, int] | None = None

    @property
    def matrices(self) -> list[TiledMatrix]:
        return [*self.layers, self.output]

    @property
    def n_tiles(self) -> int:
        return sum(len(m.tiles) for m in self.matrices)

    # -- the step program ------------------------------------------------------------------------
    def program(self, seq_len: int, batch: int | None = None) -> StepProgram:
        """The step program of a sequence of ``seq_len`` characters (built once per length; with
        Tiki-Taka once per length and ``batch``, which places the transfers)."""
        key = (seq_len, batch if self._transfer else None)
        prog = self._programs.get(key)
        if prog is None:
            transfer = None
            if self._transfer:
                if batch is None:
                    raise ValueError("a Tiki-Taka network's program needs the batch size")
                transfer = Transfer(*self._transfer, batch, self._transfer_algorithm)
            prog = build_program(self.mapping, self.shape.hidden_size, seq_len, self.bptt_state,
                                 transfer)
            self.use_program(prog)
        return prog

    def use_program(self, program: StepProgram) -> None:
        """Run ``program`` for sequences of its length (e.g. a variant built elsewhere), after
        checking that this simulator has a kernel for each of its sweeps."""
        T, H = program.seq_len, self.shape.hidden_size
        kernels = KERNEL_KINDS | (TRANSFER_KINDS if self._transfer else frozenset())
        unknown = program.kinds() - kernels
        if unknown:
            raise NotImplementedError(f"the functional simulator has no kernel for {sorted(unknown)}")
        names = [m.name for m in self.matrices]
        for m in program.matrices:
            if m.name not in self._by_name or list(m.blocks) != self._by_name[m.name].blocks:
                raise ValueError(f"the program's matrix {m.name} is not this network's ({names})")
        lstm = [f"lstm{i + 1}" for i in range(len(self.layers))]
        expected = {"forward": [*lstm, "output"], "backward": ["output", *reversed(lstm)],
                    "update": names}
        recompute = [s for s in program.sweeps if s.recompute]
        if sorted(s.matrix for s in recompute) != (sorted(lstm) if program.bptt_state == "recompute" else []):
            raise ValueError(f"recompute sweeps {[s.matrix for s in recompute]} do not match "
                             f"bptt_state {program.bptt_state!r} (every LSTM layer or none)")
        for s in recompute:
            if s.sequential or sorted(s.timesteps) != list(range(T)):
                raise NotImplementedError(f"no kernel for the recompute sweep of {s.matrix}")
        for phase, order in expected.items():
            sweeps = [s for s in program.phase_sweeps(phase) if not s.recompute]
            if [s.matrix for s in sweeps] != order:
                raise ValueError(f"{phase} sweeps {[s.matrix for s in sweeps]}: the simulator's "
                                 f"buffers run {order}")
            for s in sweeps:
                self._check_sweep(s, T, H)
        self._check_transfers(program)
        batch = program.transfer.batch if program.transfer and self._transfer else None
        self._programs[(T, batch)] = program

    def _check_transfers(self, program: StepProgram) -> None:
        """Transfer ops only in the update sweeps of Tiki-Taka matrices, exactly where their tiles
        transfer: after every ``transfer_every``-th rank-one update of the step (per update op,
        ``Transfer.per_op`` transfers of ``n_reads_per_transfer`` columns each)."""
        for sweep in program.sweeps:
            ops = [op for op in sweep.ops if op.kind in TRANSFER_KINDS]
            tt = self._tiki_taka[sweep.matrix]
            if ops and (sweep.phase != "update" or not tt):
                raise NotImplementedError(f"no kernel for {ops[0].kind!r} ops in the {sweep.phase} "
                                          f"sweep of {sweep.matrix}")
            if not tt or sweep.phase != "update":
                continue
            tr = program.transfer
            if tr is None or (tr.every, tr.n_reads) != self._transfer:
                raise ValueError(f"the program's transfer settings {tr} are not the tiles' {self._transfer}")
            for kind in TRANSFER_KINDS:
                got = {}
                for op in ops:
                    if op.kind == kind:
                        got[op.t] = got.get(op.t, 0) + op.vectors
                want = {t: tr.per_op(t) * tr.n_reads for t in range(program.seq_len) if tr.per_op(t)}
                if got != want:
                    raise NotImplementedError(f"{sweep.matrix}: {kind} ops {got} are not where its "
                                              f"tiles transfer {want}")

    def _check_sweep(self, sweep: Sweep, T: int, H: int) -> None:
        """The kernels' layout: an LSTM layer runs its timesteps one after another (forward in time
        order, reading h_{t-1} from inside the sweep); everything else runs batched over all T."""
        is_lstm = self._kinds[sweep.matrix] == "lstm"
        # An update sweep's transfer ops run inside its tiles' updates (:meth:`_check_transfers`);
        # they make the sweep sequential (a transfer update needs its read).
        steps = tuple(op.t for op in sweep.ops if op.kind not in TRANSFER_KINDS)
        transfers = len(steps) < len(sweep.ops)
        if sweep.sequential and not (transfers and sweep.phase == "update"):
            order = range(T) if sweep.phase == "forward" else reversed(range(T))
            ok = steps == tuple(order)
        else:            # batched over the sequence: every timestep once, in any order
            ok = sorted(steps) == list(range(T))
        ok = ok and (sweep.sequential == (is_lstm and sweep.phase != "update")
                     or transfers and sweep.phase == "update")
        if is_lstm and sweep.phase == "forward":
            n = self._by_name[sweep.matrix].cols - H - 1
            ok = ok and sweep.streamed_cols == slice(n, n + H)
        if not (sweep.sequential and sweep.phase == "backward"):
            # batched sweeps and forward sweeps run every op's MVM (no op may skip it)
            ok = ok and all(op.kind is not None for op in sweep.ops)
        if not ok:
            raise NotImplementedError(f"no kernel for the {sweep.phase} sweep of {sweep.matrix} "
                                      f"(timesteps {sweep.timesteps}, sequential {sweep.sequential})")

    @property
    def K(self) -> int:
        """Members of the population (1: one network)."""
        return 1 if self.members is None else self.members.K

    def zero_state(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The zero state of ``batch_size`` sequences (per member: ``K*batch_size`` rows)."""
        z = torch.zeros(self.K * batch_size, self.shape.hidden_size, device=self.device,
                        dtype=self.dtype)
        return [(z, z) for _ in self.layers]

    @torch.no_grad()
    def retire(self, k: int, state=None):
        """Stop training member ``k`` of a population (it diverged): its weights become 0, so
        that its outputs stay finite, and it gets no further updates; the others go on (their
        numbers equal those of a population without it where nothing is random; with noise they
        differ in draws only, the shared streams being consumed alike). ``state``: a state whose
        member-``k`` rows are zeroed too (returned)."""
        if self.members is None:
            raise ValueError("retire() is for a population's members")
        self.alive[k] = 0
        for m in self.matrices:
            for tile in m.tiles:
                tile.weight3[k].zero_()
                # The step that diverged may have written NaN counts onto its devices: those
                # counts become 0 (the member is stopped; its finite counts stay).
                writes = tile.device_writes
                if writes is not None:
                    writes.view(self.K, -1, writes.shape[-1])[k].nan_to_num_(nan=0.0, posinf=0.0,
                                                                            neginf=0.0)
        if state is None:
            return None
        K, out = self.K, []
        for h, c in state:
            h, c = h.clone(), c.clone()
            h.view(K, -1, h.shape[-1])[k].zero_()
            c.view(K, -1, c.shape[-1])[k].zero_()
            out.append((h, c))
        return out

    def _buffer(self, name: str, shape, ones_last: bool = False) -> torch.Tensor:
        """A tensor kept between steps (reallocated when the shape changes). A training step's
        activations are large; allocating them afresh every step costs page faults, and the
        step writes every element it later reads. ``ones_last``: the last column holds 1 (the
        bias input), written once at allocation and never overwritten."""
        shape = tuple(shape)
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, device=self.device, dtype=self.dtype)
            if ones_last:
                buf[..., -1] = 1.0
            self._buffers[name] = buf
        return buf

    def _cached_views(self, key, buffers, make) -> list:
        """Per-timestep views, made once per set of buffers: making a dozen views per timestep
        costs as much as the arithmetic at small sizes. Rebuilt when a buffer was reallocated."""
        ptrs = tuple(b.data_ptr() for b in buffers)
        hit = self._views.get(key)
        if hit is None or hit[0] != ptrs:
            hit = (ptrs, make())
            self._views[key] = hit
        return hit[1]

    # -- forward -------------------------------------------------------------------------------
    def _dropout_mask(self, shape) -> torch.Tensor:
        keep = 1.0 - self.dropout
        mask = torch.rand(shape, generator=self.dropout_generator, device=self.device, dtype=self.dtype)
        return (mask < keep).to(self.dtype).div_(keep)

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, state, *, train: bool):
        """Logits [T, B, V] of the characters ``ids`` [T, B] and the final state.

        ``train=True`` applies dropout and keeps what :meth:`backward` needs (every tile's inputs
        and the gate activations), in buffers reused by the next training forward.
        """
        if self.members is not None:
            # Every member reads the same sequences: rows (member, sequence).
            self.members.set_batch(ids.shape[1])
            ids = ids.repeat(1, self.K)
        T, B = ids.shape
        H, V = self.shape.hidden_size, self.shape.vocab_size
        tag = "train" if train else "eval"
        self._masks = []
        n, u_below = V, None
        new_state = []
        sweeps = self.program(T, B).phase_sweeps("forward")
        for li, sweep in enumerate(sweeps[:-1]):       # the LSTM layers, bottom to top
            matrix = self._by_name[sweep.matrix]
            # u[t] = [x_t; h_{t-1}; 1] for t < T; u[T] holds h_{T-1} (the layer's last output).
            u = self._buffer(f"{tag}.u{li}", (T + 1, B, n + H + 1), ones_last=True)
            # The cell state is kept doubled (2c): tanh(c) = 2*sigmoid(2c) - 1 then costs one
            # sigmoid, which torch computes several times faster than tanh on a CPU.
            c2 = self._buffer(f"{tag}.c{li}", (T + 1, B, H))
            gates = self._buffer(f"{tag}.gates{li}", (T, B, 4 * H))
            tanh_c = self._buffer(f"{tag}.tanh_c{li}", (T, B, H))
            z = self._buffer(f"{tag}.z", (B, 4 * H))
            x = u[:T, :, :n]
            if li == 0:
                self._ids = ids.to(self.device)
                x.zero_().scatter_(2, self._ids.unsqueeze(2), 1.0)   # one-hot characters
            elif train and self.dropout > 0:
                mask = self._dropout_mask((T, B, H))
                self._masks.append(mask)
                torch.mul(u_below, mask, out=x)
            else:
                x.copy_(u_below)
            h0, c0 = state[li]
            u[0, :, n:n + H].copy_(h0)
            torch.mul(c0, self._c[2.0], out=c2[0])
            # Everything but h_{t-1} is known before the sweep: its share of all T MVMs (and
            # their output noise) is computed at once; |h| <= 1 = the bias input.
            prepared = matrix.prepare_forward(
                u[:T].view(T * B, -1), sweep.streamed_cols, 1.0, B, post_scale=self._g_doubled,
                onehot=(V, self._ids.view(-1)) if li == 0 else None)
            self._sweep(matrix, z, self._forward_views(tag, li, u, n, c2, gates, tanh_c, z),
                        prepared, sweep)
            u_below = u[1:, :, n:n + H]
            new_state.append((u[T, :, n:n + H].clone(), c2[T] * 0.5))
            n = H
        top = self._buffer(f"{tag}.top", (T, B, H + 1), ones_last=True)
        if train and self.dropout > 0:
            mask = self._dropout_mask((T, B, H))
            self._masks.append(mask)
            torch.mul(u_below, mask, out=top[:, :, :H])
        else:
            top[:, :, :H].copy_(u_below)
        # The output layer's ops depend on each other only through its tile: one batched MVM.
        logits = self._by_name[sweeps[-1].matrix].mvm(top.view(T * B, H + 1))
        self._pending_backward = (T, B) if train else None
        return logits.view(T, B, V), new_state

    def _forward_views(self, tag, li, u, n, c2, gates, tanh_c, z) -> list:
        """Per-timestep views used by :meth:`_sweep` (the last entry: the g rows of ``z``)."""
        H = self.shape.hidden_size

        def make():
            return [(u[t], gates[t], *gates[t].split(H, 1), c2[t], c2[t + 1], tanh_c[t],
                     u[t + 1, :, n:n + H]) for t in range(gates.shape[0])] + [z[:, 2 * H:3 * H]]
        return self._cached_views(("forward", tag, li), (u, c2, gates, tanh_c, z), make)

    def _sweep(self, matrix: TiledMatrix, z, views, prepared, sweep: Sweep) -> None:
        """One layer's forward sweep: per op of the program's sweep (one timestep) its analog MVM
        and the digital gate math, written straight into the stored activations (gate order i,
        f, g, o; cell state 2c). The g rows of the MVM result come doubled (``post_scale``, or one
        multiply here)."""
        neg_one, two = self._c[-1.0], self._c[2.0]
        z_g = views[-1]
        for t, _ in self._sweep_steps(sweep):
            u_t, g_t, g_i, g_f, g_g, g_o, c_prev, c_next, tc_t, h_slot = views[t]
            if prepared is None:
                zt = matrix.mvm(u_t, out=z)
                z_g.mul_(two)
            else:
                zt = matrix.forward_prepared(prepared, t, u_t)
            torch.sigmoid(zt, out=g_t)
            torch.addcmul(neg_one, g_g, two, out=g_g)          # g = tanh(z_g) = 2 sigmoid(2 z_g) - 1
            torch.mul(g_f, c_prev, out=c_next)                 # 2c_t = f*2c_{t-1} + 2*i*g
            c_next.addcmul_(g_i, g_g, value=2.0)
            torch.sigmoid(c_next, out=tc_t)
            torch.addcmul(neg_one, tc_t, two, out=tc_t)        # tanh(c_t) = 2 sigmoid(2c_t) - 1
            torch.mul(g_o, tc_t, out=h_slot)                   # h_t = o*tanh(c_t)

    # -- backward ------------------------------------------------------------------------------
    @torch.no_grad()
    def backward(self, dlogits: torch.Tensor) -> None:
        """BPTT from the errors at the logits ``dlogits [T, B, V]`` (dLoss/dlogits) of the last
        training :meth:`forward`: the output layer's transposed MVM, then every layer backwards
        in time (transposed MVMs through the tiles, digital gate derivatives). Records each
        matrix's inputs and output errors for :meth:`TiledMatrix.apply_update`. With
        ``grad_clip`` every error at a tile's outputs is clipped before it is used or recorded.
        """
        if self._pending_backward is None:
            raise RuntimeError("backward() needs a preceding forward(..., train=True)")
        T, B = self._pending_backward
        self._pending_backward = None
        H, V = self.shape.hidden_size, self.shape.vocab_size
        clip = self.grad_clip
        d_out = dlogits.reshape(T * B, V)
        if clip is not None:
            d_out = d_out.clamp(-clip, clip)
        program = self.program(T, B)
        recompute = {s.matrix for s in program.sweeps if s.recompute}
        sweeps = [s for s in program.phase_sweeps("backward") if not s.recompute]
        output = self._by_name[sweeps[0].matrix]
        top = self._buffers["train.top"]
        output.record(top.view(T * B, H + 1), d_out)
        masks = list(self._masks)
        d_top = self._buffer("train.d_top", (T, B, H + 1))
        output.mvm_t(d_out, out=d_top.view(T * B, H + 1))    # all T transposed MVMs at once
        dh_above = d_top[:, :, :H]
        if masks:
            dh_above.mul_(masks.pop())
        for sweep in sweeps[1:]:                     # the LSTM layers, top to bottom
            li = self.layers.index(self._by_name[sweep.matrix])
            n = V if li == 0 else H
            u = self._buffers[f"train.u{li}"]
            dz = self._buffer(f"train.dz{li}", (T, B, 4 * H))
            # Errors at the inputs that something reads: [x; h] (h only below one-hot characters).
            du = self._buffer(f"train.du{li}", (T, B, H if li == 0 else n + H))
            if sweep.matrix in recompute:
                self._recompute_gates(li, T, B)
            self._layer_backward(self.layers[li], li, n, dz, du, dh_above, sweep)
            self.layers[li].record(u[:T].view(T * B, n + H + 1), dz.view(T * B, 4 * H),
                                   onehot=(V, self._ids.view(-1)) if li == 0 else None)
            # Errors at this layer's inputs = errors at the outputs h of the layer below.
            dh_above = du[:, :, :n]
            if li > 0 and masks:
                dh_above.mul_(masks.pop())

    def _recompute_gates(self, li: int, T: int, B: int) -> None:
        """The recompute sweep of layer ``li``: every timestep's forward MVM again, at once (its
        inputs u_t are all kept), then the gate nonlinearities and tanh(c_t) from the kept cell
        states, written over what the forward sweep left (which hardware would not have kept)."""
        H = self.shape.hidden_size
        u = self._buffers[f"train.u{li}"]
        gates = self._buffers[f"train.gates{li}"]
        c2 = self._buffers[f"train.c{li}"]
        tanh_c = self._buffers[f"train.tanh_c{li}"]
        z = self._by_name[f"lstm{li + 1}"].mvm(u[:T].reshape(T * B, -1)).view(T, B, 4 * H)
        torch.sigmoid(z, out=gates)
        torch.tanh(z[..., 2 * H:3 * H], out=gates[..., 2 * H:3 * H])
        torch.tanh(c2[1:T + 1].mul(0.5), out=tanh_c)

    def _layer_backward(self, matrix: TiledMatrix, li: int, n: int, dz, du, dh_above,
                        sweep: Sweep) -> None:
        """One layer backwards in time. With ``s`` the stored gate activations::

            dc_t = dh_t*o*(1 - tanh^2 c_t) + dc_{t+1}*f_{t+1}
            dz_t = [dc_t*g*i(1-i), dc_t*c_{t-1}*f(1-f), dc_t*i*(1-g^2), dh_t*tanh(c_t)*o(1-o)]
            [dx_t; dh_{t-1}^rec; -] = W^T dz_t                        (transposed MVM)

        The factors multiplying ``dc_t`` and ``dh_t`` are computed for all t at once first. The
        sweep's ops give the timesteps and whether each runs its transposed MVM.
        """
        T, B = dz.shape[0], dz.shape[1]
        H = self.shape.hidden_size
        gates = self._buffers[f"train.gates{li}"]
        c2 = self._buffers[f"train.c{li}"]
        tanh_c = self._buffers[f"train.tanh_c{li}"]
        i, f, g, o = gates.split(H, 2)
        factor = self._buffer("train.factor", (T, B, 4 * H))
        one = -self._c[-1.0]
        torch.addcmul(gates, gates, gates, value=-1.0, out=factor)          # s(1 - s)
        factor[..., :H].mul_(g)                                               # * g       (i)
        factor[..., H:2 * H].mul_(c2[:T]).mul_(0.5)                           # * c_{t-1} (f)
        torch.addcmul(one, g, g, value=-1.0, out=factor[..., 2 * H:3 * H]).mul_(i)  # (g)
        factor[..., 3 * H:].mul_(tanh_c)                                      # * tanh c  (o)
        dc_gain = self._buffer("train.dc_gain", (T, B, H))
        torch.addcmul(one, tanh_c, tanh_c, value=-1.0, out=dc_gain).mul_(o)
        dh = self._buffer("train.dh", (B, H))
        dc = self._buffer("train.dc", (B, H))
        dc_next = self._buffer("train.dc_next", (B, H)).zero_()
        views = self._backward_views(li, n, dz, du, dh_above, factor, dc_gain, f, dc)
        clip = self.grad_clip
        # Outputs read: h_{t-1} errors, and the input errors unless the inputs are characters.
        wanted = slice(n if li == 0 else 0, n + H)
        dh_rec = None
        for t, runs_mvm in self._sweep_steps(sweep):
            dh_a, gain, fac3, fac_o, dz_t, dz3, dz_o, f_t, du_t, rec_t, dc3 = views[t]
            dh_t = dh_a if dh_rec is None else torch.add(dh_a, dh_rec, out=dh)
            torch.addcmul(dc_next, dh_t, gain, out=dc)
            torch.mul(fac3, dc3, out=dz3)
            torch.mul(fac_o, dh_t, out=dz_o)
            if clip is not None:
                dz_t.clamp_(-clip, clip)
            if runs_mvm:
                matrix.mvm_t(dz_t, out=du_t, cols=wanted)
                dh_rec = rec_t
            else:        # no transposed MVM (the program's first-layer corner): no h_{t-1} errors
                dh_rec = None
            torch.mul(dc, f_t, out=dc_next)

    def _sweep_steps(self, sweep: Sweep) -> tuple:
        """``(t, runs its MVM)`` per op of a sweep (made once: the loop runs every step)."""
        key = (sweep.phase, sweep.matrix, len(sweep.ops))
        steps = self._sweep_cache.get(key)
        if steps is None or steps[0] is not sweep:
            steps = (sweep, tuple((op.t, op.kind is not None) for op in sweep.ops))
            self._sweep_cache[key] = steps
        return steps[1]

    def _backward_views(self, li, n, dz, du, dh_above, factor, dc_gain, f, dc) -> list:
        """Per-timestep views used by :meth:`_layer_backward`."""
        T, B, H = dz.shape[0], dz.shape[1], self.shape.hidden_size
        rec0 = 0 if li == 0 else n       # where the h_{t-1} errors start in du

        def make():
            dc3 = dc.unsqueeze(1)
            return [(dh_above[t], dc_gain[t], factor[t, :, :3 * H].view(B, 3, H), factor[t, :, 3 * H:],
                     dz[t], dz[t, :, :3 * H].view(B, 3, H), dz[t, :, 3 * H:], f[t],
                     du[t], du[t, :, rec0:rec0 + H], dc3) for t in range(T)]
        return self._cached_views(("backward", li), (dz, du, dh_above, factor, dc_gain, f, dc), make)

    # -- training ------------------------------------------------------------------------------
    @torch.no_grad()
    def train_step(self, ids: torch.Tensor, targets: torch.Tensor, state, lr: float):
        """One truncated-BPTT step: forward, backward, then every tile's pulsed update.

        Returns ``(mean loss in nats/char, detached final state)``; for a population the loss
        is a list, one per member.
        """
        for m in self.matrices:
            m.reset_records()
        T, B = ids.shape
        logits, new_state = self.forward(ids, state, train=True)
        V = logits.shape[-1]
        K = self.K
        logp = torch.log_softmax(logits.view(T * B * K, V), dim=1)
        tgt = targets.to(self.device)
        tgt = (tgt if K == 1 else tgt.repeat(1, K)).reshape(-1, 1)
        picked = logp.gather(1, tgt)
        loss = -float(picked.mean()) if K == 1 else (-picked.view(T, K, B).mean(dim=(0, 2))).tolist()
        # d(sum over t of the batch-mean loss)/dlogits = (softmax - onehot)/B
        d = logp.exp_()
        d.scatter_(1, tgt, picked.exp_().sub_(1.0))
        d.mul_(1.0 / B)
        self.backward(d.view(T, B * K, V))
        if K > 1 and not all(self.alive):
            # Retired members get no updates: their rows of every recorded error are zeroed (the
            # errors BPTT carried to them hold the other ops' noise even from zero logit errors).
            dead = [k for k, a in enumerate(self.alive) if not a]
            for m in self.matrices:
                if m.recorded is not None:
                    rec = m.recorded[1]
                    rec.view(-1, K, B, rec.shape[-1])[:, dead] = 0.0
        for sweep in self.program(T, B).phase_sweeps("update"):
            # The sweep's T ops of B rank-one updates each, applied in recording order (with
            # Tiki-Taka the tiles transfer where the sweep's transfer ops say, checked in use_program).
            n = sum(1 for op in sweep.ops if op.kind == "rank_one_update")
            if self._by_name[sweep.matrix].apply_update(lr) != n * B * K:
                raise RuntimeError(f"{sweep.matrix}: recorded updates differ from the program's")
        return loss, new_state

    @torch.no_grad()
    def loss(self, ids: torch.Tensor, targets: torch.Tensor, state):
        """Summed cross-entropy (nats) of ``targets`` given ``ids`` and the next state; no update
        (a population: a list, one per member)."""
        logits, new_state = self.forward(ids, state, train=False)
        tgt = targets.to(self.device)
        if self.K > 1:
            T, B = tgt.shape
            per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                  tgt.repeat(1, self.K).reshape(-1), reduction="none")
            return per.view(T, self.K, B).sum(dim=(0, 2)).tolist(), new_state
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                tgt.reshape(-1), reduction="sum")
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
