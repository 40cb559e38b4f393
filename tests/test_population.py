"""Populations (``AnalogLSTM(seeds=[...])``, :mod:`archsim.functional.members`): ``K`` networks
trained as one batched computation.

What a member must equal: with no random draws (ideal devices, or a periphery with every draw
off) the separate run with its seed, up to float rounding; its initial weights and device
variations, bit for bit; with random draws, the separate run in distribution (one update of
identical members against independent one-member tiles)."""
from __future__ import annotations

import dataclasses
import math

import pytest

torch = pytest.importorskip("torch")

from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.functional.members import Members  # noqa: E402
from archsim.functional.tile import AnalogTile  # noqa: E402
from archsim.specs import load_architecture, load_device  # noqa: E402
from conftest import (  # noqa: E402
    assert_rows_equal_member_tiles, draw_statistics, separate_tile_forwards,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = [3, 7, 11]
V, H, L, T, B = 12, 8, 2, 5, 3
#: Arrays of 4096 hold every matrix on one tile; of 8 split them (lstm1 32x21 -> 4x3 tiles).
ONE_TILE, SPLIT = 4096, 8


def _config(device: str, mode: str = "fast", arch_overrides=None, **fields) -> RPUConfig:
    arch = load_architecture("rpu2016", overrides=arch_overrides)
    cfg = RPUConfig.from_specs(load_device(device), arch, mode)
    return dataclasses.replace(cfg, **fields) if fields else cfg


def _networks(cfg, array: int, seeds=SEEDS, **kw):
    """A population with ``seeds`` and the separate one-member runs with each seed."""
    kw = dict(array_rows=array, array_cols=array, **kw)
    pop = AnalogLSTM(V, H, L, cfg, seeds=seeds, **kw)
    singles = [AnalogLSTM(V, H, L, cfg, seed=s, **kw) for s in seeds]
    return pop, singles


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (T, B), generator=g), torch.randint(0, V, (T, B), generator=g)


def _member_rows(state_tensor: torch.Tensor, K: int, k: int) -> torch.Tensor:
    """Member ``k``'s rows of a ``[K*B, n]`` state tensor (rows ordered member, sequence)."""
    return state_tensor.view(K, -1, state_tensor.shape[-1])[k]


def _assert_weights_close(pop, singles, atol, members=None):
    w_pop = pop.weights()
    for k, single in enumerate(singles):
        if members is not None and k not in members:
            continue
        for name, w in single.weights().items():
            assert w_pop[name].shape == (pop.K, *w.shape)
            err = float((w_pop[name][k] - w).abs().max())
            assert err <= atol, (name, k, err)


# ---- 1. ideal devices: the population is the separate runs -------------------------------------
@pytest.mark.parametrize("array", [ONE_TILE, SPLIT])
def test_ideal_population_equals_separate_runs(array):
    pop, singles = _networks(_config("ideal"), array)
    n_tiles = [len(m.tiles) for m in pop.matrices]
    assert n_tiles == ([1, 1, 1] if array == ONE_TILE else [12, 12, 4])
    assert pop.K == len(SEEDS)
    ids, targets = _data()
    # Forward only, from the initial weights.
    lp, _ = pop.loss(ids, targets, pop.zero_state(B))
    ls = [m.loss(ids, targets, m.zero_state(B))[0] for m in singles]
    assert lp == pytest.approx(ls, rel=1e-6, abs=1e-5)
    assert len(set(round(x, 4) for x in ls)) == len(SEEDS)     # the members do differ
    state = pop.zero_state(B)
    assert state[0][0].shape == (pop.K * B, H)
    states = [m.zero_state(B) for m in singles]
    for _ in range(3):
        lp, state = pop.train_step(ids, targets, state, 0.1)
        ls = []
        for i, m in enumerate(singles):
            loss, states[i] = m.train_step(ids, targets, states[i], 0.1)
            ls.append(loss)
        assert len(lp) == pop.K
        for a, b in zip(lp, ls):
            assert abs(a - b) <= 1e-5, (lp, ls)
    # The carried state is each member's.
    for li in range(L):
        for k in range(pop.K):
            for part in (0, 1):
                got = _member_rows(state[li][part], pop.K, k)
                assert torch.allclose(got, states[k][li][part], rtol=0, atol=1e-6)
    _assert_weights_close(pop, singles, atol=1e-6)
    # Training moved the weights (the comparison above is not of initial weights only).
    w0 = AnalogLSTM(V, H, L, _config("ideal"), array_rows=array, array_cols=array,
                    seed=SEEDS[0]).weights()
    assert any(float((singles[0].weights()[n] - w0[n]).abs().max()) > 1e-3 for n in w0)
    # loss() on a fresh zero state after training.
    lp, _ = pop.loss(ids, targets, pop.zero_state(B))
    ls = [m.loss(ids, targets, m.zero_state(B))[0] for m in singles]
    assert lp == pytest.approx(ls, rel=1e-6, abs=1e-5)


