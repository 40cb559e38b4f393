"""Tiki-Taka v1 (issue 14, item 3) in both engines: the spec, the two-array tile of the functional
simulator, the transfers of the step program, their placement and cost in the schedule, and the
count equality of the two engines."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from archsim.activity_run import activity_run  # noqa: E402
from archsim.cli import main  # noqa: E402
from archsim.errors import SpecError  # noqa: E402
from archsim.feasibility import schedule_ops_per_step  # noqa: E402
from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.functional.tiki_taka import TikiTakaTile  # noqa: E402
from archsim.schedule import build_schedule  # noqa: E402
from archsim.specs import load_architecture, load_device, load_workload  # noqa: E402

from conftest import REPO, WORKLOADS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: rpu_symmetric without device-to-device spreads and with bounds that no weight reaches here:
#: every device has the same step, and neither an SGD tile nor Tiki-Taka's A or C clips (A + C
#: and an SGD weight w + dw clip differently: A alone is bounded).
UNIFORM = {"dw_min_dtod": 0.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0, "up_down_dtod": 0.0,
           "w_max": 10.0, "w_min": -10.0}


def _arch(**update):
    return load_architecture("rpu2016", overrides={f"update.{k}": v for k, v in update.items()})


def test_spec_defaults_bounds_and_presets_keep_sgd():
    u = _arch().update
    assert (u.algorithm, u.transfer_every, u.n_reads_per_transfer, u.transfer_lr, u.gamma) == \
        ("sgd", 1, 1, 1.0, 0.0)
    for path in sorted((REPO / "models" / "architectures").glob("*.yaml")):
        assert load_architecture(str(path)).update.algorithm == "sgd", path.name
    for bad in ({"algorithm": "tiki-taka"}, {"transfer_every": 0}, {"n_reads_per_transfer": 0},
                {"transfer_lr": 0.0}, {"gamma": -1.0}):
        with pytest.raises(SpecError):
            _arch(**bad)
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"),
                               _arch(algorithm="tiki_taka", transfer_every=7, gamma=0.5), "fast")
    assert cfg.tiki_taka and (cfg.transfer_every, cfg.gamma) == (7, 0.5)
    assert not RPUConfig.from_specs(load_device("ideal"), _arch(algorithm="tiki_taka")).tiki_taka


def _network(arch, device, seed=3):
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.hidden_size": 6})
    cfg = RPUConfig.from_specs(device, arch, "fast")
    m = w.model
    return w, AnalogLSTM(m.vocab_size, m.hidden_size, m.layers, cfg, array_rows=arch.array.rows,
                         array_cols=arch.array.cols, seed=seed)


def _train(w, model, steps):
    T, B, V = w.training.seq_len, w.training.batch_size, w.model.vocab_size
    g = torch.Generator().manual_seed(11)
    state, losses = model.zero_state(B), []
    for _ in range(steps):
        ids = torch.randint(0, V, (T, B), generator=g)
        loss, state = model.train_step(ids, torch.roll(ids, -1, 0), state, 0.5)
        losses.append(loss)
    return losses


@pytest.mark.parametrize("algorithm", ["tiki_taka", "tiki_taka_v2"])
def test_without_transfers_tiki_taka_is_sgd_on_a(algorithm):
    """rpu_symmetric with no device-to-device spread and bounds at +-10 (UNIFORM), the rpu2016
    periphery, fast updates, gamma = 1, transfer_every above T x B (no transfer): the network's
    weight A + C starts at C = the initial weights, A = 0, and A takes the very updates the SGD
    tiles take (A draws what the SGD tile draws; C's variations come from a derived stream).
    Losses are equal bit for bit over four steps, weights to float rounding (the device adds its
    step's terms to w one by one, so w + (d1 + d2) is not (w + d1) + d2 bit for bit). Tiki-Taka
    v1 and TTv2 alike (TTv2's buffer H stays 0); chopped TTv2 needs gamma 0, so it has no such
    case (tests/test_tiki_taka_v2.py: with in_chop_prob 0 it is TTv2)."""
    device = load_device("rpu_symmetric", overrides=UNIFORM)
    w, sgd = _network(_arch(), device)
    _, tt = _network(_arch(algorithm=algorithm, gamma=1.0, transfer_every=10**9), device)
    c0 = {m.name: [t.slow.weight.clone() for t in m.tiles] for m in tt.matrices}
    assert all(isinstance(t, TikiTakaTile) for m in tt.matrices for t in m.tiles)
    assert _train(w, sgd, 4) == _train(w, tt, 4)
    for a, b in zip(sgd.matrices, tt.matrices):
        assert torch.allclose(a.weight, b.weight, rtol=0, atol=1e-6), a.name
        assert all(tile.fast.weight.abs().sum() > 0 for tile in b.tiles)   # A trained
        assert all(torch.equal(t.slow.weight, c) for t, c in zip(b.tiles, c0[b.name]))  # C untouched
        assert all(t.buffer is None or not t.buffer.any() for t in b.tiles)
    act = tt.activity()
    assert act.transfer_reads == act.transfer_updates == 0 and act.updates == sgd.activity().updates


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_transfers_move_weight_from_a_to_c(gamma):
    """A tile of 8 x 6 devices, 40 rank-one updates that all push A up, a transfer of two columns
    every 4 updates: 10 transfers, 20 column reads and 20 transfer updates; every column of C was
    written and moved the way A did, A keeps training, and the network's weight is gamma*A + C."""
    arch = _arch(algorithm="tiki_taka", transfer_every=4, n_reads_per_transfer=2,
                 transfer_lr=1.0, gamma=gamma)
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), arch, "fast")
    tile = TikiTakaTile(8, 6, cfg, generator=torch.Generator().manual_seed(0))
    tile.set_weights(torch.zeros(8, 6))
    x, d = torch.ones(40, 6), -torch.ones(40, 8)         # W <- W - lr d x^T: every device up
    tile.update(x[:20], d[:20], 0.01)
    a_mid = tile.fast.weight.clone()
    tile.update(x[20:], d[20:], 0.01)
    A, C = tile.fast.weight, tile.slow.weight
    assert A.mean() > a_mid.mean() > 0                    # A keeps training
    assert (C.abs().sum(0) > 0).all() and C.mean() > 0    # every column of C moved, upwards
    assert torch.allclose(tile.get_weights(), gamma * A + C)
    if gamma:
        assert torch.allclose(tile.reader.weight, gamma * A + C)
    act = tile.activity
    assert (act.updates, act.transfer_reads, act.transfer_updates) == (40, 20, 20)
    assert act.transfer_pulse_slots == 20 * arch.update.desired_bl
    assert act.pulse_slots == 40 * arch.update.desired_bl and act.forward_mvms == 0
    assert act.adc_conversions == 20 * 8 and act.transfer_coincidences > 0
    assert tile.reset_activity().transfer_reads == 20 and tile.activity.transfer_reads == 0


@pytest.mark.parametrize("algorithm", ["tiki_taka", "tiki_taka_v2", "chopped_tiki_taka_v2"])
def test_run_counts_transfers_alike_in_both_engines(text_file, algorithm):
    """``archsim run``'s path: train two steps, count every tile, time the schedule: the transfer
    reads and updates (and every conversion and pulse slot) are equal, and happened; TTv2's
    transfer updates have one pulse slot each (transfer_desired_bl 1), v1's desired_bl."""
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.hidden_size": 6})
    arch = _arch(algorithm=algorithm, transfer_every=3, n_reads_per_transfer=2)
    r = activity_run(w, arch, load_device("rpu_baseline"), steps=2, data_path=text_file)
    fun, sch = r.counts["functional"], r.counts["schedule"]
    T, B = w.training.seq_len, w.training.batch_size
    assert fun["transfer_reads"] == fun["transfer_updates"] == 2 * 2 * (T * B // 3) * 2  # 2 matrices
    bl = 1 if arch.update.buffered else arch.update.desired_bl
    assert fun["transfer_pulse_slots"] == bl * fun["transfer_updates"]
    for key in fun:
        assert fun[key] == pytest.approx(sch[key], rel=1e-9, abs=1e-9), key


def test_schedule_places_a_and_c_and_runs_each_op_on_its_array():
    w = load_workload(WORKLOADS / "tiny.yaml")
    sched = build_schedule(w, _arch(algorithm="tiki_taka", transfer_every=4))
    assert sched.mapping.n_tiles == 2 * build_schedule(w, _arch()).mapping.n_tiles
    for name, rows in sched.placements.items():
        assert [p.role for p in rows] == ["A", "C"] * (len(rows) // 2)
        assert all(c.tile == a.tile + 1 for a, c in zip(rows[::2], rows[1::2]))
        role = {f"tile{p.tile}.array": p.role for p in rows}
        want = {"forward_mvm": "C", "backward_mvm": "C", "rank_one_update": "A",
                "transfer_read": "A", "transfer_update": "C"}
        for op in sched.ops:
            if op.matrix == name and op.kind is not None:
                arrays = {s.resource for b in op.tile_branches for s in b if s.resource.endswith(".array")}
                assert {role[r] for r in arrays} == {want[op.kind]}, op.kind
    assert len(sched.program.ops) == schedule_ops_per_step(w, sched.arch)   # what feasibility counts
    # the next step's first forward op of a matrix waits for its last transfer update
    prog = sched.program
    last = max(op.id for op in prog.ops if op.matrix == "lstm1" and op.kind == "transfer_update")
    first = next(op for op in prog.ops if op.matrix == "lstm1" and op.phase == "forward")
    assert last in first.carry


def test_estimate_shows_the_extra_tiles_and_the_transfer_costs(tmp_path, capsys):
    arch = tmp_path / "tt.yaml"
    arch.write_text("inherits: rpu2016\nname: rpu2016_tt\nupdate:\n  algorithm: tiki_taka\n"
                    "  transfer_every: 8\n  n_reads_per_transfer: 2\n")
    args = ["estimate", str(WORKLOADS / "lstm2x64.yaml"), "--arch", str(arch), "--baselines", ""]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    tt = r["tiki_taka"]
    w = load_workload(WORKLOADS / "lstm2x64.yaml")
    T, B = w.training.seq_len, w.training.batch_size
    assert r["tiles"] == tt["tiles"] == 2 * tt["sgd"]["tiles"] == 6
    assert tt["transfer_reads_per_step"] == tt["transfer_updates_per_step"] == 3 * (T * B // 8) * 2
    assert all(e > 0 for e in tt["transfer_energy_J"].values())
    assert tt["tiki_taka"]["time_per_step_s"] > tt["sgd"]["time_per_step_s"]
    assert tt["tiki_taka"]["energy_per_step_J"] > tt["sgd"]["energy_per_step_J"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Tiki-Taka" in text and "transfer reads per step" in text and "x2 (A, C)" in text


def test_estimate_algorithm_flag_prints_tiki_taka_beside_sgd(capsys):
    """``archsim estimate ... --device ecram_tang2018 --algorithm tiki_taka`` (issue 14)."""
    from pathlib import Path

    from archsim.cli import main as cli_main

    wl = str(Path(__file__).resolve().parents[1] / "workloads" / "lstm2x64.yaml")
    assert cli_main(["estimate", wl, "--device", "ecram_tang2018", "--algorithm", "tiki_taka",
                     "--baselines", "", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tt = data["tiki_taka"]
    assert tt["tiles"] == 2 * tt["sgd"]["tiles"] and tt["transfer_reads_per_step"] > 0
    assert tt["tiki_taka"]["energy_per_step_J"] > tt["sgd"]["energy_per_step_J"]
