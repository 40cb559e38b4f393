"""Character data: encoding, 90/5/5 split, stream batches, file errors, data-file lookup."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archsim.errors import SpecError  # noqa: E402
from archsim.functional import data as D  # noqa: E402
from archsim.specs import load_workload  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_vocab_sorted_and_split_contiguous():
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))
    c = D.corpus_from_text(text, train_fraction=0.9, batch_size=2, seq_len=5)
    assert c.vocab == sorted(set(text))
    assert (len(c.train), len(c.valid), len(c.test)) == (900, 50, 50)
    assert c.decode(torch.cat([c.train, c.valid, c.test])) == text  # by position, no shuffling
    assert c.decode(c.encode("abc")) == "abc"


def test_stream_batches_continue_each_stream():
    ids = torch.arange(2 * 23)
    sb = D.StreamBatches(ids, batch_size=2, seq_len=5)
    assert len(sb) == 4  # 23 chars per stream, 22 usable as inputs -> 4 whole windows
    x0, y0 = sb.batch(0)
    x1, _ = sb.batch(1)
    assert x0.shape == (5, 2)
    assert x0[:, 0].tolist() == [0, 1, 2, 3, 4] and x0[:, 1].tolist() == [23, 24, 25, 26, 27]
    assert y0[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert x1[:, 0].tolist() == [5, 6, 7, 8, 9]  # step 1 continues stream 0
    ev = D.StreamBatches(ids, batch_size=2, seq_len=5, drop_last=False)
    assert len(ev) == 5 and ev.batch(4)[0].shape == (2, 2)  # evaluation covers every character
    assert ev.chars_per_pass == 2 * 22


def test_read_text_strips_bom_and_normalises_line_ends(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("\ufeffab\r\ncd\ref".encode("utf-8"))
    assert D.read_text(f) == "ab\ncd\nef"


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"hello\x00world" * 100, "NUL byte"),
    (b"caf\xe9 " * 100, "UTF-8"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, words):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(SpecError) as err:
        D.load_corpus(f, batch_size=2, seq_len=5)
    msg = str(err.value)
    assert "\n" not in msg and str(f) in msg and words in msg


def test_too_short_file(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("x" * 300, encoding="utf-8")
    with pytest.raises(SpecError, match="too short.*batch_size\\*seq_len\\+1 = 321"):
        D.load_corpus(f, batch_size=32, seq_len=10)
    assert D.load_corpus(f, batch_size=1, seq_len=10).vocab == ["x"]


def test_default_corpus_is_stdlib_and_deterministic():
    a = D.default_corpus_text(max_chars=50_000)
    assert 0 < len(a) <= 50_000
    assert a == D.default_corpus_text(max_chars=50_000)
    assert "def " in a and "import" in a


def test_data_lookup_order(tmp_path, monkeypatch):
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "w.yaml").write_text((REPO / "workloads" / "tiny.yaml").read_text())
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "corpus.txt").write_text("from env dir " * 50)
    w = load_workload(wdir / "w.yaml", overrides={"training.data": "corpus.txt"})
    monkeypatch.setenv("ARCHSIM_DATA_DIR", str(env_dir))
    assert D.resolve_data_path(None, w) == env_dir / "corpus.txt"
    (wdir / "corpus.txt").write_text("next to the workload " * 50)
    assert D.resolve_data_path(None, w) == wdir / "corpus.txt"  # the workload's folder first
    other = tmp_path / "other.txt"
    other.write_text("flag " * 100)
    assert D.resolve_data_path(str(other), w) == other  # --data wins
    with pytest.raises(SpecError, match="--data"):
        D.resolve_data_path(str(tmp_path / "missing.txt"), w)
    w2 = load_workload(wdir / "w.yaml", overrides={"training.data": "nowhere.txt"})
    with pytest.raises(SpecError, match="training.data.*ARCHSIM_DATA_DIR"):
        D.resolve_data_path(None, w2)
    assert D.resolve_data_path(None, load_workload(REPO / "workloads" / "tiny.yaml")) is None


def test_repo_shared_data_dir_is_found_without_env(monkeypatch):
    monkeypatch.delenv("ARCHSIM_DATA_DIR", raising=False)
    assert D.repo_data_dir() == REPO.parent / "shared" / "data"
    if not (D.repo_data_dir() / "warpeace_input.txt").is_file():
        pytest.skip("../shared/data/warpeace_input.txt not present")
    w = load_workload(REPO / "workloads" / "lstm2x64.yaml")
    assert D.resolve_data_path(None, w) == D.repo_data_dir() / "warpeace_input.txt"
