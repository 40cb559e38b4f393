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


def is_path_ref(name_or_path: str) -> bool:
    """A preset reference that is a file path (ends in .yaml/.yml or has a folder), not a name."""
    return Path(name_or_path).suffix in (".yaml", ".yml") or os.sep in name_or_path \
        or name_or_path.startswith("~")


def preset_path(kind: str, name_or_path: str, *, referrer: object = "command line",
                field_path: str = "", base_dir: Path | None = None) -> Path:
    """Resolve a preset name (or a path to a YAML file) to a file, or raise a one-line error.

    A relative path is taken relative to ``base_dir`` (the folder of the file that names it;
    the current directory for the command line)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise SpecError(referrer, field_path, name_or_path, f"a {kind[:-1]} preset name or YAML path")
    candidate = Path(name_or_path).expanduser()
    if is_path_ref(name_or_path):
        if not candidate.is_absolute() and base_dir is not None:
            candidate = Path(base_dir) / candidate
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            raise SpecError(referrer, field_path, name_or_path, "a YAML file, not a folder")
        raise SpecError(referrer, field_path, name_or_path,
                        "no such file" + (f" (looked in {base_dir})" if base_dir is not None
                                          and not Path(name_or_path).expanduser().is_absolute() else ""))
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
    #: Values read so far (aliases count once per use): bounded by MAX_SPEC_NODES.
    nodes: int = 0


#: Largest spec file read (specs are a few kB; this stops /dev/zero-like inputs early).
MAX_SPEC_BYTES = 1 << 20
#: Values a spec may expand to once YAML aliases are followed (a "billion laughs" file is
#: refused here instead of being expanded).
MAX_SPEC_NODES = 100_000
#: Largest training text (the papers' corpora are 3-6 MB; a text is held several times over as ids).
MAX_TEXT_BYTES = 512 << 20


def read_spec_bytes(path: Path, *, limit: int = MAX_SPEC_BYTES, what: str = "YAML file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a one-line SpecError: no
    directories, devices (/dev/zero), FIFOs or sockets, which could be read forever."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SpecError(path, "", str(path), "no such file") from None
    except OSError as exc:
        raise SpecError(path, "", str(path), f"a readable {what} ({(exc.strerror or '').lower()})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(path, "", str(path), f"a {what}, not a folder")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(path, "", str(path), f"a regular {what}, not a device, FIFO or socket")
    if st.st_size > limit:
        raise SpecError(path, "", f"{st.st_size:,} bytes", f"a {what} of at most {limit:,} bytes")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise SpecError(path, "", str(path), f"a readable {what} ({(exc.strerror or '').lower()})") from None
    if len(raw) > limit:
        raise SpecError(path, "", f"more than {limit:,} bytes", f"a {what} of at most {limit:,} bytes")
    return raw


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")


def read_yaml(path: Path | str) -> Loaded:
    """Read a YAML mapping, separating ``{value, source}`` leaves into ``sources``."""
    path = Path(path)
    raw = read_spec_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"byte {raw[exc.start]:#04x} at offset {exc.start}",
                        "expected UTF-8 text (save the file as UTF-8)") from None
    yaml = _yaml()
    try:
        tree = yaml.load(text)
    except RecursionError:
        raise SpecError(path, "", "nesting deeper than the YAML reader can follow", "a flat spec") from None
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


_YAML_CORE_TAG = "tag:yaml.org,2002:"


def _tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", tag)
    return value if isinstance(value, str) and value else None


def _strip(node: Any, path: str, loaded: Loaded) -> Any:
    loaded.nodes += 1
    if loaded.nodes > MAX_SPEC_NODES:
        raise SpecError(loaded.file, path, f"more than {MAX_SPEC_NODES:,} values",
                        "a spec of fewer values (YAML aliases expanding into many copies are refused)",
                        line=loaded.lines.get(path))
    tag = _tag(node)
    if tag is not None and not tag.startswith(_YAML_CORE_TAG):
        raise SpecError(loaded.file, path, f"YAML tag {tag}", "a plain value (no !tags)",
                        line=loaded.lines.get(path))
    if type(node).__name__ == "TaggedScalar":   # !!str 5 and the like
        return str(node.value)
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
    if node is None or isinstance(node, (bool, int, float)):
        return node
    raise SpecError(loaded.file, path, type(node).__name__,
                    "a number, text, true/false, a list or a mapping", line=loaded.lines.get(path))


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
    if kind == "finite_number":
        return "expected a finite number"
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


def _without_union_mismatches(errors: list[dict]) -> list[dict]:
    """A field that takes a number or a mapping (``x: 1`` or ``x: {a: 1}``) gives one error per
    form; the one that says a mapping is not a number is beside the point when the mapping's own
    error (deeper, under the same field) says what is wrong inside it. Drop the former."""
    def mismatch(e: dict) -> bool:
        loc = e["loc"]
        return len(loc) > 1 and isinstance(e.get("input"), (dict, list)) and any(
            len(f["loc"]) > len(loc) and f["loc"][:len(loc) - 1] == loc[:-1] for f in errors)
    kept = [e for e in errors if not mismatch(e)]
    return kept or errors


def validate(model: type[T], loaded: Loaded, prefix: str = "") -> T:
    """Validate ``loaded.data`` as ``model``; the first error becomes a one-line SpecError."""
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        # A misspelt field shows up as "unknown" plus "missing": report the unknown one first.
        errors = sorted(_without_union_mismatches(exc.errors()),
                        key=lambda e: e["type"] != "extra_forbidden")
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


#: Part of every :func:`spec_hash`. Bump it when an existing spec field's default value or meaning
#: changes, so that results stored under the old hashes (sweep points, training checkpoints) are
#: recomputed; ``tests/test_spec_hash.py`` fails until it is bumped and its snapshot renewed. Adding
#: a field whose default keeps the old behaviour needs no bump.
SPEC_HASH_VERSION = 1


def spec_hash(*specs: BaseModel, extra: dict | None = None) -> str:
    """Stable short hash of one or more specs (and extra JSON-able values).

    Fields at their default value are left out, so a new field whose default keeps the old
    behaviour leaves the hashes of existing specs alone: sweep results and checkpoints stored
    before it was added stay valid (hours of training are not recomputed for an option nobody
    set). A changed default is caught by :data:`SPEC_HASH_VERSION`.
    """
    payload = ([s.model_dump(mode="json", exclude_defaults=True) for s in specs]
               + [extra or {}, {"spec_hash_version": SPEC_HASH_VERSION}])
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def text_length(path: Path) -> int:
    """Characters in a UTF-8 text file (a BOM is not a character)."""
    if path is None:
        raise SpecError("workload", "training.data", None, "set training.data or training.train_chars")
    raw = read_spec_bytes(Path(path), limit=MAX_TEXT_BYTES, what="text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "training.data", f"byte {raw[exc.start]:#04x} at offset {exc.start}",
                        "expected a UTF-8 text file") from None
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
