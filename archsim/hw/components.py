"""One class per hardware block, in the style of Accelergy/hwcomponents.

Each action (``read_cell``, ``convert``, ``integrate``, ``transfer``, ``pulse_line``, ...) returns an
:class:`Action` with its energy and latency; ``area_m2`` and ``static_W`` (per instance) and
``full_power_W`` (dynamic power of one instance doing its action at its full rate) are properties.
The event model only counts actions; energy = sum(count x energy per action) + static power x time,
computed after the timing run (:mod:`archsim.energy`); how many instances a chip has is
:mod:`archsim.hw.chip`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.specs.architecture import ArchitectureSpec


@dataclass(frozen=True)
class Action:
    """Energy (J) and latency (s) of one action."""

    energy_J: float
    latency_s: float = 0.0


class Block:
    """A hardware block: named actions; area and static power of one instance (from its spec)."""

    component = "block"
    spec = None

    def action(self, name: str) -> Action:
        return getattr(self, name)()

    @property
    def area_m2(self) -> float:
        """Area of one instance."""
        return getattr(self.spec, "area_m2", 0.0)

    @property
    def static_W(self) -> float:
        """Static power of one instance (leakage, bias)."""
        return getattr(self.spec, "leakage_W", 0.0)

    @property
    def full_power_W(self) -> float:
        """Dynamic power of one instance doing its action at its full rate (0: not defined)."""
        return 0.0


class CrossPointArray(Block):
    """The resistive array: MVM reads (per device) and pulsed updates (per coincidence)."""

    component = "array"

    def __init__(self, arch: ArchitectureSpec, device=None):
        self.spec, self.update_spec = arch.array, arch.update
        #: Energy per coincidence: the device technology's when its preset gives one.
        e = getattr(device, "e_pulse_cell_J", None) if device is not None else None
        self.e_pulse_cell_J = self.update_spec.e_pulse_cell_J if e is None else e

    def read_cell(self) -> Action:
        """One device read during one MVM integration."""
        return Action(self.spec.e_read_cell_J)

    def coincidence(self) -> Action:
        """One row/column pulse coincidence at one device."""
        return Action(self.e_pulse_cell_J)

    def lines_read(self, driven: int, used_other: int, transposed: bool) -> int:
        """Devices that conduct when ``driven`` lines are driven and ``used_other`` lines of the
        other side are used: the whole length of each driven line unless lines are isolated."""
        if self.spec.line_isolation:
            return driven * used_other
        return driven * (self.spec.cols if transposed else self.spec.rows)

    @property
    def full_power_W(self) -> float:
        return self.spec.rows * self.spec.cols * self.spec.e_read_cell_J / self.spec.t_forward_s

    def forward_cycle(self) -> Action:
        return Action(0.0, self.spec.t_forward_s)

    def backward_cycle(self) -> Action:
        return Action(0.0, self.spec.t_backward_s)




class DAC(Block):
    """Input driver: one conversion per input line per MVM."""

    component = "dac"

    def __init__(self, arch: ArchitectureSpec):
        self.spec, self.t_cycle_s = arch.dac, arch.array.t_forward_s

    def convert(self) -> Action:
        return Action(self.spec.e_conv_J)

    @property
    def full_power_W(self) -> float:
        """One conversion per MVM cycle."""
        return self.spec.e_conv_J / self.t_cycle_s




class Integrator(Block):
    """Per-line integrator / sample-and-hold."""

    component = "integrator"

    def __init__(self, arch: ArchitectureSpec):
        self.spec, self.t_cycle_s = arch.integrator, arch.array.t_forward_s

    def integrate(self) -> Action:
        return Action(self.spec.e_integrate_J)

    @property
    def full_power_W(self) -> float:
        """One integration per MVM cycle."""
        return self.spec.e_integrate_J / self.t_cycle_s



class ADCBank(Block):
    """The ADCs on one side of a tile; each ADC converts ``cols_per_adc`` lines in turn."""

    component = "adc"

    def __init__(self, arch: ArchitectureSpec, lines: int):
        self.spec, self.lines = arch.adc, lines
        self.n_adcs = math.ceil(lines / arch.adc.cols_per_adc)

    def convert(self) -> Action:
        return Action(self.spec.e_conv_J, 1.0 / self.spec.sample_rate_Hz)

    def convert_lines_time_s(self, lines_used: int) -> float:
        """Time for the bank to convert ``lines_used`` lines (each ADC works through its share)."""
        return math.ceil(lines_used / self.n_adcs) / self.spec.sample_rate_Hz

    @property
    def full_power_W(self) -> float:
        """One ADC converting at its sample rate (area and static power are per ADC too)."""
        return self.spec.e_conv_J * self.spec.sample_rate_Hz



class UpdateDriver(Block):
    """Stochastic translators and line drivers of the pulsed update."""

    component = "update"

    def __init__(self, arch: ArchitectureSpec, device=None):
        self.spec = arch.update
        #: The device technology's write pulse (its preset's ``t_pulse_s``), None if not given.
        self.device_pulse_s = getattr(device, "t_pulse_s", None) if device is not None else None

    @property
    def pulse_s(self) -> float:
        """Width of one pulse slot: the architecture's ``t_pulse_s``, or the device's write
        pulse where that is longer (a device cannot switch with a shorter pulse)."""
        return max(self.spec.t_pulse_s, self.device_pulse_s or 0.0)

    @property
    def device_pulse_longer(self) -> bool:
        """The device's write pulse, not the architecture's slot, sets the pulse slot."""
        return (self.device_pulse_s or 0.0) > self.spec.t_pulse_s

    def pulse_line(self) -> Action:
        return Action(self.spec.e_pulse_line_J)

    def translate(self) -> Action:
        return Action(self.spec.e_translate_J)

    def rank_one(self, bl: float | None = None) -> Action:
        """One rank-one update of ``bl`` pulse slots (default: desired_bl); its energy is in
        the per-line and per-coincidence actions."""
        return Action(0.0, self.update_time_s(bl))

    def update_time_s(self, bl: float | None = None) -> float:
        """``bl * pulse_s + t_overhead_s``: the one formula for the update time (``pulse_s``:
        max of the architecture's and the device's pulse)."""
        bl = self.spec.desired_bl if bl is None else bl
        return bl * self.pulse_s + self.spec.t_overhead_s


class DigitalUnit(Block):
    """Element-wise digital unit: ``lanes`` operations per clock cycle."""

    component = "digital"
    OPS = ("sigmoid", "tanh", "exp", "mul", "add")

    def __init__(self, arch: ArchitectureSpec):
        self.spec = arch.digital

    def op(self, kind: str) -> Action:
        return Action(getattr(self.spec, f"e_{kind}_J"), 1.0 / self.spec.clock_Hz)

    def time_s(self, counts: dict[str, float]) -> float:
        """Time to apply element ops: each kind in ceil(n / lanes) cycles, kinds one after another."""
        cycles = sum(math.ceil(n / self.spec.lanes) for n in counts.values() if n > 0)
        return cycles / self.spec.clock_Hz

    @property
    def full_power_W(self) -> float:
        """Every lane doing a multiply-add each cycle."""
        return self.spec.lanes * self.spec.clock_Hz * (self.spec.e_mul_J + self.spec.e_add_J)




class MemoryLevel(Block):
    """A memory level (tile buffer, global buffer, DRAM): energy per bit moved, port bandwidth,
    capacity. Reads and writes cost alike."""

    spec_field = "buffer"

    def __init__(self, arch: ArchitectureSpec):
        self.spec = getattr(arch, self.spec_field)

    def bit(self) -> Action:
        return Action(self.spec.e_per_bit_J, 1.0 / self.spec.bandwidth_bit_s)

    def transfer_time_s(self, bits: float) -> float:
        """Time the level's port is held to move ``bits``."""
        return bits / self.spec.bandwidth_bit_s

    @property
    def full_power_W(self) -> float:
        """Its port busy all the time."""
        return self.spec.bandwidth_bit_s * self.spec.e_per_bit_J

    @property
    def capacity_bytes(self) -> float:
        return self.spec.capacity_bytes


