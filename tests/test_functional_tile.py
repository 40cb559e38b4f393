"""Analog tile: ideal device = exact floating point; DAC/ADC quantizers; noise and bound management;
activity counters; determinism; state round trip."""
from __future__ import annotations

import math

import pytest
import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.quant import level_step, quantize, quantize_clip
from archsim.functional.tile import AnalogTile
from archsim.specs import DeviceSpec, load_architecture, load_device

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_tile(out_size, in_size, device_spec=None, seed=0, dev="cpu", **cfg):
    # Periphery tests: wide bounds without spread, so programmed weights are exact.
    spec = device_spec or DeviceSpec(name="t", kind="constant_step", w_max=100.0, w_min=-100.0,
                                     w_max_dtod=0.0, w_min_dtod=0.0)
    base = dict(inp_res=1 / 126, out_res=1 / 510, out_noise=0.0)
    base.update(cfg)
    config = RPUConfig(device=spec, **base)
    gen = torch.Generator(device=dev).manual_seed(seed)
    return AnalogTile(out_size, in_size, config, generator=gen, device=dev)


# ---- config ------------------------------------------------------------------------------
def test_config_from_presets():
    arch = load_architecture("rpu2016")
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), arch)
    assert cfg.inp_res == pytest.approx(1 / 126) and cfg.out_res == pytest.approx(1 / 510)
    assert (cfg.inp_bound, cfg.out_bound, cfg.out_noise) == (1.0, 12.0, 0.06)
    assert cfg.desired_bl == 10 and cfg.update_management and not cfg.update_bl_management
    assert cfg.update_mode == "fast" and not cfg.is_ideal
    assert RPUConfig.from_specs(load_device("ideal"), arch, update_mode="exact").is_ideal
    with pytest.raises(ValueError):
        RPUConfig.from_specs(load_device("ideal"), arch, update_mode="slow")


# ---- ideal device ------------------------------------------------------------------------
@pytest.mark.parametrize("dev", DEVICES)
def test_ideal_tile_is_exact_floating_point(dev):
    arch = load_architecture("rpu2016")
    cfg = RPUConfig.from_specs(load_device("ideal"), arch)
    g = torch.Generator(device=dev).manual_seed(1)
    tile = AnalogTile(7, 5, cfg, generator=g, device=dev, dtype=torch.float64, init_std=0.5)
    w = tile.get_weights()
    x = torch.randn(4, 5, dtype=torch.float64, device=dev)
    d = torch.randn(4, 7, dtype=torch.float64, device=dev)
    assert torch.allclose(tile.forward(x), x @ w.t(), atol=1e-12)
    assert torch.allclose(tile.backward(d), d @ w, atol=1e-12)
    tile.update(x, d, 0.3)
    assert torch.allclose(tile.weight, w - 0.3 * d.t() @ x, atol=1e-12)
    # float32 as the trainer uses it: same to 1e-6; weights are not clipped (no device bounds)
    tile32 = AnalogTile(7, 5, cfg, generator=torch.Generator(device=dev).manual_seed(1), device=dev)
    tile32.set_weights(3.0 * w.float())
    assert torch.allclose(tile32.forward(x.float()), x.float() @ (3.0 * w.float()).t(), atol=1e-5)
    tile32.update(x.float(), d.float(), 0.01)
    ref = 3.0 * w.float() - 0.01 * d.float().t() @ x.float()
    assert torch.allclose(tile32.weight, ref, atol=1e-6)
    a = tile.activity
    assert (a.forward_mvms, a.backward_mvms, a.updates, a.pulse_slots) == (4, 4, 4, 0)


# ---- quantizers --------------------------------------------------------------------------
def test_quantizer_levels():
    step = level_step(1 / (2**3 - 2), 1.0)          # 3 bits over +-1
    assert step == pytest.approx(2 / 6)
    v = torch.linspace(-1.5, 1.5, 10001, dtype=torch.float64)
    q = quantize_clip(v, step, 1.0)
    levels = torch.unique(q)
    assert levels.numel() == 2**3 - 1                 # 7 levels: -1, -2/3, ..., 1
    assert torch.allclose(levels, torch.linspace(-1, 1, 7, dtype=torch.float64))
    inside = v.abs() <= 1
    assert (q[inside] - v[inside]).abs().max() <= step / 2 + 1e-12
    assert level_step(0.0, 1.0) == 0.0 and torch.equal(quantize(v, 0.0), v)
    assert level_step(126, 1.0) == pytest.approx(level_step(1 / 126, 1.0))   # steps or resolution


