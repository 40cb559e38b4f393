"""The GPU session's prepared script runs only where a GPU is lent (benchmarks/device_session.sh),
so a broken benchmark would waste that lease: its two entry points, run small here on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "functional_step.py"
SMALL = ["--layers", "1", "--batch", "4", "--seq", "5", "--vocab", "12", "--steps", "1"]


def run(*args):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_population_table_has_a_row_per_k_and_per_model_times(tmp_path):
    out = tmp_path / "population.json"
    text = run("--members", "1,2", "--sizes", "8", "--rounds", "1", "--json", str(out),
               "--unlike-periphery", *SMALL)
    assert "ms/step/model (CPU)" in text and "x like members" in text
    records = json.loads(out.read_text())["results"]
    assert [r["run"] for r in records] == ["fp", "K=1", "K=2", "K=2 unlike"]
    for r in records:
        assert r["step_s_per_model"] > 0 and len(r["cpu_samples_per_model"]) == 1
    assert records[0]["ratio_to_fp"] == 1.0


def test_worker_profiles_one_more_step(tmp_path):
    prof = tmp_path / "profile.txt"
    res = json.loads(run("--worker", "--mode", "fast", "--hidden", "8", "--population", "2",
                         "--profile", str(prof), *SMALL).strip().splitlines()[-1])
    assert len(res["times"]) == 1 and res["gpu_peak_bytes"] is None
    lines = prof.read_text().splitlines()
    assert lines[0].startswith("wall ") and "aten::nonzero" in lines[1]
    assert any("aten::" in line for line in lines[3:])   # the op table
