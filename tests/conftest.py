"""Shared test fixtures and helpers: repository paths, the shared data sets, tiny specs and sweeps,
a stand-in trainer, and the population-versus-separate-tiles comparisons."""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = REPO / "workloads"
TINY = WORKLOADS / "tiny.yaml"


def tiny_specs(device="rpu_baseline", **overrides):
    """The tiny workload (dotted-path ``overrides``) on rpu2016 with ``device``: the train tests' specs."""
    from archsim.specs import load_architecture, load_device, load_workload

    w = load_workload(TINY, overrides=overrides or None)
    return w, load_architecture("rpu2016"), load_device(device)


#: The sweep tests' base workload: a 1x8 LSTM that trains in well under a second.
TINY_SWEEP_BASE = """\
name: tiny_sweep_base
model: {layers: 1, hidden_size: 8, vocab_size: 16}
training: {seq_len: 10, batch_size: 2, train_chars: 2000, learning_rate: 0.1}
architecture: rpu2016
device: rpu_baseline
baselines: []
"""


def write_sweep(folder: Path, body: str, name: str = "s.yaml") -> Path:
    """``body`` (dedented) as a sweep file over TINY_SWEEP_BASE, written into ``folder``."""
    import textwrap

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(TINY_SWEEP_BASE)
    path = folder / name
    path.write_text("base: tiny.yaml\n" + textwrap.dedent(body))
    return path


def write_echo_sweep(folder: Path, n_points: int, sleep_s: float) -> Path:
    """A sweep of ``n_points`` echo points (no model) that each sleep ``sleep_s``: something to
    interrupt. The sleep is not part of a point's key, so a resume may drop it."""
    return write_sweep(folder, f"""\
        axes:
          workload.training.batch_size: {list(range(1, n_points + 1))}
        kind: echo
        echo: {{sleep_s: {sleep_s}}}
        """)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_sweep_process(path: Path, out: Path, stderr, jobs: int = 2):
    """``archsim sweep`` in a child process of its own session, so that a signal to the group
    reaches its pool workers too (a killed machine kills everything); stdout is discarded."""
    import subprocess

    cmd = [sys.executable, "-m", "archsim", "sweep", str(path), "--out", str(out), "--jobs",
           str(jobs), "--no-progress"]
    return subprocess.Popen(cmd, cwd=path.parent, stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)


def shared_data_dir() -> Path | None:
    """$ARCHSIM_DATA_DIR, else ../shared/data beside the repository; None when absent."""
    for candidate in (os.environ.get("ARCHSIM_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


class FakeTrainResult:
    """What the sweep's training evaluator reads of a :class:`archsim.functional.train.TrainResult`,
    for tests that replace the trainer with a stand-in (:func:`install_fake_train`); ``extra``
    fields (e.g. ``epochs``) are stored as given, and only they."""

    def __init__(self, train_loss: float, valid_loss: float, test_loss: float, chars_seen: int,
                 seconds: float, curve: list, **extra):
        vars(self).update(train_loss=train_loss, valid_loss=valid_loss, test_loss=test_loss,
                          chars_seen=chars_seen, seconds=seconds, curve=curve, **extra)


def install_fake_train(monkeypatch, train) -> None:
    """Replace ``archsim.functional.train`` (the module, only it: the rest of the package, such as
    checkpoint descriptions and curves, stays real, so a test passes alone as after others) by one
    whose ``train`` is the given stand-in. In-process sweeps only (``--jobs 1``)."""
    import archsim.functional as functional

    module = types.ModuleType("archsim.functional.train")
    module.train = train
    monkeypatch.setattr(functional, "train", module, raising=False)
    monkeypatch.setitem(sys.modules, "archsim.functional.train", module)


@pytest.fixture
def workloads() -> Path:
    return WORKLOADS


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """A small UTF-8 text (2,500 random words of ten kinds) for quick training runs."""
    import random

    rng = random.Random(0)
    words = ["the", "array", "pulse", "weight", "update", "noise", "tile", "device", "of", "and"]
    text = " ".join(rng.choice(words) for _ in range(2500)) + "\n"
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch CPU thread (the functional simulator's small-model setting),
    restoring the previous count afterwards."""
    import torch  # here, not at module level: the estimate tests must not need torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_rows_equal_member_tiles(pop, singles, members, x, d, label=()):
    """A population tile's forward, read, backward and backward over some columns of the rows
    ``x [R, in]`` / ``d [R, out]`` (ordered (m, member, sequence)) equal, row by row, those of
    each member's one-member tile in ``singles`` (float64: to 1e-12)."""
    import torch  # here, not at module level: the estimate tests must not need torch

    member = members.member_of(torch.arange(x.shape[0]))
    ops = [("forward", x, lambda t, v: t.forward(v)),
           ("read", x, lambda t, v: t.read(v)),
           ("backward", d, lambda t, v: t.backward(v)),
           ("backward_cols", d, lambda t, v: t.backward(v, cols=slice(2, 7)))]
    for name, v, op in ops:
        got = op(pop, v)
        for k, t in enumerate(singles):
            rows = (member == k).nonzero().squeeze(1)
            want = op(t, v[rows])
            assert torch.allclose(got[rows], want, rtol=0, atol=1e-12), (*label, name, k)


def separate_tile_forwards(cfg, w0, x, seed: int, n: int):
    """The forward MVMs of ``n`` one-member tiles that a population's members stand for: the same
    devices (drawn from ``seed + 2``) and weights ``w0``, each on its own stream
    (``seed + 1000 + i``); stacked, one row per tile."""
    import torch

    from archsim.functional.tile import AnalogTile

    out, inp = w0.shape
    ys = []
    for i in range(n):
        t = AnalogTile(out, inp, cfg, generator=torch.Generator().manual_seed(seed + 2))
        t.generator = torch.Generator().manual_seed(seed + 1000 + i)
        t.set_weights(w0)
        ys.append(t.forward(x))
    return torch.stack(ys)


def draw_statistics(pop, single) -> tuple[float, float]:
    """Two sets of draws (first dimension: the draw) compared per element: the mean squared z of
    the difference of their means (about 1 when both come from one distribution) and the ratio
    of their mean variances (about 1)."""
    n_pop, n_single = pop.shape[0], single.shape[0]
    assert float(pop.var(0).min()) > 0 and float(single.var(0).min()) > 0, "nothing random drawn"
    z = (pop.mean(0) - single.mean(0)) / (pop.var(0) / n_pop + single.var(0) / n_single).sqrt()
    return float((z * z).mean()), float(pop.var(0).mean() / single.var(0).mean())

