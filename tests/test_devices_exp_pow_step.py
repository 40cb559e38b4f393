"""Exponential-step and power-step devices (aihwkit ExpStepDevice, PowStepDevice).

The fast and exact updates are checked against an independent reference: every pulse slot of
every rank-one update sampled and applied with aihwkit's per-pulse rule (written out here from
src/rpucuda/rpu_expstep_device.cpp and rpu_powstep_device.cpp, not taken from archsim), clipped
after every pulse; in order for updates in one direction, evenly interleaved (random orders of all
slots) for mixed ones, which is what a model of summed counts can match (see ``_reference``). The
tile under test has one input and many identical devices (no device-to-device spread) with the
input line firing in every slot (``p = 1``), so that every device draws its own counts and noise:
one update call gives thousands of independent samples.
"""
from __future__ import annotations

import math

import pytest
import torch

from archsim.functional.config import RPUConfig
from archsim.functional.devices import DEVICE_CLASSES, ExpStepDevices, PowStepDevices, make_devices
from archsim.functional.tile import AnalogTile
from archsim.specs import DeviceSpec, load_device, preset_path, read_yaml

from conftest import WORKLOADS

BL = 10
NO_DTOD = dict(dw_min_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0, up_down_dtod=0.0)
BASE = dict(dw_min=0.02, dw_min_std=0.3, w_max=1.0, w_min=-1.0, up_down=0.0, **NO_DTOD)


def make(kind: str, shape=(3, 4), seed=0, dtype=torch.float64, **fields):
    spec = DeviceSpec(name="t", kind=kind, **{**BASE, **fields})
    g = torch.Generator().manual_seed(seed)
    return make_devices(spec, *shape, g, torch.device("cpu"), dtype), spec


def no_dtod(spec: DeviceSpec, **changes) -> DeviceSpec:
    """``spec`` (a preset) with its nonlinearity but without device-to-device spread."""
    data = spec.model_dump()
    data.update(NO_DTOD, **changes)
    if data["kind"] == "pow_step":
        data.update(pow_gamma_dtod=0.0, pow_up_down_dtod=0.0)
    return DeviceSpec(**data)


# ---- aihwkit's per-pulse rules (reference) ---------------------------------------------------

def _p(t: torch.Tensor) -> float:
    """A per-device parameter of the first device (the devices of a case are identical)."""
    return float(t.reshape(-1)[0])


def _exp_step(spec: DeviceSpec, dev, w, up: bool):
    """ExpStep update_once without noise: the signed step at ``w``."""
    span = _p(dev.w_max) - _p(dev.w_min)
    z = 2.0 * w / span * spec.a + spec.b
    if up:
        return _p(dev.step_up) * (1.0 - spec.A_up * torch.exp(spec.gamma_up * z)).clamp(min=0.0)
    return -_p(dev.step_down) * (1.0 - spec.A_down * torch.exp(-spec.gamma_down * z)).clamp(min=0.0)


def _pow_step(spec: DeviceSpec, dev, w, up: bool):
    """PowStep update_once without noise: the signed step at ``w``."""
    hi, lo = _p(dev.w_max), _p(dev.w_min)
    span = hi - lo
    if up:
        return _p(dev.step_up) * ((hi - w) / span) ** _p(dev.gamma_up)
    return -_p(dev.step_down) * ((w - lo) / span) ** _p(dev.gamma_down)


RULES = {"exp_step": _exp_step, "pow_step": _pow_step}


def _reference(spec, dev, w0, xs, ds, qs, reps, gen, orders=100):
    """Every pulse slot of every update: coincidence with probability ``q`` (``p = 1``), step
    times ``1 + dw_min_std*xi``, clipped after every pulse. Mean and variance of the change.

    In one direction the slots are taken in order. With both directions they are taken in
    ``orders`` random orders (every slot of every update shuffled; ``reps/orders`` runs each):
    the tile sees only the sums of a call's (or chunk's) counts and takes them as evenly
    interleaved, which is what this matches: the mean over the orders and the variance within
    one. A particular order of whole updates (blocks of one direction) moves the result by about
    one block's move times the call's contraction: not modelled (as for soft bounds)."""
    rule = RULES[spec.kind]
    hi, lo = _p(dev.w_max), _p(dev.w_min)
    up_k = torch.tensor([x * d < 0 for x, d in zip(xs, ds)]).repeat_interleave(BL)   # SGD: w -= lr*d*x
    q_k = torch.tensor(qs, dtype=torch.float64).repeat_interleave(BL)
    slots = len(up_k)
    if bool(up_k.all()) or not bool(up_k.any()):
        orders = 1
    perms = torch.rand(orders, slots, generator=gen).argsort(dim=1) if orders > 1 else torch.arange(slots)[None]
    order = perms[torch.arange(reps) % orders]                        # [reps, slots]
    w = torch.full((reps,), w0, dtype=torch.float64)
    for k in range(slots):
        up, q = up_k[order[:, k]], q_k[order[:, k]]
        hit = torch.rand(reps, generator=gen, dtype=torch.float64) < q
        noise = 1.0 + spec.dw_min_std * torch.randn(reps, generator=gen, dtype=torch.float64)
        step = torch.where(up, rule(spec, dev, w, True), rule(spec, dev, w, False))
        w = torch.where(hit, (w + step * noise).clamp(lo, hi), w)
    dw = (w - w0).view(-1, orders)                                    # one column per order
    means = dw.mean(dim=0)
    se = math.sqrt(dw.var().item() / reps) if orders == 1 else math.sqrt(means.var().item() / orders)
    return dw.mean().item(), dw.var(dim=0).mean().item(), se


