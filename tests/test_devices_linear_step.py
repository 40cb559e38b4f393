"""Linear-step devices (aihwkit LinearStepDevice) and the device-family classes.

The fast and exact updates are checked against an independent reference: every pulse slot of
every rank-one update sampled in order and applied with aihwkit's per-pulse rule
(``w += step*(1 - gamma*w/w_ref)*(1 + dw_min_std*xi)``, clipped after every pulse), for one device
with its own drawn parameters.
"""
from __future__ import annotations

import math

import pytest
import torch

from archsim.functional.config import RPUConfig
from archsim.functional.devices import (
    DEVICE_CLASSES, ConstantStepDevices, LinearStepDevices, SoftBoundsDevices, make_devices,
)
from archsim.functional.tile import AnalogTile
from archsim.specs import DeviceSpec, load_device

from conftest import WORKLOADS

BL = 10
BASE = dict(dw_min=0.02, dw_min_dtod=0.0, dw_min_std=0.3, w_max=1.0, w_min=-1.0, w_max_dtod=0.0,
            w_min_dtod=0.0, up_down=0.0, up_down_dtod=0.0)


def make(kind: str, shape=(3, 4), seed=0, **fields):
    spec = DeviceSpec(name="t", kind=kind, **{**BASE, **fields})
    g = torch.Generator().manual_seed(seed)
    return make_devices(spec, *shape, g, torch.device("cpu"), torch.float64), spec


def test_every_pulsed_kind_has_a_class():
    kinds = set(DeviceSpec.model_fields["kind"].annotation.__args__) - {"ideal"}
    assert kinds == set(DEVICE_CLASSES)
    for kind, cls in DEVICE_CLASSES.items():
        assert cls.kind == kind
    assert ConstantStepDevices.replays_in_order and not SoftBoundsDevices.replays_in_order


def test_gamma_one_with_device_references_is_soft_bounds():
    """aihwkit's SoftBoundsDevice is a LinearStepDevice with gamma 1, no spread, device bounds."""
    common = dict(dw_min_dtod=0.3, w_max_dtod=0.2, w_min_dtod=0.2, up_down=0.1, up_down_dtod=0.05)
    lin, _ = make("linear_step", seed=3, gamma_up=1.0, gamma_down=1.0, gamma_up_dtod=0.0,
                  gamma_down_dtod=0.0, mean_bound_reference=False, **common)
    soft, _ = make("soft_bounds", seed=3, **common)
    assert torch.equal(lin.step_up, soft.step_up) and torch.equal(lin.w_min, soft.w_min)
    g = torch.Generator().manual_seed(1)
    w = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 - 1) * 0.5
    n_up = torch.rand(3, 4, generator=g, dtype=torch.float64) * 30
    n_dn = torch.rand(3, 4, generator=g, dtype=torch.float64) * 30
    for v in (0.0, 0.5):
        m_l, v_l = lin._mean_var(w, n_up, n_dn, v * n_up, v * n_dn)
        m_s, v_s = soft._mean_var(w, n_up, n_dn, v * n_up, v * n_dn)
        assert torch.allclose(m_l, m_s, rtol=1e-10, atol=1e-14)
        assert torch.allclose(v_l, v_s, rtol=1e-10, atol=1e-14)


def test_gamma_zero_is_a_constant_step_between_the_bounds():
    lin, _ = make("linear_step", gamma_up=0.0, gamma_down=0.0, gamma_up_dtod=0.0, gamma_down_dtod=0.0,
                  up_down=0.2)
    w = torch.full((3, 4), 0.3, dtype=torch.float64)
    n_up, n_dn = torch.full_like(w, 7.0), torch.full_like(w, 4.0)
    mean, _ = lin._mean_var(w, n_up, n_dn, 0.0, 0.0)
    assert torch.allclose(mean, 7.0 * lin.step_up - 4.0 * lin.step_down, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.1153, 0.5085, 1.0, 1.6])
def test_one_direction_mean_is_the_pulse_by_pulse_walk(gamma):
    """Without noise, n up coincidences one after another give exactly the closed-form move."""
    lin, spec = make("linear_step", shape=(1, 1), gamma_up=gamma, gamma_down=gamma,
                     gamma_up_dtod=0.0, gamma_down_dtod=0.0, dw_min_std=0.0)
    for w0 in (-0.4, 0.0, 0.35):
        for n in (1, 5, 40):
            w = torch.tensor([[w0]], dtype=torch.float64)
            mean, _ = lin._mean_var(w, torch.full_like(w, float(n)), torch.zeros_like(w), 0.0, 0.0)
            walk = w0
            for _ in range(n):
                walk += spec.dw_min * max(0.0, 1.0 - gamma * walk / spec.w_max)
            down = w0
            mean_dn, _ = lin._mean_var(w, torch.zeros_like(w), torch.full_like(w, float(n)), 0.0, 0.0)
            for _ in range(n):
                down -= spec.dw_min * max(0.0, 1.0 - gamma * down / spec.w_min)
            assert float(w0 + mean) == pytest.approx(walk, rel=1e-9, abs=1e-12)
            assert float(w0 + mean_dn) == pytest.approx(down, rel=1e-9, abs=1e-12)


