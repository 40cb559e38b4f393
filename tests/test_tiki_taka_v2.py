"""Tiki-Taka v2 (buffered transfer) and chopped TTv2 (issue 14, item 3) in both engines: the spec,
the buffer H's rule against a hand-computed case, what it reduces to, the chopper's statistics, and
the count equality of the two engines (H's traffic here; the transfers' counts, and the case
without transfers where TTv2 is SGD on A, in tests/test_tiki_taka.py)."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from archsim.cli import main  # noqa: E402
from archsim.errors import SpecError  # noqa: E402
from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.tiki_taka import TikiTakaTile  # noqa: E402
from archsim.schedule import build_schedule  # noqa: E402
from archsim.specs import load_device  # noqa: E402

from conftest import WORKLOADS  # noqa: E402
from test_tiki_taka import UNIFORM, _arch, _network, _train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V2, CHOPPED = "tiki_taka_v2", "chopped_tiki_taka_v2"

#: A noise-free constant-step device: every device steps exactly dw_min = 0.1 up or down, no
#: variations, bounds far away.
EXACT_DEVICE = {**UNIFORM, "dw_min": 0.1, "dw_min_std": 0.0, "up_down": 0.0}


def test_spec_names_defaults_and_errors():
    u = _arch(algorithm=V2).update
    assert (u.tiki_taka, u.buffered, u.thres_scale, u.momentum, u.buffer_momentum,
            u.forget_buffer, u.transfer_desired_bl, u.in_chop_prob) == \
        (True, True, 1.0, None, 0.1, True, 1, 0.1)     # aihwkit's BufferedTransferCompound
    c = _arch(algorithm=CHOPPED).update
    assert c.buffered and c.buffer_momentum == 0.0      # aihwkit's ChoppedTransferCompound
    assert _arch(algorithm=V2, momentum=0.5).update.buffer_momentum == 0.5
    assert not _arch(algorithm="tiki_taka").update.buffered and not _arch().update.tiki_taka
    for bad in ({"thres_scale": 0.0}, {"momentum": 1.5}, {"in_chop_prob": -0.1},
                {"transfer_desired_bl": 0}, {"algorithm": "ttv2"},
                {"algorithm": CHOPPED, "gamma": 0.5}):
        with pytest.raises(SpecError) as err:
            _arch(**{"algorithm": V2, **bad})
        assert "\n" not in str(err.value), bad
    cfg = RPUConfig.from_specs(load_device("rpu_baseline"),
                               _arch(algorithm=CHOPPED, thres_scale=3.0, forget_buffer=False,
                                     transfer_desired_bl=4, in_chop_prob=0.25), "fast")
    assert cfg.tiki_taka and (cfg.thres_scale, cfg.momentum, cfg.forget_buffer,
                              cfg.transfer_desired_bl, cfg.in_chop_prob) == (3.0, 0.0, False, 4, 0.25)
    with pytest.raises(ValueError):
        RPUConfig(device=cfg.device, inp_res=0, out_res=0, algorithm=CHOPPED, gamma=1.0)


def _exact_tile(out_size=3, in_size=2, update_mode="fast", **kw):
    """A TTv2 tile with a noise-free device (EXACT_DEVICE) and a noise-free periphery (no DAC or
    ADC quantization, no output noise): a transfer read returns A's column exactly."""
    settings = dict(algorithm=V2, n_reads_per_transfer=1, transfer_lr=0.5, thres_scale=2.0,
                    momentum=0.25, transfer_desired_bl=1, forget_buffer=True)
    settings.update(kw)
    cfg = RPUConfig(device=load_device("rpu_symmetric", overrides=EXACT_DEVICE), inp_res=0.0,
                    out_res=0.0, out_noise=0.0, update_mode=update_mode, **settings)
    tile = TikiTakaTile(out_size, in_size, cfg, generator=torch.Generator().manual_seed(0))
    tile.set_weights(torch.zeros(out_size, in_size))
    return tile