def _tile(spec, mode, n_dev, seed):
    cfg = RPUConfig(device=spec, inp_res=-1, out_res=-1, out_noise=0.0, desired_bl=BL, update_mode=mode,
                    update_management=False)
    return AnalogTile(n_dev, 1, cfg, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _tile_moments(spec, mode, w0, xs, ds, n_dev=4000, seed=11):
    """One update call of ``len(xs)`` rank-one updates on ``n_dev`` identical devices, with
    ``lr = dw_min*BL`` and ``|x| = 1``, so that ``p = 1`` and ``q = |d|`` (no update management)."""
    tile = _tile(spec, mode, n_dev, seed)
    lr = tile.devices.dw_min * BL
    tile.set_weights(torch.full((n_dev, 1), w0, dtype=torch.float64))
    x = torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)
    d = torch.tensor(ds, dtype=torch.float64).reshape(-1, 1).expand(-1, n_dev).contiguous()
    tile.update(x, d, lr)
    dw = tile.weight.view(-1) - w0
    return tile.devices, dw.mean().item(), dw.var().item()


XS = [1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0]
QS = [0.9, 0.6, 1.0, 0.5, 0.8, 0.7, 1.0, 0.9]


def _ds(direction: float | None):
    """d for XS: every update in one direction (+1 up, -1 down), or alternating (None: up first)."""
    if direction is None:
        return [-(1.0 if k % 2 == 0 else -1.0) * q * x for k, (q, x) in enumerate(zip(QS, XS))]
    return [-direction * q * x for q, x in zip(QS, XS)]


