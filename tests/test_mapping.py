"""Mapping of LSTM matrices onto arrays: shapes, balanced tile splits, utilization."""
from __future__ import annotations

import pytest

from archsim.mapping import map_workload, split_matrix
from archsim.specs import load_workload

from conftest import WORKLOADS


def test_lstm_and_output_shapes():
    model = load_workload(WORKLOADS / "lstm2x512.yaml").model
    assert model.lstm_shapes() == [(2048, 98 + 512 + 1), (2048, 512 + 512 + 1)]
    assert model.output_shape() == (98, 513)
    assert model.n_weights() == 2048 * 611 + 2048 * 1025 + 98 * 513


@pytest.mark.parametrize("rows,cols,ar,ac,grid", [
    (2048, 611, 256, 256, (8, 3)), (2048, 1025, 256, 256, (8, 5)), (98, 513, 256, 256, (1, 3)),
    (2048, 611, 4096, 4096, (1, 1)), (10, 10, 3, 4, (4, 3)),
])
def test_split_covers_matrix_exactly(rows, cols, ar, ac, grid):
    blocks = split_matrix(rows, cols, ar, ac)
    assert (1 + max(b.row_block for b in blocks), 1 + max(b.col_block for b in blocks)) == grid
    covered = [[0] * cols for _ in range(rows)]
    for b in blocks:
        assert b.rows <= ar and b.cols <= ac
        for r in range(b.r0, b.r1):
            for c in range(b.c0, b.c1):
                covered[r][c] += 1
    assert all(v == 1 for row in covered for v in row)
    sizes = {b.cols for b in blocks}
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_mapping_utilization():
    model = load_workload(WORKLOADS / "lstm2x512.yaml").model
    m = map_workload(model, 256, 256)
    assert m.n_tiles == 24 + 40 + 3
    assert m.utilization == pytest.approx(model.n_weights() / (67 * 256 * 256))
    assert map_workload(model, 256, 256, replication=2).n_tiles == 134


def test_split_rejects_nonsense():
    with pytest.raises(ValueError):
        split_matrix(0, 4, 4, 4)
