"""Architecture spec: RPU tiles (array + DAC + integrators + ADCs), digital units, memory, buses.

Fields only: what each block costs per action (energy, latency), its capacity and bandwidth, is
computed in one place, its class in :mod:`archsim.hw.components` (Accelergy-style: the event model
counts actions; energy is priced after the run). Per input vector a tile MVM holds the bus
(DAC and ADC words), the array (``t_forward_s``) and its ADC bank; a rank-one update holds the
array for ``desired_bl * t_pulse_s + t_overhead_s``; digital work takes ``ceil(n / lanes)`` cycles
per element-op kind; memory traffic holds its level's port for ``bits / bandwidth_bit_s``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from archsim.specs.base import (
    BitsPerSecond, Bytes, ConverterBits, Hertz, Joules, PositiveInt, Seconds, SecondsNonNeg, Spec,
    SquareMetres, Watts,
)


class ArraySpec(Spec):
    """The resistive cross-point array of one tile (rows = outputs of the forward MVM)."""

    rows: PositiveInt = Field(description="Array rows: forward-MVM outputs (weight-matrix rows).")
    cols: PositiveInt = Field(description="Array columns: forward-MVM inputs (weight-matrix columns).")
    t_forward_s: Seconds = Field(description="Integration time of one forward MVM (one input vector).")
    t_backward_s: Seconds = Field(description="Integration time of one transposed (backward) MVM.")
    e_read_cell_J: Joules = Field(description="Energy per device per MVM read, ~V^2*G*t_int.")
    line_isolation: bool = Field(False, description=(
        "Cells of a driven line outside the mapped block are switched off during an MVM. False "
        "(default): every device along a driven line conducts, so a forward MVM reads "
        "used columns x all rows devices and a transposed MVM used rows x all columns."))
    periphery_sides: Literal[1, 2] = Field(2, description=(
        "2: DACs, integrators and ADCs on the rows and on the columns (forward and transposed "
        "MVMs: training); 1: inputs on the columns and outputs on the rows only (inference "
        "designs such as ISAAC)."))
    area_m2: SquareMetres = Field(0.0, description="Area of the array itself.")
    leakage_W: Watts = Field(0.0, description="Static power of the array.")


class DACSpec(Spec):
    """Input drivers: one conversion per input line per MVM (also used for the backward pass)."""

    bits: ConverterBits = Field(description="Input resolution in bits, 2 to 16; aihwkit inp_res = 1/(2^bits - 2). "
                               "Bit-serial inputs (ISAAC's 1-bit DACs) are a multi-bit DAC here: set bits to "
                               "the input bits and t_forward_s to the serial integration time.")
    e_conv_J: Joules = Field(description="Energy of one conversion (one line, one MVM).")
    area_m2: SquareMetres = Field(0.0, description="Area of one DAC.")
    leakage_W: Watts = Field(0.0, description="Static power of one DAC.")


class IntegratorSpec(Spec):
    """Per-line op-amp integrator / sample-and-hold that accumulates the array current."""

    e_integrate_J: Joules = Field(description="Energy of one integration (one line, one MVM).")
    area_m2: SquareMetres = Field(0.0, description="Area of one integrator.")
    leakage_W: Watts = Field(0.0, description="Static power of one integrator (op-amp bias).")


class ADCSpec(Spec):
    """Output converters, possibly shared by several lines (columns) of the tile."""

    bits: ConverterBits = Field(description="Output resolution in bits, 2 to 16; aihwkit out_res = 1/(2^bits - 2).")
    sample_rate_Hz: Hertz = Field(description="Conversions per second of one ADC.")
    e_conv_J: Joules = Field(description="Energy of one conversion.")
    cols_per_adc: PositiveInt = Field(1, description="Lines that share one ADC (1 = one ADC per line).")
    area_m2: SquareMetres = Field(0.0, description="Area of one ADC.")
    leakage_W: Watts = Field(0.0, description="Static power of one ADC.")


#: Training algorithms of a tile (``update.algorithm``), those with two arrays per block (the
#: Tiki-Taka family) and those with the digital buffer H (TTv2 and chopped TTv2).
ALGORITHMS = ("sgd", "tiki_taka", "tiki_taka_v2", "chopped_tiki_taka_v2")
TIKI_TAKA = ALGORITHMS[1:]
BUFFERED = ALGORITHMS[2:]


class UpdateSpec(Spec):
    """Stochastic pulsed outer-product update (Gokmen & Vlasov 2016).

    One rank-one update sends ``desired_bl`` pulse slots of width ``t_pulse_s`` on every row and
    column; a device moves by one step for each coincidence of a row and a column pulse.
    """

    desired_bl: PositiveInt = Field(le=1_000_000, description="Pulse slots per update (BL), as aihwkit's desired_bl "
                                    "(at most 10^6: 1 ms of 1 ns pulses per rank-one update).")
    t_pulse_s: Seconds = Field(description=(
        "Width of one update pulse slot; a device whose write pulse (its t_pulse_s) is longer "
        "sets the slot instead (hw.components.UpdateDriver.pulse_s)."))
    t_overhead_s: SecondsNonNeg = Field(0.0, description="Fixed set-up time per rank-one update.")
    e_pulse_line_J: Joules = Field(description="Energy to drive one pulse on one row or column line.")
    e_pulse_cell_J: Joules = Field(description="Energy dissipated in a device per coincidence.")
    e_translate_J: Joules = Field(0.0, description="Stochastic translator energy per line per update.")
    area_m2: SquareMetres = Field(0.0, description="Area of one line's translator and pulse driver.")
    leakage_W: Watts = Field(0.0, description="Static power of one line's translator and driver.")
    update_management: bool = Field(True, description="Balance row/column probabilities (aihwkit UM).")
    update_bl_management: bool = Field(False, description="Pick BL from the gradient size (aihwkit).")
    um_rule: Literal["aihwkit", "balanced"] = Field("aihwkit", description=(
        "Update management when k = lr*max|x|*max|d|/dw_min exceeds BL: 'aihwkit' keeps x's firing "
        "probabilities |x|/max|x| unclipped and puts the excess on d (aihwkit's "
        "PulsedUpdateMetaParameter.performUpdateManagement); 'balanced' scales both sides by "
        "sqrt(k/BL) and clips both (archsim's earlier rule)."))
    # The Tiki-Taka family, named as aihwkit's compounds (IBM/aihwkit
    # src/aihwkit/simulator/configs/compounds.py at commit 1384c5646e0cd9b1aebdcb4604fa28fed07e3c80):
    # TransferCompound (Tiki-Taka v1, Gokmen & Haensch 2020, Front. Neurosci. 14:103),
    # BufferedTransferCompound (TTv2, Gokmen 2021, Front. Artif. Intell. 4:699148) and
    # ChoppedTransferCompound (chopped TTv2, Rasch et al. 2024, Nat. Commun.).
    algorithm: Literal[ALGORITHMS] = Field("sgd", description=(
        "Training algorithm of every tile. 'sgd': the pulsed rank-one updates go to the one array "
        "that holds the weight. 'tiki_taka' (Tiki-Taka v1, aihwkit's TransferCompound with two "
        "devices): each tile block has a fast array A that takes the pulsed SGD updates and a "
        "slow array C (a second tile, same device model); every transfer_every rank-one updates "
        "n_reads_per_transfer columns of A (in turn, wrapping around) are read by forward MVMs "
        "with one-hot inputs and pulsed onto C's columns with learning rate transfer_lr; the "
        "network's weight is gamma*A + C. 'tiki_taka_v2' (TTv2, aihwkit's "
        "BufferedTransferCompound): the same reads are added, times transfer_lr, to a digital "
        "buffer H (one value per device, in the digital unit's memory); where |H| reaches "
        "thres_scale*dw_min, C's device gets trunc(H/(thres_scale*dw_min)) pulses (at most "
        "transfer_desired_bl) in that direction and H forgets or subtracts what was written "
        "(forget_buffer, momentum). 'chopped_tiki_taka_v2' (aihwkit's ChoppedTransferCompound): "
        "TTv2 with a random sign per column of A (the input chopper): A's updates of column j "
        "are multiplied by it, its read by it again, and it flips with probability in_chop_prob "
        "after each read of column j; needs gamma 0 (A is hidden, as in aihwkit)."))
    transfer_every: PositiveInt = Field(1, le=1_000_000_000, description=(
        "Tiki-Taka: rank-one updates (vectors) of a tile between transfers. aihwkit's "
        "transfer_every counts mat-vecs when units_in_mbatch is False and mini-batches when True "
        "(TransferCompound's default); archsim counts vectors because its step program is per "
        "(op, vector) and an LSTM mini-batch of one matrix is T x B vectors. The count restarts at "
        "every training step (the T x B updates of a tile), so each step makes "
        "floor(T*B/transfer_every) transfers and every step runs the same program; a value above "
        "T*B makes none."))
    n_reads_per_transfer: PositiveInt = Field(1, le=1_000_000, description=(
        "Tiki-Taka: columns of A read (and rank-one updates of C) per transfer, consecutive and "
        "wrapping around at the last column (aihwkit's n_reads_per_transfer, default 1; aihwkit's "
        "ChoppedTransferCompound allows only 1, archsim any)."))
    transfer_lr: float = Field(1.0, gt=0, le=1e6, description=(
        "Tiki-Taka: learning rate of the transfer. v1: C[:, j] += transfer_lr * (read of A[:, j]), "
        "as a pulsed rank-one update with x = one-hot(j), d = -read; TTv2: H[:, j] += "
        "transfer_lr * read (times gamma when gamma > 0, as aihwkit's buffered getTransferLR). "
        "Absolute, i.e. aihwkit's transfer_lr with scale_transfer_lr False (aihwkit's default "
        "True multiplies it by the SGD learning rate)."))
    gamma: float = Field(0.0, ge=0, le=1e6, description=(
        "Tiki-Taka: the network's weight is gamma*A + C (aihwkit's TransferCompound gamma, "
        "g*W_0 + W_1 for two devices; 0 is Tiki-Taka v1 as in aihwkit's TikiTaka presets). "
        "Forward and transposed MVMs read it in one array cycle (both arrays' currents summed "
        "on shared lines, one conversion per line, as aihwkit reads the gamma-weighted weight "
        "in one MVM); with gamma = 0 only C is read."))
    thres_scale: float = Field(1.0, gt=0, le=1e6, description=(
        "TTv2 and chopped TTv2: the buffer's threshold (and the weight of one of its steps) in "
        "units of C's dw_min (aihwkit BufferedTransferCompound.thres_scale; "
        "ChoppedTransferCompound calls it buffer_granularity and takes A's dw_min, the same "
        "number here since A and C share one device model)."))
    momentum: float | None = Field(None, ge=0, le=1, description=(
        "TTv2 and chopped TTv2: share of the buffer kept after its device was pulsed (aihwkit's "
        "momentum). null: aihwkit's default, 0.1 for tiki_taka_v2 (BufferedTransferCompound) and "
        "0 for chopped_tiki_taka_v2 (ChoppedTransferCompound)."))
    forget_buffer: bool = Field(True, description=(
        "TTv2 and chopped TTv2 (aihwkit's forget_buffer, default true): after a device was "
        "pulsed, H becomes momentum*H (what the clipped pulse count did not write is "
        "forgotten); false: H -= (1 - momentum)*n*threshold (n the pulses written)."))
    transfer_desired_bl: PositiveInt = Field(1, le=1_000_000, description=(
        "TTv2 and chopped TTv2: pulse slots of a transfer update of C and the most pulses one "
        "device gets per transfer (aihwkit's transfer_update.desired_bl, 1 in "
        "BufferedTransferCompound and ChoppedTransferCompound, with update management and BL "
        "management off). Tiki-Taka v1's transfer updates use desired_bl and update_management "
        "as the SGD updates do."))
    in_chop_prob: float = Field(0.1, ge=0, le=1, description=(
        "Chopped TTv2: probability that a column's input chopper (the sign of A's updates and "
        "reads of that column) flips after each read of the column (aihwkit's in_chop_prob, "
        "random switching; 0: chopped TTv2 is TTv2)."))

    @model_validator(mode="after")
    def _check_chopper(self):
        if self.algorithm == "chopped_tiki_taka_v2" and self.gamma != 0:
            raise ValueError(f"gamma must be 0 with chopped_tiki_taka_v2 (got {self.gamma}): the "
                             "fast array A is hidden, as in aihwkit's ChoppedTransferCompound")
        return self

    @property
    def tiki_taka(self) -> bool:
        """Any Tiki-Taka algorithm: two arrays (A, C) per tile block."""
        return self.algorithm in TIKI_TAKA

    @property
    def buffered(self) -> bool:
        """TTv2 or chopped TTv2: the transfer goes through the digital buffer H."""
        return self.algorithm in BUFFERED

    @property
    def buffer_momentum(self) -> float:
        """``momentum``, or aihwkit's default for the algorithm when it is null."""
        if self.momentum is not None:
            return self.momentum
        return 0.0 if self.algorithm == "chopped_tiki_taka_v2" else 0.1


