"""What a chip is made of: instances of each block, its area and static power, and its limits.

Per tile (``system.n_tiles`` of them): one array; per driven side (``array.periphery_sides``: rows
and columns for training, columns only for inference designs) one DAC and one integrator per line
and ceil(lines / cols_per_adc) ADCs; one update translator and driver per row and column line (a
training tile pulses both). Per ``digital.tiles_per_unit`` tiles one digital unit with its tile
buffer; per ``bus.tiles_per_bus`` tiles one bus; one global buffer; the rest of the chip (control,
clocking, NoC, I/O) as ``system``. DRAM is off chip: its static power is counted, its area is not.

Area and static power per instance come from each block's class (:mod:`archsim.hw.components`);
this module only counts instances. With ``system.power_gating`` only the tiles a workload uses
(and their units and buses) leak.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from archsim.hw.components import ADCBank, build_components
from archsim.specs.architecture import ArchitectureSpec

#: Components in report order.
CHIP_COMPONENTS = ("array", "dac", "integrator", "adc", "update", "digital", "buffer", "bus",
                   "global_buffer", "system", "dram")
#: Components that are not on the chip (static power counted, area not).
OFF_CHIP = ("dram",)


def per_tile(arch: ArchitectureSpec) -> dict[str, int]:
    """Instances of each tile component in one tile."""
    rows, cols = arch.array.rows, arch.array.cols
    two = arch.array.periphery_sides == 2
    lines = rows + cols if two else cols            # inputs on the columns; rows only in training
    outputs = rows + cols if two else rows
    adcs = ADCBank(arch, rows).n_adcs + (ADCBank(arch, cols).n_adcs if two else 0)
    return {"array": 1, "dac": lines, "integrator": outputs, "adc": adcs,
            "update": rows + cols if two else 0}


def instances(arch: ArchitectureSpec, tiles: int | None = None) -> dict[str, int]:
    """Instances of every component on a chip of ``tiles`` tiles (default: the whole chip)."""
    n = arch.system.n_tiles if tiles is None else tiles
    out = {c: k * n for c, k in per_tile(arch).items()}
    units = math.ceil(n / arch.digital.tiles_per_unit)
    out.update(digital=units, buffer=units, bus=math.ceil(n / arch.bus.tiles_per_bus),
               global_buffer=1 if arch.global_buffer is not None else 0, system=1,
               dram=1 if arch.dram is not None else 0)
    return out


@dataclass
class ChipBudget:
    """Area (m^2) and static power (W) by component, per tile and per chip, against the limits."""

    instances: dict[str, int]
    area_m2: dict[str, float]
    static_W: dict[str, float]
    tile_area_m2: float
    tile_static_W: float
    chip_area_m2: float
    chip_static_W: float
    leaking_tiles: int
    area_limit_m2: float | None = None
    power_limit_W: float | None = None
    missing_area: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def chip_budget(arch: ArchitectureSpec, used_tiles: int | None = None, device=None) -> ChipBudget:
    """The chip's area and static power; with ``system.power_gating`` and ``used_tiles`` given,
    static power counts only the tiles in use (and their units and buses)."""
    blocks = build_components(arch, device)
    count = instances(arch)
    leaking = arch.system.n_tiles
    if arch.system.power_gating and used_tiles is not None:
        leaking = used_tiles
    leak_count = instances(arch, leaking)
    area, static = {}, {}
    for c in CHIP_COMPONENTS:
        block = blocks.get(c)
        if block is None:
            area[c] = static[c] = 0.0
            continue
        area[c] = 0.0 if c in OFF_CHIP else count[c] * block.area_m2
        static[c] = leak_count[c] * block.static_W
    tile = per_tile(arch)
    tile_area = sum(k * blocks[c].area_m2 for c, k in tile.items())
    tile_static = sum(k * blocks[c].static_W for c, k in tile.items())
    missing = [c for c in CHIP_COMPONENTS if c not in OFF_CHIP and count.get(c, 0) and area[c] <= 0]
    return ChipBudget(count, area, static, tile_area, tile_static, sum(area.values()),
                      sum(static.values()), leaking, arch.system.area_limit_m2,
                      arch.system.power_limit_W, missing)


def occupied_area_m2(arch: ArchitectureSpec, tiles: int) -> float:
    """Area of ``tiles`` tiles with their digital units, tile buffers and buses (what a workload
    occupies; the global buffer and the rest of the chip not included)."""
    blocks = build_components(arch)
    count = instances(arch, tiles)
    return sum(count[c] * blocks[c].area_m2
               for c in ("array", "dac", "integrator", "adc", "update", "digital", "buffer", "bus"))


def full_activity_power_W(arch: ArchitectureSpec, tiles: int | None = None) -> dict[str, float]:
    """Power of each component with every instance doing its action at its full rate, plus its
    static power: what papers that publish power (ISAAC, PUMA) tabulate."""
    blocks = build_components(arch)
    count = instances(arch, tiles)
    return {c: count[c] * (blocks[c].full_power_W + blocks[c].static_W)
            for c in CHIP_COMPONENTS if c in blocks and c not in OFF_CHIP}


def over_limits(budget: ChipBudget, average_power_W: float) -> list[str]:
    """One line per limit the chip exceeds (empty when within its limits or none are set)."""
    out = []
    if budget.area_limit_m2 and budget.chip_area_m2 > budget.area_limit_m2:
        out.append(f"chip area {budget.chip_area_m2 * 1e6:,.0f} mm2 exceeds its "
                   f"{budget.area_limit_m2 * 1e6:,.0f} mm2 limit by "
                   f"{budget.chip_area_m2 / budget.area_limit_m2 - 1:.0%}")
    if budget.power_limit_W and average_power_W > budget.power_limit_W:
        out.append(f"average power {average_power_W:,.3g} W exceeds the chip's "
                   f"{budget.power_limit_W:,.3g} W limit by "
                   f"{average_power_W / budget.power_limit_W - 1:.0%}")
    return out
