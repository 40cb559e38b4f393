"""The parts of a tile on their own: the periphery's converter arithmetic in level units against a
hand-computed MVM, and the tile's generator reaching every part when it is replaced."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from archsim.functional.activity import TileActivity
from archsim.functional.config import RPUConfig
from archsim.functional.periphery import Periphery
from archsim.functional.tile import AnalogTile
from archsim.specs import load_architecture, load_device


def _config(**fields) -> RPUConfig:
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"), load_architecture("rpu2016"))
    return dataclasses.replace(cfg, **fields)


@pytest.mark.parametrize("bound_management", [False, True])
def test_periphery_mvm_matches_a_hand_computed_case(bound_management):
    """DAC step 0.5 (inp_res 1/4 of +-1), ADC step 1 (out_res 1/8 of +-4), no output noise.

    x = [0.8, -0.3], alpha = 0.8: DAC levels round([1, -0.375] / 0.5) = [2, -1], inputs
    [1, -0.5]; W x~ = [1.2 - 0.3, 2 + 1.6] = [0.9, 3.6] -> ADC [1, 4], the top level: saturated.
    Without bound management: [1, 4] * 0.8. With it (max_bm_res 1: beta up to 2): the row again
    at beta 2, DAC round([0.5, -0.1875] / 0.5) = [1, 0], inputs [0.5, 0]; W x~ = [0.6, 1.0] ->
    ADC [1, 1], no saturation: [1, 1] * 0.8 * 2.
    """
    cfg = _config(inp_bound=1.0, inp_res=0.25, out_bound=4.0, out_res=0.125, out_noise=0.0,
                  max_bm_res=1.0)
    weight = torch.tensor([[1.2, 0.6], [2.0, -3.2]], dtype=torch.float64)
    activity, pending_sat = TileActivity(), torch.zeros((), dtype=torch.float64)
    p = Periphery(cfg, weight, generator=torch.Generator().manual_seed(0), activity=activity,
                  pending_sat=pending_sat)
    assert (p.in_step, p.out_step, p.in_levels, p.out_levels, p.bm_res_limit) == (0.5, 1.0, 2.0, 4.0, 2.0)
    y = p.mvm(torch.tensor([[0.8, -0.3]], dtype=torch.float64), False, bound_management)
    expect = [1.6, 1.6] if bound_management else [0.8, 3.2]
    assert torch.allclose(y, torch.tensor([expect], dtype=torch.float64), rtol=0, atol=1e-15)
    passes = 2 if bound_management else 1
    assert (activity.dac_conversions, activity.adc_conversions) == (2 * passes, 2 * passes)
    assert activity.bm_repeats == passes - 1 and float(pending_sat) == 1.0


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_a_replaced_generator_reaches_the_periphery_and_the_update(mode):
    """Tiki-Taka hands its arrays the block's stream after making them: every later draw (output
    noise, stochastic rounding, update pulses and device noise) must come from the new one."""
    cfg = _config(update_mode=mode, inp_sto_round=True)
    made_with = torch.Generator().manual_seed(1)
    tile = AnalogTile(5, 7, cfg, generator=made_with, init_std=0.1)
    new = torch.Generator().manual_seed(2)
    tile.generator = new
    before, new_before = made_with.get_state(), new.get_state()
    x = torch.rand(4, 7, generator=torch.Generator().manual_seed(3))
    tile.forward(x)
    tile.update(x, torch.randn(4, 5, generator=torch.Generator().manual_seed(4)), 0.1)
    assert tile.generator is new
    assert torch.equal(made_with.get_state(), before)
    assert not torch.equal(new.get_state(), new_before)


def test_coincidence_counts_exact_for_every_inner_size():
    """``_count_mm`` (integer GEMM on CPU) equals the float product for inner sizes 1..20; torch's
    CPU ``_int_mm`` is wrong for an inner size of 1 (one update of one slot), which must not reach it."""
    from archsim.functional.update_exact import _count_mm

    g = torch.Generator().manual_seed(0)
    for inner in range(1, 21):
        a = torch.randint(-1, 2, (5, inner), generator=g, dtype=torch.int8)
        b = torch.randint(-1, 2, (3, inner), generator=g, dtype=torch.int8)
        want = a.to(torch.float32) @ b.to(torch.float32).t()
        assert torch.equal(_count_mm(a, b.t(), torch.float32), want), inner
