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

The vocabulary (:data:`OP_KINDS`) also declares op kinds that no program generates yet: the
recompute MVM and the stores/loads of BPTT state (issue 10) and Tiki-Taka's transfer reads and
transfer updates (issue 14). Engines refuse a program with a kind they cannot run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archsim.mapping import Mapping, MatrixMapping, map_workload

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
    OpKind("recompute_mvm", "backward", None, None, False,
           "forward MVM repeated during BPTT instead of storing its result (issue 10)"),
    OpKind("store_state", "forward", None, None, False,
           "write a timestep's BPTT state to memory (issue 10)"),
    OpKind("load_state", "backward", None, None, False,
           "read a timestep's BPTT state back from memory (issue 10)"),
    OpKind("transfer_read", "update", None, None, False,
           "Tiki-Taka: read a column of the fast array (issue 14)"),
    OpKind("transfer_update", "update", None, None, False,
           "Tiki-Taka: pulse the read column into the slow array (issue 14)"),
)}


@dataclass(frozen=True)
class DigitalWork:
    """Digital work per vector of the batch: element ops by kind (``add``, ``mul``, ``sigmoid``,
    ``tanh``, ``exp``) and the words read or written in the tile's local buffer."""

    counts: dict[str, int]
    buffer_words: int = 0
    buffer_last: bool = False
    """Record the buffer traffic after the element ops rather than before. No physical meaning:
    it keeps the order in which the schedule records actions, which fixes the floating-point
    summation order of the energy totals (committed reports stay byte-identical)."""


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
    def timesteps(self) -> tuple[int, ...]:
        return tuple(op.t for op in self.ops)


@dataclass
class StepProgram:
    """One training step: its ops (in an order every dependency respects) and their sweeps."""

    mapping: Mapping
    hidden: int
    seq_len: int
    ops: list[ProgramOp]
    sweeps: list[Sweep]
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
                           _sweeps(ops, _lattice_rows(self.mapping), self.hidden))

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
                out[op.kind] += blocks[op.matrix] * batch
        return out


@dataclass(frozen=True)
class NetworkShape:
    """Sizes of a character LSTM (what :func:`archsim.mapping.map_workload` reads of a model)."""

    vocab_size: int
    hidden_size: int
    layers: int
    output_layer: bool = True

    def lstm_shapes(self) -> list[tuple[int, int]]:
        h, n, out = self.hidden_size, self.vocab_size, []
        for _ in range(self.layers):
            out.append((4 * h, n + h + 1))
            n = h
        return out

    def output_shape(self) -> tuple[int, int]:
        return (self.vocab_size, self.hidden_size + 1)


def map_network(shape: NetworkShape, array_rows: int, array_cols: int) -> Mapping:
    """The mapping of a network onto arrays (the same split the time/energy engine uses)."""
    return map_workload(shape, array_rows, array_cols)


# -- the LSTM's digital work per vector -------------------------------------------------------
def _forward_digital(m: MatrixMapping, h: int) -> DigitalWork:
    counts = {"add": (m.col_splits - 1) * m.rows, "mul": m.rows}  # partial sums, NM/BM rescale
    if m.kind == "lstm":
        counts["sigmoid"] = 3 * h
        counts["tanh"] = 2 * h                       # g and tanh(c)
        counts["mul"] += 3 * h + h                   # f*c, i*g, o*tanh(c); NM scale of h_t
        counts["add"] += h + h                       # c_t sum; max|h_t| for NM
        return DigitalWork(counts, m.cols + m.cols + 5 * h)  # read u_t; keep u_t, i, f, o, g, c
    counts["exp"] = m.rows                           # softmax
    counts["add"] += m.rows
    counts["mul"] += m.rows
    return DigitalWork(counts, m.cols + m.cols + m.rows)     # read h; keep u and probabilities


def _backward_pre_digital(m: MatrixMapping, h: int) -> DigitalWork:
    if m.kind == "lstm":   # dh sum, gate derivatives, NM; read gates, c_prev; keep dz
        return DigitalWork({"add": h + 6 * h + m.rows, "mul": 16 * h + m.rows}, 6 * h + m.rows)
    return DigitalWork({"add": m.rows + m.rows, "mul": m.rows}, m.rows + m.rows)  # p - y, NM


def _backward_post_digital(m: MatrixMapping) -> DigitalWork:
    return DigitalWork({"add": (m.row_splits - 1) * m.cols, "mul": m.cols})  # partial sums, NM


def _update_digital(m: MatrixMapping) -> DigitalWork:
    n = m.rows + m.cols   # max|x|, max|d|; scale by A, B; read u_t and dz_t
    return DigitalWork({"add": n, "mul": n}, n, buffer_last=True)


