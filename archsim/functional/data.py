"""Character-level language-model data: any UTF-8 text, a 90/5/5 split, B parallel streams of T chars.

Conventions (those of the char-rnn papers, Karpathy et al. 2015; Gokmen, Rasch & Haensch 2018):

* The vocabulary is every distinct character of the whole text, sorted by code point; a leading
  byte-order mark is stripped first and line ends are read as Python's text mode reads them
  (CRLF and CR become LF), so War and Peace has 3,203,272 characters and 148 distinct ones.
* The text is split by position, without shuffling: the first ``train_fraction`` is the training
  split, the rest is halved into validation and test (90/5/5 by default).
* A split of ``n`` characters is cut into ``B`` contiguous streams of ``n // B`` characters
  (Karpathy's char-rnn layout). Step ``k`` reads characters ``[kT, kT+T)`` of every stream as input
  and ``[kT+1, kT+T+1)`` as targets, so successive steps continue each stream and the LSTM's hidden
  state is *carried* from one step to the next (truncated BPTT; gradients stop at the step
  boundary). The trainer resets the state at the start of every epoch and of every evaluation.
* Without a file the default corpus is the Python standard library's own source: every ``*.py``
  file under ``sysconfig.get_paths()["stdlib"]`` (site-/dist-packages excluded) in sorted path order,
  concatenated, stopping at the last whole file before :data:`DEFAULT_CORPUS_CHARS` characters.
  It exists wherever archsim runs; its exact content depends on the Python version.
"""
from __future__ import annotations

import hashlib

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from archsim.errors import SpecError
from archsim.specs.loader import MAX_TEXT_BYTES, read_spec_bytes

#: Size cap of the default (Python standard library) corpus, in characters.
DEFAULT_CORPUS_CHARS = 2_000_000

#: Name shown for the default corpus in results and errors.
DEFAULT_CORPUS_NAME = "<python-stdlib>"


def repo_data_dir() -> Path:
    """The ``shared/data`` folder beside the repository (``<repo>/../shared/data``)."""
    import archsim

    return Path(archsim.__file__).resolve().parents[2] / "shared" / "data"


def resolve_data_path(data: str | Path | None, workload=None) -> Path | None:
    """Find the text file to train on; ``None`` means the default corpus.

    Order: ``data`` (the ``--data`` flag, taken as given) > the workload's ``training.data``
    resolved against the workload file's folder, then ``$ARCHSIM_DATA_DIR``, then
    ``<repo>/../shared/data``. A name that is found nowhere is a :class:`SpecError`.
    """
    if data is not None:
        path = Path(data).expanduser()
        if not path.is_file():
            raise SpecError("command line", "--data", str(data),
                            "no such file" if not path.exists() else "expected a text file")
        return path
    if workload is None or workload.training.data is None:
        return None
    name = workload.training.data
    candidates = []
    own = workload.data_path()
    if own is not None:
        candidates.append(own)
    if not Path(name).expanduser().is_absolute():
        if os.environ.get("ARCHSIM_DATA_DIR"):
            candidates.append(Path(os.environ["ARCHSIM_DATA_DIR"]).expanduser() / name)
        candidates.append(repo_data_dir() / name)
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p.parent) for p in candidates)
    origin = workload._origin or "workload"
    raise SpecError(f"{origin}/ (workload {workload.name})", "training.data", name,
                    f"file not found in {where}; pass --data FILE or set ARCHSIM_DATA_DIR")