class PeripherySpec(Spec):
    """Analog periphery non-idealities (aihwkit IOParameters names), shared by both engines.

    Ranges are bounded to 1e-6 .. 1e6 (the tiles compute in float32, where 1e-300 is 0 and 1e300
    is infinite); aihwkit's defaults are inp_bound 1, out_bound 12, out_noise 0.06."""

    inp_bound: float = Field(1.0, ge=1e-6, le=1e6, description="Input range after noise management (DAC full scale).")
    out_bound: float = Field(12.0, ge=1e-6, le=1e6, description="ADC full scale in units of the weight range.")
    out_noise: float = Field(0.06, ge=0, le=1e6, description="Std of additive output noise per MVM output.")
    inp_sto_round: bool = Field(False, description="Stochastic rounding in the DAC.")
    out_sto_round: bool = Field(False, description="Stochastic rounding in the ADC.")
    noise_management: Literal["abs_max", "none"] = Field("abs_max", description="Input scaling.")
    bound_management: Literal["iterative", "none"] = Field("iterative", description="Repeat on saturation.")
    max_bm_factor: PositiveInt = Field(1000, description=(
        "Bound-management limit: repeats stop after the first factor above it (aihwkit)."))
    max_bm_res: float = Field(0.25, gt=0, le=1e6, description=(
        "aihwkit's second bound-management limit: repeats also stop after the first factor above "
        "max_bm_res/(2*inp_bound*inp_res), 15.75 with 7-bit inputs (aihwkit default 0.25)."))
    out_scale: float = Field(1.0, ge=1e-6, le=1e6, description=(
        "Digital gain on every MVM output: the network's weight is out_scale x the device weight "
        "(device range +-w_max covers +-out_scale*w_max, at out_scale x coarser steps and noise); "
        "folded into the noise-management multiply, so it costs no time or energy."))
    weight_scaling_omega: float | None = Field(None, gt=0, le=1e3, description=(
        "Weight mapping (aihwkit MappingParameter.weight_scaling_omega; null: off). Each tile "
        "block of a weight matrix gets its own digital output gain alpha = max|W_init| / (omega * "
        "w_range), chosen from its initial weights (w_range = min(w_max, -w_min), the device's "
        "nominal bounds): the block is programmed with W_init/alpha, so its largest initial weight "
        "sits at omega of the device range, and every MVM output is multiplied by alpha, so the "
        "network is unchanged at initialisation. Learning rates stay in network units (the devices "
        "see lr/alpha). A fraction of the device range, where aihwkit's omega is an absolute "
        "device weight; above 1 the largest weights are clipped. Ignored on ideal (floating-point) "
        "devices; needs out_scale 1 (alpha replaces it). Like out_scale, free in time and energy."))

    @model_validator(mode="after")
    def _check_mapping(self):
        if self.weight_scaling_omega is not None and self.out_scale != 1.0:
            raise ValueError("weight_scaling_omega chooses each tile's output gain itself: "
                             f"out_scale must be 1 with it (got {self.out_scale})")
        return self