@pytest.mark.parametrize("update_mode", ["fast", "exact"])
@pytest.mark.parametrize("forget", [True, False])
def test_buffer_rule_by_hand(forget, update_mode):
    """A 3 x 2 tile, A = [[0.5, 0.3], [-0.9, 0], [0.1, -0.25]], dw_min 0.1, thres_scale 2 (the
    threshold 0.2), transfer_lr 0.5, momentum 0.25, transfer BL 1; three transfers read columns
    0, 1, 0 (by hand):

    1. column 0: omega = 0.5*(0.5, -0.9, 0.1) = (0.25, -0.45, 0.05), omega/0.2 = (1.25, -2.25,
       0.25): counts trunc -> (1, -2, 0), clamped to BL 1 -> (1, -1, 0); C[:, 0] = (0.1, -0.1, 0);
       forget: H = 0.25*omega where pulsed = (0.0625, -0.1125, 0.05); else H = omega - 0.75*count*0.2
       = (0.10, -0.30, 0.05).
    2. column 1: omega = (0.15, 0, -0.125), /0.2 = (0.75, 0, -0.625): no pulse, H[:, 1] = omega.
    3. column 0 again: forget: omega = (0.3125, -0.5625, 0.10) -> counts (1, -1, 0),
       H = (0.078125, -0.140625, 0.10); else omega = (0.35, -0.75, 0.10) -> (1, -1, 0),
       H = (0.20, -0.60, 0.10). C[:, 0] = (0.2, -0.2, 0), C[:, 1] = 0.
    """
    tile = _exact_tile(forget_buffer=forget, update_mode=update_mode)
    tile.fast.set_weights(torch.tensor([[0.5, 0.3], [-0.9, 0.0], [0.1, -0.25]]))
    for _ in range(3):
        tile.transfer()
    h0 = [0.078125, -0.140625, 0.10] if forget else [0.20, -0.60, 0.10]
    want_h = torch.tensor([h0, [0.15, 0.0, -0.125]]).t()
    assert torch.allclose(tile.buffer, want_h, atol=1e-6)
    want_c = torch.tensor([[0.2, 0.0], [-0.2, 0.0], [0.0, 0.0]])
    assert torch.allclose(tile.slow.weight, want_c, atol=1e-6)
    assert torch.equal(tile.slow.device_writes, torch.tensor([[2.0, 0], [2, 0], [0, 0]],
                                                             dtype=torch.float64))
    act = tile.activity
    assert (act.transfer_reads, act.transfer_updates, act.transfer_pulse_slots) == (3, 3, 3)
    assert act.transfer_coincidences == pytest.approx(4) and tile.buffer_values == 9
    assert act.updates == 0 and act.adc_conversions == 3 * 3


def test_counts_clamp_at_the_transfer_bl():
    """The same first transfer with transfer BL 3 and forget_buffer false: the counts (1, -2, 0)
    are not clipped, H = omega - 0.75*count*0.2 = (0.10, -0.15, 0.05)."""
    tile = _exact_tile(forget_buffer=False, transfer_desired_bl=3)
    tile.fast.set_weights(torch.tensor([[0.5, 0.3], [-0.9, 0.0], [0.1, -0.25]]))
    tile.transfer()
    assert torch.allclose(tile.buffer[:, 0], torch.tensor([0.10, -0.15, 0.05]), atol=1e-6)
    assert tile.activity.transfer_pulse_slots == 3


def test_without_forgetting_c_plus_h_is_what_v1_writes():
    """TTv2 with thres_scale 1 (one threshold = one pulse = dw_min), forget_buffer false,
    momentum 0 and reads small enough that no device needs more than its one pulse per transfer:
    every read is kept, C + H = transfer_lr * (sum of the reads of each column) exactly (to float
    rounding), which is what Tiki-Taka v1 writes onto C in expectation; H keeps |H| < dw_min."""
    tile = _exact_tile(out_size=5, in_size=4, thres_scale=1.0, momentum=0.0, forget_buffer=False,
                       transfer_lr=1.0, n_reads_per_transfer=3)
    g = torch.Generator().manual_seed(5)
    total = torch.zeros(5, 4, dtype=torch.float64)
    for _ in range(40):
        a = (torch.rand(5, 4, generator=g) * 2 - 1) * 0.1       # |lr*read| < dw_min
        tile.fast.set_weights(a)
        cols = [(tile._next_col + k) % 4 for k in range(3)]
        for j in cols:
            total[:, j] += a[:, j].double()
        tile.transfer()
    assert torch.allclose((tile.slow.weight + tile.buffer).double(), total, atol=1e-5)
    assert tile.buffer.abs().max() < 0.1 and tile.slow.weight.abs().sum() > 1.0


def test_chopped_without_flips_is_v2_bit_for_bit():
    """Chopped TTv2 with in_chop_prob 0 (every chopper stays +1; aihwkit: "identical to
    BufferedTransferCompound if the chopper probabilities are set to 0") is TTv2: the same losses,
    weights, buffers and counts, with transfers every 3 updates, forget_buffer false and momentum
    0 in both (H keeps what was not written)."""
    device = load_device("rpu_baseline")
    settings = dict(transfer_every=3, n_reads_per_transfer=2, momentum=0.0, forget_buffer=False)
    w, v2 = _network(_arch(algorithm=V2, **settings), device)
    _, ch = _network(_arch(algorithm=CHOPPED, in_chop_prob=0.0, **settings), device)
    assert _train(w, v2, 3) == _train(w, ch, 3)
    for a, b in zip(v2.matrices, ch.matrices):
        assert torch.equal(a.weight, b.weight)
        for s, t in zip(a.tiles, b.tiles):
            assert torch.equal(s.buffer, t.buffer) and s.buffer.abs().sum() > 0
            assert bool((t.chopper == 1).all())
    assert v2.activity() == ch.activity() and v2.activity().transfer_coincidences > 0