# ---- 2. initial weights and device variations, bit for bit -------------------------------------
@pytest.mark.parametrize("array", [ONE_TILE, SPLIT])
@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("device", ["rpu_baseline", "ecram_tang2018", "reram_es_gong2018"])
def test_members_start_as_their_separate_runs_bit_for_bit(device, mode, array):
    pop, singles = _networks(_config(device, mode), array)
    K = pop.K
    w_pop = pop.weights()
    for k, single in enumerate(singles):
        for name, w in single.weights().items():
            assert torch.equal(w_pop[name][k], w), (name, k)
    for pm, *sms in zip(pop.matrices, *(s.matrices for s in singles)):
        assert len(pm.tiles) == len(sms[0].tiles)
        for ti, pt in enumerate(pm.tiles):
            pdev = pt.devices.tensors()
            assert pt.weight3.shape[0] == K
            for k, sm in enumerate(sms):
                st = sm.tiles[ti]
                sdev = st.devices.tensors()
                assert set(pdev) == set(sdev)
                assert torch.equal(pt.weight3[k], st.weight), (pm.name, ti, k)
                for name, value in sdev.items():
                    assert pdev[name].shape == (K * value.shape[0], value.shape[1])
                    member_value = pdev[name].view(K, *value.shape)[k]
                    assert torch.equal(member_value, value), (pm.name, ti, k, name)
                if mode == "exact":
                    # Exact mode updates member by member, on that member's devices and weights.
                    part = pt._exact[k]
                    assert part.weight.data_ptr() == pt.weight3[k].data_ptr()
                    for name, value in part.devices.tensors().items():
                        assert torch.equal(value, sdev[name]), (pm.name, ti, k, name)
            # Each member drew its own devices (not vacuous: they differ between members).
            assert not torch.equal(pdev["step_up"].view(K, -1)[0], pdev["step_up"].view(K, -1)[1])


# ---- 3. no random draws: equal outputs, bound management included ------------------------------
#: Every random draw off (output noise, stochastic rounding; no dropout), quantization on.
DETERMINISTIC = dict(out_noise=0.0, inp_sto_round=False, out_sto_round=False)


@pytest.mark.parametrize("array", [ONE_TILE, SPLIT])
@pytest.mark.parametrize("out_bound", [12.0, 0.3])
def test_deterministic_periphery_population_loss_equals_separate_runs(array, out_bound):
    cfg = _config("rpu_baseline", **DETERMINISTIC, out_bound=out_bound)
    assert cfg.inp_res > 0 and cfg.out_res > 0 and cfg.bound_management == "iterative"
    pop, singles = _networks(cfg, array, dtype=torch.float64)
    ids, targets = _data(1)
    lp, state = pop.loss(ids, targets, pop.zero_state(B))
    first = [m.loss(ids, targets, m.zero_state(B)) for m in singles]
    assert lp == pytest.approx([loss for loss, _ in first], rel=1e-5)
    # A second sweep from the carried state.
    lp, _ = pop.loss(ids, targets, state)
    ls = [m.loss(ids, targets, st)[0] for m, (_, st) in zip(singles, first)]
    assert lp == pytest.approx(ls, rel=1e-5)
    saturating = out_bound < 1.0
    for i, pm in enumerate(pop.matrices):
        a = pm.activity()
        sa = [s.matrices[i].activity() for s in singles]
        # The same MVMs, conversions, saturations and repeats as the separate runs together.
        for field in ("forward_mvms", "dac_conversions", "adc_conversions", "bm_repeats",
                      "adc_saturations"):
            assert getattr(a, field) == sum(getattr(x, field) for x in sa), (pm.name, field)
        if saturating:
            assert a.adc_saturations > 0 and a.bm_repeats > 0, pm.name
        else:
            assert a.adc_saturations == 0 and a.bm_repeats == 0, pm.name


