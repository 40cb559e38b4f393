"""benchmarks/gpu_fit.py measure: precision as a parameter, board power via nvidia-smi (parsed from
a fake nvidia-smi here: this project's CI has no GPU), and the power-model fit on such data."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from archsim.baselines import calibration as cal
from archsim.baselines.gpu import gpu_power_W, mode, training_bytes, training_flops

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_fit.py"


@pytest.fixture(scope="module")
def gpu_fit():
    spec = importlib.util.spec_from_file_location("gpu_fit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nvidia_smi_csv_parser(gpu_fit):
    """The format of `nvidia-smi --query-gpu=timestamp,power.draw,utilization.gpu,clocks.sm
    --format=csv,noheader,nounits`: unparsable and truncated lines are skipped, GPUs interleave."""
    text = ("2026/11/30 05:00:00.100, 312.45, 87, 1980\n"
            "2026/11/30 05:00:00.150, [N/A], 0, 1980\n"
            "2026/11/30 05:00:00.200, 98.10, [Not Supported], 345\n"
            "\n"
            "2026/11/30 05:00:00.2")
    samples = gpu_fit.parse_nvidia_smi_csv(text)
    assert [s["power_W"] for s in samples] == [312.45, 98.10]
    assert samples[0]["util_pct"] == 87 and samples[1]["util_pct"] is None and samples[1]["sm_MHz"] == 345
    two = "t, 100, 1, 1\nt, 200, 1, 1\nt, 110, 1, 1\nt, 210, 1, 1\n"
    assert [s["power_W"] for s in gpu_fit.parse_nvidia_smi_csv(two, gpu_index=1, n_gpus=2)] == [200, 210]
    summary = gpu_fit.power_summary(gpu_fit.parse_nvidia_smi_csv(two))
    assert summary == {"n": 4, "median_W": 155.0, "mean_W": 155.0, "min_W": 100.0, "max_W": 210.0}
    assert gpu_fit.power_summary([]) == {"n": 0}


def test_measure_takes_the_precision_and_records_power(tmp_path):
    """Dry run (tiny shapes on the CPU) with a fake nvidia-smi on PATH printing known samples."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nwhile true; do echo '2026/11/30 05:00:00.000, 123.00, 40, 1980'; "
                    "sleep 0.01; done\n", encoding="utf-8")
    fake.chmod(0o755)
    out = tmp_path / "m.json"
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([sys.executable, str(SCRIPT), "measure", "--dry-run", "--power", "--precision",
                    "fp32,bf16", "--idle-seconds", "0.1", "--iters", "2", "--preset", "h200",
                    "--out", str(out)], check=True, env=env, capture_output=True, timeout=300)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["preset"] == "h200" and data["idle_power"]["median_W"] == 123.0
    assert {r["precision"] for r in data["runs"]} == {"fp32", "bf16"}
    assert all(r["power"]["median_W"] == 123.0 and r["power_samples"] for r in data["runs"])
    assert all(r["total_ms"] > 0 for r in data["runs"])
    # The calibration reads these runs per precision.
    assert {row.precision for row in cal.rows_from_measurement(data)} == {"fp32", "bf16"}
    bad = subprocess.run([sys.executable, str(SCRIPT), "measure", "--dry-run", "--precision", "fp8"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "fp8" in bad.stderr
    no_smi = subprocess.run([sys.executable, str(SCRIPT), "measure", "--dry-run", "--power"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PATH=str(tmp_path / "empty")))
    assert no_smi.returncode == 2 and "nvidia-smi" in no_smi.stderr


def _synthetic(m, idle: float, gain: float) -> dict:
    """Runs whose 'measured' power follows the power model with known idle power and gain."""
    runs = []
    for h, n in ((256, 8), (512, 16), (1024, 64), (2048, 128), (4096, 128)):
        total_ms = 5.0 + h * n / 2e4
        seconds = total_ms * 1e-3
        raw = (training_flops([(1, h)], None, n, 25) / (seconds * m.peak_flops)
               + training_bytes([(1, h)], None, n, 25, m.bytes_per_value) / (seconds * m.gpu.mem_bytes_per_s))
        power = idle + (m.gpu.board_power_W - idle) * min(1.0, gain * raw)
        runs.append({"kind": "deepbench", "precision": m.precision, "n_in": 1, "hidden": h, "batch": n,
                     "seq_len": 25, "forward_ms": total_ms / 2, "backward_ms": total_ms / 2,
                     "total_ms": total_ms, "power": {"n": 10, "median_W": power}})
    return {"device": "synthetic", "runs": runs, "idle_power": {"median_W": idle}}


def test_power_fit_recovers_known_idle_power_and_gain():
    m = mode("h200", "fp32")
    fit = cal.fit_power(m, _synthetic(m, idle=80.0, gain=3.0), "fp32")
    assert fit["idle_power_W"] == pytest.approx(80.0, rel=1e-3)
    assert fit["activity_gain"] == pytest.approx(3.0, rel=1e-2)
    assert fit["median_abs_error_pct"] < 0.1 and fit["n"] == 5
    with pytest.raises(ValueError):
        cal.fit_power(m, {"runs": []}, "fp32")


def test_fitted_power_model_stays_within_idle_and_tdp():
    m = mode("h200", "fp32")
    fit = cal.fit_power(m, _synthetic(m, idle=80.0, gain=3.0), "fp32")
    spec = m.gpu.model_copy(update={"power": m.gpu.power.model_copy(update={
        "idle_power_W": fit["idle_power_W"], "activity_gain": fit["activity_gain"]})})
    fitted = mode(spec, "fp32")
    for flops in (0.0, 1e9, 1e13, 1e20):
        power, activity = gpu_power_W(fitted, flops, 0.0, 1e-3)
        assert fit["idle_power_W"] - 1e-9 <= power <= spec.board_power_W + 1e-9
        assert 0 <= activity <= 1 and not math.isnan(power)
