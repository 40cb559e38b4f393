"""Can this run be done at all? Checked from the specs alone, before anything is allocated.

Absurd sizes (a hidden size of 10^12, a sequence of 10^12 characters, BL = 10^12 in exact update
mode) must fail in well under a second with one line, not after minutes of allocation ending in a
MemoryError or a hang. Everything here is arithmetic on the spec: tile counts per matrix without
building the tile lists, the number of ops and tile-ops a SimPy run would build, and the memory a
functional (torch) training run would need.

The limits are generous for real work (a whole lstm2x512 epoch simulated op by op with
``--exact`` builds 1.56 M ops) and say in the error what to change.
"""
from __future__ import annotations

import math
import os

from archsim.errors import SpecError

#: Tiles one schedule may place (each is an object with its resources; an LSTM with H = 4096 on
#: 256 x 256 arrays needs about 4,300).
MAX_TILES = 1_000_000
#: Ops one SimPy schedule may hold (each op is a Python object with its stages and actions).
MAX_SCHEDULE_OPS = 2_000_000
#: Tile-ops (an op on every tile of its matrix) one SimPy run may simulate: about 10 events each.
MAX_TILE_OPS = 40_000_000
#: Steps the epoch extrapolation simulates at most (warm-up 1 + window up to 8, engine/extrapolate.py).
EXTRAPOLATION_STEPS = 9
#: Share of this machine's physical memory a functional run may plan to use.
MEMORY_SHARE = 0.8
#: float32 tensors of the size of the array a pulsed-device tile keeps (weight, the device's
#: bounds, steps, their moments and rates: 12 for constant step, 18 for linear step, see
#: functional/devices/) plus slack.
PULSED_TENSORS_PER_CELL = 20
#: The same for a floating-point tile (weight, gradient, a workspace copy).
IDEAL_TENSORS_PER_CELL = 4


def blocks_per_matrix(rows: int, cols: int, array_rows: int, array_cols: int) -> int:
    """Tiles :func:`archsim.mapping.split_matrix` cuts a ``rows x cols`` matrix into (no lists)."""
    return math.ceil(rows / array_rows) * math.ceil(cols / array_cols)


def matrix_shapes(model) -> list[tuple[str, int, int]]:
    """(name, rows, cols) of every weight matrix of a :class:`~archsim.specs.workload.ModelSpec`."""
    h, n = model.hidden_size, model.n_input
    # The layers above the first all have the same shape: no list of 10^12 entries.
    shapes = [("lstm1", 4 * h, n + h + 1)]
    if model.layers > 1:
        shapes.append((f"lstm2..{model.layers}" if model.layers > 2 else "lstm2", 4 * h, 2 * h + 1))
    if model.output_layer:
        shapes.append(("output", model.n_output, h + 1))
    return shapes


def tiles_needed(model, arch) -> dict[str, int]:
    """Tiles per matrix (replicas and Tiki-Taka's second arrays included), as the mapping will
    place them."""
    rep = arch.system.replication * (2 if arch.update.tiki_taka else 1)  # A and C
    out = {}
    for name, r, c in matrix_shapes(model):
        k = blocks_per_matrix(r, c, arch.array.rows, arch.array.cols) * rep
        if name.startswith("lstm2"):
            k *= model.layers - 1
        out[name] = k
    return out


def check_tiles(workload, arch) -> int:
    """Raise the one-line "too many tiles" error (as the schedule would) before any mapping;
    return the number of tiles needed."""
    need = tiles_needed(workload.model, arch)
    total = sum(need.values())
    if total > arch.system.n_tiles:
        detail = ", ".join(f"{name} {k}" for name, k in need.items())
        raise SpecError(workload.where, f"system.n_tiles of architecture {arch.name}", arch.system.n_tiles,
                        f"the workload needs {total} tiles ({detail}); raise n_tiles or use larger arrays")
    return total


