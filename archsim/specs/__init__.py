"""Typed specs: workloads, architectures, devices; YAML loading with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from archsim.errors import SpecError
from archsim.specs.architecture import ArchitectureSpec
from archsim.specs.device import DeviceSpec
from archsim.specs.loader import (
    Loaded, preset_names, preset_path, read_yaml, set_path, spec_hash, validate,
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
    spec._origin = Path(path).resolve().parent
    # Resolve the preset names now so that an unknown preset is reported against this file.
    preset_path("architectures", spec.architecture, referrer=loaded.file, field_path="architecture")
    preset_path("devices", spec.device, referrer=loaded.file, field_path="device")
    for i, name in enumerate(spec.baselines):
        preset_path("baselines", name, referrer=loaded.file, field_path=f"baselines[{i}]")
    return spec


def _read_preset(kind: str, name_or_path: str, referrer: object, seen: tuple = ()) -> Loaded:
    """Read a preset file; ``inherits: NAME`` deep-merges it over another preset of the same kind."""
    path = preset_path(kind, name_or_path, referrer=referrer, field_path=kind[:-1])
    loaded = read_yaml(path)
    parent = loaded.data.pop("inherits", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str) or parent in seen:
        raise SpecError(path, "inherits", parent, "expected the name of another preset (no cycles)")
    base = _read_preset(kind, parent, path, seen + (parent,))
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


def load_architecture(name_or_path: str, overrides: dict[str, Any] | None = None,
                      referrer: object = "command line") -> ArchitectureSpec:
    loaded = apply_overrides(_read_preset("architectures", name_or_path, referrer), overrides)
    spec = validate(ArchitectureSpec, loaded)
    spec._sources = loaded.sources
    return spec


def load_device(name_or_path: str, overrides: dict[str, Any] | None = None,
                referrer: object = "command line") -> DeviceSpec:
    loaded = apply_overrides(_read_preset("devices", name_or_path, referrer), overrides)
    spec = validate(DeviceSpec, loaded)
    spec._sources = loaded.sources
    return spec


def json_schema() -> dict:
    """JSON schema of the three spec kinds."""
    return {
        "title": "archsim specs",
        "workload": WorkloadSpec.model_json_schema(),
        "architecture": ArchitectureSpec.model_json_schema(),
        "device": DeviceSpec.model_json_schema(),
    }