def _tile_pair(cfg, K, out, inp, seeds, weights):
    """A population tile of ``K`` members and ``K`` one-member tiles, devices drawn from ``seeds``
    and programmed with ``weights [K, out, in]``."""
    members = Members(K)
    pop = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(99), members=members,
                     member_generators=[torch.Generator().manual_seed(s) for s in seeds],
                     dtype=torch.float64)
    pop.set_weights(weights)
    singles = []
    for k, s in enumerate(seeds):
        t = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(s),
                       dtype=torch.float64)
        t.set_weights(weights[k])
        singles.append(t)
    return members, pop, singles


@pytest.mark.parametrize("out_bound", [12.0, 0.3])
def test_deterministic_population_tile_mvms_equal_one_member_tiles(out_bound):
    """forward (bound management), backward (all outputs and some), read: row by row the
    member's own tile, on several timesteps of rows ordered (m, member, sequence)."""
    K, out, inp, Bt, m = 3, 6, 10, 2, 4
    cfg = _config("rpu_baseline", **DETERMINISTIC, out_bound=out_bound)
    g = torch.Generator().manual_seed(5)
    weights = (torch.rand(K, out, inp, generator=g, dtype=torch.float64) * 2 - 1) * 0.4
    members, pop, singles = _tile_pair(cfg, K, out, inp, [21, 22, 23], weights)
    for k, t in enumerate(singles):
        assert torch.equal(pop.get_weights()[k], t.get_weights())
    members.set_batch(Bt)
    R = m * K * Bt
    x = torch.rand(R, inp, generator=g, dtype=torch.float64) * 2 - 1
    d = torch.randn(R, out, generator=g, dtype=torch.float64)
    assert_rows_equal_member_tiles(pop, singles, members, x, d)
    a, sa = pop.activity, [t.activity for t in singles]
    for field in ("forward_mvms", "backward_mvms", "bm_repeats", "adc_saturations",
                  "dac_conversions", "adc_conversions"):
        assert getattr(a, field) == sum(getattr(s, field) for s in sa), field
    if out_bound < 1.0:
        assert a.bm_repeats > 0 and a.adc_saturations > 0


@pytest.mark.parametrize("bl_management", [False, True])
@pytest.mark.parametrize("onehot", [False, True])
def test_fast_update_expected_counts_per_member_equal_one_member_tiles(onehot, bl_management):
    """The fast update's expected coincidences per device (``device_writes``) and pulse counts
    draw nothing: with different rows per member (over several timesteps, one-hot columns
    summed by index or not, BL per row or not) each member's equal its one-member tile's."""
    K, out, inp, Bt, m, s = 3, 6, 10, 2, 3, 4
    cfg = _config("rpu_baseline", update_bl_management=bl_management)
    g = torch.Generator().manual_seed(8)
    weights = (torch.rand(K, out, inp, generator=g, dtype=torch.float64) * 2 - 1) * 0.1
    members, pop, singles = _tile_pair(cfg, K, out, inp, [31, 32, 33], weights)
    members.set_batch(Bt)
    R = m * K * Bt
    x = torch.rand(R, inp, generator=g, dtype=torch.float64) * 2 - 1
    d = torch.randn(R, out, generator=g, dtype=torch.float64)
    index = torch.randint(0, s, (R,), generator=g)
    if onehot:
        x[:, :s] = 0.0
        x[torch.arange(R), index] = torch.rand(R, generator=g, dtype=torch.float64) * 2 - 1
    lr = 0.004     # k = lr*max|x|*max|d|/dw_min about 1..10: BL management picks BL per row
    pop.update(x, d, lr, onehot=(s, index) if onehot else None)
    member = members.member_of(torch.arange(R))
    for k, t in enumerate(singles):
        rows = (member == k).nonzero().squeeze(1)
        t.update(x[rows], d[rows], lr, onehot=(s, index[rows]) if onehot else None)
        got = pop.device_writes.view(K, out, inp)[k]
        assert float(got.sum()) > 0
        assert torch.allclose(got, t.device_writes, rtol=1e-12, atol=0), k
    a, sa = pop.activity, [t.activity for t in singles]
    for field in ("updates", "pulse_slots", "row_pulses", "col_pulses", "coincidences"):
        total = sum(getattr(x, field) for x in sa)
        assert getattr(a, field) == pytest.approx(total, rel=1e-12), field
    if bl_management:
        assert a.pulse_slots < a.updates * cfg.desired_bl      # BL chosen per row


