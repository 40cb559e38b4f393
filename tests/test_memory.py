"""Data movement (issue 10): what BPTT keeps, where it lives, what moving it costs, and the
options that trade it (recompute instead of store, replication with its own digital units)."""
from __future__ import annotations

import pytest

from archsim.engine.analytic import analytic_step, bound_by
from archsim.engine.des import simulate
from archsim.errors import SpecError
from archsim.estimate import estimate
from archsim.program import bptt_state_words
from archsim.schedule import build_schedule
from archsim.specs import load_architecture, load_workload

from conftest import WORKLOADS

#: Tile buffers large enough for all BPTT state: nothing shares a memory port.
PRIVATE_MEMORY = {"buffer.capacity_bytes": "1 GiB"}


def _two_layer_split(bptt="store", **arch_over):
    """Two LSTM layers and the output layer, h = 6, vocabulary 16, split over 8 x 8 arrays."""
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.layers": 2, "model.hidden_size": 6})
    a = load_architecture("rpu2016", overrides={"array.rows": 8, "array.cols": 8,
                                                "system.bptt_state": bptt, **arch_over})
    return w, a


# -- what BPTT keeps --------------------------------------------------------------------------
def test_stored_state_equals_what_the_functional_simulator_keeps():
    """Per matrix and step, the words the program stores (activations: what BPTT and the update
    read back; errors: what the update reads) equal the elements of the tensors the functional
    simulator keeps for its hand-written BPTT and records for the update, on a 2-layer network
    whose matrices are split over several tiles."""
    torch = pytest.importorskip("torch")
    from archsim.functional.config import RPUConfig
    from archsim.specs import load_device

    w, a = _two_layer_split()
    m, tr = w.model, w.training
    T, B, H, V = tr.seq_len, tr.batch_size, m.hidden_size, m.vocab_size
    from archsim.functional.lstm import AnalogLSTM

    model = AnalogLSTM(V, H, m.layers, RPUConfig.from_specs(load_device("rpu_baseline"), a),
                       array_rows=8, array_cols=8, seed=0)
    assert any(len(x.tiles) > 1 for x in model.matrices)
    ids = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(1))
    logits, _ = model.forward(ids, model.zero_state(B), train=True)
    model.backward(torch.softmax(logits, -1) / B)
    kept = {}
    for li, layer in enumerate(model.layers):
        x, d = layer.recorded                     # what the update reads: u_t and dz_t
        buf = model._buffers
        acts = (x.numel() + buf[f"train.gates{li}"].numel() + buf[f"train.tanh_c{li}"].numel()
                + buf[f"train.c{li}"][1:].numel())          # c_t for t = 0..T-1 (c_{-1} is state)
        kept[layer.name] = {"activations": acts, "errors": d.numel()}
    x, d = model.output.recorded                 # input [h; 1] and the errors p - y at the logits
    kept["output"] = {"activations": x.numel() + logits.numel(), "errors": d.numel()}
    program = build_schedule(w, a).program
    words = bptt_state_words(program)
    assert {k: {s: n * B for s, n in v.items()} for k, v in words.items()} == kept
    # and by the formula: u_t + gates + c_t + tanh(c_t), dz_t per timestep
    cols1 = V + H + 1
    assert words["lstm1"] == {"activations": T * (cols1 + 6 * H), "errors": T * 4 * H}


def test_recompute_keeps_h_and_c_only():
    w, a = _two_layer_split("recompute")
    words = bptt_state_words(build_schedule(w, a).program)
    T, H = w.training.seq_len, w.model.hidden_size
    assert words["lstm1"]["activations"] == T * (2 * H + 1)      # h_t, c_t, character index
    assert words["lstm2"]["activations"] == T * 2 * H
    assert words["output"]["activations"] == T * w.model.vocab_size   # p; its input is h_top
    store = bptt_state_words(build_schedule(*_two_layer_split("store")).program)
    assert all(words[m]["errors"] == store[m]["errors"] for m in words)


