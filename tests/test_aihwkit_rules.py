"""Update management and bound management as aihwkit does them, on hand-computed cases.

- k > BL (aihwkit PulsedUpdateMetaParameter::performUpdateManagement): x's probabilities stay
  ``|x|/max|x|`` (never clipped) and d carries the excess, clipped at 1; archsim's earlier
  "balanced" rule scales both by sqrt(k/BL) and clips both.
- Bound management stops after the first factor above max_bm_factor or above
  ``max_bm_res / inp_res`` (aihwkit's InputOutputManager / AnalogMVM), inp_res being the DAC
  step as a fraction of the input range: 0.25 / (2/126) = 15.75 with 7 bits, so factors 2, 4, 8
  and 16 are tried.
"""
from __future__ import annotations

import math

import pytest
import torch

from archsim.functional.config import RPUConfig
from archsim.functional.tile import AnalogTile
from archsim.specs import DeviceSpec

SPEC = DeviceSpec(name="t", kind="constant_step", dw_min=0.01, dw_min_dtod=0.0, dw_min_std=0.0,
                  w_max=100.0, w_min=-100.0, w_max_dtod=0.0, w_min_dtod=0.0, up_down_dtod=0.0)


def tile(out_size, in_size, **cfg):
    base = dict(device=SPEC, inp_res=-1, out_res=-1, out_noise=0.0)
    base.update(cfg)
    return AnalogTile(out_size, in_size, RPUConfig(**base), generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)


@pytest.mark.parametrize("bl_management", [False, True])
def test_k_above_bl_keeps_x_unclipped_as_aihwkit(bl_management):
    """The issue's case: x = linspace(0, 1), d = 0.5, k = 50, BL = 31."""
    x = torch.linspace(0, 1, 11, dtype=torch.float64).unsqueeze(0)
    d = torch.tensor([[0.5]], dtype=torch.float64)
    lr = 50 * 0.01 / (1.0 * 0.5)                        # k = lr*max|x|*max|d|/dw_min = 50
    for rule, p_expect in (("aihwkit", x[0]),                             # |x|/max|x|
                           ("balanced", (math.sqrt(50 / 31) * x[0]).clamp(max=1.0))):
        t = tile(1, 11, desired_bl=31, um_rule=rule, update_bl_management=bl_management)
        bl, a, b, ax, ad, x_max, d_max = t._pulse_scales(x, d, lr)
        assert float(bl if not torch.is_tensor(bl) else bl[0]) == 31
        p = (a.unsqueeze(1) * ax).clamp(max=1.0)[0]
        q = (b.unsqueeze(1) * ad).clamp(max=1.0)[0]
        assert torch.allclose(p, p_expect, rtol=1e-12), rule
        assert float(q[0]) == 1.0
        # a*b*BL = lr/dw_min whatever the rule: the unclipped mean update is SGD's
        assert float(a[0] * b[0]) * 31 == pytest.approx(lr / 0.01, rel=1e-12)
    # below the clip the balanced rule updates sqrt(50/31) = 1.27x more than aihwkit's
    assert math.sqrt(50 / 31) == pytest.approx(1.27, abs=0.005)


def test_k_below_bl_is_the_same_for_both_rules():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, generator=g, dtype=torch.float64)
    d = torch.randn(4, 5, generator=g, dtype=torch.float64) * 0.1
    scales = [tile(5, 7, desired_bl=31, um_rule=r)._pulse_scales(x, d, 0.01)[1:3] for r in ("aihwkit", "balanced")]
    assert torch.equal(scales[0][0], scales[1][0]) and torch.equal(scales[0][1], scales[1][1])


def test_mean_update_follows_the_rule_in_exact_mode():
    """Sampled pulse trains: the mean change per device is BL*p*q*dw_min with the rule's p, q."""
    x = torch.tensor([[0.2, 0.6, 1.0]], dtype=torch.float64)
    d = torch.tensor([[-0.5]], dtype=torch.float64)             # up: w grows
    lr = 50 * 0.01 / (1.0 * 0.5)
    reps = 400
    for rule, p in (("aihwkit", x[0]), ("balanced", (math.sqrt(50 / 31) * x[0]).clamp(max=1.0))):
        t = tile(1, 3, desired_bl=31, um_rule=rule, update_mode="exact")
        moves = []
        for _ in range(reps):
            t.set_weights(torch.zeros(1, 3, dtype=torch.float64))
            t.update(x, d, lr)
            moves.append(t.weight[0].clone())
        mean = torch.stack(moves).mean(0)
        expect = 31 * p * 1.0 * 0.01
        sd = torch.sqrt(31 * p * (1 - p)) * 0.01 / math.sqrt(reps)
        assert torch.all((mean - expect).abs() <= 5 * sd + 1e-12), (rule, mean, expect)


@pytest.mark.parametrize("cfg,repeats", [
    (dict(inp_res=1 / 126), 4),                         # factors 2, 4, 8, 16 (limit 15.75)
    (dict(inp_res=1 / 126, max_bm_res=1e6), 7),         # at 128 the input rounds to 0: done
    (dict(inp_res=1 / 4094, max_bm_res=1e6), 10),       # max_bm_factor 1000: up to 1024
    (dict(inp_res=-1), 10),                             # no DAC steps: no resolution limit
    (dict(inp_res=1 / 126, max_bm_factor=5), 3),        # 2, 4, 8 (8 > 5 stops)
    (dict(inp_res=1 / 30, max_bm_res=0.25), 2),         # 0.25/(2/30) = 3.75: factors 2, 4
])
def test_bound_management_stops_as_aihwkit(cfg, repeats):
    t = tile(2, 8, out_bound=1e-3, **cfg)                # every output saturates at any factor
    t.set_weights(torch.full((2, 8), 0.5, dtype=torch.float64))
    t.forward(torch.ones(1, 8, dtype=torch.float64))
    assert t.activity.bm_repeats == repeats