class Buffer(MemoryLevel):
    """Tile-local SRAM/eDRAM buffer, one per digital unit."""

    component = "buffer"
    spec_field = "buffer"


class GlobalBuffer(MemoryLevel):
    """Chip-level SRAM shared by all tiles."""

    component = "global_buffer"
    spec_field = "global_buffer"


class DRAM(MemoryLevel):
    """Off-chip DRAM/HBM."""

    component = "dram"
    spec_field = "dram"


class Bus(Block):
    """Bus between tiles and their digital unit."""

    component = "bus"

    def __init__(self, arch: ArchitectureSpec):
        self.spec = arch.bus

    def bit(self) -> Action:
        return Action(self.spec.e_per_bit_J)

    def transfer_time_s(self, bits: int) -> float:
        return math.ceil(bits / self.spec.width_bits) / self.spec.clock_Hz

    @property
    def full_power_W(self) -> float:
        """Every wire toggling a bit each cycle."""
        return self.spec.width_bits * self.spec.clock_Hz * self.spec.e_per_bit_J


class System(Block):
    """What is on the chip besides tiles, units, buffers and buses: control, clocking, NoC, I/O
    (area and static power only)."""

    component = "system"

    def __init__(self, arch: ArchitectureSpec):
        self.spec = arch.system



