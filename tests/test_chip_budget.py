"""Area and static power (issue 11): every block's per instance, the chip's sum, its limits, and a
published tile rebuilt from archsim's blocks."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.cli import main
from archsim.estimate import estimate
from archsim.hw.chip import chip_budget, full_activity_power_W, instances, per_tile
from archsim.hw.components import build_components
from archsim.schedule import build_schedule
from archsim.specs import load_architecture, load_workload
from archsim.specs.loader import preset_names

from conftest import WORKLOADS

VALIDATION = Path(__file__).parent / "validation"


# -- ISAAC (Shafiee et al., ISCA 2016, Table I) ------------------------------------------------
#: Table I: "ISAAC Tile at 1.2 GHz", 330 mW and 0.372 mm2 (12 IMAs + tile-level parts, the router
#: shared by 4 tiles); section VIII-A: ADCs are 58 % of the tile's power and 31 % of its area.
ISAAC_TILE_POWER_W = 0.330
ISAAC_TILE_AREA_M2 = 0.372e-6


def test_isaac_tile_area_and_power_within_5_percent():
    arch = load_architecture(str(VALIDATION / "isaac2016_tile.yaml"))
    budget = chip_budget(arch)
    power = full_activity_power_W(arch)
    assert budget.chip_area_m2 == pytest.approx(ISAAC_TILE_AREA_M2, rel=0.05)
    assert sum(power.values()) == pytest.approx(ISAAC_TILE_POWER_W, rel=0.05)
    # closer than that: the transcription sums to 329.8 mW and 0.3723 mm2
    assert abs(sum(power.values()) / ISAAC_TILE_POWER_W - 1) < 0.002
    assert abs(budget.chip_area_m2 / ISAAC_TILE_AREA_M2 - 1) < 0.002
    assert power["adc"] / sum(power.values()) == pytest.approx(0.58, abs=0.01)
    assert budget.area_m2["adc"] / budget.chip_area_m2 == pytest.approx(0.31, abs=0.01)
    # the counts behind it: 96 arrays, 128 DACs, 128 S+H and one ADC each; 12 IMAs
    n = instances(arch)
    assert (n["array"], n["dac"], n["integrator"], n["adc"], n["digital"], n["update"]) == \
        (96, 96 * 128, 96 * 128, 96, 12, 0)


# -- sums and instances ------------------------------------------------------------------------
@pytest.mark.parametrize("preset", preset_names("architectures"))
def test_area_and_static_power_sum_to_the_chip(preset):
    arch = load_architecture(preset)
    b = chip_budget(arch)
    blocks = build_components(arch)
    assert sum(b.area_m2.values()) == pytest.approx(b.chip_area_m2, rel=1e-12)
    assert sum(b.static_W.values()) == pytest.approx(b.chip_static_W, rel=1e-12)
    n = instances(arch)
    for comp, area in b.area_m2.items():
        if comp in blocks and comp != "dram":
            assert area == pytest.approx(n[comp] * blocks[comp].area_m2, rel=1e-12), comp
    tile = per_tile(arch)
    assert b.tile_area_m2 == pytest.approx(sum(k * blocks[c].area_m2 for c, k in tile.items()))
    assert b.area_m2["dram"] == 0.0                  # off chip
    # per line: one DAC and one integrator on each side of a training tile
    assert tile["dac"] == tile["integrator"] == arch.array.rows + arch.array.cols


def test_rpu2016_per_line_adcs_are_most_of_its_area():
    """The issue's arithmetic: 8192 ADCs of 1828 um2 per tile, ~15 mm2 per tile, ~960 mm2 for 64."""
    b = chip_budget(load_architecture("rpu2016"))
    assert b.instances["adc"] == 64 * 8192
    assert b.area_m2["adc"] == pytest.approx(64 * 8192 * 1828e-12)
    assert b.area_m2["adc"] / b.chip_area_m2 > 0.6


def test_estimate_reports_area_static_power_and_charges_idle_tiles():
    w = load_workload(WORKLOADS / "lstm2x512.yaml")
    arch = load_architecture("rpu2016")
    r = estimate(w, arch, baselines=[])
    assert r.area_m2["chip"] == pytest.approx(chip_budget(arch).chip_area_m2)
    assert r.static_W["chip"] == pytest.approx(r.leakage_W)
    assert r.chip["leaking_tiles"] == 64 and r.chip["used_tiles"] == 3
    static_J = sum(v for k, v in r.static_W.items() if k not in ("chip", "tile")) * r.time_per_step_s
    gated_arch = arch.model_copy(update={"system": arch.system.model_copy(update={"power_gating": True})})
    gated = estimate(w, gated_arch, baselines=[])
    assert gated.chip["leaking_tiles"] == 3
    assert gated.static_W["chip"] < r.static_W["chip"] / 10
    dyn = r.energy_per_step_J - static_J
    assert gated.energy_per_step_J == pytest.approx(dyn + gated.static_W["chip"] * r.time_per_step_s,
                                                    rel=1e-9)


