"""``archsim physics`` writes reports/physics/ (slow: about two minutes of estimates)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_physics_report_writes_every_table(tmp_path, capsys):
    out = tmp_path / "physics"
    for name in ("before_issue10.json", "before_issue11.json"):
        out.mkdir(exist_ok=True)
        (out / name).write_text((REPO / "reports" / "physics" / name).read_text())
    assert main(["physics", "--repo", str(REPO), "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    for title in ("## Store vs recompute", "## Bytes per memory level", "## Replication",
                  "## Chip area and static power", "## Energy of lstm2x512 per step"):
        assert title in text
    data = json.loads((out / "physics.json").read_text())
    rows = {(r["workload"], r["architecture"], r["bptt_state"]): r for r in data["store_vs_recompute"]}
    store, rec = rows[("lstm2x512", "rpu2016", "store")], rows[("lstm2x512", "rpu2016", "recompute")]
    assert rec["state_bytes"] < store["state_bytes"] and rec["analog_energy_J"] > store["analog_energy_J"]
    assert {r["batch"] for r in data["replication"]} == {1, 8, 32, 128}
    assert len(data["energy"]["before"]) == 2
