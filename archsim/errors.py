"""User-facing errors: one line naming the file, the field path, the bad value and what is allowed."""
from __future__ import annotations

#: Exit status for bad input (a spec, a flag, a data file).
EXIT_BAD_INPUT = 2


class ArchsimError(Exception):
    """Base class of errors the CLI turns into one line and a non-zero exit status."""

    exit_status = 1


class SpecError(ArchsimError):
    """Bad input: the message is the single line a user sees."""

    exit_status = EXIT_BAD_INPUT

    def __init__(self, file: object, path: str, value: object, allowed: str, line: int | None = None):
        self.file, self.path, self.value, self.allowed, self.line = file, path, value, allowed, line
        where = f"{file}:{line}" if line else f"{file}"
        shown = _short(value)
        field = f" {path}:" if path else ""
        super().__init__(f"{where}:{field} got {shown}; {allowed}")


class DivergenceError(ArchsimError):
    """Training produced NaN/inf or diverged."""

    exit_status = 3
    #: Seconds the run had trained when it diverged, by its own clock (over all the segments it
    #: was resumed in); set by the trainers, None where unknown.
    seconds: float | None = None


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