@pytest.mark.parametrize("bl_management", [False, True])
@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_update_rows_reach_only_their_own_members_devices(mode, bl_management):
    """Member k's rows drive only inputs 3k..3k+2 and outputs 2k..2k+1: after a pulsed update
    (sampled or moment-matched) member k's weights and write counts changed in that block and
    nowhere else, in every member (a row sent to another member's devices would show)."""
    K, out, inp, Bt, m = 3, 6, 9, 2, 2
    cfg = _config("rpu_baseline", mode, update_bl_management=bl_management)
    g = torch.Generator().manual_seed(12)
    members = Members(K)
    pop = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(40), members=members,
                     member_generators=[torch.Generator().manual_seed(s) for s in (41, 42, 43)])
    pop.set_weights((torch.rand(K, out, inp, generator=g) * 2 - 1) * 0.1)
    members.set_batch(Bt)
    R = m * K * Bt
    member = members.member_of(torch.arange(R))
    col_owner, row_owner = torch.arange(inp) // 3, torch.arange(out) // 2
    x = (torch.rand(R, inp, generator=g) * 2 - 1) * (col_owner[None, :] == member[:, None])
    d = torch.randn(R, out, generator=g) * (row_owner[None, :] == member[:, None])
    start = pop.get_weights()
    pop.update(x, d, 0.01)
    dw = pop.get_weights() - start
    writes = pop.device_writes.view(K, out, inp)
    for k in range(K):
        block = (row_owner == k)[:, None] & (col_owner == k)[None, :]
        assert not bool(dw[k][~block].any()) and not bool(writes[k][~block].any()), k
        assert float(dw[k][block].abs().sum()) > 0 and float(writes[k][block].sum()) > 0, k


# ---- 4. with random draws: one update equals the separate runs' in distribution ----------------
@pytest.mark.parametrize("device, mode, bl_management", [
    ("rpu_baseline", "fast", False), ("rpu_baseline", "exact", False),
    ("ecram_tang2018", "fast", False), ("ecram_tang2018", "exact", False),
    # BL per row: exact mode hands each member its rows' BL
    ("rpu_baseline", "exact", True), ("ecram_tang2018", "fast", True)])
def test_population_update_matches_separate_tiles_in_distribution(device, mode, bl_management):
    """``K`` identical members (same device seed, same weights, same x and d rows) against ``K``
    one-member tiles with those devices but independent update streams: per device, the mean and
    the variance of the weight change across members vs across runs.

    Statistics (their spread without a difference checked over 100-250 seeds per case while
    writing the test): the projection of each run's change on the SGD step ``-lr d^T x`` (a
    t-test over the K runs, valid whatever the correlations between devices: |t| <= 3.6 seen),
    the mean over devices of the variance ratio (0.86..1.19 seen) and the mean over devices of
    the squared per-device z of the mean difference (0.63..1.57 seen)."""
    K, out, inp, Bt = 24, 8, 16, 4
    cfg = _config(device, mode, update_bl_management=bl_management)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(Bt, inp, generator=g) * 2 - 1
    d = torch.randn(Bt, out, generator=g)
    w0 = (torch.rand(out, inp, generator=g) * 2 - 1) * 0.1
    # About 6 pulses of dw_min at the largest |d x| per row: many coincidences, no clipping.
    lr = 6.0 * cfg.device.dw_min / float(d.abs().max() * x.abs().max())
    dev_seed = 101
    members = Members(K)
    members.set_batch(Bt)
    pop = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(201), members=members,
                     member_generators=[torch.Generator().manual_seed(dev_seed) for _ in range(K)])
    pop.set_weights(w0.expand(K, out, inp))
    start = pop.get_weights()
    pop.update(x.repeat(K, 1), d.repeat(K, 1), lr)
    dw_pop = pop.get_weights() - start
    dw_single = []
    for i in range(K):
        t = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(dev_seed))
        t.generator = torch.Generator().manual_seed(1000 + i)     # its own update stream
        t.set_weights(w0)
        assert torch.equal(t.get_weights(), start[i])             # same devices, same weights
        before = t.get_weights()
        t.update(x, d, lr)
        dw_single.append(t.get_weights() - before)
    dw_single = torch.stack(dw_single)
    # Not vacuous: the weights moved, by amounts that vary from run to run.
    assert float(dw_pop.abs().mean()) > cfg.device.dw_min
    assert float(dw_single.var(0).mean()) > 0 and float(dw_pop.var(0).mean()) > 0
    sgd = -lr * d.t() @ x

    def projection(dw):
        return (dw * sgd).sum((1, 2)) / (sgd * sgd).sum()

    a_pop, a_single = projection(dw_pop), projection(dw_single)
    assert 0.5 < float(a_single.mean()) < 2.0                     # the update follows SGD
    t_stat = (a_pop.mean() - a_single.mean()) / (a_pop.var() / K + a_single.var() / K).sqrt()
    assert abs(float(t_stat)) < 4.5, float(t_stat)
    z2, var_ratio = draw_statistics(dw_pop, dw_single)
    assert 0.7 < var_ratio < 1.4, var_ratio
    assert 0.5 < z2 < 2.0, z2


