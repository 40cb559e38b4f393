"""The spec hash keys stored results (sweep points, checkpoints): it must change when a spec means
something else, and only then.

``spec_hash`` leaves fields at their defaults out, so adding a field keeps stored results valid; the
price is that a changed default would silently reuse results computed under the old one. The
snapshot ``spec_defaults.json`` records every default; changing one fails here until
``SPEC_HASH_VERSION`` is bumped and the snapshot renewed with
``python tests/test_spec_hash.py --update``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from archsim.specs import ArchitectureSpec, DeviceSpec, WorkloadSpec, load_architecture, load_device, spec_hash
from archsim.specs import loader

SNAPSHOT = Path(__file__).with_name("spec_defaults.json")


def _models(cls, seen=None):
    """Every pydantic model class reachable from ``cls`` through field annotations."""
    seen = {} if seen is None else seen
    if cls.__name__ in seen:
        return seen
    seen[cls.__name__] = cls
    for field in cls.model_fields.values():
        stack = [field.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                _models(t, seen)
            stack.extend(getattr(t, "__args__", ()) or ())
    return seen


def current_defaults() -> dict:
    out = {}
    for root in (WorkloadSpec, ArchitectureSpec, DeviceSpec):
        for name, cls in _models(root).items():
            for fname, field in cls.model_fields.items():
                if field.is_required():
                    continue
                value = field.get_default(call_default_factory=True)
                out[f"{name}.{fname}"] = to_jsonable_python(value, fallback=repr)
    return {"spec_hash_version": loader.SPEC_HASH_VERSION, "defaults": dict(sorted(out.items()))}


def test_no_default_changed_without_a_version_bump():
    stored = json.loads(SNAPSHOT.read_text())
    now = current_defaults()
    changed = sorted(k for k, v in stored["defaults"].items()
                     if k in now["defaults"] and now["defaults"][k] != v)
    if now["spec_hash_version"] == stored["spec_hash_version"]:
        assert not changed, (f"spec defaults changed: {changed}; stored results keyed by spec_hash "
                             "would be reused under the new meaning: bump SPEC_HASH_VERSION in "
                             "archsim/specs/loader.py and run python tests/test_spec_hash.py --update")


def test_a_new_field_at_its_default_keeps_the_hash(monkeypatch):
    arch, dev = load_architecture("rpu2016"), load_device("rpu_baseline")
    before = spec_hash(arch, dev, extra={"seed": 0})
    # The same spec dumped with one more field at its default: what adding a field does.
    dumped = arch.model_dump(mode="json", exclude_defaults=True)
    real = ArchitectureSpec.model_dump

    def with_new_field(self, **kw):
        out = real(self, **kw)
        if not kw.get("exclude_defaults"):
            out["new_option"] = 0
        return out

    monkeypatch.setattr(ArchitectureSpec, "model_dump", with_new_field)
    assert spec_hash(arch, dev, extra={"seed": 0}) == before
    assert arch.model_dump(mode="json", exclude_defaults=True) == dumped


def test_a_changed_value_or_version_changes_the_hash(monkeypatch):
    arch, dev = load_architecture("rpu2016"), load_device("rpu_baseline")
    base = spec_hash(arch, dev)
    assert spec_hash(arch, dev.model_copy(update={"up_down": 0.05})) != base
    assert spec_hash(arch, dev, extra={"seed": 1}) != spec_hash(arch, dev, extra={"seed": 0})
    # A value set equal to the default is the same spec.
    assert spec_hash(arch, dev.model_copy(update={"up_down": 0.0})) == base
    monkeypatch.setattr(loader, "SPEC_HASH_VERSION", loader.SPEC_HASH_VERSION + 1)
    assert spec_hash(arch, dev) != base


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        SNAPSHOT.write_text(json.dumps(current_defaults(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT}")
    else:
        sys.exit("usage: python tests/test_spec_hash.py --update")
