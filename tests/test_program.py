"""The step program: the ops of one training step, their dependencies and sweeps, for the
variants that exist (1 layer, 2 layers on split tiles, no mapped output layer, T = 1), and the
vocabulary of op kinds (declared ones that no program generates yet included)."""
from __future__ import annotations

import dataclasses

import pytest

from archsim.feasibility import schedule_ops_per_step
from archsim.mapping import map_workload
from archsim.program import OP_KINDS, PHASES, build_program
from archsim.schedule import build_schedule
from archsim.specs import load_architecture, load_workload

from conftest import WORKLOADS

VARIANTS = {
    "one layer + output": ({}, {}),
    "two layers, split tiles": ({"model.layers": 2, "model.hidden_size": 6},
                                {"array.rows": 8, "array.cols": 8}),
    "three layers, output not mapped": ({"model.layers": 3, "model.output_layer": False}, {}),
    "T = 1": ({"model.layers": 2, "training.seq_len": 1}, {}),
}


def _program(variant):
    w_over, a_over = VARIANTS[variant]
    w = load_workload(WORKLOADS / "tiny.yaml", overrides=w_over)
    a = load_architecture("rpu2016", overrides=a_over)
    mapping = map_workload(w.model, a.array.rows, a.array.cols)
    return w, a, build_program(mapping, w.model.hidden_size, w.training.seq_len)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_op_per_phase_matrix_and_timestep(variant):
    w, _, prog = _program(variant)
    T = w.training.seq_len
    names = [m.name for m in prog.matrices]
    assert len(prog.ops) == schedule_ops_per_step(w)       # what feasibility counts from the spec
    keys = [(op.phase, op.matrix, op.t) for op in prog.ops]
    assert sorted(keys) == sorted((p, m, t) for p in PHASES for m in names for t in range(T))
    assert [op.id for op in prog.ops] == list(range(len(prog.ops)))
    for op in prog.ops:
        assert all(d < op.id for d in op.deps), "ops are listed in an order their deps respect"
        assert op.order_only <= set(op.deps)
        if op.kind is not None:
            assert OP_KINDS[op.kind].phase == op.phase


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_only_the_first_layer_at_t0_skips_its_transposed_mvm(variant):
    _, _, prog = _program(variant)
    skipped = [(op.phase, op.matrix, op.t) for op in prog.ops if op.kind is None]
    assert skipped == [("backward", "lstm1", 0)]
    corner = next(op for op in prog.ops if op.kind is None)
    assert corner.pre is not None and corner.post is None   # gate derivatives, no rescale
    expected = {"forward": "forward_mvm", "backward": "backward_mvm", "update": "rank_one_update"}
    assert all(op.kind == expected[op.phase] for op in prog.ops if op.kind is not None)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sweeps_partition_the_ops_in_an_order_every_dependency_respects(variant):
    w, _, prog = _program(variant)
    T = w.training.seq_len
    seen: set[int] = set()
    for sweep in prog.sweeps:
        ids = {op.id for op in sweep.ops}
        assert not ids & seen and {(op.phase, op.matrix) for op in sweep.ops} == {(sweep.phase, sweep.matrix)}
        for i, op in enumerate(sweep.ops):
            before = seen | {o.id for o in sweep.ops[:i]}
            assert set(op.deps) <= before | (ids if not sweep.sequential else set()), (sweep.matrix, op)
            if not sweep.sequential:           # batched: no data passes inside the sweep
                assert not set(op.data_deps) & ids
        seen |= ids
    assert seen == {op.id for op in prog.ops}
    lstm = [s for s in prog.sweeps if s.matrix.startswith("lstm") and s.phase != "update"]
    assert lstm and all(s.sequential for s in lstm)
    for s in prog.phase_sweeps("forward"):
        if s.sequential:
            n = prog.matrix(s.matrix).cols - prog.hidden - 1
            assert s.streamed_cols == slice(n, n + prog.hidden) and s.timesteps == tuple(range(T))
    assert all(not s.sequential for s in prog.phase_sweeps("update"))
    if any(m.kind == "output" for m in prog.matrices):
        out = [s for s in prog.sweeps if s.matrix == "output" and s.phase != "update"]
        assert out and not any(s.sequential for s in out)   # one batched call each


def test_next_step_waits_for_each_matrix_s_own_updates():
    _, _, prog = _program("two layers, split tiles")
    for op in prog.ops:
        if op.phase == "forward" and op.t == 0:
            (last,) = op.carry
            upd = prog.ops[last]
            assert (upd.phase, upd.matrix, upd.t) == ("update", op.matrix, prog.seq_len - 1)
        else:
            assert op.carry == ()


def test_vector_counts_by_hand():
    """2 layers on 8x8 arrays, h = 6, V = 16: lstm1 24x23 -> 3x3 blocks, lstm2 24x13 -> 3x2,
    output 16x7 -> 2x1. Per step every block takes T x B vectors of each kind, except the first
    layer's transposed MVMs at t = 0."""
    w, _, prog = _program("two layers, split tiles")
    T, B = w.training.seq_len, w.training.batch_size
    blocks = {m.name: len(m.blocks) for m in prog.matrices}
    assert blocks == {"lstm1": 9, "lstm2": 6, "output": 2}
    counts = prog.vector_counts(B)
    assert counts["forward_mvm"] == 17 * T * B
    assert counts["backward_mvm"] == 17 * T * B - 9 * B
    assert counts["rank_one_update"] == 17 * T * B
    assert all(counts[k] == 0 for k, kind in OP_KINDS.items() if not kind.generated)


def test_vocabulary_kinds_and_which_variants_emit_them():
    """Tiki-Taka's transfers are emitted only with ``update.algorithm: tiki_taka`` (tests/
    test_tiki_taka.py), the recompute MVM only with ``bptt_state: recompute``; every kind that is
    emitted has a tile counter and a schedule action, which is what the engines' count-equality
    check compares."""
    generated = {k for k, kind in OP_KINDS.items() if kind.generated}
    assert generated == {"forward_mvm", "backward_mvm", "rank_one_update", "recompute_mvm",
                         "transfer_read", "transfer_update"}
    for variant in VARIANTS:
        assert _program(variant)[2].kinds() == generated - {"recompute_mvm", "transfer_read",
                                                             "transfer_update"}
    for k in generated:
        assert OP_KINDS[k].counter and OP_KINDS[k].action


def test_schedule_refuses_a_kind_it_has_no_stages_for():
    w, a, prog = _program("one layer + output")
    ops = [dataclasses.replace(op, kind="transfer_read") if op.phase == "update" and op.t == 0 else op
           for op in prog.ops]
    with pytest.raises(NotImplementedError, match="transfer_read"):
        build_schedule(w, a, program=prog.with_ops(ops))