CASES = {
    # aihwkit's ReRAM fit: each step shrinks towards the bound it moves to (never to 0), c2c noise 5 steps.
    "reram_es": lambda: no_dtod(load_device("reram_es_gong2018")),
    # aihwkit's ExpStepDevice defaults (saturating: A > 0), steps enlarged to show the curvature.
    "expstep_default": lambda: DeviceSpec(name="e", kind="exp_step", dw_min=0.005, **NO_DTOD),
    "powstep_default": lambda: no_dtod(load_device("powstep_aihwkit_default"), dw_min=0.02),
    "pow_0.5": lambda: DeviceSpec(name="p", kind="pow_step", pow_gamma=0.5, pow_gamma_dtod=0.0, **BASE),
    "pow_2.5_asym": lambda: DeviceSpec(name="p", kind="pow_step", pow_gamma=2.5, pow_gamma_dtod=0.0,
                                       pow_up_down=0.3, **{**BASE, "up_down": 0.2}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("w0,direction", [(0.2, 1.0), (-0.3, -1.0), (0.35, None)])
def test_update_moments_match_the_pulse_by_pulse_reference(one_torch_thread, case, w0, direction):
    """Fast and exact mode: mean within 5 standard errors, variance within 20 %, of aihwkit's
    per-pulse rule."""
    spec = CASES[case]()
    if spec.w_max < 1.0:
        w0 *= spec.w_max
    ds = _ds(direction)
    n_dev, reps = 3000, 12000
    ref = None
    for mode in ("fast", "exact"):
        dev, m_t, v_t = _tile_moments(spec, mode, w0, XS, ds, n_dev=n_dev)
        if ref is None:
            ref = _reference(spec, dev, w0, XS, ds, [abs(d) for d in ds], reps, torch.Generator().manual_seed(12))
        m_r, v_r, se_r = ref
        se = math.sqrt(v_t / n_dev + se_r ** 2)
        assert abs(m_t - m_r) <= 5 * se, (mode, m_t, m_r, se)
        assert 0.8 < v_t / v_r < 1.25, (mode, v_t, v_r)


@pytest.mark.parametrize("kind,fields", [
    ("exp_step", dict()),
    ("exp_step", dict(a=-0.5, b=-0.5, gamma_up=5.0, gamma_down=5.0, A_up=-1.18445, A_down=-0.081404)),
    # steps that grow towards the bound:
    ("exp_step", dict(a=0.3, b=0.0, gamma_up=4.0, gamma_down=4.0, A_up=-0.5, A_down=-0.5)),
    ("pow_step", dict(pow_gamma=1.0, pow_gamma_dtod=0.0)),
    ("pow_step", dict(pow_gamma=0.4, pow_gamma_dtod=0.0)),
    ("pow_step", dict(pow_gamma=3.0, pow_gamma_dtod=0.0, pow_up_down=-0.3)),
])
def test_one_direction_mean_is_the_pulse_by_pulse_walk(kind, fields):
    """Without noise, n coincidences in one direction one after another: the closed form (flow
    plus its first-order discreteness correction) within 3e-3 of the move (steps here change by up
    to 8 % per pulse; the flow alone is off by up to 3 %), or exactly at the bound."""
    dev, spec = make(kind, shape=(1, 1), dw_min=0.01, dw_min_std=0.0, **fields)
    rule = RULES[kind]
    for up in (True, False):
        for w0 in (-0.6, 0.0, 0.45):
            for n in (1, 7, 60):
                w = torch.tensor([[w0]], dtype=torch.float64)
                counts, zero = torch.full_like(w, float(n)), torch.zeros_like(w)
                mean, var = dev._mean_var(w, counts if up else zero, zero if up else counts, 0.0, 0.0)
                walk = torch.tensor([w0], dtype=torch.float64)
                for _ in range(n):
                    walk = (walk + rule(spec, dev, walk, up)).clamp(_p(dev.w_min), _p(dev.w_max))
                move = float(walk) - w0
                assert float(mean) == pytest.approx(move, rel=3e-3, abs=1e-12), (up, w0, n)
                assert float(var) == 0.0


def test_variance_is_the_step_at_the_end_of_the_move():
    """n coincidences in one direction: c2c variance dw_min_std^2*(step*f(w_n))^2*n, and the count
    variance times (step*f(w_n))^2 (linear-noise approximation)."""
    dev, spec = make("pow_step", shape=(1, 1), pow_gamma=2.0, pow_gamma_dtod=0.0)
    w = torch.tensor([[0.0]], dtype=torch.float64)
    n, zero = torch.full_like(w, 30.0), torch.zeros_like(w)
    mean, var = dev._mean_var(w, n, zero, 0.0, 0.0)
    end = dev.step_up * dev._factor(w + mean, True)
    assert float(var) == pytest.approx(float(0.3 ** 2 * end ** 2 * 30), rel=0.01)
    _, var_counts = dev._mean_var(w, n, zero, torch.full_like(w, 5.0), 0.0)
    assert float(var_counts - var) == pytest.approx(float(end ** 2 * 5.0), rel=0.01)


def test_pow_gamma_one_is_soft_bounds_over_the_range():
    """aihwkit: pow_gamma 1 without spread is soft bounds; up and down mixed (matched linear
    fields, exact here) against linear_step's interleaved formula with the same steps."""
    pow_dev, _ = make("pow_step", shape=(1, 1), pow_gamma=1.0, pow_gamma_dtod=0.0, dw_min_std=0.0)
    # linear step: step*(1 - w/w_max) with step = dw_min*w_max/R reproduces dw_min*(w_max - w)/R.
    lin, _ = make("linear_step", shape=(1, 1), dw_min=0.01, gamma_up=1.0, gamma_down=1.0,
                  gamma_up_dtod=0.0, gamma_down_dtod=0.0, mean_bound_reference=False, dw_min_std=0.0)
    for w0, n_up, n_dn in [(0.0, 40.0, 25.0), (0.5, 10.0, 60.0), (-0.7, 100.0, 100.0), (0.2, 300.0, 200.0)]:
        w = torch.tensor([[w0]], dtype=torch.float64)
        nu, nd = torch.full_like(w, n_up), torch.full_like(w, n_dn)
        m_pow, _ = pow_dev._mean_var(w, nu, nd, 0.0, 0.0)
        m_lin, _ = lin._mean_var(w, nu, nd, 0.0, 0.0)
        assert float(m_pow) == pytest.approx(float(m_lin), rel=1e-3, abs=1e-6), (w0, n_up, n_dn)


def test_device_to_device_draws_follow_the_seed():
    fields = dict(dw_min_dtod=0.3, w_max_dtod=0.2, w_min_dtod=0.2, up_down=0.1, up_down_dtod=0.05)
    for kind, extra in (("exp_step", dict(a=-0.5, b=-0.5)),
                        ("pow_step", dict(pow_gamma=1.5, pow_gamma_dtod=0.2, pow_up_down=0.2, pow_up_down_dtod=0.1))):
        one, _ = make(kind, shape=(60, 70), seed=7, **fields, **extra)
        same, _ = make(kind, shape=(60, 70), seed=7, **fields, **extra)
        other, _ = make(kind, shape=(60, 70), seed=8, **fields, **extra)
        for name, t in one.tensors().items():
            assert torch.equal(t, same.tensors()[name]), (kind, name)
            assert not torch.equal(t, other.tensors()[name]), (kind, name)
        assert float(one.step_up.std() / one.step_up.mean()) == pytest.approx(0.3, rel=0.1)
        assert float(one.w_max.std()) == pytest.approx(0.2, rel=0.1)
    # pow_step exponents: gamma*(1 + pow_up_down-bias + dtod*xi), as the step from up_down.
    dev, _ = make("pow_step", shape=(100, 100), seed=3, pow_gamma=1.5, pow_gamma_dtod=0.2,
                  pow_up_down=0.2, pow_up_down_dtod=0.1)
    assert float(dev.gamma_up.mean()) == pytest.approx(1.5, rel=0.01)
    assert float(dev.gamma_down.mean()) == pytest.approx(1.5 * 0.8, rel=0.01)
    assert float((dev.gamma_up - dev.gamma_down).std()) == pytest.approx(2 * 1.5 * 0.1, rel=0.05)
    assert float((dev.gamma_up + dev.gamma_down).std()) == pytest.approx(2 * 1.5 * 0.2, rel=0.05)
    # exp_step: the z slope follows each device's own range.
    exp, _ = make("exp_step", shape=(5, 5), seed=3, a=-0.5, w_max_dtod=0.2, w_min_dtod=0.2)
    assert torch.allclose(exp.c, 2 * -0.5 / (exp.w_max - exp.w_min))


@pytest.mark.parametrize("kind,fields", [
    ("exp_step", dict(a=-0.5, b=-0.5, gamma_up=5.0, gamma_down=5.0, A_up=-1.18445, A_down=-0.081404, dw_min_std=5.0)),
    ("exp_step", dict(a=0.5, b=0.0, gamma_up=8.0, gamma_down=8.0, A_up=-2.0, A_down=-2.0)),   # run-away steps
    ("pow_step", dict(pow_gamma=0.3, pow_gamma_dtod=0.5)),
    ("pow_step", dict(pow_gamma=4.0, pow_gamma_dtod=0.3, pow_up_down=0.5, pow_up_down_dtod=0.3)),
])
def test_bounds_are_respected(one_torch_thread, kind, fields):
    """Large updates in both directions on a float32 tile, fast and exact: every weight finite and
    inside its own device's bounds; some at (or, for steep power steps, near) a bound."""
    spec = DeviceSpec(name="b", kind=kind, dw_min=0.05, dw_min_dtod=0.3, w_max_dtod=0.3, w_min_dtod=0.3,
                      up_down=0.1, up_down_dtod=0.05, **fields)
    for mode in ("fast", "exact"):
        cfg = RPUConfig(device=spec, inp_res=-1, out_res=-1, out_noise=0.0, desired_bl=BL, update_mode=mode)
        g = torch.Generator().manual_seed(4)
        tile = AnalogTile(20, 16, cfg, generator=g, dtype=torch.float32)
        near = 0
        for step in range(4):
            x = torch.randn(32, 16, generator=g)
            d = torch.randn(32, 20, generator=g) + (2.0 if step % 2 else -2.0)
            tile.update(x, d, 2.0)
            w, dev = tile.weight, tile.devices
            assert torch.isfinite(w).all(), mode
            assert bool(((w <= dev.w_max) & (w >= dev.w_min)).all()), mode
            near += int(((w >= dev.w_max - 0.02) | (w <= dev.w_min + 0.02)).sum())
        assert near > 0, mode


def test_pulse_scale_is_aihwkit_weight_granularity():
    exp, spec = make("exp_step", shape=(1, 1), a=-0.5, b=-0.5, gamma_down=5.0, A_down=-0.081404, up_down=0.259359,
                     dw_min=0.00135)
    # the down step at w = 0: z = b, factor 1 - A_down*exp(-gamma_down*b)
    assert exp.dw_min == pytest.approx(0.00135 * (1 - 0.259359) * (1 + 0.081404 * math.exp(5.0 * 0.5)), rel=1e-12)
    pow_dev, _ = make("pow_step", shape=(1, 1), pow_gamma=2.0, dw_min=0.004)
    assert pow_dev.dw_min == pytest.approx(0.001, rel=1e-12)


def test_family_fields_belong_to_their_kind():
    for kind in ("constant_step", "soft_bounds", "linear_step", "pow_step"):
        with pytest.raises(ValueError, match="only for kind exp_step"):
            DeviceSpec(name="x", kind=kind, A_up=1.0)
    for kind in ("constant_step", "linear_step", "exp_step"):
        with pytest.raises(ValueError, match="only for kind pow_step"):
            DeviceSpec(name="x", kind=kind, pow_gamma=2.0)
    with pytest.raises(ValueError, match="only for kind linear_step"):
        DeviceSpec(name="x", kind="exp_step", gamma_up_dtod=0.1)
    with pytest.raises(ValueError, match="only for kind linear_step or soft_bounds"):
        DeviceSpec(name="x", kind="pow_step", mult_noise=False)
    with pytest.raises(ValueError, match="at most 10"):
        DeviceSpec(name="x", kind="linear_step", gamma_up=12.0)
    # aihwkit's ExpStepDevice defaults; linear_step keeps its own (0).
    spec = DeviceSpec(name="x", kind="exp_step")
    assert (spec.gamma_up, spec.gamma_down, spec.A_up, spec.A_down, spec.a, spec.b) == \
        (12.44625, 12.78785, 0.00081, 0.36833, 0.244, 0.2425)
    assert DeviceSpec(name="x", kind="linear_step").gamma_up == 0.0
    assert set(DeviceSpec.model_fields["kind"].annotation.__args__) - {"ideal"} == set(DEVICE_CLASSES)


@pytest.mark.parametrize("name,kind", [("reram_es_gong2018", "exp_step"), ("powstep_aihwkit_default", "pow_step")])
def test_presets_load_and_every_number_is_sourced(name, kind):
    spec = load_device(name)
    assert spec.kind == kind
    loaded = read_yaml(preset_path("devices", name))
    fields = set(loaded.data) - {"name", "description"}
    assert fields and fields == set(spec.sources), fields ^ set(spec.sources)
    for key in fields - {"e_pulse_cell_J"}:       # the write energy is the technology's, not aihwkit's
        assert "aihwkit" in spec.sources[key] and "@" in spec.sources[key], key
    cls = DEVICE_CLASSES[kind]
    dev = make_devices(spec, 4, 5, torch.Generator().manual_seed(0), torch.device("cpu"), torch.float32)
    assert isinstance(dev, cls) and isinstance(dev, (ExpStepDevices, PowStepDevices))


def test_reram_preset_is_aihwkit_ReRamESPresetDevice():
    spec = load_device("reram_es_gong2018")
    assert (spec.dw_min, spec.up_down, spec.a, spec.b, spec.gamma_up, spec.gamma_down, spec.A_up, spec.A_down,
            spec.dw_min_dtod, spec.up_down_dtod, spec.w_max_dtod, spec.w_min_dtod, spec.dw_min_std) == \
        (0.00135, 0.259359, -0.5, -0.5, 5.0, 5.0, -1.18445, -0.081404, 0.2, 0.05, 0.3, 0.3, 5.0)


def test_checkpoint_keeps_the_gamma_draws():
    one, _ = make("pow_step", seed=5, pow_gamma=1.5, pow_gamma_dtod=0.2)
    other, _ = make("pow_step", seed=6, pow_gamma=1.5, pow_gamma_dtod=0.2)
    assert not torch.equal(one.gamma_up, other.gamma_up)
    other.load_tensors({k: v.clone() for k, v in one.tensors().items()})
    assert torch.equal(other.gamma_up, one.gamma_up) and torch.equal(other.span, one.span)


@pytest.mark.parametrize("device,mode", [("reram_es_gong2018", "exact"), ("powstep_aihwkit_default", "fast")])
def test_exp_and_pow_step_train(tmp_path, text_file, one_torch_thread, device, mode):
    from archsim.cli import main

    assert main(["train", str(WORKLOADS / "tiny.yaml"), "--device", device, "--data", str(text_file),
                 "--max-chars", "200", "--update-mode", mode, "--no-progress", "--json",
                 "--out", str(tmp_path / mode)]) == 0