#: Component name -> the block class that prices its actions.
BLOCKS = {cls.component: cls for cls in
          (CrossPointArray, DAC, Integrator, ADCBank, UpdateDriver, DigitalUnit, Buffer,
           GlobalBuffer, DRAM, Bus, System)}

#: (component, action) -> method that returns the Action, for energy pricing.
ACTIONS = {
    ("array", "read_cell"): "read_cell", ("array", "coincidence"): "coincidence",
    ("dac", "convert"): "convert", ("integrator", "integrate"): "integrate",
    ("adc", "convert"): "convert", ("update", "pulse_line"): "pulse_line",
    ("update", "translate"): "translate", ("bus", "bit"): "bit", ("buffer", "bit"): "bit",
    ("global_buffer", "bit"): "bit", ("dram", "bit"): "bit",
}


def build_components(arch: ArchitectureSpec, device=None) -> dict[str, Block]:
    """One priced instance per component kind (all instances of a kind share prices); ``device``:
    the device preset, whose technology may set the energy per update coincidence."""
    out = {
        "array": CrossPointArray(arch, device), "dac": DAC(arch), "integrator": Integrator(arch),
        "adc": ADCBank(arch, arch.array.rows), "update": UpdateDriver(arch, device),
        "digital": DigitalUnit(arch), "buffer": Buffer(arch), "bus": Bus(arch),
        "system": System(arch),
    }
    if arch.global_buffer is not None:
        out["global_buffer"] = GlobalBuffer(arch)
    if arch.dram is not None:
        out["dram"] = DRAM(arch)
    return out


#: Actions that are counted (for activity and consistency checks) but cost no energy of their
#: own: their energy is in the per-line and per-cell actions they consist of.
COUNT_ONLY = {("array", "forward_mvm"), ("array", "backward_mvm"), ("array", "bm_repeat"),
              ("update", "rank_one"), ("update", "pulse_slot"), ("array", "transfer_read"),
              ("update", "transfer"), ("update", "transfer_pulse_slot")}


def action_energy_J(components: dict[str, Block], component: str, action: str) -> float:
    """Energy of one ``action`` of ``component``."""
    if (component, action) in COUNT_ONLY:
        return 0.0
    block = components[component]
    if component == "digital":
        return block.op(action).energy_J
    return getattr(block, ACTIONS[(component, action)])().energy_J
