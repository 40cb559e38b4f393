"""The step program: one training step of an LSTM workload as a declarative list of ops.

Both engines read the same program. :mod:`archsim.schedule` turns each op into a timed op
(stages on resources, actions to price) and knows nothing of LSTM equations; the functional
simulator (:mod:`archsim.functional.lstm`) executes the program's analog ops with its torch
kernels. So the two engines count the same MVMs, conversions and updates by construction, and a
new kind of op is written once, here, plus one kernel per engine.

A program is built from the mapping (which matrix sits on which tile blocks), the hidden size and
the sequence length. Per matrix and timestep it holds::

    forward  (m, t): a forward MVM on every block of m, then digital work (partial sums, gates)
    backward (m, t): digital work (gate derivatives), a transposed MVM on every block, digital work
    update   (m, t): digital update management, then B rank-one updates on every block

with the dependencies that order them: forward (l, t) needs (l, t-1) and (l-1, t), so layers run
as a wavefront; backward runs that lattice in reverse; the output layer's ops follow each other in
time order only because one tile cannot run two ops at once (order-only dependencies: an engine may
run them as one batched call); a matrix's T updates start when its backward sweep is done (the
weights stay fixed during the sequence) and the next step's first forward op of a matrix waits for
its updates (``carry``).

The first layer's backward op at t = 0 has no transposed MVM: its result would be the error at a
one-hot character or before the sequence, which nothing reads. The op keeps its gate derivatives
(the update needs them).

Ops are also grouped into :class:`Sweep` s, one per (phase, matrix), in an order that respects every
dependency; a sweep says whether its ops must run one after another (a recurrence) and which input
columns of a forward sweep are produced inside it (the rest are known before it starts, so their
share of all the sweep's MVMs may be computed at once).

Memory traffic is part of each op: ``loads`` (read before its digital pre-work) and ``stores``
(written after its post-work), in words per vector of a named piece of state (:class:`Access`).
What BPTT keeps between the sweeps is derived here from the LSTM equations, in one of two modes
(``bptt_state``):

    store      forward (l, t) keeps its input u_t, the gates i, f, g, o, c_t and tanh(c_t)
               (cols + 6h words; the output layer its input and probabilities, cols + rows);
               backward (l, t) reads the gates, tanh(c_t) and c_{t-1} (6h) and keeps dz_t (rows)
    recompute  forward (l, t) keeps only h_t and c_t (2h, plus the character index in layer 1);
               a ``recompute_mvm`` op before each backward (l, t) reads u_t's parts and c_t,
               c_{t-1} back, re-runs the forward MVM and the gate math, and hands the gates to
               the backward op through the tile buffer

Updates read u_t and dz_t back in both modes. :func:`bptt_state_words` sums what one step keeps;
:mod:`archsim.memory` places it (tile buffer, global buffer or DRAM) and the schedule times and
prices each access at its level.

Tiki-Taka (the architecture's ``update.algorithm`` one of ``tiki_taka``, ``tiki_taka_v2``,
``chopped_tiki_taka_v2``; the mapping gives such a matrix two arrays per block, fast A and slow
C): the update sweep of the matrix interleaves, after each update op, the transfers that fall into
its B rank-one updates::

    update          (m, t): B pulsed rank-one updates on A (SGD)
    transfer_read   (m, t): n forward MVMs of one-hot columns of A (n = transfers x n_reads)
    transfer_update (m, t): n pulsed rank-one updates of C (x one-hot, d = the read column; TTv2:
                            the pulse counts where |H| crossed its threshold)

A transfer follows every ``transfer_every``-th rank-one update of the step (the count restarts
each step, so every step is this program): update op t (the step's vectors tB .. tB+B-1) holds
``floor((t+1)B/every) - floor(tB/every)`` transfers. The next update op waits for the read (A is
busy); the transfer updates run on C beside A's next updates; the next step's first forward op
waits for the matrix's last update and last transfer update. These ops carry ``vectors`` (per
block) instead of the batch.

A transfer update's digital work (``pre``, per vector = one column read of every block, ``n`` =
rows x column splits values): Tiki-Taka v1 manages the update of each read column (``n`` + blocks
adds and multiplies: max|y|, the scales, the one-hot line). TTv2 passes the read through the
digital buffer H (one value per device of the matrix, ``transfer_buffer`` state, kept from step
to step in the digital unit's memory): it loads the ``n`` values of H it touches, computes per
value ``omega = H + lr*y`` (a multiply and an add), the pulse count ``trunc(omega/threshold)``
clamped to the transfer BL (a multiply and a compare) and H's new value (a multiply and an add:
``momentum*omega`` or ``omega - (1-momentum)*count*threshold``), so 3 multiplies and 3 adds per
value, and stores them back; the pulse counts are C's update, with update management off.
Chopped TTv2 adds a sign multiply per value and, per block, a compare that draws the column's
chopper flip.

Engines refuse a program with a kind they cannot run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from archsim.mapping import Mapping, MatrixMapping, map_workload
from archsim.specs.workload import ModelSpec

PHASES = ("forward", "backward", "update")


@dataclass(frozen=True)
class OpKind:
    """One kind of analog or memory op: the step phase it belongs to, what the functional
    simulator's tiles count for each vector of it (a ``TileActivity`` field) and the schedule
    action that counts the same thing. ``generated``: some program emits it today."""

    name: str
    phase: str
    counter: str | None
    action: tuple[str, str] | None
    generated: bool
    description: str


OP_KINDS: dict[str, OpKind] = {k.name: k for k in (
    OpKind("forward_mvm", "forward", "forward_mvms", ("array", "forward_mvm"), True,
           "forward MVM of a batch of inputs on every block of a matrix"),
    OpKind("backward_mvm", "backward", "backward_mvms", ("array", "backward_mvm"), True,
           "transposed MVM of a batch of errors on every block of a matrix"),
    OpKind("rank_one_update", "update", "updates", ("update", "rank_one"), True,
           "B pulsed rank-one updates on every block of a matrix"),
    OpKind("recompute_mvm", "backward", "forward_mvms", ("array", "forward_mvm"), True,
           "forward MVM re-run during BPTT (bptt_state 'recompute') instead of storing its gates"),
    OpKind("transfer_read", "update", "transfer_reads", ("array", "transfer_read"), True,
           "Tiki-Taka: forward MVMs of one-hot inputs reading columns of the fast array A"),
    OpKind("transfer_update", "update", "transfer_updates", ("update", "transfer"), True,
           "Tiki-Taka: pulsed rank-one updates writing the read columns onto the slow array C"),
)}


@dataclass(frozen=True)
class DigitalWork:
    """Digital work per vector of the batch: element ops by kind (``add``, ``mul``, ``sigmoid``,
    ``tanh``, ``exp``)."""

    counts: dict[str, int]


#: Pieces of state an op reads or writes: ``working`` vectors live only from one op to the next
#: (always in the tile buffer); ``activations`` (kept by the forward sweep for BPTT and the
#: update) and ``errors`` (kept by the backward sweep for the update) live until the update;
#: ``transfer_buffer`` is TTv2's buffer H, one value per device of the matrix, kept for good.
STATES = ("working", "activations", "errors", "transfer_buffer")


@dataclass(frozen=True)
class Access:
    """``words`` per vector of one piece of state (:data:`STATES`) of the op's matrix."""

    state: str
    words: int


