"""The shortcuts of the hot path compute what the plain definitions compute.

Each shortcut of the training step (precomputed forward MVMs of a sequence, partial transposed
MVMs, one-hot sums, the fast update's clipped operands, 16-bit pulse sampling) is checked here
against the plain computation it replaces.
"""
from __future__ import annotations

import math

import pytest
import torch

from archsim.functional.config import RPUConfig
from archsim.functional.lstm import AnalogLSTM
from archsim.functional.tile import AnalogTile
from archsim.specs import DeviceSpec, load_architecture, load_device

WIDE = DeviceSpec(name="wide", kind="constant_step", w_max=100.0, w_min=-100.0, w_max_dtod=0.0,
                  w_min_dtod=0.0)


def tile(out_size, in_size, spec=WIDE, seed=0, dtype=torch.float64, **cfg):
    base = dict(inp_res=1 / 126, out_res=1 / 510, out_noise=0.0)
    base.update(cfg)
    t = AnalogTile(out_size, in_size, RPUConfig(device=spec, **base),
                   generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return t


def lstm_inputs(T, B, V, H, seed=0, x_scale=1.0, dtype=torch.float64):
    """Rows [x_t; h; 1] as an LSTM layer feeds them: one-hot (V > 0) or dense x, |h| <= 1."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, max(V, 1), (T * B,), generator=g)
    x = torch.nn.functional.one_hot(ids, V).to(dtype) * x_scale
    h = torch.rand(T * B, H, generator=g, dtype=dtype) * 2 - 1
    return torch.cat([x, h, torch.ones(T * B, 1, dtype=dtype)], 1), ids


@pytest.mark.parametrize("case", ["onehot", "dense", "dropout_scaled", "saturating", "false_onehot"])
def test_prepared_forward_equals_the_plain_forward(case):
    T, B, V, H, out = 5, 3, 6, 4, 8
    u, ids = lstm_inputs(T, B, V, H, x_scale=1.6 if case == "dropout_scaled" else 1.0)
    if case in ("dense", "dropout_scaled", "false_onehot"):
        u[:, :V] = torch.rand(T * B, V, generator=torch.Generator().manual_seed(3),
                              dtype=u.dtype) * (1.6 if case == "dropout_scaled" else 1.0)
    w = torch.randn(out, V + H + 1, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    w *= 4.0 if case == "saturating" else 0.3        # large weights: outputs saturate -> BM
    plain, prep_tile = tile(out, V + H + 1), tile(out, V + H + 1)
    for t_ in (plain, prep_tile):
        t_.set_weights(w)
    post = torch.linspace(0.5, 2.0, out, dtype=u.dtype)
    # false_onehot: the claim is checked and ignored (dense columns)
    onehot = (V, ids) if case in ("onehot", "saturating", "false_onehot") else None
    prepared = prep_tile.prepare_forward(u, slice(V, V + H), 1.0, B, onehot=onehot, post_scale=post)
    for t in range(T):
        rows = slice(t * B, (t + 1) * B)
        expect = plain.forward(u[rows]) * post
        got = prep_tile.forward_prepared(prepared, t, u[rows])
        assert torch.allclose(got, expect, rtol=1e-9, atol=1e-9), (case, t)
    a, b = plain.activity, prep_tile.activity
    assert (a.forward_mvms, a.dac_conversions, a.adc_conversions, a.bm_repeats,
            a.adc_saturations) == (b.forward_mvms, b.dac_conversions, b.adc_conversions,
                                   b.bm_repeats, b.adc_saturations)
    if case == "saturating":
        assert b.bm_repeats > 0


def test_prepared_forward_needs_the_known_inputs_to_set_the_scale():
    u, _ = lstm_inputs(2, 2, 3, 2)
    u[:, -1] = 0.5                     # no input 1 among the known ones: max|u| would depend on h
    u[:, :3] *= 0.5
    with pytest.raises(ValueError, match="known inputs"):
        tile(4, 6).prepare_forward(u, slice(3, 5), 1.0, 2)


def test_prepared_forward_noise_has_the_stated_size():
    u, ids = lstm_inputs(200, 16, 5, 3)
    t = tile(6, 9, out_noise=0.06, out_res=-1)
    t.set_weights(torch.zeros(6, 9, dtype=torch.float64))
    prepared = t.prepare_forward(u, slice(5, 8), 1.0, 16, onehot=(5, ids))
    y = torch.cat([t.forward_prepared(prepared, k, u[k * 16:(k + 1) * 16]) for k in range(200)])
    assert abs(float(y.std()) - 0.06) < 0.003 and abs(float(y.mean())) < 0.003


def test_partial_backward_equals_the_columns_of_the_full_one():
    d = torch.randn(7, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.1
    full, part = tile(8, 12), tile(8, 12)
    w = torch.randn(8, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    full.set_weights(w)
    part.set_weights(w)
    cols = slice(3, 9)
    assert torch.allclose(part.backward(d, cols=cols), full.backward(d)[:, cols], atol=1e-12)
    # The hardware converts every column: counted in full.
    assert part.activity.adc_conversions == full.activity.adc_conversions == 7 * 12


def _captured_moments(t, x, d, lr, onehot=None):
    """The four per-device sums the fast update hands to the device model."""
    seen = {}
    original = t.devices.apply_moments_

    def capture(w, m_all, m_sgn, v_all, v_sgn, generator, **kw):
        seen.update(m_all=m_all.clone(), m_sgn=m_sgn.clone(), v_all=v_all.clone(),
                    v_sgn=None if v_sgn is None else v_sgn.clone())
        return original(w, m_all, m_sgn, v_all, v_sgn, generator, **kw)

    t.devices.apply_moments_ = capture
    t.update(x, d, lr, onehot=onehot)
    return seen


def _reference_moments(x, d, lr, dw_min, desired_bl, bl_management, rule="aihwkit"):
    """sum_k BL p q, ... from explicit firing probabilities (aihwkit's formulas, per update;
    rule "aihwkit": when k = lr*xm*dm/dw_min > BL, d's max is taken as dm*BL/k, as aihwkit's
    PulsedUpdateMetaParameter.performUpdateManagement does, so that x never clips)."""
    m_all = torch.zeros(d.shape[1], x.shape[1], dtype=x.dtype)
    m_sgn, v_all, v_sgn = m_all.clone(), m_all.clone(), m_all.clone()
    for xk, dk in zip(x, d):
        xm, dm = float(xk.abs().max()), float(dk.abs().max())
        bl = desired_bl if not bl_management else min(max(math.ceil(lr * xm * dm / dw_min), 1),
                                                      desired_bl)
        a = b = math.sqrt(lr / (dw_min * bl))
        if xm > 0 and dm > 0:
            k = lr * xm * dm / dw_min
            if rule == "aihwkit" and k > bl:
                dm = dm * bl / k
            a, b = a * math.sqrt(dm / xm), b * math.sqrt(xm / dm)
        p, q = (a * xk.abs()).clamp(max=1), (b * dk.abs()).clamp(max=1)
        sign = torch.outer(torch.sign(dk), torch.sign(xk))
        pq = torch.outer(q, p)
        m_all += bl * pq
        m_sgn += bl * pq * sign
        v_all += bl * pq * pq
        v_sgn += bl * pq * pq * sign
    return dict(m_all=m_all, m_sgn=m_sgn, v_all=v_all, v_sgn=v_sgn)


@pytest.mark.parametrize("rule", ["aihwkit", "balanced"])
@pytest.mark.parametrize("bl_management", [False, True])
@pytest.mark.parametrize("lr", [0.002, 0.5])       # 0.5: many probabilities clip at 1
def test_fast_update_sums_equal_the_explicit_probability_sums(lr, bl_management, rule):
    spec = DeviceSpec(name="a", kind="constant_step", dw_min=0.01, up_down=0.1, w_max=100.0,
                      w_min=-100.0, w_max_dtod=0.0, w_min_dtod=0.0)
    T, B, V, H = 4, 3, 5, 6
    u, ids = lstm_inputs(T, B, V, H, seed=4)
    d = torch.randn(T * B, 9, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    d[2] = 0.0                                            # an update without error
    ref = _reference_moments(u, d, lr, 0.01, 10, bl_management, rule)
    for onehot in (None, (V, ids)):
        t = tile(9, V + H + 1, spec, update_mode="fast", update_bl_management=bl_management,
                 um_rule=rule)
        got = _captured_moments(t, u, d, lr, onehot)
        for name in ("m_all", "m_sgn", "v_all", "v_sgn"):
            assert torch.allclose(got[name], ref[name], rtol=1e-9, atol=1e-12), (name, onehot)


def test_a_false_onehot_claim_is_ignored():
    u, ids = lstm_inputs(3, 2, 4, 3, seed=1)
    u[0, 2] = 0.7                                          # a second nonzero in a "one-hot" row
    d = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    spec = DeviceSpec(name="s", kind="constant_step", w_max=100.0, w_min=-100.0)
    ref = _captured_moments(tile(5, 8, spec, update_mode="fast"), u, d, 0.1)
    got = _captured_moments(tile(5, 8, spec, update_mode="fast"), u, d, 0.1, onehot=(4, ids))
    assert torch.allclose(got["m_sgn"], ref["m_sgn"], rtol=1e-9)


def test_pulse_thresholds_fire_with_the_exact_probability_on_average():
    t = tile(2, 2, update_mode="exact")
    p = torch.tensor([0.0, 1.0, 3e-6, 0.3, 1 - 1e-6, 0.5 + 1 / 2**20], dtype=torch.float64)
    prob = p.unsqueeze(1).expand(6, 20000)                # 20000 updates per line
    thr, always = t._exact.thresholds(prob)
    fire = t._exact.pulses(thr, always, 10).to(torch.float64)   # [lines, slots, updates]
    rate = fire.mean(dim=(1, 2))
    assert rate[0] == 0 and rate[1] == 1                  # never / every slot
    sd = (p * (1 - p) / fire[0].numel()).sqrt()
    assert torch.all((rate - p).abs() <= 5 * sd + 1e-12), (rate, p)
    # below the 16-bit step the dithered threshold still gives the mean (3e-6 < 2^-16)
    mean_thr_prob = ((thr[2].to(torch.float64) + 32768) / 65536).mean()
    assert abs(float(mean_thr_prob) - 3e-6) < 3e-6 * 0.2


def _ideal_model(arch_overrides, dropout, seed=0):
    arch = load_architecture("rpu2016", overrides=arch_overrides)
    cfg = RPUConfig.from_specs(load_device("ideal"), arch)
    return AnalogLSTM(7, 5, 2, cfg, array_rows=arch.array.rows, array_cols=arch.array.cols,
                      seed=seed, dtype=torch.float64, dropout=dropout)


def test_prepared_and_per_step_lstm_paths_agree_with_dropout():
    # 4096 arrays: every matrix on one tile (prepared MVMs); 8x8 arrays: split (full MVM per
    # step). Ideal devices make both exact, so the two paths must agree, dropout included.
    T, B = 6, 3
    ids = torch.randint(0, 7, (T, B), generator=torch.Generator().manual_seed(9))
    one, split = _ideal_model(None, 0.3), _ideal_model({"array.rows": 8, "array.cols": 8}, 0.3)
    la, _ = one.train_step(ids, ids, one.zero_state(B), 0.2)
    lb, _ = split.train_step(ids, ids, split.zero_state(B), 0.2)
    assert la == pytest.approx(lb, abs=1e-12)
    for a, b in zip(one.matrices, split.matrices):
        assert torch.allclose(a.weight, b.weight, atol=1e-12)


def test_out_scale_is_a_digital_gain_on_the_device_weights():
    spec = DeviceSpec(name="r", kind="constant_step", dw_min=0.01, w_max=0.6, w_min=-0.6,
                      w_max_dtod=0.0, w_min_dtod=0.0)
    w = torch.linspace(-1.1, 1.1, 24, dtype=torch.float64).view(4, 6)
    t = tile(4, 6, spec, inp_res=-1, out_res=-1, out_scale=2.0)
    t.set_weights(w)
    assert torch.allclose(t.weight, w / 2) and torch.allclose(t.get_weights(), w)   # +-1.1 fits
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(t.forward(x), x @ w.t(), atol=1e-9)
    assert torch.allclose(t.backward(d), d @ w, atol=1e-9)
    one = tile(4, 6, spec, inp_res=-1, out_res=-1)
    one.set_weights(w)
    assert float(one.get_weights().abs().max()) == pytest.approx(0.6)               # clipped
    # Updates reach the devices with lr/out_scale: the same sums as a plain tile at half the rate.
    seen = _captured_moments(t, x, d, 0.2)
    ref = _reference_moments(x, d, 0.1, 0.01, 10, False)
    for name in ("m_all", "m_sgn", "v_all", "v_sgn"):
        assert torch.allclose(seen[name], ref[name], rtol=1e-9, atol=1e-12), name


def test_out_scale_comes_from_the_architecture():
    arch = load_architecture("rpu2016", overrides={"periphery.out_scale": 2.0})
    assert RPUConfig.from_specs(load_device("rpu_baseline"), arch).out_scale == 2.0
    assert RPUConfig.from_specs(load_device("rpu_baseline"), load_architecture("rpu2016")).out_scale == 1.0


@pytest.mark.parametrize("noise", [0.0, 0.06])
def test_prepared_forward_with_only_onehot_known_columns(noise):
    # u = [one-hot; h]: no dense known block at all (the one-hot 1 sets the scale)
    T, B, V, H = 4, 2, 5, 3
    u, ids = lstm_inputs(T, B, V, H)
    u = u[:, :-1].contiguous()
    w = torch.randn(6, V + H, generator=torch.Generator().manual_seed(3), dtype=u.dtype) * 0.3
    plain, prep_tile = tile(6, V + H, out_noise=noise), tile(6, V + H, out_noise=noise)
    plain.set_weights(w)
    prep_tile.set_weights(w)
    prepared = prep_tile.prepare_forward(u, slice(V, V + H), 1.0, B, onehot=(V, ids))
    got = torch.cat([prep_tile.forward_prepared(prepared, t, u[t * B:(t + 1) * B]) for t in range(T)])
    expect = plain.forward(u)
    assert torch.isfinite(got).all()
    # noise 0: equal; with noise: within a few noise standard deviations of the noiseless result
    assert torch.allclose(got, expect, atol=1e-9 if noise == 0 else 0.4)


def test_a_workspace_keeps_a_tensor_per_name_and_remakes_it_only_when_it_must():
    from archsim.functional.workspace import Workspace

    ws = Workspace(torch.device("cpu"), torch.float32)
    a = ws("a", (3, 4))
    assert a.shape == (3, 4) and a.dtype == torch.float32
    assert ws("a", [3, 4]).data_ptr() == a.data_ptr()            # same shape: the same tensor
    assert ws("a", (4, 3)).shape == (4, 3)                        # another shape: made anew
    assert ws("a", (4, 3), torch.float64).dtype == torch.float64  # another dtype: made anew
    g = ws.at_least("g", (4, 5))
    assert g.shape == (4, 5) and g.is_contiguous()
    smaller = ws.at_least("g", (2, 5))
    assert smaller.shape == (2, 5) and smaller.data_ptr() == g.data_ptr()   # grows only
    larger = ws.at_least("g", (6, 5))
    assert larger.shape == (6, 5) and larger.numel() == 30
    assert ws.at_least("g", (4, 5)).data_ptr() == larger.data_ptr()
    assert ws.at_least("g", (4, 5), torch.float64).dtype == torch.float64
    assert sorted(ws) == ["a", "g"] and len(ws) == 2


@pytest.mark.parametrize("seeds, unlike", [(None, False), ([4, 5], False), ([4, 5], True)],
                         ids=["single", "population", "population_unlike_converters"])
def test_kept_temporaries_give_the_same_numbers_as_fresh_ones(monkeypatch, seeds, unlike):
    """Large temporaries of the periphery (a whole sequence's MVM inputs) are kept between calls
    once they reach Periphery.KEEP_NUMEL elements: with every temporary kept, a noisy rpu_baseline
    network (one, a population of two, and two whose DACs differ) trains to the same bits as with
    none kept."""
    import dataclasses

    from archsim.functional.periphery import Periphery

    arch = load_architecture("rpu2016")
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), arch, "fast")
    member_configs = [dataclasses.replace(cfg, inp_res=1 / 30, inp_sto_round=True), cfg] if unlike else None
    T, B = 5, 3
    ids = torch.randint(0, 7, (T, B), generator=torch.Generator().manual_seed(3))

    def run(keep_numel):
        monkeypatch.setattr(Periphery, "KEEP_NUMEL", keep_numel)
        net = AnalogLSTM(7, 6, 2, cfg, array_rows=arch.array.rows, array_cols=arch.array.cols,
                         seed=1, seeds=seeds, member_configs=member_configs)
        losses = [net.train_step(ids, ids, net.zero_state(B), 0.1)[0] for _ in range(3)]
        # prepare()'s row scales are always kept; the temporaries only from KEEP_NUMEL up
        kept = sum(name != "row_scales" for m in net.matrices for t in m.tiles for name in t.periphery._kept)
        assert (type(net.matrices[0].tiles[0].periphery).__name__ == "MemberPeriphery") == unlike
        return losses, [m.weight.clone() for m in net.matrices], kept

    fresh, kept = run(math.inf), run(1)
    assert fresh[2] == 0 and kept[2] > 0           # the kept path did run
    assert fresh[0] == kept[0]
    assert all(torch.equal(a, b) for a, b in zip(fresh[1], kept[1]))
