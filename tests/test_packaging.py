"""Packaging: every subpackage of archsim is listed in pyproject (the list is explicit because
models/ ships inside the wheel as archsim/_presets)."""
from __future__ import annotations

import re

from conftest import REPO


def test_every_subpackage_is_packaged():
    text = (REPO / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(archsim[\w.]*)"', text.split("[tool.setuptools]", 1)[1]))
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "archsim").rglob("__init__.py")}
    missing = found - listed
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"
