"""The markdown block shared by the report pages: command fence, run table, curve loading."""
from __future__ import annotations

import json

import pytest

from archsim.functional.report_tables import RUN_TABLE_HEAD, command_and_run_table, load_curve, run_row

FP = [{"epoch": 0.5, "train_loss": 2.0, "valid_loss": 1.9, "seconds": 30.0},
      {"epoch": 1.0, "train_loss": 1.51234, "valid_loss": 1.4, "test_loss": 1.45, "seconds": 125.0,
       "final": True}]
RPU = [{"epoch": 0.25, "train_loss": 2.5, "seconds": 90.0}]


def test_table_from_two_runs_under_the_fence():
    rows = [run_row("floating point", FP, unfinished="running"), run_row("rpu", RPU, unfinished="running")]
    assert command_and_run_table("archsim train x.yaml --seed 0", rows) == (
        "```\n"
        "archsim train x.yaml --seed 0\n"
        "```\n"
        "\n"
        "| run | epochs | train | valid | test (nats/char) | time, state |\n"
        "|---|---|---|---|---|---|\n"
        "| floating point | 1.00 | 1.512 | 1.400 | 1.450 | 2 min, finished |\n"
        "| rpu | 0.25 | 2.500 | - | - | 2 min, running |")


def test_not_started_and_own_rows():
    table = command_and_run_table("cmd", [run_row("idle", [], unfinished="x"), "| own | row | | | | |"])
    assert table.splitlines()[-2:] == ["| idle | not started | | | | |", "| own | row | | | | |"]
    assert RUN_TABLE_HEAD in table


def test_load_curve(tmp_path):
    assert load_curve(tmp_path / "absent.json") == []
    (tmp_path / "curve.json").write_text(json.dumps({"curve": FP}))
    assert load_curve(tmp_path / "curve.json") == FP


def test_failures():
    with pytest.raises(ValueError, match="epoch"):
        run_row("diverged", [{"step": 295, "chars": 944000, "train_loss": 27.8, "diverged": True}],
                unfinished="x")
    with pytest.raises(ValueError, match="one line"):
        command_and_run_table("a\nb", ["| r | | | | | |"])
    with pytest.raises(ValueError, match="one line"):
        command_and_run_table("a ``` b", ["| r | | | | | |"])
    with pytest.raises(ValueError, match="row"):
        command_and_run_table("cmd", [])