def _forward_noise_stats(seed: int):
    """Per output element of a forward MVM with output noise and stochastic rounding: the squared
    z of the mean difference and the variance ratio, ``K`` identical members against ``K``
    one-member tiles with the same devices and weights and their own streams."""
    K, out, inp, Bt = 24, 8, 16, 16
    cfg = _config("rpu_baseline", inp_sto_round=True, out_sto_round=True)
    assert cfg.out_noise > 0
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(Bt, inp, generator=g) * 2 - 1
    w0 = (torch.rand(out, inp, generator=g) * 2 - 1) * 0.3
    members = Members(K)
    members.set_batch(Bt)
    pop = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(seed + 1),
                     members=members,
                     member_generators=[torch.Generator().manual_seed(seed + 2) for _ in range(K)])
    pop.set_weights(w0.expand(K, out, inp))
    y_pop = pop.forward(x.repeat(K, 1)).view(K, Bt, out)
    return draw_statistics(y_pop, separate_tile_forwards(cfg, w0, x, seed, K))


def test_population_forward_noise_matches_separate_tiles_in_distribution():
    """Every member draws its own output noise and rounding (not one draw for all)."""
    z2, var_ratio = _forward_noise_stats(3)
    assert 0.5 < z2 < 2.0, z2
    assert 0.7 < var_ratio < 1.4, var_ratio


# ---- 5. retire ---------------------------------------------------------------------------------
@pytest.mark.parametrize("array", [ONE_TILE, SPLIT])
def test_retired_member_stops_and_the_others_go_on(array):
    pop, singles = _networks(_config("ideal"), array)
    K, gone = pop.K, 1
    ids, targets = _data(2)
    state = pop.zero_state(B)
    states = [m.zero_state(B) for m in singles]

    def step():
        nonlocal state
        lp, state = pop.train_step(ids, targets, state, 0.1)
        ls = []
        for i, m in enumerate(singles):
            loss, states[i] = m.train_step(ids, targets, states[i], 0.1)
            ls.append(loss)
        return lp, ls

    for _ in range(2):
        step()
    assert bool(_member_rows(state[0][0], K, gone).any())       # it had a state to lose
    state = pop.retire(gone, state)
    for li in range(L):
        for part in (0, 1):
            assert not bool(_member_rows(state[li][part], K, gone).any())
    for _ in range(2):
        lp, ls = step()
        for k in range(K):
            if k == gone:
                # zero weights: uniform logits
                assert lp[k] == pytest.approx(math.log(V), rel=1e-6)
            else:
                assert abs(lp[k] - ls[k]) <= 1e-5, (k, lp, ls)
        for li in range(L):
            for part in (0, 1):
                assert not bool(_member_rows(state[li][part], K, gone).any())
                for k in range(K):
                    if k != gone:
                        assert torch.allclose(_member_rows(state[li][part], K, k),
                                              states[k][li][part], rtol=0, atol=1e-6)
    _assert_weights_close(pop, singles, atol=1e-6, members=[k for k in range(K) if k != gone])
    for name, w in pop.weights().items():
        assert not bool(w[gone].any()), name
        assert bool(w[0].any()) and bool(w[2].any()), name