# -- recompute: functional numerics -----------------------------------------------------------
def _trained_weights(bptt, device, steps=2):
    torch = pytest.importorskip("torch")
    from archsim.functional.config import RPUConfig
    from archsim.functional.lstm import AnalogLSTM
    from archsim.specs import load_device

    w, a = _two_layer_split(bptt)
    m, tr = w.model, w.training
    model = AnalogLSTM(m.vocab_size, m.hidden_size, m.layers,
                       RPUConfig.from_specs(load_device(device), a), array_rows=8, array_cols=8,
                       seed=3, bptt_state=bptt)
    g = torch.Generator().manual_seed(4)
    state = model.zero_state(tr.batch_size)
    for _ in range(steps):
        ids = torch.randint(0, m.vocab_size, (tr.seq_len, tr.batch_size), generator=g)
        _, state = model.train_step(ids, torch.roll(ids, -1, 0), state, 0.1)
    return model


def test_recompute_equals_store_on_an_ideal_device():
    """Without noise the recomputed gates are the stored ones (to float rounding), so training
    is the same; the recompute MVMs are counted on the tiles."""
    torch = pytest.importorskip("torch")
    store, rec = _trained_weights("store", "ideal"), _trained_weights("recompute", "ideal")
    for name, w in store.weights().items():
        assert torch.allclose(w, rec.weights()[name], atol=1e-5), name


def test_recompute_runs_a_second_noisy_forward_mvm():
    store, rec = _trained_weights("store", "rpu_baseline"), _trained_weights("recompute", "rpu_baseline")
    a_store, a_rec = store.layers[0].activity(), rec.layers[0].activity()
    w = load_workload(WORKLOADS / "tiny.yaml")
    per_step = w.training.seq_len * w.training.batch_size * len(store.layers[0].tiles)
    assert a_rec.forward_mvms == a_store.forward_mvms + 2 * per_step
    assert store.output.activity().forward_mvms == rec.output.activity().forward_mvms
    assert any((store.weights()[k] != rec.weights()[k]).any() for k in store.weights())


# -- placement and its cost --------------------------------------------------------------------
def test_state_that_exceeds_the_global_buffer_spills_to_dram():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    s = build_schedule(w, load_architecture("rpu2016"))
    plan = s.memory
    assert plan.level[("lstm1", "activations")] == "dram"
    assert plan.peak_bytes["global_buffer"] <= plan.capacity_bytes["global_buffer"]
    assert sum(plan.peak_bytes.values()) == pytest.approx(sum(plan.bytes_kept.values()))
    # per vector and timestep: u_t, four gates, c_t, tanh(c_t) per layer (h = 512, inputs 98 + 512
    # + 1 and 512 + 512 + 1), the output layer's input and p (513 + 98); errors 4h, 4h, 98 words;
    # x T = 100 x B = 32 x 2 bytes
    acts = sum(v for (m, st), v in plan.bytes_kept.items() if st == "activations")
    errs = sum(v for (m, st), v in plan.bytes_kept.items() if st == "errors")
    assert acts == ((611 + 6 * 512) + (1025 + 6 * 512) + (513 + 98)) * 100 * 32 * 2   # 53.7 MB
    assert errs == (4 * 512 + 4 * 512 + 98) * 100 * 32 * 2                           # 26.8 MB
    big = load_architecture("rpu2016", overrides={"global_buffer.capacity_bytes": "1 GiB"})
    levels = build_schedule(w, big).memory.level
    assert {v for (m, st), v in levels.items() if st != "working"} == {"global_buffer"}
    # a batch of lstm2's inputs (32 x 1025 words, 65.6 kB) does not fit its 64 KiB tile buffer
    assert levels[("lstm1", "working")] == "buffer" and levels[("lstm2", "working")] == "global_buffer"


