"""Populations whose members' periphery differs (``member_configs``,
:mod:`archsim.functional.periphery_members`): DAC/ADC resolution and rounding, ranges, output
noise and bound-management limits per member.

What a member must equal: with no random draws, the separate run with its own configuration (up to
float rounding: float64 here); with random draws (output noise, stochastic rounding), that run in
distribution."""
from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.functional.members import Members  # noqa: E402
from archsim.functional.periphery import Periphery  # noqa: E402
from archsim.functional.periphery_members import MemberPeriphery  # noqa: E402
from archsim.functional.tile import AnalogTile  # noqa: E402
from archsim.specs import load_architecture, load_device  # noqa: E402
from conftest import (  # noqa: E402
    assert_rows_equal_member_tiles, draw_statistics, separate_tile_forwards,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DETERMINISTIC = dict(out_noise=0.0, inp_sto_round=False, out_sto_round=False)


def _config(device="rpu_baseline", **fields) -> RPUConfig:
    cfg = RPUConfig.from_specs(load_device(device), load_architecture("rpu2016"), "fast")
    return dataclasses.replace(cfg, **fields)


#: Members unlike in one or several converters each (no random draws): resolutions (one member
#: without DAC and ADC quantization), ranges small enough to saturate, bound-management limits.
DETERMINISTIC_SETS = {
    "dac bits": [dict(inp_res=1 / 6), dict(inp_res=1 / 30), dict(inp_res=1 / 126)],
    "ranges and limits": [dict(out_bound=0.3, max_bm_factor=4), dict(out_bound=12.0),
                          dict(out_bound=0.5, out_res=1 / 14, max_bm_res=0.5, inp_bound=0.8)],
    "quantized or not": [dict(inp_res=0.0, out_res=0.0, out_bound=0.4), dict(out_bound=0.4),
                         dict(inp_res=1 / 14, out_res=0.0)],
}


def _member_configs(fields_list, **common):
    return [_config(**DETERMINISTIC, **common, **f) for f in fields_list]


@pytest.mark.parametrize("accelerator_path", [False, True])
@pytest.mark.parametrize("name", list(DETERMINISTIC_SETS))
def test_tile_mvms_of_unlike_members_equal_their_own_tiles(name, accelerator_path):
    """forward (bound management), read, backward (all outputs and some), and a prepared
    forward sweep: row by row the one-member tile with the member's own configuration, and the
    same conversions, saturations and repeats. ``accelerator_path``: the population takes the
    branch a GPU takes (every MVM through the clip and bound management, no host check)."""
    configs = _member_configs(DETERMINISTIC_SETS[name])
    K, out, inp, Bt, m = len(configs), 6, 10, 2, 4
    g = torch.Generator().manual_seed(5)
    weights = (torch.rand(K, out, inp, generator=g, dtype=torch.float64) * 2 - 1) * 0.4
    members = Members(K)
    seeds = [21, 22, 23]
    pop = AnalogTile(out, inp, configs[0], generator=torch.Generator().manual_seed(99),
                     members=members, member_configs=configs, dtype=torch.float64,
                     member_generators=[torch.Generator().manual_seed(s) for s in seeds])
    assert isinstance(pop.periphery, MemberPeriphery)
    if accelerator_path:
        pop.periphery.saturation_known = True
    pop.set_weights(weights)
    singles = []
    for k, (c, s) in enumerate(zip(configs, seeds)):
        t = AnalogTile(out, inp, c, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        t.set_weights(weights[k])
        assert torch.equal(pop.get_weights()[k], t.get_weights())
        singles.append(t)
    members.set_batch(Bt)
    R = m * K * Bt
    # Inputs as an LSTM's: a bias column 1 (the prepared forward's noise-management scale)
    x = torch.rand(R, inp, generator=g, dtype=torch.float64) * 2 - 1
    x[:, -1] = 1.0
    d = torch.randn(R, out, generator=g, dtype=torch.float64)
    assert_rows_equal_member_tiles(pop, singles, members, x, d, (name,))
    member = members.member_of(torch.arange(R))
    # The prepared forward of a sequence: m steps of K*Bt rows; columns 3..5 come step by step.
    rec = slice(3, 6)
    prep = pop.prepare_forward(x.clone(), rec, 1.0, K * Bt)
    ys = [pop.forward_prepared(prep, i, x[i * K * Bt:(i + 1) * K * Bt]).clone() for i in range(m)]
    got = torch.cat(ys)
    for k, t in enumerate(singles):
        rows = (member == k).nonzero().squeeze(1)
        xs = x[rows]
        tp = t.prepare_forward(xs.clone(), rec, 1.0, Bt)
        want = torch.cat([t.forward_prepared(tp, i, xs[i * Bt:(i + 1) * Bt]).clone() for i in range(m)])
        assert torch.allclose(got[rows], want, rtol=0, atol=1e-12), (name, "prepared", k)
    a, sa = pop.activity, [t.activity for t in singles]
    for field in ("forward_mvms", "backward_mvms", "bm_repeats", "adc_saturations",
                  "dac_conversions", "adc_conversions"):
        assert getattr(a, field) == sum(getattr(s, field) for s in sa), (name, field)
    if name != "dac bits":
        # not vacuous: some member saturated and repeated, and the limits differed
        assert a.bm_repeats > 0 and a.adc_saturations > 0
        assert len({s.bm_repeats for s in sa}) > 1


def test_lstm_population_of_unlike_peripheries_equals_separate_runs():
    """Two sweeps of a network (carried state), losses and one training step's weights: each
    member equals the separate network with its configuration; LSTM layers split over tiles."""
    V, H, L, T, B = 12, 8, 2, 5, 3
    configs = _member_configs([dict(inp_res=1 / 14, out_bound=0.5), dict(inp_res=1 / 126),
                               dict(inp_res=0.0, out_res=1 / 30, out_bound=0.6)])
    seeds = [3, 7, 11]
    kw = dict(array_rows=8, array_cols=8, dtype=torch.float64)
    pop = AnalogLSTM(V, H, L, configs[0], seeds=seeds, member_configs=configs, **kw)
    singles = [AnalogLSTM(V, H, L, c, seed=s, **kw) for c, s in zip(configs, seeds)]
    g = torch.Generator().manual_seed(1)
    ids, targets = torch.randint(0, V, (T, B), generator=g), torch.randint(0, V, (T, B), generator=g)
    lp, state = pop.loss(ids, targets, pop.zero_state(B))
    first = [m.loss(ids, targets, m.zero_state(B)) for m in singles]
    assert lp == pytest.approx([loss for loss, _ in first], rel=1e-6)
    assert len({round(x, 6) for x in lp}) == 3          # the settings matter here
    lp, _ = pop.loss(ids, targets, state)
    assert lp == pytest.approx([m.loss(ids, targets, st)[0] for m, (_, st) in zip(singles, first)],
                               rel=1e-6)
    assert sum(pm.activity().bm_repeats for pm in pop.matrices) > 0


def test_unlike_members_draw_their_own_noise_and_rounding_in_distribution():
    """Two groups of members in one population: stochastic 5-bit DAC, stochastic ADC and output
    noise 0.1; and deterministic 7-bit DAC and ADC without noise. Per output element, the mean
    and variance of the first group's forward MVM against one-member tiles of its configuration
    with their own streams (the statistics of tests/test_population.py's forward-noise test);
    the second group draws nothing, so it equals its one-member tile exactly."""
    K, out, inp, Bt, seed = 24, 8, 16, 16, 3
    groups = [_config(inp_res=1 / 30, inp_sto_round=True, out_sto_round=True, out_noise=0.1),
              _config(inp_res=1 / 126, **DETERMINISTIC)]
    configs = [groups[0]] * K + [groups[1]] * K
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(Bt, inp, generator=g) * 2 - 1
    w0 = (torch.rand(out, inp, generator=g) * 2 - 1) * 0.3
    members = Members(2 * K)
    members.set_batch(Bt)
    pop = AnalogTile(out, inp, configs[0], generator=torch.Generator().manual_seed(seed + 1),
                     members=members, member_configs=configs,
                     member_generators=[torch.Generator().manual_seed(seed + 2) for _ in configs])
    pop.set_weights(w0.expand(2 * K, out, inp))
    y_pop = pop.forward(x.repeat(2 * K, 1)).view(2, K, Bt, out)
    for j, cfg in enumerate(groups):
        if j == 1:
            t = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(seed + 2))
            t.set_weights(w0)
            assert torch.allclose(y_pop[1], t.forward(x).expand(K, Bt, out), rtol=0, atol=1e-6)
            continue
        z2, var_ratio = draw_statistics(y_pop[j], separate_tile_forwards(cfg, w0, x, seed, K))
        assert 0.5 < z2 < 2.0, (j, z2)
        assert 0.7 < var_ratio < 1.4, (j, var_ratio)


def test_like_members_keep_the_scalar_periphery_and_other_fields_are_refused():
    cfg = _config()
    members = Members(2)
    kw = dict(generator=torch.Generator().manual_seed(0), members=members,
              member_generators=[torch.Generator().manual_seed(s) for s in (1, 2)])
    same = AnalogTile(4, 5, cfg, member_configs=[cfg, dataclasses.replace(cfg)], **kw)
    assert type(same.periphery) is Periphery
    with pytest.raises(ValueError, match="differ in desired_bl, update_management"):
        AnalogTile(4, 5, cfg, member_configs=[cfg, dataclasses.replace(
            cfg, desired_bl=31, update_management=False)], **kw)
    with pytest.raises(ValueError, match="differ in noise_management"):
        AnalogTile(4, 5, cfg, member_configs=[cfg, dataclasses.replace(cfg, noise_management="none")],
                   **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_unlike_members_on_cuda_equal_the_cpu():
    """The population of unlike peripheries on an accelerator (every MVM through the clip and
    bound management, no host check): the same losses as on the CPU, in float64."""
    V, H, L, T, B = 12, 8, 2, 5, 3
    configs = _member_configs([dict(inp_res=1 / 14, out_bound=0.5), dict(inp_res=1 / 126),
                               dict(inp_res=0.0, out_res=1 / 30, out_bound=0.6)])
    kw = dict(array_rows=8, array_cols=8, dtype=torch.float64, seeds=[3, 7, 11],
              member_configs=configs)
    g = torch.Generator().manual_seed(1)
    ids, targets = torch.randint(0, V, (T, B), generator=g), torch.randint(0, V, (T, B), generator=g)
    losses = []
    for dev in ("cpu", "cuda"):
        net = AnalogLSTM(V, H, L, configs[0], device=dev, **kw)
        losses.append(net.loss(ids, targets, net.zero_state(B))[0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