def test_chopper_flips_at_its_rate_and_cancels_an_offset_of_a():
    """Every transfer reads all 100 columns once; each read flips its column's chopper with
    probability 0.2: over 60 transfers the 6000 draws flip Binomial(6000, 0.2) times (1200, s.d.
    31). A constant offset of A (0.05 everywhere, no gradient) moves C steadily with TTv2; with
    in_chop_prob 0.5 the chopped reads' signs are random and C moves less than a fifth as far."""
    def tile(algorithm, p):
        t = _exact_tile(out_size=4, in_size=100, algorithm=algorithm, n_reads_per_transfer=100,
                        thres_scale=0.1, transfer_lr=0.1, in_chop_prob=p, momentum=0.0)
        t.fast.set_weights(torch.full((4, 100), 0.05))
        return t

    t, flips = tile(CHOPPED, 0.2), 0
    for _ in range(60):
        before = t.chopper.clone()
        t.transfer()
        flips += int((t.chopper != before).sum())
    assert abs(flips - 1200) < 5 * 31
    assert set(t.chopper.tolist()) == {-1.0, 1.0}
    v2, ch = tile(V2, 0.0), tile(CHOPPED, 0.5)
    for _ in range(60):
        v2.transfer()
        ch.transfer()
    assert v2.slow.weight.mean() > 0.5
    assert ch.slow.weight.mean().abs() < 0.2 * v2.slow.weight.mean()


def test_chopped_updates_of_a_carry_the_column_sign():
    """A's rank-one updates of column j are multiplied by its chopper: with the chopper at -1 on
    half the columns, pushing every device up moves those columns of A down (noise-free device)."""
    t = _exact_tile(out_size=2, in_size=4, algorithm=CHOPPED, transfer_every=10**6)
    t.chopper.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    t.update(torch.ones(8, 4), -torch.ones(8, 2), 0.1)
    a = t.fast.weight
    assert bool((a[:, 0::2] > 0).all()) and bool((a[:, 1::2] < 0).all())


def test_buffer_traffic_and_memory_alike_in_both_engines():
    """The values of H the tiles read and write back over two steps equal the schedule's
    ``transfer_buffer`` traffic of its transfer updates; H takes one word per device of each
    matrix in the memory plan, and the transfer updates carry its digital work."""
    arch = _arch(algorithm=V2, transfer_every=4, n_reads_per_transfer=2)
    w, net = _network(arch, load_device("rpu_baseline"))
    _train(w, net, 2)
    values = sum(t.buffer_values for m in net.matrices for t in m.tiles)
    sched = build_schedule(w, arch)
    word = arch.digital.word_bits
    bits = {}
    for op in sched.ops:
        if op.kind == "transfer_update":
            for (comp, act), n in op.actions.items():
                if act == "bit" and comp != "bus":
                    bits[comp] = bits.get(comp, 0.0) + n
    assert values > 0 and values == 2 * sum(bits.values()) / (2 * word)   # 2 steps; load + store
    for m in sched.mapping.matrices:
        assert sched.memory.bytes_kept[(m.name, "transfer_buffer")] == m.rows * m.cols * word / 8
    ops = [op for op in sched.program.ops if op.kind == "transfer_update"]
    m = sched.mapping.matrices[0]
    assert ops[0].pre.counts == {"add": 3 * m.rows * m.col_splits, "mul": 3 * m.rows * m.col_splits}
    assert [a.state for a in ops[0].loads + ops[0].stores] == ["transfer_buffer"] * 2
    sgd = build_schedule(w, _arch(algorithm="tiki_taka", transfer_every=4, n_reads_per_transfer=2))
    assert all((m.name, "transfer_buffer") not in sgd.memory.level for m in sgd.mapping.matrices)


def test_estimate_prints_ttv2_beside_sgd(capsys):
    """``archsim estimate workloads/lstm2x64.yaml --device ecram_tang2018 --algorithm
    tiki_taka_v2`` (issue 14): the buffer H's size, ops, traffic and energy beside the SGD design."""
    args = ["estimate", str(WORKLOADS / "lstm2x64.yaml"), "--device", "ecram_tang2018",
            "--algorithm", V2, "--baselines", ""]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tt, h = data["tiki_taka"], data["tiki_taka"]["buffer"]
    assert tt["algorithm"] == V2 and tt["tiles"] == 2 * tt["sgd"]["tiles"]
    assert h["bytes"] == data["n_weights"] * h["word_bits"] / 8 and h["momentum"] == 0.1
    assert 0 < h["energy_per_step_J"] < tt["transfer_energy_J"]["transfer_update"]
    assert h["digital_ops_per_step"]["add"] > 0 and h["bits_moved_per_step"] > 0
    assert tt["tiki_taka"]["energy_per_step_J"] > tt["sgd"]["energy_per_step_J"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Tiki-Taka v2" in text and "buffer H" in text and "threshold 1 dw_min" in text
    assert main([*args[:-4], "--algorithm", CHOPPED, "--baselines", "", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tiki_taka"]["buffer"]["in_chop_prob"] == 0.1