class DigitalSpec(Spec):
    """Digital unit: element-wise nonlinearities, products, sums (one op per lane per cycle)."""

    lanes: PositiveInt = Field(description="Element operations per clock cycle.")
    clock_Hz: Hertz = Field(description="Clock of the digital unit.")
    e_sigmoid_J: Joules = Field(description="Energy of one sigmoid.")
    e_tanh_J: Joules = Field(description="Energy of one tanh.")
    e_exp_J: Joules = Field(description="Energy of one exp (softmax).")
    e_mul_J: Joules = Field(description="Energy of one multiply.")
    e_add_J: Joules = Field(description="Energy of one add / compare.")
    word_bits: PositiveInt = Field(16, description="Width of a digital word (activations, errors).")
    tiles_per_unit: PositiveInt = Field(1, description="Tiles served by one digital unit.")
    area_m2: SquareMetres = Field(0.0, description="Area of one digital unit.")
    leakage_W: Watts = Field(0.0, description="Static power of one digital unit.")


class MemorySpec(Spec):
    """A level of the memory hierarchy that BPTT state may live in.

    Moving ``bits`` costs ``bits * e_per_bit_J`` and holds the level's port for
    ``bits / bandwidth_bit_s`` (its SimPy resource, so transfers that share it queue). Whatever a
    step stores must fit ``capacity_bytes`` (placement: :mod:`archsim.memory`)."""

    e_per_bit_J: Joules = Field(description="Energy per bit read or written.")
    capacity_bytes: Bytes = Field(description="Capacity of one instance of this level.")
    bandwidth_bit_s: BitsPerSecond = Field(description="Bits per second through its port.")
    area_m2: SquareMetres = Field(0.0, description="Area of one instance.")
    leakage_W: Watts = Field(0.0, description="Static power of one instance.")

    def transfer_time_s(self, bits: float) -> float:
        return bits / self.bandwidth_bit_s


