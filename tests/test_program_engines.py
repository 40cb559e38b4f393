"""Both engines run the one step program: the schedule times exactly its ops, the functional
simulator executes exactly its analog ops, so their counts of every op kind are equal, also for a
program changed after it was built (the change reaches both engines, neither has its own list)."""
from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from archsim.activity_run import COUNT_ACTIONS, functional_counts, profile_from_activity, schedule_counts  # noqa: E402
from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.program import OP_KINDS, DigitalWork  # noqa: E402
from archsim.schedule import build_schedule  # noqa: E402
from archsim.specs import load_architecture, load_device, load_workload  # noqa: E402

from conftest import WORKLOADS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VARIANTS = {
    "one layer + output": ({}, {}),
    "two layers, split tiles": ({"model.layers": 2, "model.hidden_size": 6},
                                {"array.rows": 8, "array.cols": 8}),
    "bound management active": ({"model.layers": 2}, {"array.rows": 16, "array.cols": 12,
                                                      "periphery.out_bound": 0.3}),
}


#: Tiki-Taka settings of the "tiki_taka" runs: transfers in most update ops, two columns each.
TIKI_TAKA = {"update.algorithm": "tiki_taka", "update.transfer_every": 3,
             "update.n_reads_per_transfer": 2, "update.transfer_lr": 0.5}


def _engines(variant, seed=0, bptt="store", algorithm="sgd"):
    w_over, a_over = VARIANTS[variant]
    w = load_workload(WORKLOADS / "tiny.yaml", overrides=w_over)
    tt = TIKI_TAKA if algorithm == "tiki_taka" else {}
    a = load_architecture("rpu2016", overrides={**a_over, **tt, "system.bptt_state": bptt})
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), a, "fast")
    m = w.model
    model = AnalogLSTM(m.vocab_size, m.hidden_size, m.layers, cfg, array_rows=a.array.rows,
                       array_cols=a.array.cols, seed=seed, bptt_state=bptt)
    return w, a, model


def _step(model, w, steps=1):
    T, B, V = w.training.seq_len, w.training.batch_size, w.model.vocab_size
    g = torch.Generator().manual_seed(5)
    state = model.zero_state(B)
    for _ in range(steps):
        ids = torch.randint(0, V, (T, B), generator=g)
        _, state = model.train_step(ids, torch.roll(ids, -1, 0), state, 0.1)
    return {f"{m.name}[{j}]": t.activity.to_dict() for m in model.matrices for j, t in enumerate(m.tiles)}


def _both_counts(w, a, model, program=None, steps=1):
    per_tile = _step(model, w, steps)
    profile = profile_from_activity(per_tile, source="measured: test")
    sched = build_schedule(w, a, steps=steps, activity=profile, program=program)
    return functional_counts(per_tile), schedule_counts(sched), sched


@pytest.mark.parametrize("algorithm", ["sgd", "tiki_taka"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_both_engines_run_the_same_program(variant, algorithm):
    w, a, model = _engines(variant, algorithm=algorithm)
    sched = build_schedule(w, a)
    prog = model.program(w.training.seq_len, w.training.batch_size)
    assert (prog.transfer is not None) == (algorithm == "tiki_taka")
    assert sched.program.ops == prog.ops and sched.program.sweeps == prog.sweeps
    # the schedule's ops are the program's, one per program op, in its order
    assert [(o.phase, o.matrix, o.t, o.kind, o.deps) for o in sched.ops] == \
        [(p.phase, p.matrix, p.t, p.kind, list(p.deps)) for p in prog.ops]


@pytest.mark.parametrize("algorithm", ["sgd", "tiki_taka"])
@pytest.mark.parametrize("bptt", ["store", "recompute"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_counts_of_every_op_kind_are_equal(variant, bptt, algorithm):
    """Also with BPTT state recomputed: the recompute MVMs are forward MVMs on the same tiles,
    counted by both engines under the forward counter; and with Tiki-Taka, whose transfer reads
    and transfer updates (and their conversions and pulse slots) both engines count alike."""
    w, a, model = _engines(variant, bptt=bptt, algorithm=algorithm)
    steps = 2
    fun, sch, sched = _both_counts(w, a, model, steps=steps)
    expected = sched.program.vector_counts(w.training.batch_size)
    assert (expected["recompute_mvm"] > 0) == (bptt == "recompute")
    assert (expected["transfer_read"] > 0) == (algorithm == "tiki_taka")
    per_counter: dict[str, int] = {}
    for name, kind in OP_KINDS.items():
        if name not in sched.program.kinds():   # kinds this variant does not generate
            assert expected[name] == 0
            continue
        per_counter[kind.counter] = per_counter.get(kind.counter, 0) + expected[name]
    for counter, n in per_counter.items():
        assert n > 0, counter
        assert fun[counter] == sch[counter] == steps * n, counter
    for counter in COUNT_ACTIONS:         # conversions, repeats and pulse slots of those ops
        assert fun[counter] == pytest.approx(sch[counter], rel=1e-9, abs=1e-9), counter
    if variant == "bound management active":
        assert fun["bm_repeats"] > 0


def test_a_changed_program_changes_both_engines_alike():
    """Keep the first layer's transposed MVM at t = 0 (the program skips it): both engines then
    run B more transposed MVMs per block of lstm1, and still agree on every count."""
    w, a, model = _engines("two layers, split tiles")
    T, B = w.training.seq_len, w.training.batch_size
    base = build_schedule(w, a).program
    lstm1 = base.matrix("lstm1")
    ops = [dataclasses.replace(op, kind="backward_mvm",
                               post=DigitalWork({"add": (lstm1.row_splits - 1) * lstm1.cols, "mul": lstm1.cols}))
           if op.kind is None else op for op in base.ops]
    variant = base.with_ops(ops)
    model.use_program(variant)
    fun, sch, sched = _both_counts(w, a, model, program=variant)
    extra = len(lstm1.blocks) * B
    assert variant.vector_counts(B)["backward_mvm"] == base.vector_counts(B)["backward_mvm"] + extra
    assert fun["backward_mvms"] == sch["backward_mvms"] == variant.vector_counts(B)["backward_mvm"]
    for counter in COUNT_ACTIONS:
        assert fun[counter] == pytest.approx(sch[counter], rel=1e-9, abs=1e-9), counter
    assert sched.ops[next(op.id for op in base.ops if op.kind is None)].tile_branches   # timed too
    _, _, plain = _engines("two layers, split tiles")
    assert _step(plain, w)["lstm1[0]"]["backward_mvms"] == (T - 1) * B


def test_the_functional_simulator_refuses_a_kind_it_has_no_kernel_for():
    w, _, model = _engines("one layer + output")
    prog = model.program(w.training.seq_len)
    ops = [dataclasses.replace(op, kind="transfer_read") if op.phase == "backward" and op.t == 1 else op
           for op in prog.ops]
    with pytest.raises(NotImplementedError, match="transfer_read"):
        model.use_program(prog.with_ops(ops))
