"""The schedule of training steps: the step program's ops, timed on tiles, buses, digital units
and memory levels.

:mod:`archsim.program` says what one training step does (which analog op runs on which matrix at
which timestep, which digital work and memory traffic surround it, and the dependencies); this
module knows only how long each kind of op holds which resource and which actions it costs. One
op is one (phase, matrix, timestep) of one training step. Each copy of the matrix (replication)
streams its share of the batch's vectors through a chain of stages, each holding one resource for
a per-vector time; the copies run in parallel, each on its own digital unit:

    [loads: memory] -> [pre: digital] -> blocks: one branch per tile [bus, array, ADC] or
    [bus, array] -> [post: digital] -> [stores: memory]

forward_mvm / recompute_mvm:  branches (array forward, row-side ADCs, bus)
backward_mvm:                 branches (transposed MVM, column-side ADCs, bus)
rank_one_update:              branches (bus to the translators, B pulsed rank-one updates)
transfer_read:                forward_mvm's branches on the fast arrays A (Tiki-Taka), no
                              bound-management repeats, one vector per column read
transfer_update:              rank_one_update's branches on the slow arrays C, one driven x line
                              (the one-hot column) per transfer; TTv2: transfer_desired_bl pulse
                              slots, after the digital buffer H's work and traffic (the op's
                              pre-work, loads and stores: :mod:`archsim.program`)

A Tiki-Taka matrix (two arrays per block) has its fast array A and its slow array C of each block
on adjacent tiles (A first), so that with two or more tiles per bus or digital unit the pair
shares them: its forward and transposed MVMs run on the C tiles (with ``gamma > 0`` the A tile of
the block is read in the same cycle on shared lines: twice the cells read, one conversion per
line), its SGD updates and transfer reads on the A tiles, its transfer updates on the C tiles.

Memory traffic goes to the level :mod:`archsim.memory` placed its state in: a digital unit's tile
buffer, or the chip's global buffer or DRAM, whose single port every tile shares (so contention
shows up as waiting). A step's ops depend on each other as the program says; the next step's ops
wait for the previous step's as the program's ``carry`` says. The SimPy engine times this graph,
the analytic model evaluates it in closed form, and the functional simulator executes the same
program.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from archsim.activity import NOMINAL, ActivityProfile
from archsim.errors import SpecError
from archsim.hw.components import (
    DRAM, ADCBank, Buffer, Bus, CrossPointArray, DigitalUnit, GlobalBuffer, UpdateDriver,
)
from archsim.mapping import Mapping, MatrixMapping, map_workload
from archsim.memory import MemoryPlan, plan_memory
from archsim.program import (
    PHASES, Access, DigitalWork, ProgramOp, StepProgram, Transfer, build_program,
)
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.workload import WorkloadSpec

__all__ = ["PHASES", "Stage", "Par", "Op", "TilePlacement", "Schedule", "place", "build_schedule"]


#: Resource classes (prefix of the resource names below), as ``utilization`` reports them.
RESOURCE_CLASSES = ("array", "adc_rows", "adc_cols", "bus", "digital", "buffer",
                    "global_buffer", "dram")


def resource_class(name: str) -> str:
    """``tile3.adc_rows`` -> ``adc_rows``, ``digital2`` -> ``digital``, ``dram`` -> ``dram``."""
    tail = name.split(".")[-1]
    for cls in RESOURCE_CLASSES:
        if tail.startswith(cls):
            return cls
    return tail


@dataclass(frozen=True)
class Stage:
    """One resource held while ``count`` vectors stream through it, ``seconds`` each."""

    resource: str
    seconds: float
    count: int


@dataclass(frozen=True)
class Par:
    """Chains of stages that run side by side (one per tile block of a copy)."""

    branches: tuple[tuple[Stage, ...], ...]


#: One copy's sequence: stages one after another, with at most parallel groups between them.
Chain = tuple[Stage | Par, ...]


@dataclass
class Op:
    """One (phase, matrix, timestep) of one training step; ``kind`` is the program op's analog
    kind (None: digital work only). ``copies``: one chain per copy of the matrix, run side by
    side."""

    id: int
    step: int
    phase: str
    matrix: str
    t: int
    copies: tuple[Chain, ...]
    actions: dict[tuple[str, str], float]
    deps: list[int] = field(default_factory=list)
    kind: str | None = None

    def stages(self) -> list[Stage]:
        out: list[Stage] = []
        for chain in self.copies:
            for item in chain:
                if isinstance(item, Par):
                    for branch in item.branches:
                        out.extend(branch)
                else:
                    out.append(item)
        return out

    @property
    def tile_branches(self) -> list[tuple[Stage, ...]]:
        """The tile branches of every copy (empty for digital-only ops)."""
        return [b for chain in self.copies for item in chain if isinstance(item, Par)
                for b in item.branches]


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
    copy: int = 0   # which copy of the matrix (replication)
    role: str = ""  # "": the one array of an SGD matrix; "A"/"C": Tiki-Taka's fast/slow array


#: Which arrays of a block each analog op kind runs on ("": an SGD matrix's one array).
KIND_ROLES = {"forward_mvm": ("", "C"), "recompute_mvm": ("", "C"), "backward_mvm": ("", "C"),
              "rank_one_update": ("", "A"), "transfer_read": ("A",), "transfer_update": ("C",)}


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
    memory: MemoryPlan | None = None

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
                # Tiki-Taka: the block's A and C arrays on adjacent tiles
                for role in (("A", "C") if m.tiki_taka else ("",)):
                    if count > 0:
                        rows.append(TilePlacement(g, g // arch.bus.tiles_per_bus,
                                                  g // arch.digital.tiles_per_unit, b.rows,
                                                  b.cols, count, j, copy, role))
                    g += 1
        placements[m.name] = rows
    return placements


class _Builder:
    """Turns program ops into timed ops; all per-vector times and action counts are written out
    here, once, per op kind. Ops alike (same kind, matrix, digital work and traffic) share one
    timed body and one action table, so building a long sequence costs little."""

    def __init__(self, workload: WorkloadSpec, arch: ArchitectureSpec, mapping: Mapping,
                 activity: ActivityProfile, batch: int, program: StepProgram,
                 memory: MemoryPlan | None = None, device=None):
        self.w, self.arch, self.mapping, self.batch = workload, arch, mapping, batch
        self.activity = activity
        self.placements = place(mapping, arch, batch)
        self.matrices = {m.name: m for m in mapping.matrices}
        self.adc = ADCBank(arch, arch.array.rows)
        self.adc_cols = ADCBank(arch, arch.array.cols)
        self.bus = Bus(arch)
        self.array = CrossPointArray(arch)
        self.digital = DigitalUnit(arch)
        self.updater = UpdateDriver(arch, device)
        self.levels = {"buffer": Buffer(arch)}
        if arch.global_buffer is not None:
            self.levels["global_buffer"] = GlobalBuffer(arch)
        if arch.dram is not None:
            self.levels["dram"] = DRAM(arch)
        self.word = arch.digital.word_bits
        # copy -> its placements, per matrix; the copy's digital unit is its first block's
        self.copies = {name: _by_copy(rows) for name, rows in self.placements.items()}
        units_of = {name: {p.digital for p in rows} for name, rows in self.placements.items()}
        self.memory = memory or plan_memory(program, arch, batch, units_of)
        self._activity_cache: dict = {}
        self._made: dict = {}
        self.kinds = {"forward_mvm": self.forward_mvm, "recompute_mvm": self.forward_mvm,
                      "backward_mvm": self.backward_mvm, "rank_one_update": self.rank_one_update,
                      "transfer_read": self.transfer_read, "transfer_update": self.transfer_update}

    def act(self, m: MatrixMapping, p: TilePlacement) -> ActivityProfile:
        """Activity of one tile (measured profiles may differ per matrix and per tile)."""
        key = (m.name, p.block)
        if key not in self._activity_cache:
            self._activity_cache[key] = self.activity.for_matrix(m.name, p.block)
        return self._activity_cache[key]

    # -- one program op ----------------------------------------------------------------------
    def made(self, op: ProgramOp) -> tuple[tuple[Chain, ...], dict]:
        """(copies, actions) of a program op, shared by every op alike."""
        key = (op.kind, op.matrix, id(op.pre), id(op.post), op.loads, op.stores, op.vectors)
        hit = self._made.get(key)
        if hit is None:
            actions: dict = {}
            hit = self._made[key] = (self.copies_of(op, actions), actions)
        return hit

    def copies_of(self, op: ProgramOp, actions: dict) -> tuple[Chain, ...]:
        """One chain per copy of the op's matrix, adding the op's actions to ``actions``."""
        m = self.matrices[op.matrix]
        make = None
        if op.kind is not None:
            make = self.kinds.get(op.kind)
            if make is None:
                raise NotImplementedError(f"the schedule has no stages for {op.kind!r} ops yet")
            if op.kind.startswith("transfer_") and not m.tiki_taka:
                raise NotImplementedError(f"{op.kind!r} ops need a Tiki-Taka matrix (arrays A and "
                                          f"C); {m.name} has one array per block")
        chains = []
        for placements in self.copies[m.name]:
            unit = placements[0].digital
            count = op.vectors or placements[0].count
            chain: list = [self._memory_stage(m, a, unit, count, actions) for a in op.loads]
            if op.pre:
                chain.append(self._digital_stage(op.pre, unit, count, actions))
            if make is not None:
                tiles = [p if not op.vectors else replace(p, count=op.vectors)
                         for p in placements if p.role in KIND_ROLES[op.kind]]
                chain.append(Par(tuple(make(m, p, actions) for p in tiles)))
            if op.post:
                chain.append(self._digital_stage(op.post, unit, count, actions))
            chain += [self._memory_stage(m, a, unit, count, actions) for a in op.stores]
            chains.append(tuple(chain))
        return tuple(chains)

    def _digital_stage(self, work: DigitalWork, unit: int, count: int, actions: dict) -> Stage:
        for kind, n in work.counts.items():
            if n:
                self._add(actions, ("digital", kind), n * count)
        return Stage(f"digital{unit}", self.digital.time_s(work.counts), count)

    def _memory_stage(self, m: MatrixMapping, access: Access, unit: int, count: int,
                      actions: dict) -> Stage:
        level = self.memory.level_of(m.name, access.state)
        bits = access.words * self.word
        self._add(actions, (level, "bit"), bits * count)
        resource = f"buffer{unit}" if level == "buffer" else level
        return Stage(resource, self.levels[level].transfer_time_s(bits), count)

    @staticmethod
    def _add(actions: dict, key: tuple[str, str], n: float) -> None:
        actions[key] = actions.get(key, 0.0) + n

    # -- analog op kinds: one branch per tile ------------------------------------------------
    def _arrays_read(self, m: MatrixMapping, p: TilePlacement) -> int:
        """Arrays an MVM of the network's weight reads: Tiki-Taka with gamma > 0 reads A and C."""
        return 2 if p.role == "C" and self.arch.update.gamma > 0 else 1

    def forward_mvm(self, m: MatrixMapping, p: TilePlacement, actions: dict,
                    name: str = "forward_mvm", repeats: bool = True) -> tuple[Stage, ...]:
        """``name``: the action counting its vectors; ``repeats``: bound management may repeat
        it (a transfer read has none)."""
        rep = 1.0 + self.act(m, p).bm_repeats_per_mvm if repeats else 1.0
        bits = p.cols * self.arch.dac.bits + p.rows * self.arch.adc.bits
        self._add(actions, ("bus", "bit"), bits * p.count)
        self._add(actions, ("array", "read_cell"), self._arrays_read(m, p)
                  * self.array.lines_read(p.cols, p.rows, transposed=False) * rep * p.count)
        self._add(actions, ("dac", "convert"), p.cols * rep * p.count)
        self._add(actions, ("integrator", "integrate"), p.rows * rep * p.count)
        self._add(actions, ("adc", "convert"), p.rows * rep * p.count)
        self._add(actions, ("array", name), p.count)
        if repeats:
            self._add(actions, ("array", "bm_repeat"), (rep - 1.0) * p.count)
        return (Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", self.arch.array.t_forward_s * rep, p.count),
                Stage(f"tile{p.tile}.adc_rows", self.adc.convert_lines_time_s(p.rows) * rep, p.count))

    def backward_mvm(self, m: MatrixMapping, p: TilePlacement, actions: dict) -> tuple[Stage, ...]:
        bits = p.rows * self.arch.dac.bits + p.cols * self.arch.adc.bits
        self._add(actions, ("bus", "bit"), bits * p.count)
        self._add(actions, ("array", "read_cell"), self._arrays_read(m, p)
                  * self.array.lines_read(p.rows, p.cols, transposed=True) * p.count)
        self._add(actions, ("dac", "convert"), p.rows * p.count)
        self._add(actions, ("integrator", "integrate"), p.cols * p.count)
        self._add(actions, ("adc", "convert"), p.cols * p.count)
        self._add(actions, ("array", "backward_mvm"), p.count)
        return (Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", self.arch.array.t_backward_s, p.count),
                Stage(f"tile{p.tile}.adc_cols", self.adc_cols.convert_lines_time_s(p.cols), p.count))

    def rank_one_update(self, m: MatrixMapping, p: TilePlacement, actions: dict,
                        name: str = "rank_one", slots: str = "pulse_slot",
                        bl: float | None = None) -> tuple[Stage, ...]:
        """``name``/``slots``: the actions counting its vectors and its pulse slots; ``bl``: its
        pulse slots per update (default: the activity's)."""
        act = self.act(m, p)
        if bl is None:
            bl = act.pulse_slots(self.arch.update.desired_bl)
        bits = (p.rows + p.cols) * self.word
        self._add(actions, ("bus", "bit"), bits * p.count)
        self._add(actions, ("update", "translate"), (p.rows + p.cols) * p.count)
        self._add(actions, ("update", name), p.count)
        self._add(actions, ("update", slots), bl * p.count)
        self._add(actions, ("update", "pulse_line"),
                  bl * (p.cols * act.x_fire_prob + p.rows * act.d_fire_prob) * p.count)
        self._add(actions, ("array", "coincidence"), bl * p.rows * p.cols * act.coincidence() * p.count)
        return (Stage(f"bus{p.bus}", self.bus.transfer_time_s(bits), p.count),
                Stage(f"tile{p.tile}.array", self.updater.update_time_s(bl), p.count))

    def transfer_read(self, m: MatrixMapping, p: TilePlacement, actions: dict) -> tuple[Stage, ...]:
        """Tiki-Taka: one forward MVM of a one-hot input per column read, on an A tile."""
        return self.forward_mvm(m, p, actions, "transfer_read", repeats=False)

    def transfer_update(self, m: MatrixMapping, p: TilePlacement, actions: dict) -> tuple[Stage, ...]:
        """Tiki-Taka: one rank-one update per column read, on a C tile: the read column (TTv2:
        its pulse counts) on the rows' lines and one driven column line (its fire probabilities
        are the activity's), ``desired_bl`` pulse slots (TTv2: ``transfer_desired_bl``)."""
        u = self.arch.update
        bl = self.act(m, p).transfer_pulse_slots(
            u.transfer_desired_bl if u.buffered else u.desired_bl)
        return self.rank_one_update(m, replace(p, cols=1), actions, "transfer",
                                    "transfer_pulse_slot", bl)