@dataclass(frozen=True)
class ProgramOp:
    """One (phase, matrix, timestep) of a training step.

    ``kind``: the analog op it runs on every block of the matrix (a key of :data:`OP_KINDS`), or
    None when it is digital work only. ``pre``/``post``: digital work before/after it. ``deps``:
    ids of ops of the same step that must finish first, ``order_only`` the subset that orders
    ops on one tile without passing data. ``carry``: ids of ops of the previous step that must
    finish first."""

    id: int
    phase: str
    matrix: str
    t: int
    kind: str | None
    pre: DigitalWork | None = None
    post: DigitalWork | None = None
    deps: tuple[int, ...] = ()
    order_only: frozenset[int] = frozenset()
    carry: tuple[int, ...] = ()
    loads: tuple[Access, ...] = ()
    stores: tuple[Access, ...] = ()
    vectors: int = 0
    """Vectors per block copy when not the batch's B (0): a Tiki-Taka transfer op's reads or
    transfer updates."""

    @property
    def data_deps(self) -> tuple[int, ...]:
        return tuple(d for d in self.deps if d not in self.order_only)


@dataclass(frozen=True)
class Sweep:
    """The ops of one (phase, matrix), in the order they run.

    ``sequential``: an op reads data an earlier op of the sweep wrote (a recurrence), so they run
    one after another; otherwise an engine may run them as one batched call. ``streamed_cols``
    (forward sweeps): the input columns produced inside the sweep (h_{t-1}); the other columns are
    known before the sweep starts."""

    phase: str
    matrix: str
    ops: tuple[ProgramOp, ...]
    sequential: bool
    streamed_cols: slice | None = None

    @property
    def recompute(self) -> bool:
        """A sweep of ``recompute_mvm`` ops (forward MVMs re-run during BPTT)."""
        return bool(self.ops) and all(op.kind == "recompute_mvm" for op in self.ops)

    @property
    def timesteps(self) -> tuple[int, ...]:
        return tuple(op.t for op in self.ops)