def test_a_dram_bound_step_matches_the_hand_computed_transfer_time():
    """One LSTM layer (h = 8, n = 16: a 32 x 25 matrix), no output layer, batch 2, T = 10, all
    state in a DRAM of 1 Mb/s: the step is the DRAM port's busy time, 210 words per vector and
    timestep (u_t + gates + c_t + tanh c_t kept = 25 + 48, read back 48; dz_t kept 32; the
    update reads u_t and dz_t, 25 + 32; the MVM reads its input u_t, 25), plus nanoseconds of
    everything else."""
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.output_layer": False})
    a = load_architecture("rpu2016", overrides={
        "buffer.capacity_bytes": "16 B", "global_buffer.capacity_bytes": "16 B",
        "dram.bandwidth_bit_s": "1 Mbit/s"})
    s = build_schedule(w, a)
    assert set(s.memory.level.values()) == {"dram"}     # the working vectors too (16 B buffers)
    T, B = 10, 2
    words = T * B * (25 + (25 + 6 * 8) + 6 * 8 + 4 * 8 + (25 + 4 * 8))
    assert words == 4700
    dram_s = words * 16 / 1e6
    run = simulate(s)
    assert run.busy_s["dram"] == pytest.approx(dram_s, rel=1e-12)
    assert run.total_s == pytest.approx(dram_s, rel=1e-3)
    assert bound_by(s) == {p: {"stage": "dram", "share": 1.0} for p in ("forward", "backward", "update")}
    moved = sum(n for (_, c, act), n in s.action_counts().items() if c == "dram")
    assert moved == words * 16


def test_state_that_fits_nowhere_is_a_one_line_error():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    a = load_architecture("rpu2016", overrides={"dram.capacity_bytes": "1 MiB"})
    with pytest.raises(SpecError, match="BPTT state.*recompute") as err:
        build_schedule(w, a)
    assert "\n" not in str(err.value)
    assert "got '1.05 MB'" in str(err.value)   # the capacity in units, not raw bytes


def test_memory_report_adds_up():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    r = estimate(w, load_architecture("rpu2016"), baselines=[])
    levels = r.memory["levels"]
    for level in ("global_buffer", "dram"):
        leak = r.static_W[level] * r.time_per_step_s       # the rest of the level's energy
        assert levels[level]["energy_J"] == pytest.approx(r.energy_breakdown_J[level] - leak, rel=1e-9)
    assert levels["dram"]["bytes_moved"] > levels["dram"]["peak_bytes"] > 0
    assert r.memory["placement"]["lstm1.activations"] == "dram"


# -- store vs recompute in time and energy -----------------------------------------------------
def test_recompute_trades_array_cycles_for_memory():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    store = estimate(w, load_architecture("rpu2016"), baselines=[])
    rec = estimate(w, load_architecture("rpu2016", overrides={"system.bptt_state": "recompute"}),
                   baselines=[])
    kept = lambda r: sum(v["peak_bytes"] for v in r.memory["levels"].values())  # noqa: E731
    assert kept(rec) < 0.6 * kept(store)
    assert rec.energy_breakdown_J["adc"] > store.energy_breakdown_J["adc"]     # more conversions
    assert rec.energy_breakdown_J["dram"] < store.energy_breakdown_J["dram"]
    assert rec.phase_breakdown["backward"]["time_s"] > store.phase_breakdown["backward"]["time_s"]


@pytest.mark.parametrize("bptt", ["store", "recompute"])
def test_closed_form_equals_simpy_with_recompute(bptt):
    w, a = _two_layer_split(bptt, **PRIVATE_MEMORY)
    s = build_schedule(w, a)
    run = simulate(s)
    assert run.total_wait_s == 0.0
    assert run.total_s == pytest.approx(analytic_step(s).step_s, rel=1e-12)


