"""A checkpoint names its data by content: the same text under another path (another machine, a
sweep's committed checkpoint) resumes; another text does not."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("torch")

from archsim.errors import SpecError  # noqa: E402
from archsim.functional.train import train  # noqa: E402
from archsim.specs import load_architecture, load_device, load_workload  # noqa: E402

TEXT = "a stitch in time saves nine; " * 80
WORKLOAD = """\
name: resume_paths
model: {layers: 1, hidden_size: 8, vocab_size: 32}
training: {seq_len: 10, batch_size: 2, learning_rate: 0.1, epochs: 1, train_chars: 2000}
architecture: rpu2016
device: rpu_baseline
baselines: []
"""


def test_a_checkpoint_resumes_with_the_same_text_elsewhere(tmp_path):
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    w = load_workload(str(tmp_path / "w.yaml"))
    arch, dev = load_architecture("rpu2016"), load_device("rpu_baseline")
    here, there = tmp_path / "a", tmp_path / "b"
    here.mkdir(), there.mkdir()
    (here / "text.txt").write_text(TEXT)
    (there / "copy.txt").write_text(TEXT)
    whole = train(w, arch, dev, data_path=here / "text.txt", max_chars=400, seed=1, progress=False)
    out = tmp_path / "out"
    train(w, arch, dev, data_path=here / "text.txt", max_chars=200, seed=1, out_dir=out, progress=False)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    again = train(w, arch, dev, data_path=there / "copy.txt", max_chars=400, seed=1, out_dir=moved,
                  resume=True, progress=False)
    assert again.test_loss == whole.test_loss and again.steps == whole.steps
    (there / "other.txt").write_text(TEXT.replace("nine", "ten!"))
    with pytest.raises(SpecError, match="checkpoint"):
        train(w, arch, dev, data_path=there / "other.txt", max_chars=400, seed=1, out_dir=out,
              resume=True, progress=False)
