"""Typed specs: workloads, architectures, devices; YAML loading with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from archsim.errors import SpecError
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.device import DeviceSpec
from archsim.specs.loader import (
    Loaded, is_path_ref, preset_names, preset_path, read_yaml, set_path, spec_hash, validate,
)
from archsim.specs.workload import WorkloadSpec

__all__ = [
    "ArchitectureSpec", "DeviceSpec", "WorkloadSpec", "load_workload", "load_architecture",
    "load_device", "preset_names", "spec_hash", "json_schema", "apply_overrides",
]


def apply_overrides(loaded: Loaded, overrides: dict[str, Any] | None) -> Loaded:
    """Apply dotted-path overrides (from the command line or a sweep) to a raw spec tree."""
    for dotted, value in (overrides or {}).items():
        set_path(loaded.data, dotted, value)
    return loaded


def load_workload(path: str | Path, overrides: dict[str, Any] | None = None) -> WorkloadSpec:
    """Load and validate a workload YAML file; ``overrides`` are dotted paths -> values."""
    loaded = apply_overrides(read_yaml(path), overrides)
    spec = validate(WorkloadSpec, loaded)
    origin = Path(path).resolve().parent
    spec._origin = origin
    spec._file = Path(path)
    # Resolve the presets now, so that an unknown one is reported against this file; a preset
    # given as a relative YAML path is relative to this file's folder (as training.data is), and
    # is stored resolved so that every later load finds the same file.
    for field_name, kind in (("architecture", "architectures"), ("device", "devices")):
        ref = getattr(spec, field_name)
        found = preset_path(kind, ref, referrer=loaded.file, field_path=field_name, base_dir=origin)
        if is_path_ref(ref):
            setattr(spec, field_name, str(found.resolve()))
    from archsim.baselines import check_baseline_name   # here: baselines import the specs

    for i, name in enumerate(spec.baselines):
        check_baseline_name(name, f"baselines[{i}]", loaded.file)
    return spec


#: Deepest ``inherits:`` chain followed.
MAX_INHERITS = 16


def _read_preset(kind: str, name_or_path: str, referrer: object, seen: tuple = (),
                 base_dir: Path | None = None) -> Loaded:
    """Read a preset file; ``inherits: NAME`` deep-merges it over another preset of the same kind."""
    path = preset_path(kind, name_or_path, referrer=referrer, field_path=kind[:-1], base_dir=base_dir)
    loaded = read_yaml(path)
    parent = loaded.data.pop("inherits", None)
    if parent is None:
        return loaded
    here = path.resolve()
    if not isinstance(parent, str) or parent in seen or here in seen or len(seen) > MAX_INHERITS:
        raise SpecError(path, "inherits", parent,
                        f"expected the name or path of another preset (no cycles, at most {MAX_INHERITS} levels)",
                        line=loaded.lines.get("inherits"))
    # inherits: a relative YAML path is relative to this preset's folder, not the working directory.
    base = _read_preset(kind, parent, path, seen + (parent, here), base_dir=path.parent)
    base.data = _merge(base.data, loaded.data)
    base.sources.update(loaded.sources)
    base.lines = loaded.lines
    base.file = loaded.file
    return base


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_preset(kind: str, spec_class, name_or_path: str, overrides: dict[str, Any] | None,
                 referrer: object):
    """A preset (name or YAML file) of ``kind``, overridden, validated, with its sources kept."""
    loaded = apply_overrides(_read_preset(kind, name_or_path, referrer), overrides)
    spec = validate(spec_class, loaded)
    spec._sources = loaded.sources
    return spec


def load_architecture(name_or_path: str, overrides: dict[str, Any] | None = None,
                      referrer: object = "command line") -> ArchitectureSpec:
    return _load_preset("architectures", ArchitectureSpec, name_or_path, overrides, referrer)


def load_device(name_or_path: str, overrides: dict[str, Any] | None = None,
                referrer: object = "command line") -> DeviceSpec:
    return _load_preset("devices", DeviceSpec, name_or_path, overrides, referrer)


def json_schema() -> dict:
    """JSON schema of the three spec kinds."""
    return {
        "title": "archsim specs",
        "workload": WorkloadSpec.model_json_schema(),
        "architecture": ArchitectureSpec.model_json_schema(),
        "device": DeviceSpec.model_json_schema(),
    }
