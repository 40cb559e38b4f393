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
    assert "page faults/step/model" in text
    records = json.loads(out.read_text())["results"]
    assert [r["run"] for r in records] == ["fp", "K=1", "K=2", "K=2 unlike"]
    for r in records:
        assert r["step_s_per_model"] > 0 and len(r["cpu_samples_per_model"]) == 1
        assert len(r["minor_faults_per_model"]) == 1 and r["minor_faults_per_model"][0] >= 0
    assert records[0]["ratio_to_fp"] == 1.0


def test_worker_profiles_one_more_step(tmp_path):
    prof = tmp_path / "profile.txt"
    res = json.loads(run("--worker", "--mode", "fast", "--hidden", "8", "--population", "2",
                         "--profile", str(prof), *SMALL).strip().splitlines()[-1])
    assert len(res["times"]) == 1 and res["gpu_peak_bytes"] is None
    lines = prof.read_text().splitlines()
    assert lines[0].startswith("wall ") and "aten::nonzero" in lines[1]
    assert any("aten::" in line for line in lines[3:])   # the op table


def test_breakdown_splits_each_population_step_into_kinds_of_op(tmp_path):
    out = tmp_path / "population.json"
    text = run("--members", "1,2", "--sizes", "8", "--rounds", "1", "--json", str(out),
               "--breakdown", *SMALL)
    assert "floor = products + random draws" in text
    records = json.loads(out.read_text())["results"]
    assert "breakdown_s_per_model" not in records[0]          # fp: one fused kernel, not split
    for r in records[1:]:
        parts = r["breakdown_s_per_model"]
        assert set(parts) == {"products", "random draws", "copies", "other"}
        assert parts["products"] > 0 and parts["random draws"] > 0   # the noisy MVMs draw
        # the profiled step's parts add up to about one step (profiler overhead aside)
        assert 0.3 * r["step_s_per_model"] < sum(parts.values()) < 10 * r["step_s_per_model"]


def test_breakdown_without_members_is_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--breakdown"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--breakdown needs --members" in proc.stderr


def test_eval_cost_prints_one_evaluation_against_one_step(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_cost.py"), "--workload",
                           str(ROOT / "workloads" / "tiny.yaml"), "--data", str(text), "--steps", "1",
                           "--evals", "1", "--every", "default,50"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "one training step" in lines[1] and "training steps" in lines[2]
    shares = [float(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines[3:]]
    assert len(shares) == 2 and 0 < shares[1] < shares[0] < 100   # coarser cadence, smaller share