def default_corpus_text(max_chars: int = DEFAULT_CORPUS_CHARS) -> str:
    """The Python standard library's ``*.py`` sources, sorted by path, whole files up to ``max_chars``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        (p for p in root.rglob("*.py")
         if not ({"site-packages", "dist-packages"} & set(p.relative_to(root).parts))),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    parts, total = [], 0
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a few test fixtures are deliberately not UTF-8
        if "\x00" in text:
            continue
        text = text.removeprefix("\ufeff")
        if total + len(text) > max_chars:
            if total:
                break
            continue
        parts.append(text)
        total += len(text)
    return "".join(parts)


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM stripped), or raise a one-line :class:`SpecError`."""
    raw = read_spec_bytes(Path(path), limit=MAX_TEXT_BYTES, what="text file")
    if not raw:
        raise SpecError(path, "", "an empty file", "expected UTF-8 text")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise SpecError(path, "", f"NUL byte at offset {nul}",
                        "expected UTF-8 text, not a binary file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"byte {raw[exc.start]:#04x} at offset {exc.start}",
                        "expected UTF-8 text (another encoding such as Latin-1? re-encode it as UTF-8)") from None
    # Universal newlines, as Python's text mode reads files: CRLF and CR become LF.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise SpecError(path, "", "only a byte-order mark", "expected UTF-8 text")
    return text


@dataclass
class CharCorpus:
    """A text encoded as character ids and split by position into train / valid / test."""

    source: str
    vocab: list[str]
    train: torch.Tensor  # int64 ids
    valid: torch.Tensor
    test: torch.Tensor
    digest: str = ""
    """SHA-256 (first 16 hex digits) of the text: what a run's checkpoint key names the data by,
    so that the same text under another path (another machine) resumes."""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_chars(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def corpus_from_text(text: str, *, train_fraction: float = 0.9, source: str = "<text>",
                     batch_size: int = 1, seq_len: int = 1) -> CharCorpus:
    """Encode ``text`` and split it; each split must hold at least one batch (``B*T + 1`` chars)."""
    if not 0 < train_fraction < 1:
        raise SpecError(source, "training.train_fraction", train_fraction,
                        "expected a fraction below 1 (validation and test need characters)")
    vocab = sorted(set(text))
    lut = {c: i for i, c in enumerate(vocab)}
    # Encode through a code-point lookup table: ~50x faster than a per-character dict lookup.
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    table = torch.full((max(map(ord, vocab)) + 1,), -1, dtype=torch.long)
    for c, i in lut.items():
        table[ord(c)] = i
    ids = table[codes]
    n = len(ids)
    n_train = int(n * train_fraction)
    n_valid = (n - n_train) // 2
    need = batch_size * seq_len + 1
    splits = {"train": ids[:n_train], "valid": ids[n_train:n_train + n_valid],
              "test": ids[n_train + n_valid:]}
    for name, part in splits.items():
        if len(part) < need:
            raise SpecError(source, "", f"{n} characters ({len(part)} in the {name} split)",
                            f"too short: every split needs at least batch_size*seq_len+1 = {need} "
                            f"characters, i.e. a text of about {int(need / min(train_fraction, (1 - train_fraction) / 2)) + 1}")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return CharCorpus(source, vocab, splits["train"], splits["valid"], splits["test"], digest)


def load_corpus(path: Path | None, *, train_fraction: float = 0.9, batch_size: int = 1,
                seq_len: int = 1) -> CharCorpus:
    """Load a text file (or the default corpus when ``path`` is None) as a :class:`CharCorpus`."""
    if path is None:
        return corpus_from_text(default_corpus_text(), train_fraction=train_fraction,
                                source=DEFAULT_CORPUS_NAME, batch_size=batch_size, seq_len=seq_len)
    path = Path(path)
    return corpus_from_text(read_text(path), train_fraction=train_fraction, source=str(path),
                            batch_size=batch_size, seq_len=seq_len)


class StreamBatches:
    """B contiguous streams over one split; batch ``k`` is ``(inputs, targets)`` of shape [T, B].

    The last batch of a split may be shorter than T when ``drop_last`` is False (evaluation covers
    every character); training uses whole batches only.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, *, drop_last: bool = True):
        self.batch_size, self.seq_len = batch_size, seq_len
        length = len(ids) // batch_size
        # [B, L] -> [L, B]: time-major, so that batch k is a contiguous slice.
        self.streams = ids[: length * batch_size].view(batch_size, length).t().contiguous()
        usable = length - 1  # the last character of a stream is only a target
        self.n_batches = (StreamBatches.steps_per_epoch(len(ids), batch_size, seq_len) if drop_last
                          else -(-usable // seq_len))
        self.usable = usable

    @staticmethod
    def steps_per_epoch(n_ids: int, batch_size: int, seq_len: int) -> int:
        """The whole batches (training steps) of a split of ``n_ids`` characters, without building
        them: ``len(StreamBatches(ids, batch_size, seq_len))``."""
        return (n_ids // batch_size - 1) // seq_len

    def __len__(self) -> int:
        return self.n_batches

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = k * self.seq_len
        t1 = min(t0 + self.seq_len, self.usable)
        return self.streams[t0:t1], self.streams[t0 + 1:t1 + 1]

    def __iter__(self):
        for k in range(self.n_batches):
            yield self.batch(k)

    @property
    def chars_per_pass(self) -> int:
        """Target characters one pass covers."""
        return self.batch_size * min(self.n_batches * self.seq_len, self.usable)
