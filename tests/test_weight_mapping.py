"""Weight mapping (``periphery.weight_scaling_omega``): per tile block, a digital output gain chosen
from the initial weights; the network is unchanged at initialisation and SGD in network units."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from pydantic import ValidationError  # noqa: E402

from archsim.errors import SpecError  # noqa: E402
from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.specs import load_architecture, load_device  # noqa: E402
from archsim.specs.device import DeviceSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V, H, L, T, B = 7, 5, 2, 6, 3
# 8x8 arrays split the 20x13 and 20x11 LSTM matrices over 6 tiles each (the 7x6 output fits one).
SPLIT = dict(array_rows=8, array_cols=8)


def _near_ideal_device(w_max=4.0):
    """A constant-step device with no variations, wide symmetric bounds and a step so small that
    the pulsed update's count noise (std ~ sqrt(dw_min * lr * |d x|)) is far below 1e-5. The step
    is below the spec's 1e-9 floor, so it is set past validation (model_copy)."""
    dev = DeviceSpec(name="near_ideal", kind="constant_step", dw_min=1e-9, dw_min_dtod=0,
                     dw_min_std=0, w_max=w_max, w_min=-w_max, w_max_dtod=0, w_min_dtod=0,
                     up_down_dtod=0)
    return dev.model_copy(update={"dw_min": 1e-14})


def _near_ideal_config(omega=0.0, w_max=4.0):
    """No DAC/ADC quantization, no output noise or clipping, BL far above any k (so no update is
    clipped): the analog tile computes exact MVMs and, on average, exact SGD updates."""
    return RPUConfig(device=_near_ideal_device(w_max), inp_res=0, out_res=0, out_noise=0,
                     out_bound=math.inf, bound_management="none", desired_bl=10**16,
                     weight_scaling_omega=omega)


def _model(config, *, dtype=torch.float64, seed=0, **kw):
    return AnalogLSTM(V, H, L, config, seed=seed, dtype=dtype, **{**SPLIT, **kw})


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, V, (T, B), generator=g), torch.randint(0, V, (T, B), generator=g))
            for _ in range(n)]


def _device_weight_max(matrix):
    return [float(t.weight.abs().max()) for t in matrix.tiles]


@pytest.mark.parametrize("omega", [0.25, 0.6, 1.0])
def test_programmed_max_is_omega_of_the_range_in_every_block(omega):
    w_max = 4.0
    plain, mapped = _model(_near_ideal_config(0.0, w_max)), _model(_near_ideal_config(omega, w_max))
    assert mapped.n_tiles == 13
    for mp, mm in zip(plain.matrices, mapped.matrices):
        assert mp.mapping_scales is None
        assert len(mm.mapping_scales) == len(mm.tiles)
        for got in _device_weight_max(mm):
            assert got == pytest.approx(omega * w_max, rel=1e-12)
        # each block's gain is its own: alpha_b = max|W_b| / (omega * w_max)
        for b, tile, alpha in zip(mm.blocks, mm.tiles, mm.mapping_scales):
            w_b = mp.weight[b.r0:b.r1, b.c0:b.c1]
            assert alpha == pytest.approx(float(w_b.abs().max()) / (omega * w_max), rel=1e-12)
            assert tile.config.out_scale == alpha
        # the network's weights are the initial ones
        assert torch.allclose(mm.weight, mp.weight, rtol=1e-14, atol=0)


def test_asymmetric_bounds_use_the_narrower_side():
    dev = _near_ideal_device().model_copy(update={"w_max": 1.0, "w_min": -0.5})
    cfg = RPUConfig(device=dev, inp_res=0, out_res=0, out_noise=0, weight_scaling_omega=0.8)
    model = _model(cfg)
    for m in model.matrices:
        assert max(_device_weight_max(m)) == pytest.approx(0.8 * 0.5, rel=1e-12)


def test_rpu_baseline_blocks_sit_at_omega_without_bound_spread():
    arch = load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 0.6})
    dev = load_device("rpu_baseline").model_copy(update={"w_max_dtod": 0.0, "w_min_dtod": 0.0})
    cfg = RPUConfig.from_specs(dev, arch)
    assert cfg.weight_scaling_omega == 0.6
    model = _model(cfg, dtype=torch.float32)
    for m in model.matrices:
        for got in _device_weight_max(m):
            assert got == pytest.approx(0.6 * 0.6, rel=1e-6)


def test_outputs_at_initialisation_are_unchanged():
    ids, _ = _batches(1)[0]
    # ideal device: mapping is off there (no device range), the same network bit for bit
    arch = load_architecture("rpu2016")
    ideal_off = RPUConfig.from_specs(load_device("ideal"), arch)
    ideal_on = RPUConfig.from_specs(
        load_device("ideal"), load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 0.5}))
    a, b = _model(ideal_off), _model(ideal_on)
    assert all(m.mapping_scales is None for m in b.matrices)
    la, _ = a.forward(ids, a.zero_state(B), train=False)
    lb, _ = b.forward(ids, b.zero_state(B), train=False)
    assert torch.equal(la, lb)
    # a noise-free analog device: the gains undo the mapping to float rounding
    ref = la
    for omega in (0.1, 0.6, 1.0):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
            m0, m1 = _model(_near_ideal_config(0.0), dtype=dtype), _model(_near_ideal_config(omega), dtype=dtype)
            y0, _ = m0.forward(ids, m0.zero_state(B), train=False)
            y1, _ = m1.forward(ids, m1.zero_state(B), train=False)
            assert torch.allclose(y1, y0, rtol=0, atol=tol)
            assert torch.allclose(y0.double(), ref, rtol=0, atol=tol)