def build_program(mapping: Mapping, hidden: int, seq_len: int) -> StepProgram:
    """The step program of an LSTM stack (and output layer, if mapped) on ``mapping``."""
    T = seq_len
    rows = _lattice_rows(mapping)
    top = len(rows) - 1
    ops: list[ProgramOp] = []

    def new(phase, m, t, kind, deps, order_only=(), carry=(), pre=None, post=None) -> int:
        deps = tuple(d for d in deps if d is not None)
        ops.append(ProgramOp(len(ops), phase, m.name, t, kind, pre, post, deps,
                             frozenset(d for d in order_only if d is not None), tuple(carry)))
        return len(ops) - 1

    # The last update op of each matrix, known once the update ops are numbered: forward ops at
    # t = 0 carry a dependency on it from the previous step.
    n_fwd = n_bwd = T * len(rows)
    last_update = {m.name: n_fwd + n_bwd + k * T + T - 1 for k, m in enumerate(rows)}
    # Digital work is the same at every timestep: one (read-only) object per matrix and role.
    fwd_work = {m.name: _forward_digital(m, hidden) for m in rows}
    bwd_pre = {m.name: _backward_pre_digital(m, hidden) for m in rows}
    bwd_post = {m.name: _backward_post_digital(m) for m in rows}
    upd_work = {m.name: _update_digital(m) for m in rows}
    fwd: dict[tuple[int, int], int] = {}
    for t in range(T):
        for k, m in enumerate(rows):
            prev = fwd.get((k, t - 1))
            # Only an LSTM row reads its own previous output; the output row is ordered on its tile.
            fwd[(k, t)] = new("forward", m, t, "forward_mvm",
                              [prev, fwd.get((k - 1, t)) if k > 0 else None],
                              order_only=[prev] if m.kind != "lstm" else [],
                              carry=[last_update[m.name]] if t == 0 else [],
                              post=fwd_work[m.name])
    end_fwd = fwd[(top, T - 1)]
    bwd: dict[tuple[int, int], int] = {}
    for t in reversed(range(T)):
        for k in reversed(range(len(rows))):
            m = rows[k]
            nxt = bwd.get((k, t + 1))
            deps = [nxt, bwd.get((k + 1, t)) if k < top else None]
            if t == T - 1 and k == top:
                deps.append(end_fwd)
            # Nothing reads the first layer's input errors at t = 0 (one-hot characters, or
            # before the sequence): no transposed MVM there, only the gate derivatives.
            skip = k == 0 and t == 0 and m.kind == "lstm"
            bwd[(k, t)] = new("backward", m, t, None if skip else "backward_mvm", deps,
                              order_only=[nxt] if m.kind != "lstm" else [],
                              pre=bwd_pre[m.name], post=None if skip else bwd_post[m.name])
    for k, m in enumerate(rows):
        prev = bwd[(k, 0)]          # the matrix's backward sweep is done
        for t in range(T):
            prev = new("update", m, t, "rank_one_update", [prev],
                       order_only=[prev] if t > 0 else [], pre=upd_work[m.name])
    assert all((ops[i].phase, ops[i].matrix, ops[i].t) == ("update", name, T - 1)
               for name, i in last_update.items()), "carry ids must name each matrix's last update"
    return StepProgram(mapping, hidden, T, ops, _sweeps(ops, rows, hidden))


def _lattice_rows(mapping: Mapping) -> list[MatrixMapping]:
    """The forward lattice's rows, bottom to top: the LSTM layers, then the output layer."""
    return ([m for m in mapping.matrices if m.kind == "lstm"]
            + [m for m in mapping.matrices if m.kind == "output"])


def _sweeps(ops: list[ProgramOp], rows: list[MatrixMapping], hidden: int) -> list[Sweep]:
    """Group ops by (phase, matrix): forward bottom to top, backward top to bottom, updates."""
    by_key: dict[tuple[str, str], list[ProgramOp]] = {}
    for op in ops:
        by_key.setdefault((op.phase, op.matrix), []).append(op)
    order = ([("forward", m) for m in rows] + [("backward", m) for m in reversed(rows)]
             + [("update", m) for m in rows])
    sweeps = []
    for phase, m in order:
        group = by_key[(phase, m.name)]
        if phase == "backward":
            group = sorted(group, key=lambda o: -o.t)
        ids = {o.id for o in group}
        # An LSTM layer's forward and backward sweeps carry its recurrence (h, c and their
        # errors) from op to op, even where T = 1 leaves no dependency inside the sweep.
        recurrent = m.kind == "lstm" and phase != "update"
        sequential = recurrent or any(d in ids for o in group for d in o.data_deps)
        streamed = None
        if phase == "forward" and recurrent:
            n = m.cols - hidden - 1          # inputs [x_t; h_{t-1}; 1]: h_{t-1} comes from the sweep
            streamed = slice(n, n + hidden)
        sweeps.append(Sweep(phase, m.name, tuple(group), sequential, streamed))
    return sweeps