@dataclass(frozen=True)
class Transfer:
    """Tiki-Taka's transfer settings (the architecture's ``update`` fields of these names), the
    batch, which places the transfers among the update ops, and the algorithm, which sets the
    transfer updates' digital work (and TTv2's buffer H)."""

    every: int
    n_reads: int
    batch: int
    algorithm: str = "tiki_taka"

    def __post_init__(self):
        if min(self.every, self.n_reads, self.batch) < 1:
            raise ValueError(f"transfer settings must be >= 1: {self}")
        if self.algorithm not in ("tiki_taka", "tiki_taka_v2", "chopped_tiki_taka_v2"):
            raise ValueError(f"not a Tiki-Taka algorithm: {self.algorithm!r}")

    @property
    def buffered(self) -> bool:
        """TTv2 or chopped TTv2: the transfers go through the digital buffer H."""
        return self.algorithm != "tiki_taka"

    def per_op(self, t: int) -> int:
        """Transfers that fall into update op ``t`` (the step's vectors tB .. tB+B-1)."""
        B, n = self.batch, self.every
        return (t + 1) * B // n - t * B // n


@dataclass
class StepProgram:
    """One training step: its ops (in an order every dependency respects) and their sweeps."""

    mapping: Mapping
    hidden: int
    seq_len: int
    ops: list[ProgramOp]
    sweeps: list[Sweep]
    bptt_state: str = "store"
    transfer: Transfer | None = None
    matrices: list[MatrixMapping] = field(init=False)

    def __post_init__(self):
        self.matrices = list(self.mapping.matrices)

    def matrix(self, name: str) -> MatrixMapping:
        for m in self.matrices:
            if m.name == name:
                return m
        raise KeyError(name)

    def phase_sweeps(self, phase: str) -> list[Sweep]:
        return [s for s in self.sweeps if s.phase == phase]

    def with_ops(self, ops: list[ProgramOp]) -> "StepProgram":
        """A variant of this step with ``ops`` in place of its own (op ``i`` at position ``i``;
        sweeps regrouped): how a test or a trial op kind changes what both engines run."""
        ops = list(ops)
        if [op.id for op in ops] != list(range(len(ops))):
            raise ValueError("op ids must be their positions")
        return StepProgram(self.mapping, self.hidden, self.seq_len, ops,
                           _sweeps(ops, _lattice_rows(self.mapping), self.hidden), self.bptt_state,
                           self.transfer)

    def kinds(self) -> set[str]:
        """The op kinds this program uses."""
        return {op.kind for op in self.ops if op.kind is not None}

    def vector_counts(self, batch: int) -> dict[str, int]:
        """Vectors each op kind processes per step, summed over tile blocks (one block copy
        processes each vector): what the tiles' counters must add up to."""
        out = dict.fromkeys(OP_KINDS, 0)
        blocks = {m.name: len(m.blocks) for m in self.matrices}
        for op in self.ops:
            if op.kind is not None:
                out[op.kind] += blocks[op.matrix] * (op.vectors or batch)
        return out


@dataclass(frozen=True)
class NetworkShape:
    """Sizes of a character LSTM, as the functional simulator knows them (its vocabulary comes
    from the text)."""

    vocab_size: int
    hidden_size: int
    layers: int
    output_layer: bool = True


def map_network(shape: NetworkShape, array_rows: int, array_cols: int) -> Mapping:
    """The mapping of a network onto arrays: the workload's model with these sizes, split as the
    time/energy engine splits it (the matrix shapes are :class:`ModelSpec`'s, written once)."""
    model = ModelSpec(layers=shape.layers, hidden_size=shape.hidden_size,
                      vocab_size=shape.vocab_size, output_layer=shape.output_layer)
    return map_workload(model, array_rows, array_cols)