def test_stochastic_rounding_is_unbiased_and_deterministic_is_not():
    step = 0.25
    g = torch.Generator().manual_seed(3)
    v = torch.full((200_000,), 0.3 * step, dtype=torch.float64)
    q = quantize(v, step, sto_round=True, generator=g)
    assert set(torch.unique(q).tolist()) <= {0.0, step}          # the two neighbouring levels
    se = step * math.sqrt(0.3 * 0.7 / v.numel())
    assert abs(q.mean().item() - 0.3 * step) < 5 * se
    assert torch.all(quantize(v, step) == 0.0)                   # round-to-nearest loses it
    w = torch.linspace(-2, 2, 41, dtype=torch.float64).repeat(5000)
    qw = quantize(w, step, sto_round=True, generator=g).view(5000, 41).mean(0)
    assert torch.allclose(qw, w[:41], atol=5 * step * 0.5 / math.sqrt(5000))


# ---- periphery ---------------------------------------------------------------------------
def test_noise_management_makes_the_mvm_scale_invariant():
    tile = make_tile(6, 9)
    tile.set_weights(torch.randn(6, 9, generator=torch.Generator().manual_seed(0)) * 0.2)
    x = torch.randn(3, 9, generator=torch.Generator().manual_seed(1))
    y = tile.forward(x)
    for c in (1e-4, 1e3):
        assert torch.allclose(tile.forward(c * x), c * y, rtol=1e-5, atol=1e-12 * c)
    # Without NM, tiny inputs fall below one DAC level and the output vanishes.
    plain = make_tile(6, 9, noise_management="none")
    plain.set_weights(tile.weight)
    assert torch.all(plain.forward(1e-4 * x) == 0)
    assert not torch.allclose(plain.forward(1e-4 * x), 1e-4 * y)
    # A zero vector gives an exact zero output (NM scale 0).
    assert torch.all(tile.forward(torch.zeros(2, 9)) == 0)


def test_output_noise_and_quantization_errors_have_the_stated_size():
    tile = make_tile(64, 32, out_noise=0.06, inp_res=-1, out_res=-1)
    tile.set_weights(torch.full((64, 32), 0.01))
    x = torch.ones(500, 32)                           # NM alpha = 1
    err = tile.forward(x) - 0.32
    assert abs(err.std().item() - 0.06) < 0.006 and abs(err.mean().item()) < 0.003
    # DAC error: inputs land on multiples of 2/126 of max|x|
    two = make_tile(1, 2, out_res=-1)
    two.set_weights(torch.tensor([[0.0, 1.0]]))
    on_level = two.forward(torch.tensor([[0.5, 0.5 * 21 / 63]])).item()   # levels are k/63
    assert on_level == pytest.approx(0.5 * 21 / 63, rel=1e-6)
    y = two.forward(torch.tensor([[1.0, 0.3]])).item()
    assert abs(y - 0.3) <= 1 / 126 + 1e-6 and y != pytest.approx(0.3, abs=1e-6)
    # ADC error: outputs land on multiples of 24/510 (times the NM scale)
    adc = make_tile(1, 1, inp_res=-1)
    adc.set_weights(torch.full((1, 1), 0.3))
    assert adc.forward(torch.ones(1, 1)).item() == pytest.approx(6 * 24 / 510)