def test_training_steps_are_sgd_in_network_units():
    """The devices see lr/alpha: with and without mapping (and in floating point) a few steps give
    the same network weights (fast update; the exact mode would sample 1e16 pulse slots)."""
    lr = 0.3
    ideal = _model(RPUConfig.from_specs(load_device("ideal"), load_architecture("rpu2016")))
    models = [ideal]
    # omega 0.25 and 0.5: headroom for the weights to grow (at omega 1 the largest sit at a bound)
    for omega in (0.0, 0.25, 0.5):
        models.append(_model(_near_ideal_config(omega)))
    mapped = models[2]
    assert all(a < 1 for a in mapped.output.mapping_scales)   # a real change of scale
    for ids, tgt in _batches(4):
        losses = [m.train_step(ids, tgt, m.zero_state(B), lr)[0] for m in models]
        assert max(losses) - min(losses) < 1e-6
    moved = max(float((m.weight - w).abs().max())
                for m, w in zip(ideal.matrices, [m.weight for m in _model(_near_ideal_config()).matrices]))
    assert moved > 0.1                     # the steps did move the weights
    for m in models[1:]:
        for mi, mm in zip(ideal.matrices, m.matrices):
            assert torch.allclose(mm.weight, mi.weight, rtol=0, atol=1e-5)


def test_rpu_baseline_mapping_changes_the_trajectory_and_trains():
    dev = load_device("rpu_baseline")
    off = RPUConfig.from_specs(dev, load_architecture("rpu2016"))
    on = RPUConfig.from_specs(dev, load_architecture(
        "rpu2016", overrides={"periphery.weight_scaling_omega": 0.6}))
    a, b = _model(off, dtype=torch.float32), _model(on, dtype=torch.float32)
    for m in b.matrices:                  # devices bounded +-0.6 (30 % spread): some clip
        assert all(w <= 0.6 * 0.6 * (1 + 1e-6) for w in _device_weight_max(m))
    la = lb = None
    for ids, tgt in _batches(5):
        la, _ = a.train_step(ids, tgt, a.zero_state(B), 0.1)
        lb, _ = b.train_step(ids, tgt, b.zero_state(B), 0.1)
        assert math.isfinite(la) and math.isfinite(lb)
    assert la != lb
    diff = max(float((ma.weight - mb.weight).abs().max()) for ma, mb in zip(a.matrices, b.matrices))
    assert diff > 1e-3
    assert all(torch.isfinite(m.weight).all() for m in b.matrices)


def test_tiki_taka_tiles_take_the_mapping():
    arch = load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 0.5,
                                                   "update.algorithm": "tiki_taka"})
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), arch)
    model = _model(cfg, dtype=torch.float32)
    for m in model.matrices:
        assert m.mapping_scales is not None
        for tile, alpha in zip(m.tiles, m.mapping_scales):
            assert tile.config.out_scale == alpha
    for ids, tgt in _batches(2):
        loss, _ = model.train_step(ids, tgt, model.zero_state(B), 0.1)
        assert math.isfinite(loss)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1000.5, 1e9, float("nan"), float("inf"), "x", True])
def test_spec_rejects_nonsense(bad):
    with pytest.raises((SpecError, ValidationError, ValueError)):
        load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": bad})


def test_spec_defaults_off_and_rejects_out_scale_together():
    arch = load_architecture("rpu2016")
    assert arch.periphery.weight_scaling_omega is None
    assert RPUConfig.from_specs(load_device("rpu_baseline"), arch).weight_scaling_omega == 0.0
    ok = load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 1000})
    assert ok.periphery.weight_scaling_omega == 1000
    with pytest.raises((SpecError, ValidationError, ValueError), match="out_scale"):
        load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 0.6,
                                                "periphery.out_scale": 2.0})


def test_rpu_config_bounds_and_combination():
    dev = load_device("rpu_baseline")
    for bad in (-1.0, 1e4, float("nan")):
        with pytest.raises(ValueError):
            RPUConfig(device=dev, inp_res=0, out_res=0, weight_scaling_omega=bad)
    cfg = RPUConfig(device=dev, inp_res=0, out_res=0, weight_scaling_omega=0.5, out_scale=2.0)
    with pytest.raises(ValueError, match="out_scale"):
        _model(cfg, dtype=torch.float32)


def test_train_resume_with_mapping_equals_uninterrupted(tmp_path, text_file):
    """The gains come from the seeded initial weights, so a resumed run rebuilds the same ones;
    a checkpoint without mapping is refused for a run with it."""
    from pathlib import Path

    from archsim.functional.train import train
    from archsim.specs import load_workload

    tiny = Path(__file__).resolve().parents[1] / "workloads" / "tiny.yaml"
    w, d = load_workload(tiny), load_device("rpu_baseline")
    a = load_architecture("rpu2016", overrides={"periphery.weight_scaling_omega": 0.3})
    kw = dict(data_path=text_file, progress=False, eval_every=7)
    full = train(w, a, d, max_chars=600, out_dir=tmp_path / "full", **kw)
    part = train(w, a, d, max_chars=300, out_dir=tmp_path / "part", **kw)
    assert part.steps == 15
    rest = train(w, a, d, max_chars=600, out_dir=tmp_path / "part", resume=True, **kw)
    for key in ("train_loss", "valid_loss", "test_loss", "chars_seen"):
        assert getattr(rest, key) == getattr(full, key), key
    plain = train(w, load_architecture("rpu2016"), d, max_chars=300, out_dir=tmp_path / "plain", **kw)
    assert plain.test_loss != part.test_loss
    with pytest.raises(SpecError, match="checkpoint"):
        train(w, a, d, max_chars=600, out_dir=tmp_path / "plain", resume=True, **kw)
