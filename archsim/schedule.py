"""The schedule of training steps: ordered tile, transfer and digital ops and their dependencies.

One op is one (phase, matrix, timestep) of one training step. It streams the batch's vectors through
a chain of stages, each holding one resource for a per-vector time:

    [pre: digital]  ->  branches: one per tile  [bus, array, ADC] or [bus, array]  ->  [post: digital]

Forward  (l, t): branches (array forward, row-side ADCs, bus) -> post: partial sums, gates.
Backward (l, t): pre: gate derivatives -> branches (transposed MVM, column-side ADCs, bus) -> post.
Update   (m, t): pre: update management -> branches (bus to the translators, B pulsed rank-one updates).

Dependencies: forward (l,t) needs (l,t-1) (recurrence) and (l-1,t) (layer below), so layers run as a
wavefront; backward runs the same lattice in reverse; the output layer's ops are chained in time
order (one tile cannot run two ops at once); updates of a matrix start when its backward sweep is
done (weights stay fixed during the sequence's forward and backward sweeps); the next step's first
forward op of a matrix waits for that matrix's updates. The SimPy engine times this graph, the
analytic model evaluates it in closed form, and the functional simulator executes the same ops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archsim.activity import NOMINAL, ActivityProfile
from archsim.errors import SpecError
from archsim.hw.components import ADCBank, Bus, DigitalUnit
from archsim.mapping import Mapping, MatrixMapping, map_workload
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

PHASES = ("forward", "backward", "update")


@dataclass(frozen=True)
class Stage:
    """One resource held while ``count`` vectors stream through it, ``seconds`` each."""

    resource: str
    seconds: float
    count: int


@dataclass
class Op:
    """One (phase, matrix, timestep) of one training step."""

    id: int
    step: int
    phase: str
    matrix: str
    t: int
    pre: Stage | None
    branches: list[list[Stage]]
    post: Stage | None
    actions: dict[tuple[str, str], float]
    deps: list[int] = field(default_factory=list)

    def stages(self) -> list[Stage]:
        out = [self.pre] if self.pre else []
        for chain in self.branches:
            out.extend(chain)
        if self.post:
            out.append(self.post)
        return out


@dataclass
class TilePlacement:
    """Where a matrix block copy sits: global tile index, its bus and its digital unit."""

    tile: int
    bus: int
    digital: int
    rows: int
    cols: int
    count: int  # vectors of the batch this copy processes
    block: int = 0  # index of the block in the matrix's split (archsim.mapping.split_matrix order)


@dataclass
class Schedule:
    """The ordered ops of ``steps`` training steps, and what they are built from."""

    workload: WorkloadSpec
    arch: ArchitectureSpec
    mapping: Mapping
    activity: ActivityProfile
    steps: int
    batch: int
    ops: list[Op]
    placements: dict[str, list[TilePlacement]]

    @property
    def seq_len(self) -> int:
        return self.workload.training.seq_len

    def graph(self):
        """The op dependency graph as a networkx DiGraph (node attribute ``op``)."""
        import networkx as nx

        g = nx.DiGraph()
        for op in self.ops:
            g.add_node(op.id, op=op)
            g.add_edges_from((d, op.id) for d in op.deps)
        return g

    def action_counts(self) -> dict[tuple[str, str, str], float]:
        """(phase, component, action) -> count over all ops."""
        counts: dict[tuple[str, str, str], float] = {}
        for op in self.ops:
            for (comp, act), n in op.actions.items():
                key = (op.phase, comp, act)
                counts[key] = counts.get(key, 0.0) + n
        return counts

    def resources(self) -> list[str]:
        return sorted({s.resource for op in self.ops for s in op.stages()})


def place(mapping: Mapping, arch: ArchitectureSpec, batch: int) -> dict[str, list[TilePlacement]]:
    """Assign every block copy a physical tile, bus and digital unit; split the batch over copies."""
    if mapping.n_tiles > arch.system.n_tiles:
        detail = ", ".join(f"{m.name} {m.n_tiles}" for m in mapping.matrices)
        raise SpecError(arch.name, "system.n_tiles", arch.system.n_tiles,
                        f"the workload needs {mapping.n_tiles} tiles ({detail}); raise n_tiles or "
                        "use larger arrays")
    placements: dict[str, list[TilePlacement]] = {}
    g = 0
    for m in mapping.matrices:
        rows: list[TilePlacement] = []
        for copy in range(m.replication):
            count = batch // m.replication + (1 if copy < batch % m.replication else 0)
            for j, b in enumerate(m.blocks):
                if count > 0:
                    rows.append(TilePlacement(g, g // arch.bus.tiles_per_bus,
                                              g // arch.digital.tiles_per_unit, b.rows, b.cols,
                                              count, j))
                g += 1
        placements[m.name] = rows
    return placements


class _Builder:
    """Builds ops; all per-vector times and action counts are written out here, once."""

    def __init__(self, workload: WorkloadSpec, arch: ArchitectureSpec, mapping: Mapping,
                 activity: ActivityProfile, batch: int):
        self.w, self.arch, self.mapping, self.batch = workload, arch, mapping, batch
        self.activity = activity
        self.placements = place(mapping, arch, batch)
        self.adc = ADCBank(arch, arch.array.rows)
        self.adc_cols = ADCBank(arch, arch.array.cols)
        self.bus = Bus(arch)
        self.digital = DigitalUnit(arch)
        self.h = workload.model.hidden_size
        self.word = arch.digital.word_bits
        self._activity_cache: dict = {}

    def act(self, m: MatrixMapping, p: TilePlacement) -> ActivityProfile:
        """Activity of one tile (measured profiles may differ per matrix and per tile)."""
        key = (m.name, p.block)
        if key not in self._activity_cache:
            self._activity_cache[key] = self.activity.for_matrix(m.name, p.block)
        return self._activity_cache[key]

    # -- helpers -----------------------------------------------------------------------------
    def _digital_stage(self, m: MatrixMapping, counts: dict[str, float], actions: dict) -> Stage:
        unit = self.placements[m.name][0].digital
        for kind, n in counts.items():
            if n:
                actions[("digital", kind)] = actions.get(("digital", kind), 0.0) + n * self.batch
        return Stage(f"digital{unit}", self.digital.time_s(counts), self.batch)

    def _buffer(self, actions: dict, words: float) -> None:
        actions[("buffer", "bit")] = actions.get(("buffer", "bit"), 0.0) + words * self.word * self.batch

    @staticmethod
    def _add(actions: dict, key: tuple[str, str], n: float) -> None:
        actions[key] = actions.get(key, 0.0) + n

    # -- the three phases --------------------------------------------------------------------
    def forward(self, m: MatrixMapping, actions: dict):
        branches = []
        for p in self.placements[m.name]:
            rep = 1.0 + self.act(m, p).bm_repeats_per_mvm
            bits = p.cols * self.arch.dac.bits + p.rows * self.arch.adc.bits
            branches.append([
                Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", self.arch.array.t_forward_s * rep, p.count),
                Stage(f"tile{p.tile}.adc_rows", self.adc.convert_lines_time_s(p.rows) * rep, p.count),
            ])
            self._add(actions, ("bus", "bit"), bits * p.count)
            self._add(actions, ("array", "read_cell"), p.rows * p.cols * rep * p.count)
            self._add(actions, ("dac", "convert"), p.cols * rep * p.count)
            self._add(actions, ("integrator", "integrate"), p.rows * rep * p.count)
            self._add(actions, ("adc", "convert"), p.rows * rep * p.count)
            self._add(actions, ("array", "forward_mvm"), p.count)
            self._add(actions, ("array", "bm_repeat"), (rep - 1.0) * p.count)
        h, rows = self.h, m.rows
        counts = {"add": (m.col_splits - 1) * rows, "mul": rows}  # partial sums, NM/BM rescale
        if m.kind == "lstm":
            counts["sigmoid"] = 3 * h
            counts["tanh"] = 2 * h                      # g and tanh(c)
            counts["mul"] += 3 * h + h                  # f*c, i*g, o*tanh(c); NM scale of h_t
            counts["add"] += h + h                      # c_t sum; max|h_t| for NM
            self._buffer(actions, m.cols + m.cols + 5 * h)  # read u_t; keep u_t, i, f, o, g, c
        else:
            counts["exp"] = rows                        # softmax
            counts["add"] += rows
            counts["mul"] += rows
            self._buffer(actions, m.cols + m.cols + rows)   # read h; keep u and probabilities
        post = self._digital_stage(m, counts, actions)
        return None, branches, post

    def backward(self, m: MatrixMapping, actions: dict, mvm: bool = True):
        """``mvm=False``: the first layer at t=0 needs its gate derivatives (for the update) but
        no transposed MVM: nothing below a one-hot input or before t=0 consumes the result."""
        h, rows = self.h, m.rows
        if m.kind == "lstm":
            counts = {"add": h + 6 * h + rows, "mul": 16 * h + rows}  # dh sum, gate derivatives, NM
            self._buffer(actions, 6 * h + rows)                          # read gates, c_prev; keep dz
        else:
            counts = {"add": rows + rows, "mul": rows}                  # p - y, NM
            self._buffer(actions, rows + rows)
        pre = self._digital_stage(m, counts, actions)
        if not mvm:
            return pre, [], None
        branches = []
        for p in self.placements[m.name]:
            bits = p.rows * self.arch.dac.bits + p.cols * self.arch.adc.bits
            branches.append([
                Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", self.arch.array.t_backward_s, p.count),
                Stage(f"tile{p.tile}.adc_cols", self.adc_cols.convert_lines_time_s(p.cols), p.count),
            ])
            self._add(actions, ("bus", "bit"), bits * p.count)
            self._add(actions, ("array", "read_cell"), p.rows * p.cols * p.count)
            self._add(actions, ("dac", "convert"), p.rows * p.count)
            self._add(actions, ("integrator", "integrate"), p.cols * p.count)
            self._add(actions, ("adc", "convert"), p.cols * p.count)
            self._add(actions, ("array", "backward_mvm"), p.count)
        post = self._digital_stage(m, {"add": (m.row_splits - 1) * m.cols, "mul": m.cols}, actions)
        return pre, branches, post

    def update(self, m: MatrixMapping, actions: dict):
        n = m.rows + m.cols
        pre = self._digital_stage(m, {"add": n, "mul": n}, actions)  # max|x|, max|d|; scale by A, B
        self._buffer(actions, n)                                      # read u_t and dz_t
        branches = []
        for p in self.placements[m.name]:
            act = self.act(m, p)
            bl = act.pulse_slots(self.arch.update.desired_bl)
            t_update = bl * self.arch.update.t_pulse_s + self.arch.update.t_overhead_s
            bits = (p.rows + p.cols) * self.word
            branches.append([
                Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", t_update, p.count),
            ])
            self._add(actions, ("bus", "bit"), bits * p.count)
            self._add(actions, ("update", "translate"), (p.rows + p.cols) * p.count)
            self._add(actions, ("update", "rank_one"), p.count)
            self._add(actions, ("update", "pulse_slot"), bl * p.count)
            self._add(actions, ("update", "pulse_line"),
                      bl * (p.cols * act.x_fire_prob + p.rows * act.d_fire_prob) * p.count)
            self._add(actions, ("array", "coincidence"), bl * p.rows * p.cols * act.coincidence() * p.count)
        return pre, branches, None


def build_schedule(workload: WorkloadSpec, arch: ArchitectureSpec, *, steps: int = 1,
                   activity: ActivityProfile | None = None, mapping: Mapping | None = None,
                   batch: int | None = None) -> Schedule:
    """Build the ops of ``steps`` consecutive training steps."""
    activity = activity or NOMINAL
    batch = batch or workload.training.batch_size
    mapping = mapping or map_workload(workload.model, arch.array.rows, arch.array.cols,
                                      arch.system.replication)
    b = _Builder(workload, arch, mapping, activity, batch)
    T = workload.training.seq_len
    lstm = [m for m in mapping.matrices if m.kind == "lstm"]
    out = [m for m in mapping.matrices if m.kind == "output"]
    rows = lstm + out  # forward lattice rows, bottom to top
    ops: list[Op] = []
    last_update: dict[str, int] = {}

    def new(step, phase, m, t, deps, **kw):
        actions: dict = {}
        pre, branches, post = getattr(b, phase)(m, actions, **kw)
        op = Op(len(ops), step, phase, m.name, t, pre, branches, post, actions,
                [d for d in deps if d is not None])
        ops.append(op)
        return op.id

    for step in range(steps):
        fwd: dict[tuple[int, int], int] = {}
        for t in range(T):
            for k, m in enumerate(rows):
                deps = [fwd.get((k, t - 1)), fwd.get((k - 1, t)) if k > 0 else None]
                if t == 0:
                    deps.append(last_update.get(m.name))
                fwd[(k, t)] = new(step, "forward", m, t, deps)
        end_fwd = fwd[(len(rows) - 1, T - 1)]
        bwd: dict[tuple[int, int], int] = {}
        top = len(rows) - 1
        for t in reversed(range(T)):
            for k in reversed(range(len(rows))):
                deps = [bwd.get((k, t + 1)), bwd.get((k + 1, t)) if k < top else None]
                if t == T - 1 and k == top:
                    deps.append(end_fwd)
                skip = k == 0 and t == 0 and rows[k].kind == "lstm"
                bwd[(k, t)] = new(step, "backward", rows[k], t, deps, **({"mvm": False} if skip else {}))
        for k, m in enumerate(rows):
            prev = bwd[(k, 0)]
            for t in range(T):
                prev = new(step, "update", m, t, [prev])
            last_update[m.name] = prev
    return Schedule(workload, arch, mapping, activity, steps, batch, ops, b.placements)