def _reference_moments(dev, w0, xs, ds, lr, reps, gen):
    """Every slot of every update sampled in order, aihwkit's per-pulse rule, clipped each pulse.
    One device (1 x 1 tile), ``reps`` independent runs at once."""
    step_up, step_dn = float(dev.step_up), float(dev.step_down)
    g_up, g_dn = float(dev.gamma_up), float(dev.gamma_down)
    r_up, r_dn = float(dev.ref_up), float(dev.ref_down)
    hi, lo = float(dev.w_max), float(dev.w_min)
    w = torch.full((reps,), w0, dtype=torch.float64)
    for x, d in zip(xs, ds):
        p = q = math.sqrt(lr * abs(x) * abs(d) / (dev.dw_min * BL))   # update management, 1 x 1
        up = x * d < 0          # SGD: w -= lr*d*x
        for _ in range(BL):
            hit = (torch.rand(reps, generator=gen, dtype=torch.float64) < min(p, 1.0)) & \
                  (torch.rand(reps, generator=gen, dtype=torch.float64) < min(q, 1.0))
            noise = 1.0 + dev.dw_min_std * torch.randn(reps, generator=gen, dtype=torch.float64)
            if up:
                move = step_up * (1.0 - g_up * w / r_up).clamp(min=0.0) * noise
            else:
                move = -step_dn * (1.0 - g_dn * w / r_dn).clamp(min=0.0) * noise
            w = torch.where(hit, (w + move).clamp(lo, hi), w)
    dw = w - w0
    return dw.mean().item(), dw.var().item()


def _tile_moments(mode, spec, w0, xs, ds, lr, reps, seed):
    cfg = RPUConfig(device=spec, inp_res=-1, out_res=-1, out_noise=0.0, desired_bl=BL, update_mode=mode)
    tile = AnalogTile(1, 1, cfg, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)
    d = torch.tensor(ds, dtype=torch.float64).reshape(-1, 1)
    out = []
    for _ in range(reps):
        tile.set_weights(torch.tensor([[w0]], dtype=torch.float64))
        tile.update(x, d, lr)
        out.append(float(tile.weight) - w0)
    t = torch.tensor(out, dtype=torch.float64)
    return tile.devices, t.mean().item(), t.var().item()


@pytest.mark.parametrize("preset", ["ecram_tang2018", "ecram_mo_kim2019"])
@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("w0,direction", [(0.2, 1.0), (-0.3, -1.0), (0.6, 1.0)])
def test_update_moments_match_the_pulse_by_pulse_reference(preset, mode, w0, direction):
    """Mean within 5 standard errors, variance within 30 %, of aihwkit's per-pulse rule."""
    spec = load_device(preset)
    lr = 40 * spec.dw_min          # a few coincidences per update
    xs = [0.8, -0.5, 1.0, 0.7, -0.9, 0.6, 1.0, 0.4]
    ds = [-direction * abs(v) * (1 if x > 0 else -1) for v, x in zip([0.9, 0.6, 1.0, 0.5, 0.8, 0.7, 1.0, 0.9], xs)]
    reps = 1500
    dev, m_t, v_t = _tile_moments(mode, spec, w0, xs, ds, lr, reps, seed=11)
    m_r, v_r = _reference_moments(dev, w0, xs, ds, lr, 20000, torch.Generator().manual_seed(12))
    se = math.sqrt(v_t / reps + v_r / 20000)
    assert abs(m_t - m_r) <= 5 * se, (m_t, m_r, se)
    assert 0.7 < v_t / v_r < 1.3, (v_t, v_r)


def test_additive_noise_does_not_shrink_with_the_step():
    """mult_noise false (aihwkit's capacitor preset): the c2c noise is on the constant part."""
    mult, _ = make("linear_step", shape=(1, 1), gamma_up=1.0, gamma_down=1.0, gamma_up_dtod=0.0,
                   gamma_down_dtod=0.0, mean_bound_reference=False)
    add, _ = make("linear_step", shape=(1, 1), gamma_up=1.0, gamma_down=1.0, gamma_up_dtod=0.0,
                  gamma_down_dtod=0.0, mean_bound_reference=False, mult_noise=False)
    w = torch.tensor([[0.9]], dtype=torch.float64)     # step factor 0.1 near the upper bound
    n = torch.tensor([[10.0]], dtype=torch.float64)
    _, v_mult = mult._mean_var(w, n, torch.zeros_like(n), 0.0, 0.0)
    _, v_add = add._mean_var(w, n, torch.zeros_like(n), 0.0, 0.0)
    s2 = 0.3 ** 2
    assert float(v_mult) == pytest.approx(s2 * 10 * (0.02 * 0.1) ** 2, rel=1e-9)
    assert float(v_add) == pytest.approx(s2 * 10 * 0.02 ** 2, rel=1e-9)


def test_linear_step_fields_belong_to_linear_step(tmp_path):
    with pytest.raises(ValueError, match="only for kind linear_step"):
        DeviceSpec(name="x", kind="constant_step", gamma_up=0.3)
    with pytest.raises(ValueError, match="only for kind linear_step or soft_bounds"):
        DeviceSpec(name="x", kind="constant_step", mult_noise=False)
    DeviceSpec(name="x", kind="soft_bounds", mult_noise=False)


def test_linear_step_trains(tmp_path, text_file, one_torch_thread):
    from archsim.cli import main

    for mode in ("fast", "exact"):
        assert main(["train", str(WORKLOADS / "tiny.yaml"), "--device", "ecram_tang2018", "--data", str(text_file),
                     "--max-chars", "200", "--update-mode", mode, "--no-progress", "--json",
                     "--out", str(tmp_path / mode)]) == 0


def test_checkpoint_keeps_the_gamma_draws():
    lin, spec = make("linear_step", seed=5, gamma_up=0.3, gamma_down=0.6)
    other, _ = make("linear_step", seed=6, gamma_up=0.3, gamma_down=0.6)
    assert not torch.equal(lin.gamma_up, other.gamma_up)
    other.load_tensors({k: v.clone() for k, v in lin.tensors().items()})
    assert torch.equal(other.gamma_up, lin.gamma_up) and torch.equal(other.k_down, lin.k_down)
    assert isinstance(lin, LinearStepDevices)