# -- the LSTM's digital work per vector -------------------------------------------------------
def _forward_digital(m: MatrixMapping, h: int) -> DigitalWork:
    counts = {"add": (m.col_splits - 1) * m.rows, "mul": m.rows}  # partial sums, NM/BM rescale
    if m.kind == "lstm":
        counts["sigmoid"] = 3 * h
        counts["tanh"] = 2 * h                       # g and tanh(c)
        counts["mul"] += 3 * h + h                   # f*c, i*g, o*tanh(c); NM scale of h_t
        counts["add"] += h + h                       # c_t sum; max|h_t| for NM
        return DigitalWork(counts)
    counts["exp"] = m.rows                           # softmax
    counts["add"] += m.rows
    counts["mul"] += m.rows
    return DigitalWork(counts)


def _recompute_digital(m: MatrixMapping, h: int) -> DigitalWork:
    """The gates again from the recomputed pre-activations, and tanh(c_t) from the stored c_t."""
    return DigitalWork({"add": (m.col_splits - 1) * m.rows, "mul": m.rows,
                        "sigmoid": 3 * h, "tanh": 2 * h})


def _backward_pre_digital(m: MatrixMapping, h: int) -> DigitalWork:
    if m.kind == "lstm":   # dh sum, gate derivatives, NM
        return DigitalWork({"add": h + 6 * h + m.rows, "mul": 16 * h + m.rows})
    return DigitalWork({"add": m.rows + m.rows, "mul": m.rows})  # p - y, NM


def _backward_post_digital(m: MatrixMapping) -> DigitalWork:
    return DigitalWork({"add": (m.row_splits - 1) * m.cols, "mul": m.cols})  # partial sums, NM


def _update_digital(m: MatrixMapping) -> DigitalWork:
    n = m.rows + m.cols   # max|x|, max|d|; scale by A, B
    return DigitalWork({"add": n, "mul": n})


def transfer_column_words(m: MatrixMapping) -> int:
    """Values of one transfer vector of matrix ``m``: a column read of each of its blocks."""
    return m.rows * m.col_splits


def _transfer_digital(m: MatrixMapping, algorithm: str) -> DigitalWork:
    """A transfer update's digital work per vector (see the module docstring)."""
    n, blocks = transfer_column_words(m), len(m.blocks)
    if algorithm == "tiki_taka":
        return DigitalWork({"add": n + blocks, "mul": n + blocks})
    chopped = algorithm == "chopped_tiki_taka_v2"
    return DigitalWork({"add": 3 * n + (blocks if chopped else 0),
                        "mul": 3 * n + (n if chopped else 0)})


# -- what BPTT keeps, per vector and timestep (see the module docstring) -----------------------
BPTT_MODES = ("store", "recompute")


@dataclass(frozen=True)
class StateTraffic:
    """The memory accesses of one matrix's ops (per vector and timestep)."""

    forward_loads: tuple[Access, ...]
    forward_stores: tuple[Access, ...]
    recompute_loads: tuple[Access, ...]
    recompute_stores: tuple[Access, ...]
    backward_loads: tuple[Access, ...]
    backward_stores: tuple[Access, ...]
    update_loads: tuple[Access, ...]


def state_traffic(m: MatrixMapping, h: int, mode: str, first: bool) -> StateTraffic:
    """Loads and stores of matrix ``m`` (``first``: the bottom LSTM layer, fed characters)."""
    if mode not in BPTT_MODES:
        raise ValueError(f"bptt_state must be one of {BPTT_MODES}, not {mode!r}")
    A = lambda state, words: (Access(state, words),)  # noqa: E731
    fwd_in = A("working", m.cols)                     # u_t as the MVM reads it
    err = A("errors", m.rows)                         # dz_t (LSTM) or p - y (output)
    if m.kind == "output":
        keep = m.cols + m.rows if mode == "store" else m.rows   # input (top layer's h) and p
        u_back = m.cols if mode == "store" else h                # u = [h_top; 1]
        return StateTraffic(fwd_in, A("activations", keep), (), (), A("activations", m.rows), err,
                            (*A("activations", u_back), *err))
    if mode == "store":
        return StateTraffic(fwd_in, A("activations", m.cols + 6 * h), (), (),
                            A("activations", 6 * h), err, (*A("activations", m.cols), *err))
    x_words = 1 if first else h                         # a character index, or the h_t below
    u_words = x_words + h                               # u_t = [x_t; h_{t-1}; 1] from its parts
    return StateTraffic(fwd_in, A("activations", 2 * h + (1 if first else 0)),
                        A("activations", u_words + 2 * h),   # u_t's parts, c_t, c_{t-1}
                        A("working", 6 * h),                 # gates, tanh(c_t), c_{t-1}
                        A("working", 6 * h), err, (*A("activations", u_words), *err))


