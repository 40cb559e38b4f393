"""``archsim estimate`` end to end: JSON keys, reports on disk, the README's hand-checked example,
and a torch-free start-up."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archsim.cli import main

from conftest import REPO, WORKLOADS

REQUIRED = ["time_per_step_s", "time_per_epoch_s", "energy_per_step_J", "energy_per_epoch_J",
            "energy_breakdown_J", "phase_breakdown", "utilization", "ops_per_step", "baselines"]


def test_json_has_required_keys(capsys):
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in REQUIRED:
        assert key in data
    for phase in ("forward", "backward", "update"):
        assert set(data["phase_breakdown"][phase]) == {"time_s", "energy_J"}
    b = data["baselines"][0]
    for key in ("name", "time_per_step_s", "energy_per_step_J", "speedup", "energy_ratio"):
        assert key in b
    assert b["speedup"] == pytest.approx(b["time_per_step_s"] / data["time_per_step_s"])


def test_overrides_change_the_answer(capsys):
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json"])
    base = json.loads(capsys.readouterr().out)
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--batch", "4", "--arch",
          "shared_adc256_nominal"])
    other = json.loads(capsys.readouterr().out)
    assert other["batch_size"] == 4 and other["architecture"] == "shared_adc256_nominal"
    assert other["time_per_step_s"] != base["time_per_step_s"]


def test_out_writes_reports(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["estimate", str(WORKLOADS / "tiny.yaml"), "--out", str(out)]) == 0
    assert "Energy per step by component" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["workload"] == "tiny"
    assert "## Energy per step by component" in (out / "report.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_exact_epoch_matches_extrapolated(capsys):
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--exact", "--baselines", ""])
    exact = json.loads(capsys.readouterr().out)
    main(["estimate", str(WORKLOADS / "tiny.yaml"), "--json", "--baselines", ""])
    fast = json.loads(capsys.readouterr().out)
    assert exact["epoch_method"] == "exact" and fast["epoch_method"] == "extrapolated"
    assert fast["time_per_epoch_s"] == pytest.approx(exact["time_per_epoch_s"], rel=1e-3)


def test_readme_hand_example(capsys):
    """README: one LSTM layer (h=256, n=64) alone on one rpu2016 tile, batch 1, T=100.
    Per timestep: forward 37.5 ns bus + 80 ns array + 80 ns ADC + 12.5 ns digital = 210 ns;
    backward 25.83 + 33.33 + 80 + 80 + 1.67 = 220.83 ns; update 10 + 70.83 + 10 x 1 ns = 90.83 ns;
    at t=0 the transposed MVM is skipped (nothing consumes it): -195 ns once."""
    assert main(["estimate", str(WORKLOADS / "one_tile_example.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    t_fwd, t_bwd, t_upd = 80e-9, 80e-9, 10 * 1e-9          # integration, integration, BL x pulse
    adc = 2 * 80e-9                                        # one 12.5 MS/s conversion per MVM, twice
    bus = (45 + 40 + 85) / 1.2e9                           # 256-bit words moved per timestep
    digital = (15 + 31 + 2 + 12) / 1.2e9                   # 256-lane cycles per timestep
    skipped = (40 / 1.2e9) + t_bwd + 80e-9 + 2 / 1.2e9     # bus, array, ADC, rescale at t=0
    by_hand = 100 * (t_fwd + t_bwd + t_upd + adc + bus + digital) - skipped
    assert by_hand == pytest.approx(51.9717e-6, rel=1e-4)
    assert data["time_per_step_s"] == pytest.approx(by_hand, rel=1e-9)
    assert data["tiles"] == 1


def test_start_up_does_not_import_torch():
    code = ("import sys; from archsim.cli import main; "
            "rc = main(['estimate', sys.argv[1], '--json', '--baselines', 'v100']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code, str(WORKLOADS / "tiny.yaml")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
