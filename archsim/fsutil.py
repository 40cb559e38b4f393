"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check, before anything is computed or written, that ``path`` can become an output folder.

    Raises a one-line :class:`~archsim.errors.SpecError` (exit 2) when ``path`` is an existing file,
    sits below a file, or its nearest existing ancestor cannot be written to (probed by creating
    and removing a temporary file there, so that a read-only file system counts even for root).
    Creates nothing that stays behind.
    """
    from archsim.errors import SpecError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpecError("command line", flag, str(path), "a folder to write into (this is a file)")
    probe = path
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe.exists() and not probe.is_dir():
        raise SpecError("command line", flag, str(path), f"a folder to write into ({probe} is a file)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".archsim-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError("command line", flag, str(path),
                        f"a folder you can write to ({probe}: {reason.lower()})") from None
    return path


def write_files_together(folder: str | Path, files: dict[str, bytes | str]) -> list[Path]:
    """Write several files that belong together (report.json beside report.md) so that two runs
    writing into the same folder at once cannot leave one run's file beside the other's: each file
    is written atomically, and the set under an exclusive ``flock`` on the folder itself (Linux
    and macOS lock a directory's descriptor; nothing is left behind)."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name, data in files.items():
            blob = data.encode("utf-8") if isinstance(data, str) else data
            written.append(atomic_write_bytes(folder / name, blob))
    finally:
        os.close(fd)   # releases the lock
    return written
