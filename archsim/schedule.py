"""The schedule of training steps: the step program's ops, timed on tiles, buses and digital units.

:mod:`archsim.program` says what one training step does (which analog op runs on which matrix at
which timestep, which digital work surrounds it, and the dependencies); this module knows only how
long each kind of op holds which resource and which actions it costs. One op is one (phase,
matrix, timestep) of one training step. It streams the batch's vectors through a chain of stages,
each holding one resource for a per-vector time:

    [pre: digital]  ->  branches: one per tile  [bus, array, ADC] or [bus, array]  ->  [post: digital]

forward_mvm:      branches (array forward, row-side ADCs, bus)
backward_mvm:     branches (transposed MVM, column-side ADCs, bus)
rank_one_update:  branches (bus to the translators, B pulsed rank-one updates)

Every op's digital pre and post stages come from the program's digital work. A step's ops depend on
each other as the program says; the next step's ops wait for the previous step's as the program's
``carry`` says. The SimPy engine times this graph, the analytic model evaluates it in closed form,
and the functional simulator executes the same program.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archsim.activity import NOMINAL, ActivityProfile
from archsim.errors import SpecError
from archsim.hw.components import ADCBank, Bus, DigitalUnit
from archsim.mapping import Mapping, MatrixMapping, map_workload
from archsim.program import PHASES, DigitalWork, ProgramOp, StepProgram, build_program
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

__all__ = ["PHASES", "Stage", "Op", "TilePlacement", "Schedule", "place", "build_schedule"]


@dataclass(frozen=True)
class Stage:
    """One resource held while ``count`` vectors stream through it, ``seconds`` each."""

    resource: str
    seconds: float
    count: int


@dataclass
class Op:
    """One (phase, matrix, timestep) of one training step; ``kind`` is the program op's analog
    kind (None: digital work only)."""

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
    kind: str | None = None

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
    program: StepProgram | None = None

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
    """Turns program ops into timed ops; all per-vector times and action counts are written out
    here, once, per op kind."""

    def __init__(self, workload: WorkloadSpec, arch: ArchitectureSpec, mapping: Mapping,
                 activity: ActivityProfile, batch: int):
        self.w, self.arch, self.mapping, self.batch = workload, arch, mapping, batch
        self.activity = activity
        self.placements = place(mapping, arch, batch)
        self.matrices = {m.name: m for m in mapping.matrices}
        self.adc = ADCBank(arch, arch.array.rows)
        self.adc_cols = ADCBank(arch, arch.array.cols)
        self.bus = Bus(arch)
        self.digital = DigitalUnit(arch)
        self.word = arch.digital.word_bits
        self._activity_cache: dict = {}
        self.kinds = {"forward_mvm": self.forward_mvm, "backward_mvm": self.backward_mvm,
                      "rank_one_update": self.rank_one_update}

    def act(self, m: MatrixMapping, p: TilePlacement) -> ActivityProfile:
        """Activity of one tile (measured profiles may differ per matrix and per tile)."""
        key = (m.name, p.block)
        if key not in self._activity_cache:
            self._activity_cache[key] = self.activity.for_matrix(m.name, p.block)
        return self._activity_cache[key]

    # -- one program op ----------------------------------------------------------------------
    def stages(self, op: ProgramOp, actions: dict):
        """(pre, branches, post) of a program op, adding its actions to ``actions``."""
        m = self.matrices[op.matrix]
        pre = self._digital_stage(m, op.pre, actions) if op.pre else None
        branches: list[list[Stage]] = []
        if op.kind is not None:
            make = self.kinds.get(op.kind)
            if make is None:
                raise NotImplementedError(f"the schedule has no stages for {op.kind!r} ops yet")
            branches = make(m, actions)
        post = self._digital_stage(m, op.post, actions) if op.post else None
        return pre, branches, post

    def _digital_stage(self, m: MatrixMapping, work: DigitalWork, actions: dict) -> Stage:
        unit = self.placements[m.name][0].digital
        if work.buffer_words and not work.buffer_last:
            self._add(actions, ("buffer", "bit"), work.buffer_words * self.word * self.batch)
        for kind, n in work.counts.items():
            if n:
                self._add(actions, ("digital", kind), n * self.batch)
        if work.buffer_words and work.buffer_last:
            self._add(actions, ("buffer", "bit"), work.buffer_words * self.word * self.batch)
        return Stage(f"digital{unit}", self.digital.time_s(work.counts), self.batch)

    @staticmethod
    def _add(actions: dict, key: tuple[str, str], n: float) -> None:
        actions[key] = actions.get(key, 0.0) + n

    # -- analog op kinds: one branch per tile ------------------------------------------------
    def forward_mvm(self, m: MatrixMapping, actions: dict) -> list[list[Stage]]:
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
        return branches

    def backward_mvm(self, m: MatrixMapping, actions: dict) -> list[list[Stage]]:
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
        return branches

    def rank_one_update(self, m: MatrixMapping, actions: dict) -> list[list[Stage]]:
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
        return branches


def build_schedule(workload: WorkloadSpec, arch: ArchitectureSpec, *, steps: int = 1,
                   activity: ActivityProfile | None = None, mapping: Mapping | None = None,
                   batch: int | None = None, program: StepProgram | None = None) -> Schedule:
    """Time ``steps`` consecutive training steps of the step program (built from the workload and
    the mapping unless ``program`` is given)."""
    activity = activity or NOMINAL
    batch = batch or workload.training.batch_size
    if program is not None:
        mapping = program.mapping
    mapping = mapping or map_workload(workload.model, arch.array.rows, arch.array.cols,
                                      arch.system.replication)
    if program is None:
        program = build_program(mapping, workload.model.hidden_size, workload.training.seq_len)
    b = _Builder(workload, arch, mapping, activity, batch)
    # Every step times the same ops; stages and actions are built once and shared.
    made = []
    for pop in program.ops:
        actions: dict = {}
        made.append((pop, *b.stages(pop, actions), actions))
    n = len(program.ops)
    ops: list[Op] = []
    for step in range(steps):
        base = step * n
        for pop, pre, branches, post, actions in made:
            deps = [base + d for d in pop.deps]
            if step > 0:
                deps += [base - n + d for d in pop.carry]
            ops.append(Op(base + pop.id, step, pop.phase, pop.matrix, pop.t, pre, branches, post,
                          actions, deps, pop.kind))
    return Schedule(workload, arch, mapping, activity, steps, batch, ops, b.placements, program)
