"""Settings of one simulated analog tile: periphery (forward/backward MVM) and pulsed update.

Field names follow aihwkit (``IOParameters`` and ``UpdateParameters``) so that configurations move
between the two tools. This module imports neither torch nor pydantic at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: keeps ``archsim.functional.config`` import-light
    from archsim.specs.architecture import ArchitectureSpec
    from archsim.specs.device import DeviceSpec

UPDATE_MODES = ("fast", "exact")
#: Update-management rules when k > BL (see RPUConfig.um_rule).
UM_RULES = ("aihwkit", "balanced")
#: The fields a population's members may each set on their own (the periphery's converters and
#: limits: :class:`archsim.functional.periphery_members.MemberPeriphery`), each with the
#: architecture spec's field that sets it (see :meth:`RPUConfig.from_specs`; the sweep axes that
#: ``train.population_periphery`` gathers). Any other field changes a tile's structure or update.
MEMBER_PERIPHERY_FIELDS = {
    "inp_res": "dac.bits", "out_res": "adc.bits", "inp_bound": "periphery.inp_bound",
    "out_bound": "periphery.out_bound", "out_noise": "periphery.out_noise",
    "inp_sto_round": "periphery.inp_sto_round", "out_sto_round": "periphery.out_sto_round",
    "max_bm_factor": "periphery.max_bm_factor", "max_bm_res": "periphery.max_bm_res",
}
#: Training algorithms of a tile (see RPUConfig.algorithm; the architecture spec's
#: ``update.algorithm`` values): SGD, then the Tiki-Taka family (two arrays per block).
ALGORITHMS = ("sgd", "tiki_taka", "tiki_taka_v2", "chopped_tiki_taka_v2")


@dataclass
class RPUConfig:
    r"""Periphery and update settings of one tile (aihwkit names).

    Forward MVM of one input vector ``x`` (backward: the same with ``W^T`` and no bound management)::

        alpha  = max_j |x_j|                       noise management "abs_max" (1 for "none")
        x~_j   = clip(Q_in(x_j / (alpha*beta)), +-inp_bound)      DAC, step 2*inp_bound*inp_res
        y~_i   = sum_j w_ij x~_j + out_noise * xi_i               xi ~ N(0, 1), fresh per MVM
        y^_i   = clip(Q_out(y~_i), +-out_bound)                   ADC, step 2*out_bound*out_res
        y_i    = y^_i * alpha * beta

    ``Q`` rounds to the nearest level, or stochastically (``floor(v/step + u)*step``, ``u ~ U[0,1)``,
    so ``E[Q(v)] = v``). Bound management "iterative": beta starts at 1; while any output of a
    vector reaches ``out_bound`` and ``2*beta <= max_bm_factor``, that vector's MVM is repeated
    with ``beta <- 2*beta`` (each repeat is one more array cycle).

    Pulsed update of one rank-one term ``-lr * d x^T`` (``d`` = dLoss/dy, so this is SGD)::

        BL     = desired_bl, or with update_bl_management
                 BL = clip(ceil(lr * max|x| * max|d| / dw_min), 1, desired_bl)
        A = B  = sqrt(lr / (dw_min * BL))
        UM:      A <- A*sqrt(max|d|/max|x|),  B <- B*sqrt(max|x|/max|d|)
        p_j    = min(1, A|x_j|)   (x line j fires in each of the BL slots)
        q_i    = min(1, B|d_i|)   (d line i fires in each slot)
        each coincidence moves w_ij one device step in direction -sign(d_i x_j)

    so that ``E[dw_ij] = dw_min*BL*p_j*q_i*(-sign(d_i x_j)) = -lr*d_i*x_j`` away from clipping and
    for a nominal device. The device model (steps, variations, bounds) is ``device``.
    """

    device: "DeviceSpec"
    """Device model (``archsim.specs.DeviceSpec``, aihwkit names): kind, dw_min, variations, bounds."""

    inp_res: float
    """DAC resolution as a fraction of the input range, 1/(2^bits - 2); <= 0: no quantization;
    a value > 1 is read as a number of steps (as aihwkit does)."""

    out_res: float
    """ADC resolution as a fraction of the output range, 1/(2^bits - 2); <= 0: no quantization."""

    inp_bound: float = 1.0
    """DAC full scale: inputs (after noise management) are clipped to +-inp_bound."""

    out_bound: float = 12.0
    """ADC full scale in weight units: outputs are clipped to +-out_bound (``inf``: no clipping)."""

    out_noise: float = 0.06
    """Std of the additive Gaussian output noise per output and MVM (weight units)."""

    inp_sto_round: bool = False
    """Stochastic (unbiased) rounding in the DAC instead of rounding to nearest."""

    out_sto_round: bool = False
    """Stochastic (unbiased) rounding in the ADC instead of rounding to nearest."""

    noise_management: str = "abs_max"
    """"abs_max": scale each input vector by its max |x| before the DAC; "none": no scaling."""

    bound_management: str = "iterative"
    """"iterative": repeat a saturated forward MVM with the input halved; "none": no repeats."""

    max_bm_factor: int = 1000
    """Bound-management limit on the factor beta: as in aihwkit, the repeats stop after the first
    one whose beta exceeds it (1000: beta up to 1024)."""

    max_bm_res: float = 0.25
    """aihwkit's second bound-management limit: the repeats also stop after the first beta above
    ``max_bm_res / (2*inp_bound*inp_res)`` (the input resolution may not get coarser than
    ``max_bm_res`` of the range: 15.75, i.e. beta up to 16, with 7-bit inputs); no limit without
    DAC quantization."""

    um_rule: str = "aihwkit"
    """Update management when ``k = lr*max|x|*max|d|/dw_min`` exceeds BL: "aihwkit" (aihwkit's
    rule) keeps x's firing probabilities unclipped (``p = |x|/max|x|``) and puts the excess on the
    d side (clipped at 1); "balanced" scales both sides by ``sqrt(k/BL)`` and clips both (archsim
    before this option)."""

    out_scale: float = 1.0
    """Digital gain on every MVM output (forward and transposed): the network's weight is
    ``out_scale`` times the device weight, so the device range ``+-w_max`` covers
    ``+-out_scale*w_max``, with ``out_scale`` times coarser steps and output noise in weight
    units; updates reach the devices with ``lr/out_scale``. 1: none."""

    weight_scaling_omega: float = 0.0
    """Weight mapping (aihwkit ``MappingParameter.weight_scaling_omega``; 0: off). When > 0 and
    the device is not ideal, :class:`archsim.functional.lstm.TiledMatrix` gives each tile block
    its own copy of this configuration with ``out_scale = max|W_block| / (omega * w_range)``
    chosen from the block's initial weights (``w_range = min(w_max, -w_min)``, the nominal device
    bounds), so the largest initial weight is programmed at ``omega`` of the device range and the
    network function at initialisation is unchanged (the copy's ``out_scale`` plays the role of
    aihwkit's ``mapping_scales``; this configuration's own ``out_scale`` must be 1). Unlike
    aihwkit, whose omega is an absolute device weight (``alpha = max|W| / omega``, IBM/aihwkit
    src/aihwkit/simulator/tiles/periphery.py ``apply_weight_scaling``, commit 1f51fa2c), omega
    here is a fraction of the device range, so one value means the same on devices of any
    ``w_max``; above 1 the largest weights are clipped. Learning rates stay in network units: the
    tile updates its devices with ``lr/out_scale``, where aihwkit's ``pre_update`` divides the
    errors by the mapping scales instead (the same pulse probabilities under update management,
    where they depend only on ``k = lr*max|x|*max|d|/dw_min``, ``|x|/max|x|`` and
    ``|d|/max|d|``)."""

    desired_bl: int = 10
    """Pulse slots (BL) per rank-one update; with BL management the upper limit."""

    update_management: bool = True
    """Balance the x and d firing probabilities (aihwkit update_management)."""

    update_bl_management: bool = False
    """Choose BL per update from the gradient size (aihwkit update_bl_management)."""

    update_mode: str = "fast"
    """"fast": one draw per device from the exact model's mean and variance per ``update`` call;
    "exact": pulse trains sampled, coincidences counted per rank-one update (see AnalogTile)."""

    exact_chunk: int = 0
    """Exact mode: rank-one updates whose coincidences are counted by one matrix product (devices
    that could reach a bound are followed chunk by chunk, see AnalogTile); 0 = automatic
    (256 on CPU, 1024 on an accelerator, where fewer and larger operations are faster)."""

    algorithm: str = "sgd"
    """"sgd", or one of the Tiki-Taka family ("tiki_taka", "tiki_taka_v2",
    "chopped_tiki_taka_v2"): each tile is a fast array A (SGD updates) and a slow array C,
    weight gamma*A + C (see :class:`archsim.functional.tiki_taka.TikiTakaTile`; the fields below
    are the architecture's ``update`` fields of the same names)."""

    transfer_every: int = 1
    """Tiki-Taka: rank-one updates between transfers (restarting at every update call)."""

    n_reads_per_transfer: int = 1
    """Tiki-Taka: columns of A read and pulsed onto C per transfer."""

    transfer_lr: float = 1.0
    """Tiki-Taka: learning rate of the transfer update onto C (absolute)."""

    gamma: float = 0.0
    """Tiki-Taka: weight of A in the network's weight gamma*A + C."""

    thres_scale: float = 1.0
    """TTv2: threshold of the digital buffer H in units of dw_min."""

    momentum: float = 0.1
    """TTv2: share of H kept after its device was pulsed (the spec's ``buffer_momentum``)."""

    forget_buffer: bool = True
    """TTv2: after a pulse H becomes momentum*H (else H -= (1 - momentum)*pulses*threshold)."""

    transfer_desired_bl: int = 1
    """TTv2: pulse slots of a transfer update of C (update management off), the most pulses a
    device gets per transfer."""

    in_chop_prob: float = 0.1
    """Chopped TTv2: flip probability of a column's chopper after each read of that column."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.transfer_every < 1 or self.n_reads_per_transfer < 1 or not self.transfer_lr > 0 \
                or self.gamma < 0 or not self.thres_scale > 0 or not 0 <= self.momentum <= 1 \
                or self.transfer_desired_bl < 1 or not 0 <= self.in_chop_prob <= 1:
            raise ValueError("transfer_every, n_reads_per_transfer and transfer_desired_bl must be "
                             ">= 1, transfer_lr and thres_scale > 0, gamma >= 0, momentum and "
                             "in_chop_prob in [0, 1]")
        if self.algorithm == "chopped_tiki_taka_v2" and self.gamma != 0:
            raise ValueError("gamma must be 0 with chopped_tiki_taka_v2 (A is hidden)")
        if self.update_mode not in UPDATE_MODES:
            raise ValueError(f"update_mode must be one of {UPDATE_MODES}, got {self.update_mode!r}")
        if self.noise_management not in ("abs_max", "none"):
            raise ValueError(f"noise_management must be 'abs_max' or 'none', got {self.noise_management!r}")
        if self.bound_management not in ("iterative", "none"):
            raise ValueError(f"bound_management must be 'iterative' or 'none', got {self.bound_management!r}")
        if self.um_rule not in UM_RULES:
            raise ValueError(f"um_rule must be one of {UM_RULES}, got {self.um_rule!r}")
        if not self.max_bm_res > 0:
            raise ValueError("max_bm_res must be > 0")
        if self.desired_bl < 1 or self.exact_chunk < 0 or self.max_bm_factor < 1:
            raise ValueError("desired_bl and max_bm_factor must be >= 1, exact_chunk >= 0")
        if self.inp_bound <= 0 or self.out_bound <= 0 or self.out_noise < 0 or self.out_scale <= 0:
            raise ValueError("inp_bound, out_bound and out_scale must be > 0 and out_noise >= 0")
        if not 0 <= self.weight_scaling_omega <= 1e3:
            raise ValueError(f"weight_scaling_omega must be 0 (off) or in (0, 1000], got "
                             f"{self.weight_scaling_omega!r}")

    @classmethod
    def from_specs(cls, device: "DeviceSpec", arch: "ArchitectureSpec",
                   update_mode: str = "fast") -> "RPUConfig":
        """Tile settings from a device preset and an architecture preset (DAC/ADC bits, periphery,
        update)."""
        per = arch.periphery
        return cls(
            device=device, inp_res=arch.inp_res, out_res=arch.out_res,
            inp_bound=per.inp_bound, out_bound=per.out_bound, out_noise=per.out_noise,
            inp_sto_round=per.inp_sto_round, out_sto_round=per.out_sto_round,
            noise_management=per.noise_management, bound_management=per.bound_management,
            max_bm_factor=per.max_bm_factor, max_bm_res=per.max_bm_res, out_scale=per.out_scale,
            weight_scaling_omega=per.weight_scaling_omega or 0.0,
            desired_bl=arch.update.desired_bl, update_management=arch.update.update_management,
            um_rule=arch.update.um_rule,
            update_bl_management=arch.update.update_bl_management, update_mode=update_mode,
            algorithm=arch.update.algorithm, transfer_every=arch.update.transfer_every,
            n_reads_per_transfer=arch.update.n_reads_per_transfer,
            transfer_lr=arch.update.transfer_lr, gamma=arch.update.gamma,
            thres_scale=arch.update.thres_scale, momentum=arch.update.buffer_momentum,
            forget_buffer=arch.update.forget_buffer,
            transfer_desired_bl=arch.update.transfer_desired_bl,
            in_chop_prob=arch.update.in_chop_prob,
        )

    @property
    def tiki_taka(self) -> bool:
        """Tiles of this configuration train with Tiki-Taka (never a floating-point tile)."""
        return self.algorithm != "sgd" and not self.is_ideal

    @property
    def is_ideal(self) -> bool:
        """Floating-point device: no periphery, exact SGD updates."""
        return self.device.kind == "ideal"