def schedule_ops_per_step(workload, arch=None) -> int:
    """Ops :func:`archsim.schedule.build_schedule` makes per step: forward, backward and update of
    every matrix at every timestep, and with Tiki-Taka (``arch``'s ``update.algorithm``) a
    transfer read and a transfer update after every update op that holds a transfer."""
    m = workload.model
    T, matrices = workload.training.seq_len, m.layers + (1 if m.output_layer else 0)
    extra = 0
    if arch is not None and arch.update.tiki_taka:
        B, n = workload.training.batch_size, arch.update.transfer_every
        extra = 2 * sum(1 for t in range(T) if (t + 1) * B // n > t * B // n)
    return (3 * T + extra) * matrices


def check_estimate(workload, arch, *, exact: bool = False, steps_per_epoch: int | None = None,
                   fidelity: str = "simpy") -> None:
    """Tiles, schedule size and simulated work of ``archsim estimate`` (one line if too big)."""
    tiles = check_tiles(workload, arch)
    if tiles > MAX_TILES:
        raise SpecError(workload.where, "model.hidden_size", workload.model.hidden_size,
                        f"the workload needs {tiles:,} tiles; the event model places at most "
                        f"{MAX_TILES:,}: use a smaller network or larger arrays")
    per_step = schedule_ops_per_step(workload, arch)
    T = workload.training.seq_len
    if per_step > MAX_SCHEDULE_OPS:
        raise SpecError(workload.where, "training.seq_len", T,
                        f"one step would be {per_step:,} ops (3 phases x T x matrices); at most "
                        f"{MAX_SCHEDULE_OPS:,}: use a shorter sequence")
    if fidelity != "simpy":
        return
    steps = EXTRAPOLATION_STEPS
    if exact:
        steps = steps_per_epoch if steps_per_epoch is not None else workload.steps_per_epoch()
    ops, tile_ops = per_step * steps, 3 * T * tiles * steps
    if ops > MAX_SCHEDULE_OPS or tile_ops > MAX_TILE_OPS:
        hint = ("drop --exact (the epoch is extrapolated from a few steps)" if exact
                else "use fewer tiles (larger arrays) or a shorter sequence")
        raise SpecError(workload.where, "training.seq_len" if not exact else "--exact", T if not exact else True,
                        f"the SimPy run would simulate {steps:,} steps of {per_step:,} ops on {tiles:,} "
                        f"tiles ({tile_ops:,} tile-ops; at most {MAX_TILE_OPS:,} and {MAX_SCHEDULE_OPS:,} "
                        f"ops): {hint}")


def physical_memory_bytes() -> int:
    """This machine's physical memory (or a cgroup limit below it), in bytes."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def training_memory_bytes(workload, arch, device, *, vocab_size: int | None = None,
                          update_mode: str = "fast") -> int:
    """An upper estimate of what a functional training run allocates (float32): the tiles and their
    devices, the activations and errors of one BPTT window, the update operands, and in ``exact``
    update mode the sampled pulse trains of the largest tile (16 random bits + a flag per line,
    slot and rank-one update) and the BL x BL/16 packing matrix. The process itself (torch, the
    text) adds a few hundred MB."""
    return _memory(**_sizes(workload, arch, device, vocab_size, update_mode))


def _sizes(workload, arch, device, vocab_size, update_mode) -> dict:
    m, tr = workload.model, workload.training
    exact = update_mode == "exact" and device.kind != "ideal"
    return dict(V=vocab_size if vocab_size is not None else m.vocab_size, h=m.hidden_size,
                L=m.layers, B=tr.batch_size, T=tr.seq_len,
                BL=arch.update.desired_bl if exact else 0, ideal=device.kind == "ideal",
                ar=arch.array.rows, ac=arch.array.cols)


def _memory(*, V, h, L, B, T, BL, ideal, ar, ac) -> int:
    per_cell = IDEAL_TENSORS_PER_CELL if ideal else PULSED_TENSORS_PER_CELL
    # (rows, cols, how many): the layers above the first share a shape (no list of L entries).
    shapes = [(4 * h, V + h + 1, 1), (4 * h, 2 * h + 1, L - 1), (V, h + 1, 1)]
    cells = sum(r * c * k for r, c, k in shapes)
    lines = sum((r + c) * k for r, c, k in shapes)
    bt = B * T
    # Per window: each layer's inputs, four gates (pre- and post-activation), cell and hidden
    # states and their errors; logits, softmax and its error; the update operands x and d.
    activations = bt * (L * (V + 2 * h + 1 + 4 * h * 4 + h * 6) + V * 3) + bt * lines * 2
    total = 4 * (cells * per_cell + activations)
    if BL:
        tile_lines = max(min(r, ar) + min(c, ac) for r, c, k in shapes if k)
        total += tile_lines * BL * bt * 3
        # Replaying devices near a bound packs pulse trains into 16-slot words with a
        # [BL, BL/16] float32 matrix (functional/update_exact.py, ExactUpdate._pack): quadratic in BL.
        total += 4 * BL * ((BL + 15) // 16)
    return total


#: Fields named in the "too much memory" message: the one whose reduction to 1 saves the most.
_SHRINKABLE = {"h": "model.hidden_size", "L": "model.layers", "T": "training.seq_len",
               "B": "training.batch_size", "BL": "update.desired_bl"}


def check_training_memory(workload, arch, device, *, vocab_size: int | None = None,
                          update_mode: str = "fast", available: int | None = None,
                          members: int = 1,
                          where: tuple[str, str] = ("command line", "--population")) -> int:
    """Raise one line if a training run (``members``: a population of that many models, each
    with its own devices and activations) would need more memory than this machine has."""
    sizes = _sizes(workload, arch, device, vocab_size, update_mode)
    need = _memory(**sizes) * members
    have = available if available is not None else physical_memory_bytes()
    if need > MEMORY_SHARE * have and members > 1 and _memory(**sizes) <= MEMORY_SHARE * have:
        raise SpecError(*where, f"{members} members",
                        f"a population of {members} would need about {_gib(need)} of memory; this "
                        f"machine has {_gib(have)}: train fewer members at once")
    if need > MEMORY_SHARE * have:
        key = min((k for k in _SHRINKABLE if sizes[k]), key=lambda k: _memory(**{**sizes, k: 1}))
        field = _SHRINKABLE[key]
        hint = f"lower {field}" + (" or use --update-mode fast" if key == "BL" else "")
        raise SpecError(arch.name if key == "BL" else workload.where, field, sizes[key],
                        f"a training run would need about {_gib(need)} of memory; this machine has "
                        f"{_gib(have)}: {hint}")
    return need


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**60 else f"{n / 2**30:.2e} GiB"
