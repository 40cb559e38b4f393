"""Append-only JSONL results file that survives kills and concurrent writers.

Each line is one finished point::

    {"key": ..., "point": {axis: value}, "seed": 0, "kind": "estimate", "result": {...},
     "seconds": 1.2, "archsim_version": "0.1.0"}

``seconds`` is the wall time of the process segment that wrote the record. For a training run
that resumed from a checkpoint that is the last segment alone; the run's own clock, summed over
its segments, is ``result["seconds"]`` (what the sweep's summary and the reproduction's pace read).

Or, for a point that failed (its specs cannot be computed; not retried on resume), ``"failed": true``
and ``"error": {"type", "message", "exit_status"}`` instead of ``"result"``.

Why it cannot lose or duplicate a point:

* a record is appended with one ``write()`` of the whole line (O_APPEND), then fsync, all under an
  exclusive ``flock`` on the file, so concurrent writers never interleave;
* a process killed inside that write can leave only a torn *last* line (no newline): readers ignore
  it, and the next writer (holding the lock) truncates it before appending, so the point it held is
  simply computed again;
* before appending, the writer reads the lines other writers added since it last looked and skips
  a key that is already there, so two sweeps sharing a file still write each key once.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

try:  # POSIX advisory locks; elsewhere a single writer per file is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_CHUNK = 1 << 16


class ResultsStore:
    """One results file: read finished records, append new ones atomically per line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: key -> first record with that key, as read so far.
        self.records: dict[str, dict[str, Any]] = {}
        #: Complete lines that were not valid records (ignored; should stay 0).
        self.bad_lines = 0
        #: Byte offset up to which the file has been read (always at a line boundary).
        self._offset = 0

    # -- reading ---------------------------------------------------------------------------
    def load(self) -> dict[str, dict[str, Any]]:
        """Read every complete line; a torn last line is ignored. Returns key -> record."""
        self.records, self.bad_lines, self._offset = {}, 0, 0
        if self.path.exists():
            with open(self.path, "rb") as fh:
                self._read_from(fh.fileno(), os.fstat(fh.fileno()).st_size)
        return self.records

    def done_keys(self) -> set[str]:
        return set(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def _read_from(self, fd: int, size: int) -> None:
        """Parse complete lines between ``self._offset`` and ``size``."""
        if size <= self._offset:
            return
        blob = os.pread(fd, size - self._offset, self._offset)
        end = blob.rfind(b"\n")
        if end < 0:
            return  # only a torn line so far
        for raw in blob[: end + 1].splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                key = record["key"]
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            self.records.setdefault(key, record)
        self._offset += end + 1

    # -- writing ---------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> bool:
        """Append one record as one line; False (nothing written) if its key is already there."""
        line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=_jsonable)
                + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = _drop_torn_tail(fd)
            self._offset = min(self._offset, size)
            self._read_from(fd, size)  # catch up with other writers
            if record["key"] in self.records:
                return False
            _write_all(fd, line)
            os.fsync(fd)
            self.records[record["key"]] = json.loads(line)
            self._offset = size + len(line)
            return True
        finally:
            os.close(fd)  # closing releases the lock


def _drop_torn_tail(fd: int) -> int:
    """Truncate a partial last line (a writer killed mid-write); returns the file size after."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            keep = start + nl + 1
            break
        pos = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return keep


def _write_all(fd: int, data: bytes) -> None:
    # One write() for the whole line; the loop only matters if the kernel writes part of it
    # (disk full, signal) -- we still hold the lock, so nobody can interleave.
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _jsonable(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays and paths in results."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