# -- what bounds each phase --------------------------------------------------------------------
BOUND_BY = {  # lstm2x512 at batch 32 (README, "What bounds each phase")
    "rpu2016": ("array", "array", "bus"),
    "rpu2016_wide_io": ("array", "array", "dram"),
    "shared_adc256_nominal": ("array", "array", "array"),
    "shared_adc256_optimistic": ("array", "array", "array"),
    "shared_adc256_conservative": ("adc_rows", "array", "array"),
}


@pytest.mark.parametrize("preset", list(BOUND_BY))
def test_each_preset_is_bound_where_the_readme_says(preset):
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    got = bound_by(build_schedule(w, load_architecture(preset)))
    assert tuple(got[p]["stage"] for p in ("forward", "backward", "update")) == BOUND_BY[preset]


def test_every_shipped_preset_is_in_the_bound_table():
    from archsim.specs.loader import preset_names

    assert set(preset_names("architectures")) == set(BOUND_BY)


# -- replication --------------------------------------------------------------------------------
def test_each_copy_has_its_own_digital_unit_and_backward_scales_with_copies():
    w = load_workload(WORKLOADS / "lstm2x64.yaml", overrides={"training.batch_size": 1024})
    one = build_schedule(w, load_architecture("rpu2016", overrides=PRIVATE_MEMORY))
    four = build_schedule(w, load_architecture("rpu2016", overrides={
        **PRIVATE_MEMORY, "system.replication": 4}))
    units = {p.digital for p in four.placements["lstm1"]}
    assert len(units) == 4
    run = simulate(four)
    assert run.total_wait_s == 0.0
    t1, t4 = analytic_step(one), analytic_step(four)
    assert run.total_s == pytest.approx(t4.step_s, rel=1e-12)
    assert t1.backward_s / t4.backward_s > 3.9
    assert t1.forward_s / t4.forward_s > 3.9


# -- long sequences are timed from short ones --------------------------------------------------
@pytest.mark.parametrize("arch", ["rpu2016", "shared_adc256_nominal"])
def test_long_sequences_extrapolated_over_timesteps_equal_the_whole_sequence(arch):
    """A contended design (DRAM shared by every layer; buses and digital units shared by tiles)
    at T = 512: the estimate from T = 8, 16, 32 is within 0.1 % of the run of the whole sequence,
    and so are its phase times (of the step) and busy fractions."""
    from archsim.engine.extrapolate import epoch_timing

    w = load_workload(WORKLOADS / "lstm2x64.yaml", overrides={
        "training.seq_len": 512, "training.batch_size": 8, "training.train_chars": 512 * 8 * 20})
    a = load_architecture(arch, overrides={"global_buffer.capacity_bytes": "16 B"})
    r = estimate(w, a, baselines=[])
    assert "timesteps" in r.epoch_method and r.simulation["simulated_seq_lens"][-1] < 512
    full = epoch_timing(lambda k: build_schedule(w, a, steps=k), w.steps_per_epoch())
    assert full.run.total_wait_s > 0          # contended: not the closed form in disguise
    assert r.time_per_epoch_s == pytest.approx(full.total_s, rel=1e-3)
    assert r.time_per_step_s == pytest.approx(full.period_s, rel=1e-3)
    for phase, t in full.run.steps[-1].phase_times.items():
        assert abs(r.phase_breakdown[phase]["time_s"] - t) <= 1e-3 * full.period_s, phase
    from archsim.schedule import resource_class

    by_class: dict[str, list[float]] = {}
    for res, frac in full.run.utilization().items():
        by_class.setdefault(resource_class(res), []).append(frac)
    assert by_class["dram"][0] > 0
    for cls, fracs in by_class.items():
        assert r.utilization[cls] == pytest.approx(sum(fracs) / len(fracs), abs=2e-3), cls
    r_exact_len = estimate(w.model_copy(update={"training": w.training.model_copy(
        update={"seq_len": 64})}), a, baselines=[])
    assert r_exact_len.simulation["simulated_seq_lens"] == [64]   # short sequences: as before