def test_bound_management_halves_until_no_output_saturates():
    tile = make_tile(4, 64, inp_res=-1, out_res=-1)
    tile.set_weights(torch.full((4, 64), 0.5))
    x = torch.zeros(3, 64)
    x[0] = 1.0                       # y = 32 -> saturates at 12, then 16, then 8 = fine: 2 repeats
    x[1, :4] = 1.0                   # y = 2: never saturates
    x[2] = 0.3                       # alpha = 0.3: y~ = 32 per unit -> same as row 0
    y = tile.forward(x)
    assert torch.allclose(y[0], torch.full((4,), 32.0), atol=1e-4)
    assert torch.allclose(y[1], torch.full((4,), 2.0), atol=0.05)
    assert torch.allclose(y[2], torch.full((4,), 9.6), atol=1e-4)
    a = tile.activity
    assert a.bm_repeats == 4 and a.forward_mvms == 3                 # 2 repeats x 2 vectors
    assert a.dac_conversions == (3 + 4) * 64 and a.adc_conversions == (3 + 4) * 4
    assert a.adc_saturations == 2 * 4 * 2                            # two passes of two vectors saturated
    assert a.rates()["bm_repeats_per_mvm"] == pytest.approx(4 / 3)
    # Without BM the ADC clips; with max_bm_factor 1 only one repeat is allowed (aihwkit stops
    # after the first factor above the limit: 2; 16 still clips).
    for kwargs, expect, repeats in ((dict(bound_management="none"), 12.0, 0),
                                    (dict(max_bm_factor=1), 24.0, 1)):
        t = make_tile(4, 64, inp_res=-1, out_res=-1, **kwargs)
        t.set_weights(torch.full((4, 64), 0.5))
        assert torch.allclose(t.forward(x[:1]), torch.full((1, 4), expect), atol=1e-4)
        assert t.activity.bm_repeats == repeats
    # The backward pass has no BM (as aihwkit): it clips.
    assert torch.allclose(tile.backward(torch.ones(1, 4) * 100.0), torch.full((1, 64), 200.0), atol=1e-3)
    back = make_tile(64, 4, inp_res=-1, out_res=-1)
    back.set_weights(torch.full((64, 4), 0.5))
    assert torch.allclose(back.backward(torch.ones(1, 64)), torch.full((1, 4), 12.0))
    assert back.activity.bm_repeats == 0 and back.activity.adc_saturations == 4
    # With 7/9-bit converters the result is within the quantization error of the exact one.
    q = make_tile(4, 64)
    q.set_weights(torch.full((4, 64), 0.5))
    assert torch.allclose(q.forward(x), tile.forward(x), rtol=0.03)
    assert q.activity.bm_repeats == 4


def test_set_weights_clips_to_each_devices_bounds_and_state_round_trip():
    spec = DeviceSpec(name="t", kind="constant_step", w_max_dtod=0.3, w_min_dtod=0.3)
    tile = make_tile(20, 10, spec, seed=4)
    tile.set_weights(torch.full((20, 10), 5.0))
    assert torch.equal(tile.weight, tile.devices.w_max)
    assert tile.devices.w_max.std() > 0.05                         # device-to-device spread
    tile.set_weights(-torch.full((20, 10), 5.0))
    assert torch.equal(tile.weight, tile.devices.w_min)
    tile.forward(torch.randn(2, 10))
    state = tile.state_dict()
    other = make_tile(20, 10, spec, seed=99)
    other.load_state_dict(state)
    assert torch.equal(other.weight, tile.weight)
    assert torch.equal(other.devices.step_up, tile.devices.step_up)
    assert other.activity.forward_mvms == 2


def test_same_seed_same_results_different_seed_different():
    spec = load_device("rpu_baseline")
    arch = load_architecture("rpu2016")
    runs = []
    for seed, mode in ((5, "fast"), (5, "fast"), (6, "fast"), (5, "exact"), (5, "exact")):
        cfg = RPUConfig.from_specs(spec, arch, update_mode=mode)
        cfg.inp_sto_round = True
        tile = AnalogTile(12, 9, cfg, generator=torch.Generator().manual_seed(seed), init_std=0.1)
        x = torch.linspace(-1, 1, 27).view(3, 9)
        y = tile.forward(x)
        tile.update(x, torch.linspace(-0.2, 0.3, 36).view(3, 12), 0.1)
        runs.append((y, tile.weight.clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][1], runs[2][1])
    assert torch.equal(runs[3][1], runs[4][1])


def test_activity_adds_and_reports_rates():
    a = TileActivity(forward_mvms=2, updates=1, pulse_slots=10, row_pulses=5, x_line_slots=100)
    b = TileActivity(forward_mvms=3, bm_repeats=1)
    c = a + b
    assert c.forward_mvms == 5 and c.bm_repeats == 1 and a.forward_mvms == 2
    a += b
    assert a.to_dict() == c.to_dict()
    r = c.rates()
    assert r["bm_repeats_per_mvm"] == pytest.approx(0.2) and r["x_fire_prob"] == pytest.approx(0.05)
    assert r["pulse_slots_per_update"] == 10 and r["coincidence_prob"] is None
