"""Map the LSTM's weight matrices onto arrays.

Each LSTM layer is one matrix ``4h x (n+h+1)`` fed ``[x_t; h_{t-1}; 1]``; the output layer is
``V x (h+1)``. A matrix larger than one array is cut into a grid of tiles: a split of the output
(row) dimension needs nothing extra, a split of the input (column) dimension needs a digital
partial-sum reduction. Both engines (time/energy and functional) use :func:`split_matrix`, so
they split identically.

A matrix trained with Tiki-Taka (the architecture's ``update.algorithm: tiki_taka``, or TTv2 and
chopped TTv2: ``tiki_taka_v2``, ``chopped_tiki_taka_v2``) holds two arrays per block, the fast
array A and the slow array C, each on its own tile: ``arrays = 2`` doubles its tiles (the schedule
places A and C of a block on adjacent tiles).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from archsim.specs.architecture import ALGORITHMS, TIKI_TAKA


@dataclass(frozen=True)
class TileBlock:
    """One tile's share of a matrix: rows [r0, r1), columns [c0, c1)."""

    matrix: str
    row_block: int
    col_block: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def rows(self) -> int:
        return self.r1 - self.r0

    @property
    def cols(self) -> int:
        return self.c1 - self.c0


def split_matrix(rows: int, cols: int, array_rows: int, array_cols: int,
                 name: str = "W") -> list[TileBlock]:
    """Cut a ``rows x cols`` matrix into near-equal blocks that fit ``array_rows x array_cols``.

    Blocks are balanced (sizes differ by at most one) so that tiles of one matrix finish together.
    """
    if min(rows, cols, array_rows, array_cols) <= 0:
        raise ValueError("matrix and array sizes must be positive")
    n_r = math.ceil(rows / array_rows)
    n_c = math.ceil(cols / array_cols)
    r_edges = _edges(rows, n_r)
    c_edges = _edges(cols, n_c)
    return [
        TileBlock(name, i, j, r_edges[i], r_edges[i + 1], c_edges[j], c_edges[j + 1])
        for i in range(n_r) for j in range(n_c)
    ]


def _edges(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    edges = [0]
    for k in range(parts):
        edges.append(edges[-1] + base + (1 if k < extra else 0))
    return edges


@dataclass
class MatrixMapping:
    """One weight matrix and the tiles that hold it (``replication`` copies of each block)."""

    name: str
    kind: str  # "lstm" or "output"
    layer: int  # 0-based LSTM layer; output layer gets index == layers
    rows: int
    cols: int
    blocks: list[TileBlock]
    replication: int = 1
    arrays: int = 1  # tiles per block copy: 1 (SGD), 2 (Tiki-Taka's fast A and slow C)

    @property
    def row_splits(self) -> int:
        return 1 + max(b.row_block for b in self.blocks)

    @property
    def col_splits(self) -> int:
        return 1 + max(b.col_block for b in self.blocks)

    @property
    def n_tiles(self) -> int:
        return len(self.blocks) * self.replication * self.arrays

    @property
    def tiki_taka(self) -> bool:
        """Trained with Tiki-Taka: each block has a fast array A and a slow array C."""
        return self.arrays == 2


@dataclass
class Mapping:
    """All matrices of a workload on an architecture's arrays."""

    array_rows: int
    array_cols: int
    matrices: list[MatrixMapping] = field(default_factory=list)

    @property
    def n_tiles(self) -> int:
        return sum(m.n_tiles for m in self.matrices)

    @property
    def n_weights(self) -> int:
        return sum(m.rows * m.cols for m in self.matrices)

    @property
    def utilization(self) -> float:
        """Share of the allocated array cells that hold a weight (replicas count as used)."""
        used = sum(m.rows * m.cols * m.replication * m.arrays for m in self.matrices)
        return used / (self.n_tiles * self.array_rows * self.array_cols)

    def table(self) -> list[dict]:
        return [
            {"matrix": m.name, "shape": f"{m.rows}x{m.cols}",
             "tiles": f"{m.row_splits}x{m.col_splits}" + (f" x{m.replication}" if m.replication > 1 else "")
                      + (" x2 (A, C)" if m.tiki_taka else ""),
             "utilization": m.rows * m.cols / (len(m.blocks) * self.array_rows * self.array_cols)}
            for m in self.matrices
        ]


def map_workload(model, array_rows: int, array_cols: int, replication: int = 1,
                 algorithm: str = "sgd") -> Mapping:
    """Map a :class:`~archsim.specs.workload.ModelSpec` onto arrays of the given size
    (``algorithm``: the architecture's ``update.algorithm``; Tiki-Taka doubles every matrix's
    arrays)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    arrays = 2 if algorithm in TIKI_TAKA else 1
    mapping = Mapping(array_rows, array_cols)
    for layer, (r, c) in enumerate(model.lstm_shapes()):
        name = f"lstm{layer + 1}"
        mapping.matrices.append(MatrixMapping(name, "lstm", layer, r, c,
                                              split_matrix(r, c, array_rows, array_cols, name),
                                              replication, arrays))
    if model.output_layer:
        r, c = model.output_shape()
        mapping.matrices.append(MatrixMapping("output", "output", model.layers, r, c,
                                              split_matrix(r, c, array_rows, array_cols, "output"),
                                              replication, arrays))
    return mapping