class BufferSpec(MemorySpec):
    """Tile-local buffer (SRAM/eDRAM), one per digital unit: working vectors, and BPTT state
    when it fits."""


class GlobalBufferSpec(MemorySpec):
    """Chip-level SRAM shared by all tiles (one port: transfers from all tiles queue on it)."""


class DRAMSpec(MemorySpec):
    """Off-chip DRAM/HBM: BPTT state that fits no on-chip level (one shared port)."""


class BusSpec(Spec):
    """Bus between tiles and their digital unit."""

    width_bits: PositiveInt = Field(description="Bits moved per bus cycle.")
    clock_Hz: Hertz = Field(description="Bus clock.")
    e_per_bit_J: Joules = Field(description="Energy per bit moved.")
    tiles_per_bus: PositiveInt = Field(1, description="Tiles sharing one bus.")
    area_m2: SquareMetres = Field(0.0, description="Area of one bus (its wires).")
    leakage_W: Watts = Field(0.0, description="Static power of one bus.")

    @property
    def bandwidth_bit_s(self) -> float:
        return self.width_bits * self.clock_Hz


class SystemSpec(Spec):
    """Chip-level organisation."""

    n_tiles: PositiveInt = Field(description="Tiles available on the chip.")
    replication: PositiveInt = Field(
        1, description="Copies of each weight matrix; a batch is split over copies, each copy "
        "applies its own samples' updates (replicated arrays as in Gokmen, Onen & Haensch 2017).")
    leakage_W: Watts = Field(0.0, description="Other static power of the chip (control, clocking, I/O).")
    area_m2: SquareMetres = Field(0.0, description="Other area of the chip (control, clocking, NoC, I/O).")
    power_gating: bool = Field(False, description=(
        "Tiles (and their digital units and buses) that the workload does not use are switched "
        "off; false: every tile of the chip leaks while the workload runs."))
    area_limit_m2: SquareMetres | None = Field(None, description=(
        "Chip area limit (e.g. the lithographic reticle); a design above it still estimates and "
        "the report says by how much."))
    power_limit_W: Watts | None = Field(None, description=(
        "Chip power limit (e.g. a package's TDP), compared with the average power of a step."))
    bptt_state: Literal["store", "recompute"] = Field("store", description=(
        "What BPTT keeps between the forward and backward sweeps: 'store' keeps every tile's "
        "inputs, gate activations and cell states; 'recompute' keeps only h_t and c_t and re-runs "
        "the forward MVM of each LSTM layer during the backward sweep (more array cycles, ADC "
        "conversions and noise, much less memory)."))


class ArchitectureSpec(Spec):
    """A complete RPU architecture preset."""

    name: str = Field(description="Preset name.")
    description: str = Field("", description="One sentence on what this preset is.")
    array: ArraySpec
    dac: DACSpec
    integrator: IntegratorSpec
    adc: ADCSpec
    update: UpdateSpec
    periphery: PeripherySpec = PeripherySpec()
    digital: DigitalSpec
    buffer: BufferSpec
    global_buffer: GlobalBufferSpec | None = Field(None, description="Chip-level SRAM (None: none).")
    dram: DRAMSpec | None = Field(None, description="Off-chip DRAM/HBM (None: none).")
    bus: BusSpec
    system: SystemSpec

    @model_validator(mode="after")
    def _check(self):
        return self

    @property
    def inp_res(self) -> float:
        """aihwkit-style DAC resolution (step as a fraction of the full range)."""
        return 1.0 / (2**self.dac.bits - 2)

    @property
    def out_res(self) -> float:
        """aihwkit-style ADC resolution."""
        return 1.0 / (2**self.adc.bits - 2)


