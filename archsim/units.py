"""Physical quantities written as human strings ("80 ns", "1.5 pJ", "1.2 GHz") or SI floats.

Everything inside archsim is an SI float; this module is the only place that reads units.
"""
from __future__ import annotations

import math
import re

#: SI prefixes accepted in front of a unit symbol.
PREFIXES = {
    "a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6,
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    # Binary prefixes (memory capacities: "64 KiB", "16 GiB").
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
}

#: Dimension name -> {unit symbol: factor to the SI unit of that dimension}.
UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0},
    "energy": {"J": 1.0, "Wh": 3600.0},
    "frequency": {"Hz": 1.0},
    "power": {"W": 1.0},
    "area": {"m2": 1.0, "m^2": 1.0, "m²": 1.0},
    "resistance": {"Ohm": 1.0, "ohm": 1.0, "Ω": 1.0},
    "voltage": {"V": 1.0},
    "bandwidth": {"B/s": 8.0, "bit/s": 1.0, "b/s": 1.0},
    "rate": {"op/s": 1.0, "OP/s": 1.0, "FLOP/s": 1.0, "S/s": 1.0},
    "size": {"B": 1.0, "bit": 0.125},
}

#: What a user should write for each dimension (used in error messages).
EXAMPLES = {
    "time": '"80 ns" or seconds', "energy": '"1.5 pJ" or joules',
    "frequency": '"1.2 GHz" or hertz', "power": '"300 W" or watts',
    "area": '"0.0012 mm2" or square metres', "resistance": '"24 MOhm" or ohms',
    "voltage": '"1 V" or volts', "bandwidth": '"900 GB/s" or bit/s',
    "rate": '"15.7 TFLOP/s" or op/s', "size": '"64 KiB", "8 MiB" or bytes',
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([^\s\d].*?)?\s*$")


class UnitError(ValueError):
    """A quantity string could not be read in the requested dimension."""


def _unit_factor(unit: str, dimension: str) -> float:
    table = UNITS[dimension]
    # "/bit" and "per bit" suffixes are accepted for per-bit energies: "0.08 pJ/bit".
    unit = re.sub(r"\s*(/|per\s+)(bit|conv|op|pulse|action)$", "", unit)
    if dimension == "area" and unit.endswith(("m2", "m^2", "m²")):
        prefix = unit[: -len(next(s for s in ("m^2", "m2", "m²") if unit.endswith(s)))]
        if prefix in PREFIXES:
            return PREFIXES[prefix] ** 2
    for symbol, factor in table.items():
        if unit.endswith(symbol):
            prefix = unit[: -len(symbol)]
            if prefix in PREFIXES:
                return PREFIXES[prefix] * factor
    raise UnitError(unit)


def parse_quantity(value: object, dimension: str) -> float:
    """Return ``value`` as an SI float of ``dimension``.

    Accepts ints/floats (already SI) and strings "<number> <prefix><unit>".
    Raises :class:`UnitError` with a message saying what is allowed.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a {dimension} such as {EXAMPLES[dimension]}")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise UnitError(f"expected a {dimension} such as {EXAMPLES[dimension]}")
        number, unit = match.groups()
        if unit is None:
            out = float(number)
        else:
            try:
                out = float(number) * _unit_factor(unit.strip(), dimension)
            except UnitError:
                raise UnitError(
                    f"unknown {dimension} unit {unit.strip()!r}; expected e.g. {EXAMPLES[dimension]}"
                ) from None
    else:
        raise UnitError(f"expected a {dimension} such as {EXAMPLES[dimension]}")
    if not math.isfinite(out):
        raise UnitError(f"expected a finite {dimension}")
    return out


def format_quantity(value: float, unit: str, digits: int = 3) -> str:
    """Format an SI float with an engineering prefix: 8e-08, "s" -> "80 ns"."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    exp = int(math.floor(math.log10(abs(value)) / 3) * 3)
    exp = max(-18, min(12, exp))
    prefix = {-18: "a", -15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k",
              6: "M", 9: "G", 12: "T"}[exp]
    return f"{value / 10**exp:.{digits}g} {prefix}{unit}"
