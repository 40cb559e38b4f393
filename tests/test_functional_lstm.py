"""The LSTM on tiles: ideal tiles reproduce torch autograd and SGD; split tiles; training learns."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from archsim.functional.config import RPUConfig  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.mapping import split_matrix  # noqa: E402
from archsim.specs import load_architecture, load_device  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(V, H, L, *, device="ideal", arch_overrides=None, dtype=torch.float64, seed=0, **kw):
    arch = load_architecture("rpu2016", overrides=arch_overrides)
    cfg = RPUConfig.from_specs(load_device(device), arch, kw.pop("update_mode", "fast"))
    return AnalogLSTM(V, H, L, cfg, array_rows=arch.array.rows, array_cols=arch.array.cols,
                      seed=seed, dtype=dtype, **kw)


def _torch_twin(model):
    """torch.nn.LSTM + Linear holding the same weights (W = [W_ih | W_hh | b], gates i,f,g,o)."""
    V, H, L = model.shape.vocab_size, model.shape.hidden_size, model.shape.layers
    lstm = torch.nn.LSTM(V, H, L).double()
    out = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        n = V
        for li, m in enumerate(model.layers):
            w = m.weight.double()
            getattr(lstm, f"weight_ih_l{li}").copy_(w[:, :n])
            getattr(lstm, f"weight_hh_l{li}").copy_(w[:, n:n + H])
            getattr(lstm, f"bias_ih_l{li}").copy_(w[:, -1])
            getattr(lstm, f"bias_hh_l{li}").zero_()
            n = H
        w = model.output.weight.double()
        out.weight.copy_(w[:, :H])
        out.bias.copy_(w[:, -1])
    return lstm, out


def _twin_grads(lstm, out, V):
    grads = []
    for li in range(lstm.num_layers):
        grads.append(torch.cat([getattr(lstm, f"weight_ih_l{li}").grad,
                                getattr(lstm, f"weight_hh_l{li}").grad,
                                getattr(lstm, f"bias_ih_l{li}").grad[:, None]], 1))
    grads.append(torch.cat([out.weight.grad, out.bias.grad[:, None]], 1))
    return grads


@pytest.mark.parametrize("arch_overrides, n_tiles", [
    (None, 3),                                      # 4096x4096 arrays: one tile per matrix
    ({"array.rows": 8, "array.cols": 8}, 3 * 2 + 3 * 2 + 1),   # 20x13, 20x11 split; 7x6 fits
])
def test_ideal_tiles_reproduce_autograd_and_sgd(arch_overrides, n_tiles):
    V, H, L, T, B, lr = 7, 5, 2, 6, 3, 0.3
    model = _model(V, H, L, arch_overrides=arch_overrides)
    assert model.n_tiles == n_tiles
    lstm, out = _torch_twin(model)
    before = [m.weight.clone() for m in model.matrices]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (T, B), generator=g)
    targets = torch.randint(0, V, (T, B), generator=g)
    h0 = 0.3 * torch.randn(L, B, H, generator=g, dtype=torch.float64)
    c0 = 0.3 * torch.randn(L, B, H, generator=g, dtype=torch.float64)

    loss, state = model.train_step(ids, targets, [(h0[i], c0[i]) for i in range(L)], lr)

    hs, (hT, cT) = lstm(torch.nn.functional.one_hot(ids, V).double(), (h0, c0))
    ref = torch.nn.functional.cross_entropy(out(hs).reshape(-1, V), targets.reshape(-1))
    (ref * T).backward()  # the gradient convention: summed over time, mean over the batch
    assert loss == pytest.approx(ref.item(), abs=1e-12)
    for i in range(L):
        assert torch.allclose(state[i][0], hT[i], atol=1e-12)
        assert torch.allclose(state[i][1], cT[i], atol=1e-12)
    for m, w0, grad in zip(model.matrices, before, _twin_grads(lstm, out, V)):
        assert grad.abs().max() > 1e-3  # a real gradient, not zeros
        applied = (w0 - m.weight) / lr
        assert torch.allclose(applied, grad, atol=1e-5, rtol=1e-5), m.name
        assert torch.allclose(m.weight, w0 - lr * grad, atol=1e-5)
        assert all(t.activity.updates == T * B for t in m.tiles)  # K = T*B rank-one updates


def test_split_follows_mapping_split_matrix():
    model = _model(11, 6, 2, arch_overrides={"array.rows": 8, "array.cols": 8})
    for m in model.matrices:
        assert m.blocks == split_matrix(m.rows, m.cols, 8, 8, m.name)
        for b, t in zip(m.blocks, m.tiles):
            assert tuple(t.weight.shape) == (b.rows, b.cols)
    w = torch.arange(24 * 18, dtype=torch.float64).view(24, 18) / 1000
    model.layers[0].set_weights(w)
    assert torch.equal(model.layers[0].weight, w)
    u = torch.randn(4, 18, dtype=torch.float64)
    assert torch.allclose(model.layers[0].mvm(u), u @ w.t())          # partial sums added
    d = torch.randn(4, 24, dtype=torch.float64)
    assert torch.allclose(model.layers[0].mvm_t(d), d @ w)


def test_float32_matches_twin_and_dropout_clip_are_deterministic():
    V, H, T, B = 6, 4, 5, 2
    ids = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(2))
    a = _model(V, H, 2, dtype=torch.float32, dropout=0.3, grad_clip=0.01, seed=5)
    b = _model(V, H, 2, dtype=torch.float32, dropout=0.3, grad_clip=0.01, seed=5)
    la, _ = a.train_step(ids, ids, a.zero_state(B), 0.5)
    lb, _ = b.train_step(ids, ids, b.zero_state(B), 0.5)
    assert la == lb and all(torch.equal(x.weight, y.weight) for x, y in zip(a.matrices, b.matrices))
    # clipping: every recorded delta is within +-grad_clip (and some reach it)
    logits, _ = a.forward(ids, a.zero_state(B), train=True)
    a.backward(torch.ones_like(logits))
    recorded = [m.recorded[1] for m in a.matrices]
    assert max(float(d.abs().max()) for d in recorded) == pytest.approx(0.01)
    for m in a.matrices:
        m.reset_records()
    with pytest.raises(RuntimeError, match="forward"):
        a.backward(torch.ones_like(logits))   # a backward per training forward


def _repetitive_ids(V, n, seed=0):
    # a text with structure: a fixed random "sentence" repeated, so a small LSTM learns it quickly
    g = torch.Generator().manual_seed(seed)
    sentence = torch.randint(0, V, (23,), generator=g)
    return sentence.repeat(n // 23 + 1)[:n]


@pytest.mark.parametrize("device, lr, ratio", [
    ("ideal", 0.5, 0.6), ("rpu_baseline", 0.5, 0.6),
    ("soft_bounds", 0.5, 0.9),   # learns more slowly; it went NaN before the bound floor
])
def test_few_hundred_steps_reduce_the_loss(device, lr, ratio):
    V, H, T, B, steps = 12, 16, 10, 4, 300
    model = _model(V, H, 1, device=device, dtype=torch.float32, seed=3)
    ids = _repetitive_ids(V, B * (T * steps // 10 + 1) + 1)
    from archsim.functional.data import StreamBatches

    batches = StreamBatches(ids, B, T)
    state, losses = model.zero_state(B), []
    for k in range(steps):
        x, y = batches.batch(k % len(batches))
        loss, state = model.train_step(x, y, state, lr)
        losses.append(loss)
    first, last = sum(losses[:10]) / 10, sum(losses[-30:]) / 30
    assert first == pytest.approx(math.log(V), abs=0.3)
    assert last < ratio * first, (device, first, last)
    if device != "ideal":
        a = model.activity()
        assert a.updates == steps * T * B * 2 and a.coincidences > 0 and a.pulse_slots > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available on this machine")
def test_cuda_matches_cpu_for_ideal_tiles():
    V, H, T, B = 9, 8, 6, 3
    ids = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(4))
    cpu = _model(V, H, 2, dtype=torch.float64)
    gpu = AnalogLSTM(V, H, 2, cpu.layers[0].tiles[0].config, array_rows=4096, array_cols=4096,
                     seed=0, dtype=torch.float64, device="cuda")
    lc, _ = cpu.train_step(ids, ids, cpu.zero_state(B), 0.2)
    lg, _ = gpu.train_step(ids, ids, gpu.zero_state(B), 0.2)
    assert lc == pytest.approx(lg, abs=1e-9)
    for a, b in zip(cpu.matrices, gpu.matrices):
        assert torch.allclose(a.weight, b.weight.cpu(), atol=1e-9)
    noisy = _model(V, H, 2, device="rpu_baseline", dtype=torch.float32)
    noisy_gpu = AnalogLSTM(V, H, 2, noisy.layers[0].tiles[0].config, array_rows=4096,
                           array_cols=4096, seed=0, device="cuda")
    loss, _ = noisy_gpu.train_step(ids, ids, noisy_gpu.zero_state(B), 0.2)
    assert math.isfinite(loss) and abs(loss - math.log(V)) < 0.5


def test_a_cpu_network_flushes_subnormal_floats_to_zero():
    """Saturated gates give activations below float32's smallest normal number, on which x86
    arithmetic is many times slower (benchmarks/denormals.py): a CPU network flushes them."""
    torch.set_flush_denormal(False)
    x = torch.full((4,), 1e-39)
    assert float((x * 1.0)[0]) > 0          # subnormal arithmetic before
    AnalogLSTM(5, 4, 1, RPUConfig.from_specs(load_device("ideal"), load_architecture("rpu2016")),
               array_rows=64, array_cols=64)
    assert float((x * 1.0)[0]) == 0.0       # flushed after
