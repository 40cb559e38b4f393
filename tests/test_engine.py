"""Timing engines: closed form = SimPy when uncontended, contention costs what it should,
extrapolated epochs = exact epochs, energy bookkeeping adds up."""
from __future__ import annotations

import math

import pytest

from archsim.energy import price_step, training_ops_per_step
from archsim.engine.analytic import analytic_step
from archsim.engine.des import simulate
from archsim.engine.extrapolate import epoch_timing
from archsim.estimate import estimate
from archsim.schedule import build_schedule
from archsim.specs import load_architecture, load_workload

from conftest import WORKLOADS


#: rpu2016 with tile buffers large enough for all BPTT state: nothing shares a resource.
PRIVATE_MEMORY = {"buffer.capacity_bytes": "1 GiB"}


def _tiny_split(tiles_per_bus: int, batch: int = 1, seq_len: int = 3):
    """One LSTM layer (h=4, n=11: a 16 x 16 matrix) on 16 x 8 arrays: two column tiles."""
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={
        "model.hidden_size": 4, "model.vocab_size": 11, "model.output_layer": False,
        "training.batch_size": batch, "training.seq_len": seq_len})
    a = load_architecture("rpu2016", overrides={
        "array.rows": 16, "array.cols": 8, "bus.tiles_per_bus": tiles_per_bus,
        "digital.tiles_per_unit": 4, **PRIVATE_MEMORY})
    return w, a


@pytest.mark.parametrize("bptt", ["store", "recompute"])
@pytest.mark.parametrize("workload", ["lstm2x512", "lstm3x512", "lstm2x64", "tiny"])
def test_closed_form_equals_simpy_without_contention(workload, bptt):
    w = load_workload(WORKLOADS / f"{workload}.yaml")
    a = load_architecture("rpu2016", overrides={**PRIVATE_MEMORY, "system.bptt_state": bptt})
    s = build_schedule(w, a)
    assert set(s.memory.level.values()) == {"buffer"}   # nothing on a shared port
    run = simulate(s)
    assert run.total_wait_s == 0.0
    assert run.total_s == pytest.approx(analytic_step(s).step_s, rel=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_schedule_is_the_step_program_repeated(steps):
    """One timed op per program op and step, the program's dependencies within a step and its
    carry (a matrix's first forward op waits for its own last update) across steps; the first
    layer's t = 0 backward op is timed without a transposed MVM, as the program says."""
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.layers": 2})
    s = build_schedule(w, load_architecture("rpu2016"), steps=steps)
    prog = s.program
    n = len(prog.ops)
    assert len(s.ops) == steps * n
    for op in s.ops:
        p = prog.ops[op.id - op.step * n]
        assert (op.phase, op.matrix, op.t, op.kind) == (p.phase, p.matrix, p.t, p.kind)
        carry = [d + (op.step - 1) * n for d in p.carry] if op.step else []
        assert op.deps == [d + op.step * n for d in p.deps] + carry
        assert bool(op.tile_branches) == (p.kind is not None)
        digital = [st for st in op.stages() if st.resource.startswith("digital")]
        assert len(digital) == (p.pre is not None) + (p.post is not None)
    assert steps == 1 or any(s.ops[d].step == 0 for op in s.ops if op.step == 1 for d in op.deps)


def test_closed_form_equals_simpy_split_tiles_own_buses():
    w, a = _tiny_split(tiles_per_bus=1, batch=4)
    s = build_schedule(w, a)
    assert len(s.placements["lstm1"]) == 2
    run = simulate(s)
    assert run.total_wait_s == 0.0
    assert run.total_s == pytest.approx(analytic_step(s).step_s, rel=1e-12)


def test_shared_bus_costs_one_transfer_per_op():
    """Two tiles of one matrix share a bus at batch 1: in every op the second tile's transfer
    waits for the first one's, so each op takes exactly one bus transfer longer."""
    w, a = _tiny_split(tiles_per_bus=2, batch=1, seq_len=3)
    s = build_schedule(w, a)
    bus = lambda bits: math.ceil(bits / a.bus.width_bits) / a.bus.clock_Hz  # noqa: E731
    rows, cols = 16, 8  # each tile's block
    fwd = bus(cols * a.dac.bits + rows * a.adc.bits)
    bwd = bus(rows * a.dac.bits + cols * a.adc.bits)
    upd = bus((rows + cols) * a.digital.word_bits)
    T = w.training.seq_len
    expected_extra = T * (fwd + upd) + (T - 1) * bwd  # no transposed MVM for layer 1 at t=0
    run = simulate(s)
    closed = analytic_step(s).step_s
    assert run.total_s - closed == pytest.approx(expected_extra, rel=1e-9)
    assert run.total_wait_s == pytest.approx(expected_extra, rel=1e-9)


@pytest.mark.parametrize("arch", ["rpu2016", "shared_adc256_nominal"])
def test_extrapolated_epoch_equals_exact(arch):
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.hidden_size": 64,
                                                          "training.train_chars": 1200})
    a = load_architecture(arch, overrides={"array.rows": 64, "array.cols": 32})
    n = w.steps_per_epoch()
    assert n == 60
    build = lambda k: build_schedule(w, a, steps=k)  # noqa: E731
    exact = epoch_timing(build, n, exact=True)
    extra = epoch_timing(build, n)
    assert extra.method == "extrapolated" and extra.simulated_steps < n
    assert abs(extra.total_s - exact.total_s) / exact.total_s <= 1e-3