# ---- 6. what a population refuses --------------------------------------------------------------
def test_population_refuses_tiki_taka_and_weight_mapping():
    tt = _config("rpu_baseline", arch_overrides={"update.algorithm": "tiki_taka"})
    mapped = _config("rpu_baseline", arch_overrides={"periphery.weight_scaling_omega": 0.6})
    assert tt.tiki_taka and mapped.weight_scaling_omega == 0.6
    for cfg, match in ((tt, "Tiki-Taka"), (mapped, "weight mapping")):
        AnalogLSTM(V, H, L, cfg, array_rows=ONE_TILE, array_cols=ONE_TILE, seed=3)   # one: fine
        with pytest.raises(ValueError, match=match):
            AnalogLSTM(V, H, L, cfg, array_rows=ONE_TILE, array_cols=ONE_TILE, seeds=[3, 7])
    # A population tile needs one member generator per member.
    with pytest.raises(ValueError, match="member generators"):
        AnalogTile(4, 5, _config("rpu_baseline"), generator=torch.Generator(), members=Members(3),
                   member_generators=[torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError):
        Members(1)


# ---- 7. Members ----------------------------------------------------------------------------------
def _members(K=3, Bm=2):
    m = Members(K)
    m.set_batch(Bm)
    return m


def test_members_layout():
    mem = _members()
    R = 4 * 3 * 2
    rows = torch.arange(R)
    assert mem.member_of(rows).tolist() == [(r // 2) % 3 for r in range(R)]
    assert torch.equal(mem.member_rows(R, "cpu"), mem.member_of(rows))
    assert mem.groups(R) == 4 and mem.groups(6) == 1
    for bad in (5, 7, 13):
        with pytest.raises(ValueError):
            mem.groups(bad)
    with pytest.raises(ValueError):
        Members(3).groups(6)          # batch size not set
    g = torch.Generator().manual_seed(0)
    for m in (1, 4):
        v = torch.randn(m * 6, 5, generator=g)
        member = mem.member_of(torch.arange(v.shape[0]))
        by = mem.by_member(v)
        assert by.shape == (3, m * 2, 5)
        for k in range(3):
            assert torch.equal(by[k], v[member == k])      # the member's rows, in order
        assert torch.equal(mem.to_rows(by, m).reshape(-1, 5), v)
        # member-major: member k's rows (in their order) as the k-th block of R/K rows
        major = mem.member_major(v)
        assert torch.equal(major, by.reshape(-1, 5))
        assert torch.equal(mem.member_major(torch.arange(v.shape[0])),
                           torch.cat([(member == k).nonzero().squeeze(1) for k in range(3)]))
    index = torch.tensor([0, 2, 1, 1, 0, 2])
    assert mem.flat_index(index, 4).tolist() == [0, 2, 5, 5, 8, 10]
    index = torch.tensor([0, 2, 1, 1, 0, 2, 3, 1, 0, 2, 1, 3])     # 12 member-major rows
    assert mem.major_flat_index(index, 4).tolist() == [0, 2, 1, 1, 4, 6, 7, 5, 8, 10, 9, 11]


def test_members_products_against_loops():
    mem = _members()
    g = torch.Generator().manual_seed(1)
    K, n, p = 3, 5, 4
    w = torch.randn(K, n, p, generator=g, dtype=torch.float64)
    for m in (1, 3):
        R = m * K * 2
        v = torch.randn(R, n, generator=g, dtype=torch.float64)
        member = mem.member_of(torch.arange(R)).tolist()
        want = torch.stack([v[r] @ w[member[r]] for r in range(R)])
        assert torch.allclose(mem.mm(v, w), want, rtol=0, atol=1e-12)
        out = torch.empty(R, p, dtype=torch.float64)
        assert mem.mm(v, w, out) is out and torch.allclose(out, want, rtol=0, atol=1e-12)
        y0 = torch.randn(R, p, generator=g, dtype=torch.float64)
        y = mem.addmm_(y0.clone(), v, w, beta=0.5, alpha=2.0)
        assert torch.allclose(y, 0.5 * y0 + 2.0 * want, rtol=0, atol=1e-12)
        # wider than Members.NARROW (the CPU's other path over several timesteps), beta 1 too
        wide = torch.randn(K, Members.NARROW + 3, p, generator=g, dtype=torch.float64)
        vw = torch.randn(R, Members.NARROW + 3, generator=g, dtype=torch.float64)
        want_w = torch.stack([vw[r] @ wide[member[r]] for r in range(R)])
        for beta in (0.5, 1.0):
            y = mem.addmm_(y0.clone(), vw, wide, beta=beta, alpha=2.0)
            assert torch.allclose(y, beta * y0 + 2.0 * want_w, rtol=0, atol=1e-12)
        d = torch.randn(R, p, generator=g, dtype=torch.float64)
        sums = torch.zeros(K, n, p, dtype=torch.float64)
        for r in range(R):
            sums[member[r]] += torch.outer(v[r], d[r])
        # outer_sums takes the rows member-major (as the tiles' updates reorder them)
        got = mem.outer_sums(mem.member_major(v), mem.member_major(d))
        assert torch.allclose(got, sums, rtol=0, atol=1e-12)
    # A subset of a batch's rows (bound management's repeats), not a whole number of timesteps.
    rows = torch.tensor([1, 2, 5, 7, 12, 16])
    v = torch.randn(len(rows), n, generator=g, dtype=torch.float64)
    member = mem.member_of(rows).tolist()
    assert sorted(set(member)) == [0, 1, 2]
    want = torch.stack([v[i] @ w[member[i]] for i in range(len(rows))])
    assert torch.allclose(mem.mm(v, w, rows=rows), want, rtol=0, atol=1e-12)
    # one member only
    rows = torch.tensor([2, 3, 9])
    v = torch.randn(3, n, generator=g, dtype=torch.float64)
    assert torch.allclose(mem.mm(v, w, rows=rows), v @ w[1], rtol=0, atol=1e-12)


def test_members_may_differ_in_per_device_parameters_only():
    """``member_devices``: member k gets the devices of a separate run with its own spec (here
    three asymmetries, as the seed paper's asymmetry scan), and a difference in a number the
    family keeps per tile (``dw_min``) is refused."""
    from archsim.specs import load_architecture, load_device

    arch = load_architecture("rpu2016")
    devs = [load_device("rpu_baseline", {"up_down": u}) for u in (0.0, 0.05, 0.1)]
    cfg = RPUConfig.from_specs(devs[0], arch, "fast")
    pop = AnalogLSTM(12, 8, 2, cfg, array_rows=4096, array_cols=4096, seeds=[1, 2, 3],
                     member_devices=devs)
    for k, (dev, seed) in enumerate(zip(devs, (1, 2, 3))):
        single = AnalogLSTM(12, 8, 2, RPUConfig.from_specs(dev, arch, "fast"), array_rows=4096,
                            array_cols=4096, seed=seed)
        for ms, mp in zip(single.matrices, pop.matrices):
            a, b = ms.tiles[0].devices.tensors(), mp.tiles[0].devices.tensors()
            for name in a:
                assert torch.equal(b[name].view(3, *a[name].shape)[k], a[name]), (name, k)
    # The asymmetry is really per member: up_down > 0 shortens the down steps.
    t = pop.layers[0].tiles[0].devices.tensors()
    diff = (t["step_up"] - t["step_down"]).view(3, -1).mean(1)
    assert diff[0] < diff[1] < diff[2]
    pop.train_step(torch.zeros(5, 3, dtype=torch.long), torch.ones(5, 3, dtype=torch.long),
                   pop.zero_state(3), 0.1)
    other = load_device("rpu_baseline", {"dw_min": 0.002})
    with pytest.raises(ValueError, match="dw_min"):
        AnalogLSTM(12, 8, 2, cfg, array_rows=4096, array_cols=4096, seeds=[1, 2],
                   member_devices=[devs[0], other])
    with pytest.raises(ValueError, match="population"):
        AnalogLSTM(12, 8, 2, cfg, array_rows=4096, array_cols=4096, member_devices=devs[:1])


def test_a_retired_member_gets_no_updates_even_from_noisy_errors():
    """Without noise management, the output noise of the transposed MVMs reaches a retired
    member's zero rows; its recorded errors are zeroed, so its weights stay 0."""
    cfg = _config("rpu_baseline", arch_overrides={"periphery": {"noise_management": "none"}})
    pop = AnalogLSTM(V, H, L, cfg, array_rows=ONE_TILE, array_cols=ONE_TILE, seeds=SEEDS)
    ids, tg = _data(1)
    state = pop.zero_state(B)
    _, state = pop.train_step(ids, tg, state, 0.1)
    state = pop.retire(1, state)
    for _ in range(3):
        _, state = pop.train_step(ids, tg, state, 0.1)
    for name, w in pop.weights().items():
        assert torch.count_nonzero(w[1]) == 0, name
        assert torch.count_nonzero(w[0]) > 0 and torch.count_nonzero(w[2]) > 0


@pytest.mark.parametrize("preset, overrides", [
    ("rpu_symmetric", [{"up_down": 0.0}, {"up_down": 0.05}]),      # 'symmetric' differs: allowed
    ("ecram_tang2018", [{"w_max": 0.6}, {"w_max": 1.2}]),          # spec-built reference bound
])
def test_member_devices_equal_their_separate_runs_in_every_tensor(preset, overrides):
    from archsim.functional.devices import make_devices

    arch = load_architecture("rpu2016")
    devs = [load_device(preset, o) for o in overrides]
    cfg = RPUConfig.from_specs(devs[0], arch, "fast")
    pop = AnalogLSTM(V, H, L, cfg, array_rows=ONE_TILE, array_cols=ONE_TILE, seeds=[1, 2],
                     member_devices=devs)
    for k, (dev, seed) in enumerate(zip(devs, (1, 2))):
        single = AnalogLSTM(V, H, L, RPUConfig.from_specs(dev, arch, "fast"), array_rows=ONE_TILE,
                            array_cols=ONE_TILE, seed=seed)
        for ms, mp in zip(single.matrices, pop.matrices):
            one, many = ms.tiles[0].devices, mp.tiles[0].devices
            n = one.step_up.shape[0]
            for name, value in vars(one).items():
                if isinstance(value, torch.Tensor) and value.dim() == 2:
                    assert torch.equal(getattr(many, name)[k * n:(k + 1) * n], value), (name, k)
    assert make_devices  # the family's own construction is what is compared
    ids, tg = _data(2)
    losses, _ = pop.train_step(ids, tg, pop.zero_state(B), 0.1)
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/device_session.sh runs it)")
def test_population_on_cuda_starts_as_and_trains_like_separate_runs():
    cfg = _config("ideal")
    kw = dict(array_rows=ONE_TILE, array_cols=ONE_TILE, device="cuda")
    pop = AnalogLSTM(V, H, L, cfg, seeds=SEEDS, **kw)
    singles = [AnalogLSTM(V, H, L, cfg, seed=s, **kw) for s in SEEDS]
    ids, tg = _data(3)
    losses, _ = pop.train_step(ids, tg, pop.zero_state(B), 0.1)
    for k, single in enumerate(singles):
        loss, _ = single.train_step(ids, tg, single.zero_state(B), 0.1)
        assert losses[k] == pytest.approx(loss, rel=1e-5)
    rpu = _config("rpu_baseline")
    pop = AnalogLSTM(V, H, L, rpu, seeds=SEEDS, **kw)
    for k, s in enumerate(SEEDS):
        single = AnalogLSTM(V, H, L, rpu, seed=s, **kw)
        for ms, mp in zip(single.matrices, pop.matrices):
            for name, t in ms.tiles[0].devices.tensors().items():
                assert torch.equal(mp.tiles[0].devices.tensors()[name].view(len(SEEDS), *t.shape)[k], t)
    losses, _ = pop.train_step(ids, tg, pop.zero_state(B), 0.1)
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_a_member_nan_step_leaves_activity_and_writes_finite(mode):
    """A member whose step went NaN (it is then retired) must not turn the population's pulse
    counters or its devices' write counts into NaN: the training result reports both."""
    from archsim.functional.train import _activity_dict

    pop = AnalogLSTM(V, H, L, _config("rpu_baseline", mode), array_rows=ONE_TILE,
                     array_cols=ONE_TILE, seeds=SEEDS)
    ids, tg = _data(1)
    state = pop.zero_state(B)
    _, state = pop.train_step(ids, tg, state, 0.1)
    pop.output.tiles[0].weight3[1].fill_(float("nan"))          # member 1 blows up
    losses, state = pop.train_step(ids, tg, state, 0.1)
    assert not math.isfinite(losses[1]) and math.isfinite(losses[0])
    state = pop.retire(1, state)
    _, state = pop.train_step(ids, tg, state, 0.1)
    activity = _activity_dict(pop)
    for key in ("row_pulses", "col_pulses", "coincidences", "pulse_slots"):
        assert math.isfinite(activity[key]) and activity[key] > 0, (key, activity[key])
    for m in pop.matrices:
        for tile in m.tiles:
            writes = tile.device_writes
            assert bool(torch.isfinite(writes).all()), m.name
            assert float(writes.view(pop.K, -1)[0].sum()) > 0