def build_program(mapping: Mapping, hidden: int, seq_len: int,
                  bptt_state: str = "store", transfer: Transfer | None = None) -> StepProgram:
    """The step program of an LSTM stack (and output layer, if mapped) on ``mapping``;
    ``bptt_state``: what the forward sweep keeps for BPTT; ``transfer``: Tiki-Taka's settings,
    needed when a matrix of the mapping has two arrays (see the module docstring)."""
    T = seq_len
    rows = _lattice_rows(mapping)
    top = len(rows) - 1
    recompute = bptt_state == "recompute"
    ops: list[ProgramOp] = []
    tiki_taka = [m.name for m in rows if m.tiki_taka]
    if tiki_taka and transfer is None:
        raise ValueError(f"matrices {tiki_taka} train with Tiki-Taka: the program needs its transfer settings")
    if any(m.tiki_taka and m.replication > 1 for m in rows):
        raise NotImplementedError("Tiki-Taka with replicated matrices (each copy would transfer "
                                  "its share of the batch) is not modelled")

    def new(phase, m, t, kind, deps, order_only=(), carry=(), pre=None, post=None,
            loads=(), stores=(), vectors=0) -> int:
        deps = tuple(d for d in deps if d is not None)
        ops.append(ProgramOp(len(ops), phase, m.name, t, kind, pre, post, deps,
                             frozenset(d for d in order_only if d is not None), tuple(carry),
                             tuple(loads), tuple(stores), vectors))
        return len(ops) - 1

    # Forward ops at t = 0 carry a dependency on each matrix's last update op (and last transfer
    # update) from the previous step: filled in once the update ops are numbered.
    last_update: dict[str, tuple[int, ...]] = {}
    # Digital work and traffic are the same at every timestep: one (read-only) object per matrix.
    fwd_work = {m.name: _forward_digital(m, hidden) for m in rows}
    rec_work = {m.name: _recompute_digital(m, hidden) for m in rows}
    bwd_pre = {m.name: _backward_pre_digital(m, hidden) for m in rows}
    bwd_post = {m.name: _backward_post_digital(m) for m in rows}
    upd_work = {m.name: _update_digital(m) for m in rows}
    traffic = {m.name: state_traffic(m, hidden, bptt_state, k == 0) for k, m in enumerate(rows)}
    fwd: dict[tuple[int, int], int] = {}
    for t in range(T):
        for k, m in enumerate(rows):
            prev = fwd.get((k, t - 1))
            tr = traffic[m.name]
            # Only an LSTM row reads its own previous output; the output row is ordered on its tile.
            fwd[(k, t)] = new("forward", m, t, "forward_mvm",
                              [prev, fwd.get((k - 1, t)) if k > 0 else None],
                              order_only=[prev] if m.kind != "lstm" else [],
                              carry=[],
                              post=fwd_work[m.name], loads=tr.forward_loads,
                              stores=tr.forward_stores)
    end_fwd = fwd[(top, T - 1)]
    bwd: dict[tuple[int, int], int] = {}
    for t in reversed(range(T)):
        for k in reversed(range(len(rows))):
            m = rows[k]
            tr = traffic[m.name]
            nxt = bwd.get((k, t + 1))
            deps = [nxt, bwd.get((k + 1, t)) if k < top else None]
            if t == T - 1 and k == top:
                deps.append(end_fwd)
            if recompute and m.kind == "lstm":
                # Re-run the forward MVM of (k, t) on the matrix's own tiles just before its
                # backward op needs the gates: after the tile's previous backward op (or the end
                # of the forward sweep), an ordering on the tile, not a data dependency.
                after = nxt if nxt is not None else end_fwd
                deps.append(new("backward", m, t, "recompute_mvm", [after], order_only=[after],
                                post=rec_work[m.name], loads=tr.recompute_loads,
                                stores=tr.recompute_stores))
            # Nothing reads the first layer's input errors at t = 0 (one-hot characters, or
            # before the sequence): no transposed MVM there, only the gate derivatives.
            skip = k == 0 and t == 0 and m.kind == "lstm"
            bwd[(k, t)] = new("backward", m, t, None if skip else "backward_mvm", deps,
                              order_only=[nxt] if m.kind != "lstm" else [],
                              pre=bwd_pre[m.name], post=None if skip else bwd_post[m.name],
                              loads=tr.backward_loads, stores=tr.backward_stores)
    for k, m in enumerate(rows):
        prev = bwd[(k, 0)]          # the matrix's backward sweep is done
        last_c = None               # the last transfer update (on C)
        tr_work, h_access = None, ()
        if m.tiki_taka:
            tr_work = _transfer_digital(m, transfer.algorithm)
            if transfer.buffered:   # TTv2: H's values of the read columns, read and written back
                h_access = (Access("transfer_buffer", transfer_column_words(m)),)
        for t in range(T):
            upd = prev = new("update", m, t, "rank_one_update", [prev],
                             order_only=[prev] if t > 0 else [], pre=upd_work[m.name],
                             loads=traffic[m.name].update_loads)
            n = transfer.per_op(t) * transfer.n_reads if m.tiki_taka else 0
            if n:
                # A is read after its updates; the next update op waits for the read.
                prev = new("update", m, t, "transfer_read", [upd], order_only=[upd], vectors=n)
                last_c = new("update", m, t, "transfer_update", [prev, last_c],
                             order_only=[last_c], pre=tr_work, loads=h_access, stores=h_access,
                             vectors=n)
        last_update[m.name] = tuple(i for i in (upd, last_c) if i is not None)
    for k, m in enumerate(rows):
        ops[fwd[(k, 0)]] = replace(ops[fwd[(k, 0)]], carry=last_update[m.name])
    return StepProgram(mapping, hidden, T, ops, _sweeps(ops, rows, hidden), bptt_state,
                       transfer if tiki_taka else None)