def test_a_chip_over_its_limits_still_estimates_and_says_so_at_the_top(capsys):
    """rpu2016's 64 tiles of per-line ADCs are larger than a reticle (858 mm2)."""
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--baselines", "v100"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("OVER BUDGET: chip area") and "858 mm2 limit by" in first
    assert "time per step" in out
    w = load_workload(WORKLOADS / "tiny.yaml")
    a = load_architecture(str(VALIDATION / "isaac2016_tile.yaml"), overrides={"system.power_limit_W": "1 mW", "array.rows": 512,
                                           "array.cols": 512, "system.n_tiles": 4,
                                           "update.desired_bl": 10})
    r = estimate(w, a, baselines=[])
    assert r.chip["exceeded"] and r.chip["exceeded"][0].startswith("average power")


def test_within_limits_nothing_is_said():
    arch = load_architecture("shared_adc256_nominal")
    r = estimate(load_workload(WORKLOADS / "tiny.yaml"), arch, baselines=[])
    assert r.chip["area_m2"] < arch.system.area_limit_m2 and r.chip["exceeded"] == []


# -- re-sourced energies ------------------------------------------------------------------------
@pytest.mark.parametrize("path, cites", [
    ("integrator.e_integrate_J", "NeuRRAM"), ("integrator.leakage_W", "NeuRRAM"),
    ("digital.e_mul_J", "Horowitz"), ("digital.e_add_J", "fp16"),
    ("adc.leakage_W", "PUMA"), ("buffer.leakage_W", "PUMA"), ("global_buffer.area_m2", "CACTI"),
    ("system.area_limit_m2", "reticle"),
])
def test_rpu2016_resourced_numbers_name_their_source(path, cites):
    assert cites in load_architecture("rpu2016").sources[path]


def test_digital_ops_priced_at_the_datapath_width():
    for preset in ("rpu2016", "shared_adc256_nominal"):
        d = load_architecture(preset).digital
        assert d.word_bits == 16 and d.e_mul_J <= 1.1e-12 * 1.001 and d.e_add_J <= 0.4e-12 * 1.001


# -- array read energy over the driven lines ----------------------------------------------------
def test_read_energy_counts_the_whole_driven_line_unless_isolated():
    w = load_workload(WORKLOADS / "tiny.yaml", overrides={"model.output_layer": False})
    a = load_architecture("rpu2016")
    iso = load_architecture("rpu2016", overrides={"array.line_isolation": True})
    reads = lambda s, phase: sum(n for (ph, c, act), n in s.action_counts().items()  # noqa: E731
                                 if (c, act) == ("array", "read_cell") and ph == phase)
    s, si = build_schedule(w, a), build_schedule(w, iso)
    T, B, rows, cols = 10, 2, 32, 25                      # h = 8, n = 16: a 32 x 25 matrix
    assert reads(s, "forward") == T * B * cols * 4096     # every device of the 25 driven columns
    assert reads(si, "forward") == T * B * cols * rows
    assert reads(s, "backward") == (T - 1) * B * rows * 4096
    assert reads(si, "backward") == (T - 1) * B * rows * cols


# -- update energy per device technology ---------------------------------------------------------
@pytest.mark.parametrize("device, joules, cites", [
    ("rpu_baseline", 0.042e-15, "24 MOhm"), ("reram_es_gong2018", 0.6e-12, "MNSIM"),
    ("ecram_tang2018", 1e-15, "Tang et al., IEDM 2018"),
])
def test_device_technology_prices_the_update_coincidences(device, joules, cites):
    from archsim.specs import load_device

    w = load_workload(WORKLOADS / "tiny.yaml")
    a = load_architecture("rpu2016")
    d = load_device(device)
    assert d.e_pulse_cell_J == pytest.approx(joules) and cites in d.sources["e_pulse_cell_J"]
    s = build_schedule(w, a)
    coincidences = sum(n for (_, c, act), n in s.action_counts().items()
                       if (c, act) == ("array", "coincidence"))
    plain = estimate(w, a, load_device("ideal"), baselines=[])      # no technology: the arch's
    r = estimate(w, a, d, baselines=[])
    extra = coincidences * (joules - a.update.e_pulse_cell_J)
    assert r.energy_breakdown_J["array"] - plain.energy_breakdown_J["array"] == pytest.approx(
        extra, rel=1e-6, abs=1e-18)