def _by_copy(rows: list[TilePlacement]) -> list[list[TilePlacement]]:
    out: dict[int, list[TilePlacement]] = {}
    for p in rows:
        out.setdefault(p.copy, []).append(p)
    return [out[c] for c in sorted(out)]


def transfer_settings(arch: ArchitectureSpec, batch: int) -> Transfer | None:
    """Tiki-Taka's transfer settings of the architecture at this batch (None: SGD)."""
    u = arch.update
    if not u.tiki_taka:
        return None
    return Transfer(u.transfer_every, u.n_reads_per_transfer, batch, u.algorithm)


def build_schedule(workload: WorkloadSpec, arch: ArchitectureSpec, *, steps: int = 1,
                   activity: ActivityProfile | None = None, mapping: Mapping | None = None,
                   batch: int | None = None, program: StepProgram | None = None,
                   memory: MemoryPlan | None = None, device=None) -> Schedule:
    """Time ``steps`` consecutive training steps of the step program (built from the workload and
    the mapping unless ``program`` is given); ``memory``: where BPTT state lives (default: placed
    by capacity for this workload; given when a shorter sequence stands in for a longer one);
    ``device``: the device preset, whose write pulse may lengthen the update pulse slots."""
    activity = activity or NOMINAL
    batch = batch or workload.training.batch_size
    if program is not None:
        mapping = program.mapping
    mapping = mapping or map_workload(workload.model, arch.array.rows, arch.array.cols,
                                      arch.system.replication, arch.update.algorithm)
    if program is None:
        program = build_program(mapping, workload.model.hidden_size, workload.training.seq_len,
                                arch.system.bptt_state, transfer_settings(arch, batch))
    if program.transfer is not None and program.transfer.batch != batch:
        raise ValueError(f"the program places its transfers for batch {program.transfer.batch}, "
                         f"not {batch}")
    b = _Builder(workload, arch, mapping, activity, batch, program, memory, device)
    # Every step times the same ops; ops alike share their timed body and actions.
    made = [(pop, *b.made(pop)) for pop in program.ops]
    n = len(program.ops)
    ops: list[Op] = []
    for step in range(steps):
        base = step * n
        for pop, copies, actions in made:
            deps = [base + d for d in pop.deps]
            if step > 0:
                deps += [base - n + d for d in pop.carry]
            ops.append(Op(base + pop.id, step, pop.phase, pop.matrix, pop.t, copies, actions,
                          deps, pop.kind))
    return Schedule(workload, arch, mapping, activity, steps, batch, ops, b.placements, program,
                    b.memory)
