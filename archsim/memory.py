"""Where BPTT state lives: placement by capacity over the memory levels of an architecture.

One training step keeps, per matrix, the ``activations`` its forward sweep stores and the
``errors`` its backward sweep stores (:func:`archsim.program.bptt_state_words`, summed over the T
timesteps, times B vectors x the word size) until that matrix's updates have read them back. Each piece goes, whole,
to the first level with room for it, in matrix order (bottom layer first, activations before
errors)::

    tile buffer    the buffers of the digital units that serve the matrix's tiles (each unit
                   holds its share; capacity is per unit)
    global buffer  the chip's shared SRAM
    dram           off-chip DRAM/HBM

Working vectors (an MVM's input, gates handed from a recompute op to its backward op) live from
one op to the next: each matrix reserves room for its largest working set (words x the vectors of
one copy) first, in the same order of levels; before it, a TTv2 matrix places its buffer H (one
word per device of the matrix, :func:`archsim.program.transfer_buffer_words`), which every
transfer update reads and writes and which lives from step to step. The peak is counted as
everything a step keeps, because the first updates start only after the last backward op of their
matrix: the activations of all T timesteps and the errors of all T timesteps are live together.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archsim.errors import SpecError
from archsim.program import StepProgram, bptt_state_words, transfer_buffer_words
from archsim.specs.architecture import ArchitectureSpec
from archsim.units import format_quantity

#: Memory levels, nearest first (component names of :mod:`archsim.hw.components`).
LEVELS = ("buffer", "global_buffer", "dram")


@dataclass
class MemoryPlan:
    """Level of each (matrix, state) and the bytes each level holds at the peak of a step."""

    level: dict[tuple[str, str], str]
    bytes_kept: dict[tuple[str, str], float]
    peak_bytes: dict[str, float] = field(default_factory=dict)
    capacity_bytes: dict[str, float] = field(default_factory=dict)

    def level_of(self, matrix: str, state: str) -> str:
        return self.level[(matrix, state)]


def plan_memory(program: StepProgram, arch: ArchitectureSpec, batch: int,
                units_of: dict[str, set[int]]) -> MemoryPlan:
    """Place what one step of ``program`` keeps (``units_of``: matrix -> the digital units whose
    buffers serve its tiles)."""
    word_bytes = arch.digital.word_bits / 8
    words = bptt_state_words(program)
    unit_free: dict[int, float] = {}
    for units in units_of.values():
        for u in units:
            unit_free[u] = arch.buffer.capacity_bytes
    free = {"global_buffer": arch.global_buffer.capacity_bytes if arch.global_buffer else 0.0,
            "dram": arch.dram.capacity_bytes if arch.dram else 0.0}
    capacity = {"buffer": arch.buffer.capacity_bytes * len(unit_free), **free}
    peak = dict.fromkeys(LEVELS, 0.0)
    level: dict[tuple[str, str], str] = {}
    kept: dict[tuple[str, str], float] = {}
    need_of = {(m.name, s): words[m.name][s] * batch * word_bytes
               for m in program.matrices for s in ("activations", "errors")}
    for name, n in transfer_buffer_words(program).items():   # TTv2's H: kept for good
        if n:
            need_of[(name, "transfer_buffer")] = n * word_bytes
    working: dict[str, int] = {}
    for op in program.ops:
        for a in (*op.loads, *op.stores):
            if a.state == "working":
                working[op.matrix] = max(working.get(op.matrix, 0), a.words)
    for m in program.matrices:
        units = sorted(units_of.get(m.name, ()))
        # the vectors one copy streams at once (copies hold their own share of the batch)
        per_copy = -(-batch // m.replication)
        need_of[(m.name, "working")] = working.get(m.name, 0) * per_copy * word_bytes * m.replication
        for state in ("transfer_buffer", "working", "activations", "errors"):
            if (m.name, state) not in need_of:
                continue
            need = kept[(m.name, state)] = need_of[(m.name, state)]
            if need == 0:
                level[(m.name, state)] = "buffer"
                continue
            share = need / len(units) if units else float("inf")
            if units and all(unit_free[u] >= share for u in units):
                for u in units:
                    unit_free[u] -= share
                where = "buffer"
            elif free["global_buffer"] >= need:
                free["global_buffer"] -= need
                where = "global_buffer"
            elif free["dram"] >= need:
                free["dram"] -= need
                where = "dram"
            else:
                total = sum(need_of.values())
                raise SpecError(arch.name, "dram.capacity_bytes" if arch.dram else "dram",
                                format_quantity(arch.dram.capacity_bytes, "B") if arch.dram else None,
                                f"a step keeps {format_quantity(total, 'B')} of BPTT state "
                                f"({m.name} {state}: {format_quantity(need, 'B')} does not fit "
                                "what is left of any level); add or enlarge global_buffer or "
                                "dram, lower the batch or seq_len, or set "
                                "system.bptt_state: recompute")
            level[(m.name, state)] = where
            peak[where] += need
    return MemoryPlan(level, kept, peak, capacity)