def bptt_state_words(program: StepProgram) -> dict[str, dict[str, int]]:
    """Words one step keeps per vector of the batch, by matrix and state (``activations``,
    ``errors``): what its ops store, summed over the T timesteps. Working vectors are not kept and
    not counted, nor is TTv2's buffer H (:func:`transfer_buffer_words`)."""
    out: dict[str, dict[str, int]] = {m.name: {"activations": 0, "errors": 0}
                                      for m in program.matrices}
    for op in program.ops:
        for a in op.stores:
            if a.state in ("activations", "errors"):
                out[op.matrix][a.state] += a.words
    return out


def transfer_buffer_words(program: StepProgram) -> dict[str, int]:
    """Words of TTv2's buffer H per matrix (one per device of the matrix, kept from step to step;
    0 without it)."""
    buffered = program.transfer is not None and program.transfer.buffered
    return {m.name: m.rows * m.cols if buffered and m.tiki_taka else 0 for m in program.matrices}


def _lattice_rows(mapping: Mapping) -> list[MatrixMapping]:
    """The forward lattice's rows, bottom to top: the LSTM layers, then the output layer."""
    return ([m for m in mapping.matrices if m.kind == "lstm"]
            + [m for m in mapping.matrices if m.kind == "output"])


def _sweeps(ops: list[ProgramOp], rows: list[MatrixMapping], hidden: int) -> list[Sweep]:
    """Group ops by (phase, matrix, recompute or not): forward bottom to top; backward top to
    bottom, each matrix's recompute sweep before its backward sweep; updates."""
    by_key: dict[tuple[str, str, bool], list[ProgramOp]] = {}
    for op in ops:
        by_key.setdefault((op.phase, op.matrix, op.kind == "recompute_mvm"), []).append(op)
    order = ([("forward", m, False) for m in rows]
             + [key for m in reversed(rows) for key in
                (("backward", m, True), ("backward", m, False))]
             + [("update", m, False) for m in rows])
    sweeps = []
    for phase, m, rec in order:
        group = by_key.get((phase, m.name, rec))
        if group is None:
            continue
        if phase == "backward":
            group = sorted(group, key=lambda o: -o.t)
        ids = {o.id for o in group}
        # An LSTM layer's forward and backward sweeps carry its recurrence (h, c and their
        # errors) from op to op, even where T = 1 leaves no dependency inside the sweep. A
        # recompute sweep reads only stored state: its ops are ordered on the tile, not chained.
        recurrent = m.kind == "lstm" and phase != "update" and not rec
        sequential = recurrent or any(d in ids for o in group for d in o.data_deps)
        streamed = None
        if phase == "forward" and recurrent:
            n = m.cols - hidden - 1          # inputs [x_t; h_{t-1}; 1]: h_{t-1} comes from the sweep
            streamed = slice(n, n + hidden)
        sweeps.append(Sweep(phase, m.name, tuple(group), sequential, streamed))
    return sweeps