def test_energy_adds_up():
    w = load_workload(WORKLOADS / "lstm2x64.yaml")
    r = estimate(w, load_architecture("shared_adc256_nominal"), baselines=[])
    assert sum(r.energy_breakdown_J.values()) == pytest.approx(r.energy_per_step_J, rel=1e-12)
    assert sum(p["energy_J"] for p in r.phase_breakdown.values()) == pytest.approx(
        r.energy_per_step_J, rel=1e-12)
    assert sum(p["time_s"] for p in r.phase_breakdown.values()) == pytest.approx(
        r.time_per_step_s, rel=1e-9)
    static = {c: w for c, w in r.static_W.items() if c not in ("chip", "tile")}
    assert sum(static.values()) == pytest.approx(r.leakage_W, rel=1e-12) and r.leakage_W > 0
    for c, watts in static.items():     # each component's energy includes its static power x time
        assert r.energy_breakdown_J[c] >= watts * r.time_per_step_s * (1 - 1e-12), c


def test_energy_counts_times_prices():
    """Doubling one action's price raises the total by exactly that action's energy."""
    w = load_workload(WORKLOADS / "tiny.yaml")
    a = load_architecture("rpu2016")
    a2 = load_architecture("rpu2016", overrides={"adc.e_conv_J": 2 * a.adc.e_conv_J})
    s, s2 = build_schedule(w, a), build_schedule(w, a2)
    t = simulate(s).total_s
    phases = {"forward": t, "backward": 0.0, "update": 0.0}
    e1, e2 = price_step(s, t, phases), price_step(s2, t, phases)
    conversions = sum(n for (ph, c, act), n in s.action_counts().items() if c == "adc")
    assert e2.total_J - e1.total_J == pytest.approx(conversions * a.adc.e_conv_J, rel=1e-9)


def test_training_ops_neurosim_convention():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    s = build_schedule(w, load_architecture("rpu2016"))
    T, B = 100, 32
    assert training_ops_per_step(s) == 3 * 2 * w.model.n_weights() * T * B


def test_bound_management_repeats_slow_forward():
    from archsim.activity import ActivityProfile

    w = load_workload(WORKLOADS / "tiny.yaml")
    a = load_architecture("rpu2016")
    base = analytic_step(build_schedule(w, a))
    more = analytic_step(build_schedule(w, a, activity=ActivityProfile(bm_repeats_per_mvm=0.5)))
    assert more.forward_s > base.forward_s
    assert more.backward_s == pytest.approx(base.backward_s)


def test_contention_makes_simpy_slower_on_shared_designs():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    s = build_schedule(w, load_architecture("shared_adc256_nominal"))
    run = simulate(s)
    assert run.total_wait_s > 0 and run.total_s > analytic_step(s).step_s


def test_too_many_tiles_is_a_one_line_error():
    from archsim.errors import SpecError

    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    a = load_architecture("shared_adc256_nominal", overrides={"system.n_tiles": 10})
    with pytest.raises(SpecError, match="needs 67 tiles"):
        build_schedule(w, a)
