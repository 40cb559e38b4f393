"""Read YAML specs into typed objects; every failure becomes one :class:`SpecError` line.

Preset files write each number as ``{value: ..., source: "..."}`` (or a bare value in user files);
the loader strips the sources into ``sources`` (field path -> citation) and validates the rest.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from archsim.errors import SpecError

T = TypeVar("T", bound=BaseModel)

#: Where presets live: $ARCHSIM_MODELS, the repository's models/, or the copy installed with the package.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def models_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("ARCHSIM_MODELS"):
        dirs.append(Path(os.environ["ARCHSIM_MODELS"]))
    dirs += [_PACKAGE_DIR.parent / "models", _PACKAGE_DIR / "_presets"]
    return [d for d in dirs if d.is_dir()]


def preset_names(kind: str) -> list[str]:
    """Names of the presets of ``kind`` ("architectures", "devices", "baselines")."""
    names = set()
    for d in models_dirs():
        names.update(p.stem for p in (d / kind).glob("*.yaml"))
    return sorted(names)


def preset_path(kind: str, name_or_path: str, *, referrer: object = "command line",
                field_path: str = "") -> Path:
    """Resolve a preset name (or a path to a YAML file) to a file, or raise a one-line error."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise SpecError(referrer, field_path, name_or_path, "no such file")
    for d in models_dirs():
        path = d / kind / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise SpecError(referrer, field_path, name_or_path,
                    f"unknown {kind[:-1]} preset; allowed: {', '.join(preset_names(kind))}")


@dataclass
class Loaded:
    """A raw spec tree with its provenance."""

    file: Path
    data: dict
    sources: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")


def read_yaml(path: Path | str) -> Loaded:
    """Read a YAML mapping, separating ``{value, source}`` leaves into ``sources``."""
    path = Path(path)
    if not path.exists():
        raise SpecError(path, "", str(path), "no such file")
    if path.is_dir():
        raise SpecError(path, "", str(path), "expected a YAML file, not a directory")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, "", type(exc).__name__, "expected a readable UTF-8 YAML file") from None
    yaml = _yaml()
    try:
        tree = yaml.load(text)
    except Exception as exc:  # ruamel raises many parser error types
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(path, "", problem, "malformed YAML", line=line) from None
    if not isinstance(tree, dict):
        raise SpecError(path, "", type(tree).__name__ if tree is not None else "an empty file",
                        "expected a YAML mapping of fields")
    loaded = Loaded(file=path, data={})
    loaded.data = _strip(tree, "", loaded)
    return loaded


def _is_sourced(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and set(node) <= {"value", "source", "note"}


def _strip(node: Any, path: str, loaded: Loaded) -> Any:
    lc = getattr(node, "lc", None)
    if _is_sourced(node):
        if "source" in node:
            loaded.sources[path] = str(node["source"])
        return _strip(node["value"], path, loaded)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if lc is not None:
                try:
                    loaded.lines[sub] = lc.key(key)[0] + 1
                except Exception:
                    pass
            out[str(key)] = _strip(value, sub, loaded)
        return out
    if isinstance(node, list):
        return [_strip(v, f"{path}[{i}]", loaded) for i, v in enumerate(node)]
    if hasattr(node, "__float__") and type(node).__name__ in ("ScalarFloat",):
        return float(node)
    if type(node).__name__ == "ScalarBoolean":
        return bool(node)
    if type(node).__name__ in ("ScalarInt", "HexInt", "OctalInt", "BinaryInt"):
        return int(node)
    if isinstance(node, str):
        return str(node)
    return node


def _loc_path(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("function-after", "function-before") or "[" in str(item) and "," in str(item):
            continue
        else:
            parts.append(str(item))
    return ".".join(parts)


def _lookup(data: Any, loc: tuple) -> Any:
    node = data
    for item in loc:
        if isinstance(node, dict) and item in node:
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            node = node[item]
        else:
            return None
    return node


def _allowed(err: dict, model: type[BaseModel], loc: tuple) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        names = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}; allowed: {', '.join(names)}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return msg.lower()
    if kind == "literal_error":
        return msg.replace("Input should be", "allowed:")
    if kind.startswith(("int_", "float_", "bool_", "string_", "dict_", "list_", "model_")):
        return msg.replace("Input should be", "expected")
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    current: Any = model
    for item in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(item))
        if info is None:
            return None
        current = info.annotation
        args = getattr(current, "__args__", ())
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def validate(model: type[T], loaded: Loaded, prefix: str = "") -> T:
    """Validate ``loaded.data`` as ``model``; the first error becomes a one-line SpecError."""
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        # A misspelt field shows up as "unknown" plus "missing": report the unknown one first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function")))
        path = _loc_path(loc)
        value = err.get("input") if err["type"] != "missing" else None
        if err["type"] == "missing":
            value = "nothing"
        elif err["type"] == "extra_forbidden":
            value = _lookup(loaded.data, loc)
            value = loc[-1] if value is None else f"{loc[-1]}: {value}"
        if isinstance(value, dict):
            value = "a mapping"
        line = loaded.lines.get(path) or loaded.lines.get(path.rsplit(".", 1)[0])
        full = f"{prefix}{path}" if path else prefix.rstrip(".")
        raise SpecError(loaded.file, full, value, _allowed(err, model, loc), line=line) from None


def spec_hash(*specs: BaseModel, extra: dict | None = None) -> str:
    """Stable short hash of one or more specs (and extra JSON-able values)."""
    payload = [s.model_dump(mode="json") for s in specs] + [extra or {}]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def text_length(path: Path) -> int:
    """Characters in a UTF-8 text file (a BOM is not a character)."""
    if path is None:
        raise SpecError("workload", "training.data", None, "set training.data or training.train_chars")
    if not Path(path).is_file():
        raise SpecError(path, "training.data", str(path), "no such text file")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError(path, "training.data", str(path), "expected a UTF-8 text file") from None
    return len(text)


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"]`` for ``dotted == "a.b"``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise KeyError(dotted)
    node[keys[-1]] = value
