"""Sweeps: expansion, keys, the JSONL store, resume after a kill, and local vs Dask backends."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from archsim.cli import main
from conftest import (
    FakeTrainResult, install_fake_train, lines_of, start_sweep_process, write_echo_sweep, write_sweep,
)
from archsim.errors import DivergenceError, SpecError
from archsim.sweep import (
    ResultsStore, expand, load_sweep, make_task, resolve_point, run_sweep,
)
from archsim.sweep.evaluate import run_task
from archsim.sweep.runner import flatten

REPO = Path(__file__).resolve().parent.parent

# -- expansion and keys ----------------------------------------------------------------------
def test_grid_expansion_order_seeds_and_kinds(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, """\
        axes:
          device: [rpu_baseline, rpu_asym5]
          workload.training.batch_size: [1, 4, 16]
        kind: both
        seeds: [0, 7]
        """))
    points = expand(sweep)
    assert len(points) == 2 * 3 * 2 * 2
    assert [p.index for p in points] == list(range(len(points)))
    first = [(p.values["device"], p.values["workload.training.batch_size"], p.seed, p.kind)
             for p in points[:6]]
    assert first == [("rpu_baseline", 1, 0, "estimate"), ("rpu_baseline", 1, 0, "train"),
                     ("rpu_baseline", 1, 7, "estimate"), ("rpu_baseline", 1, 7, "train"),
                     ("rpu_baseline", 4, 0, "estimate"), ("rpu_baseline", 4, 0, "train")]
    assert points[-1].values == {"device": "rpu_asym5", "workload.training.batch_size": 16}
    assert expand(sweep) == points  # deterministic


def test_zip_expansion_and_unequal_lengths(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, """\
        mode: zip
        axes:
          device.up_down: [0.0, 0.02, 0.05]
          workload.training.batch_size: [1, 2, 3]
        kind: echo
        """))
    points = expand(sweep)
    assert [(p.values["device.up_down"], p.values["workload.training.batch_size"]) for p in points] == [
        (0.0, 1), (0.02, 2), (0.05, 3)]
    bad = write_sweep(tmp_path, """\
        mode: zip
        axes:
          device.up_down: [0.0, 0.02, 0.05]
          workload.training.batch_size: [1, 2]
        """, name="bad.yaml")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: axes: .*equal length"):
        load_sweep(bad)


def test_resolved_overrides_reach_the_specs_and_key(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, """\
        axes:
          architecture: [rpu2016, shared_adc256_nominal]
          architecture.adc.e_conv_J: ["2 pJ"]
          device.up_down: [0.05]
        kind: echo
        """))
    outputs = []
    for point in expand(sweep):
        task, key = resolve_point(sweep, point)
        assert task["resolved"] == {"architecture": point.values["architecture"],
                                    "architecture.adc.e_conv_J": pytest.approx(2e-12),
                                    "device.up_down": 0.05}
        outputs.append(run_task(task))
    assert outputs[0]["key"] != outputs[1]["key"]
    assert outputs[0]["result"]["values"]["architecture.adc.e_conv_J"] == pytest.approx(2e-12)


def test_identical_resolved_points_share_a_key(tmp_path):
    # 1 pJ and 1e-12 validate to the same energy; up_down 0.0 is rpu_baseline's own value.
    sweep = load_sweep(write_sweep(tmp_path, """\
        axes:
          architecture.adc.e_conv_J: ["1 pJ", 1.0e-12, "4 pJ"]
        kind: echo
        seeds: [0, 1]
        """))
    keys = [resolve_point(sweep, p)[1] for p in expand(sweep)]
    assert len(keys) == 6 and len(set(keys)) == 4
    assert keys[0] == keys[2] and keys[1] == keys[3]  # (1 pJ, seed 0) == (1e-12, seed 0)
    plain = load_sweep(write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n", "p.yaml"))
    other = load_sweep(write_sweep(tmp_path, "axes: {device: [rpu_baseline]}\nkind: echo\n", "q.yaml"))
    (p,), (q,) = expand(plain), expand(other)
    assert resolve_point(plain, p)[1] == resolve_point(other, q)[1]


def test_key_depends_on_seed_kind_and_training_budget(tmp_path):
    def key(body):
        sweep = load_sweep(write_sweep(tmp_path, body, "k.yaml"))
        return resolve_point(sweep, expand(sweep)[0])[1]

    base = key("axes: {device.up_down: [0.01]}\nkind: train\ntrain: {max_chars: 1000}\n")
    assert base != key("axes: {device.up_down: [0.01]}\nkind: train\ntrain: {max_chars: 2000}\n")
    assert base != key("axes: {device.up_down: [0.01]}\nkind: train\ntrain: {max_chars: 1000}\nseeds: [1]\n")
    assert base != key("axes: {device.up_down: [0.01]}\nkind: estimate\n")
    assert base != key("axes: {device.up_down: [0.02]}\nkind: train\ntrain: {max_chars: 1000}\n")
    # How often a training run samples its curve does not change what it trains.
    assert base == key("axes: {device.up_down: [0.01]}\nkind: train\n"
                       "train: {max_chars: 1000, eval_every: 5}\n")
    # How long the echo evaluator sleeps does not change what it computes.
    assert key("axes: {device.up_down: [0.01]}\nkind: echo\n") == key(
        "axes: {device.up_down: [0.01]}\nkind: echo\necho: {sleep_s: 1}\n")


@pytest.mark.parametrize("axis, value, message", [
    ("device.up_dwn", "[0.1]",
     r"axes\.device\.up_dwn: got 'up_dwn'; unknown field of device; allowed: .*up_down"),
    ("workload.trainig.batch_size", "[1]", r"axes\.workload\.trainig\.batch_size: got 'trainig'; .*training"),
    ("architecture.adc.bits.low", "[1]", r"axes\.architecture\.adc\.bits\.low: got 'low'; .*is a value"),
    ("periphery.out_noise", "[0.1]",
     r"axes\.periphery\.out_noise: got 'periphery'; an axis path starts with"),
    ("device", "[rpu_nope]", r"axes\.device: got 'rpu_nope'; unknown device preset; allowed: .*rpu_asym5"),
    ("device.up_down", "[0.1, 1.5]", r"axes\.device\.up_down: got 1\.5; input should be less than 1"),
    ("architecture.adc.e_conv_J", '["2 parsec"]', r"axes\.architecture\.adc\.e_conv_J: got '2 parsec'"),
])
def test_bad_axis_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, axis, value, message):
    path = write_sweep(tmp_path, f"axes:\n  {axis}: {value}\nkind: echo\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"archsim: error: {path}")
    assert re.search(message, err), err
    assert not out.exists()


# -- the results store -----------------------------------------------------------------------
def test_store_ignores_and_repairs_a_torn_last_line(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    assert store.append({"key": "a", "result": 1}) and store.append({"key": "b", "result": 2})
    assert not store.append({"key": "a", "result": 99})  # a key is written once
    with open(store.path, "ab") as fh:  # a writer killed in the middle of its line
        fh.write(b'{"key": "c", "resu')
    fresh = ResultsStore(store.path)
    assert set(fresh.load()) == {"a", "b"} and fresh.bad_lines == 0
    assert fresh.append({"key": "c", "result": 3})
    text = store.path.read_text()
    assert text.endswith("\n") and "resu\n" not in text and '"resu' not in text.replace('"result"', "")
    assert [json.loads(line)["key"] for line in text.splitlines()] == ["a", "b", "c"]


def _hammer(path: str, worker: int, n: int) -> None:
    store = ResultsStore(path)
    store.load()
    for i in range(n):
        # Keys overlap between workers: each must still appear exactly once.
        store.append({"key": f"k{(i * 7 + worker) % n}", "worker": worker, "pad": "x" * (i * 37 % 3000)})


def test_store_concurrent_writers_never_interleave_or_duplicate(tmp_path):
    path = tmp_path / "r.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(path), w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    keys = [json.loads(line)["key"] for line in lines_of(path)]  # every line is valid JSON
    assert sorted(keys) == sorted(f"k{i}" for i in range(60))


# -- running ---------------------------------------------------------------------------------
def test_run_sweep_writes_results_summary_plot_and_skips_done_points(tmp_path):
    path = write_sweep(tmp_path, """\
        name: echo_grid
        axes:
          device: [rpu_baseline, rpu_asym5]
          architecture.adc.e_conv_J: ["1 pJ", 1.0e-12, "8 pJ"]
        kind: echo
        seeds: [0, 1]
        plot: {x: architecture.adc.e_conv_J, y: random}
        """)
    out = tmp_path / "out"
    first = run_sweep(path, jobs=1, out=out, progress=False)
    assert (first.points, first.unique, first.skipped, first.computed, first.new) == (12, 8, 0, 8, 8)
    records = [json.loads(line) for line in lines_of(out / "results.jsonl")]
    assert len(records) == 8 and len({r["key"] for r in records}) == 8
    assert set(records[0]) == {"key", "point", "seed", "kind", "result", "seconds", "archsim_version"}
    assert all(r["result"]["values"]["device"] == r["point"]["device"] for r in records)
    assert (out / "summary.md").read_text().count("| rpu_asym5") == 6
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (out / "results.jsonl").read_bytes()
    again = run_sweep(path, jobs=1, out=out, progress=False)
    assert (again.skipped, again.computed, again.new) == (8, 0, 0)
    assert (out / "results.jsonl").read_bytes() == before
    assert [r["result"]["random"] for r in again.rows] == [r["result"]["random"] for r in first.rows]


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path, capsys):
    n_points = 16
    path = write_echo_sweep(tmp_path, n_points, 0.3)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    proc = start_sweep_process(path, out, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while len(lines_of(results)) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "sweep wrote nothing in 60 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    survived = [line for line in results.read_bytes().split(b"\n")[:-1]]  # complete lines only
    assert 4 <= len(survived) < n_points, "the kill came too late to test anything"

    # Resume, now without the sleep (it is not part of a point's key).
    path.write_text(path.read_text().replace("sleep_s: 0.3", "sleep_s: 0"))
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    done = len(survived)
    assert f"{done} already done, {n_points - done} computed" in capsys.readouterr().out
    final = results.read_bytes().split(b"\n")
    assert final[-1] == b""
    records = [json.loads(line) for line in final[:-1]]
    assert len(records) == n_points
    assert sorted(r["point"]["workload.training.batch_size"] for r in records) == list(range(1, n_points + 1))
    assert len({r["key"] for r in records}) == n_points
    assert final[: len(survived)] == survived  # earlier results unchanged, in place


def test_points_run_seed_by_seed_after_those_in_progress(tmp_path):
    # One job runs the tasks in the order handed to the backend, so the store's lines show it.
    path = write_sweep(tmp_path, """\
        axes:
          workload.training.batch_size: [1, 2, 3]
        kind: echo
        seeds: [5, 0]
        """)
    sweep = load_sweep(path)
    out = tmp_path / "out"
    in_progress = next(p for p in expand(sweep) if p.values["workload.training.batch_size"] == 3
                       and p.seed == 0)
    _, key = resolve_point(sweep, in_progress)
    (out / "checkpoints" / key).mkdir(parents=True)
    (out / "checkpoints" / key / "checkpoint.pt").write_bytes(b"left by a killed run")
    run_sweep(path, out=out, jobs=1, progress=False)
    records = [json.loads(line) for line in lines_of(out / "results.jsonl")]
    order = [(r["point"]["workload.training.batch_size"], r["seed"]) for r in records]
    assert order == [(3, 0), (1, 5), (2, 5), (3, 5), (1, 0), (2, 0)]
    assert not (out / "checkpoints" / key).exists()   # stored, so its checkpoint is gone


def test_run_order_keeps_population_tasks_in_the_first_round(tmp_path):
    from archsim.sweep.runner import run_order

    tasks = [{"seed": 1, "key": "a"}, {"seed": 0, "key": "b"}, {"group": [], "key": "c"},
             {"seed": 0, "key": "d"}]
    assert [t["key"] for t in run_order(tasks, [0, 1], tmp_path)] == ["b", "c", "d", "a"]
    assert [t["key"] for t in run_order(tasks, [1, 0], tmp_path)] == ["a", "c", "b", "d"]
    (tmp_path / "checkpoints" / "population-c").mkdir(parents=True)
    assert [t["key"] for t in run_order(tasks, [1, 0], tmp_path)] == ["a", "c", "b", "d"]  # empty
    (tmp_path / "checkpoints" / "population-c" / "checkpoint.pt").write_bytes(b"")
    assert [t["key"] for t in run_order(tasks, [1, 0], tmp_path)] == ["c", "a", "b", "d"]


def _reference_kind() -> str:
    """Real estimate once the estimate engine exists; the echo evaluator until then."""
    return "estimate" if importlib.util.find_spec("archsim.estimate") else "echo"


def _model_outputs(result: dict) -> dict:
    """A result without the simulator's own wall-clock measurements (they differ run to run)."""
    flat = flatten(result)
    return {k: v for k, v in flat.items() if not k.endswith(("wall_s", "events_per_s"))}


def test_dask_backend_matches_local_backend(tmp_path):
    distributed = pytest.importorskip("distributed")
    kind = _reference_kind()
    path = write_sweep(tmp_path, f"""\
        axes:
          device: [rpu_baseline, rpu_asym5]
          workload.training.batch_size: [2, 4, 8]
        kind: {kind}
        seeds: [0, 1]
        """)
    local = run_sweep(path, backend="local", jobs=1, out=tmp_path / "local", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask = run_sweep(path, backend="dask", address=cluster.scheduler_address,
                         out=tmp_path / "dask", progress=False)
    # No address: the runner starts (and stops) its own LocalCluster.
    auto = run_sweep(path, backend="dask", jobs=2, out=tmp_path / "auto", progress=False)
    assert local.new == dask.new == auto.new == 12

    def by_key(outcome):
        return {json.loads(line)["key"]: json.loads(line) for line in lines_of(outcome.results_path)}

    a = by_key(local)
    assert len(a) == 12
    for b in (by_key(dask), by_key(auto)):
        assert set(a) == set(b)
        for key in a:
            assert _model_outputs(a[key]["result"]) == _model_outputs(b[key]["result"])
            for field in ("point", "seed", "kind"):
                assert a[key][field] == b[key][field]


def test_dask_backend_without_dask_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n")
    assert main(["sweep", str(path), "--backend", "dask", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'archsim[dask]'" in err
    assert not (tmp_path / "o").exists()


# -- wiring of the real evaluators (with stand-ins for the engines) ---------------------------
def _install_fake_train(monkeypatch, behaviour):
    calls = []

    def train(workload, arch, device, *, max_chars=None, seed=0, progress=True, **extra):
        calls.append({"epochs": workload.training.epochs, "max_chars": max_chars, "seed": seed,
                      "progress": progress, "up_down": device.up_down, "bits": arch.dac.bits,
                      **extra})
        return behaviour(device)

    install_fake_train(monkeypatch, train)
    return calls


def test_train_points_call_the_trainer_with_budget_and_keep_scalars(tmp_path, monkeypatch):
    def behaviour(device):
        if device.up_down > 0.5:
            raise DivergenceError("loss became nan at step 3")
        return FakeTrainResult(1.0 + device.up_down, 1.1, 1.2 + device.up_down, 500, 0.1, [3.0, 2.0])

    calls = _install_fake_train(monkeypatch, behaviour)
    path = write_sweep(tmp_path, """\
        axes:
          device.up_down: [0.0, 0.1, 0.9]
          architecture.dac.bits: [5]
        kind: train
        seeds: [3]
        train: {max_chars: 500, epochs: 2}
        """)
    outcome = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)  # jobs=1: in-process
    assert [c["max_chars"] for c in calls] == [500] * 3 and {c["seed"] for c in calls} == {3}
    assert {c["epochs"] for c in calls} == {2} and {c["bits"] for c in calls} == {5}
    assert [c["progress"] for c in calls] == [False] * 3
    results = [r["result"] for r in outcome.rows]
    assert results[1] == {"train_loss": 1.1, "valid_loss": 1.1, "test_loss": pytest.approx(1.3),
                          "chars_seen": 500, "seconds": 0.1}  # the curve (a list) is dropped
    assert results[2]["diverged"] is True and "nan" in results[2]["error"]
    assert "test_loss" in outcome.columns and "diverged" in outcome.table


def test_a_training_summary_shows_the_last_epochs_training_loss_and_says_what_each_loss_is(
        tmp_path, monkeypatch):
    # Curve points each carry the mean since the previous one; the last epoch here is the two
    # points after epoch 1.0 (1.6 and 1.4), while the trainer's own train_loss (1.3) is a tenth.
    curve = [{"epoch": 0.5, "train_loss": 2.0}, {"epoch": 1.0, "train_loss": 1.8},
             {"epoch": 1.5, "train_loss": 1.6}, {"epoch": 2.0, "train_loss": 1.4}]
    _install_fake_train(monkeypatch, lambda device: FakeTrainResult(1.3, 1.5, 1.6, 500, 0.1, curve))
    path = write_sweep(tmp_path, """\
        axes:
          device.up_down: [0.0]
        kind: train
        train: {max_chars: 500, epochs: 2}
        """)
    outcome = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    result = outcome.rows[0]["result"]
    assert result["train_loss"] == 1.3 and result["train_loss_last_epoch"] == pytest.approx(1.5)
    assert outcome.columns[:2] == ["train_loss", "train_loss_last_epoch"]
    summary = outcome.summary_path.read_text()
    assert "`train_loss`: the trainer's mean training loss over the last tenth of an epoch" in summary
    assert "`train_loss_last_epoch`: the mean training loss over the last epoch" in summary


def test_a_resumed_training_run_counts_the_seconds_of_all_its_segments():
    from archsim.sweep.runner import _point_seconds

    # The record's seconds are the last segment's; the trainer's clock carries over checkpoints.
    train = {"kind": "train", "seconds": 5.0}
    assert _point_seconds({**train, "result": {"seconds": 120.0}}) == 120.0
    assert _point_seconds({**train, "result": {"diverged": True}}) == 5.0
    assert _point_seconds({**train, "result": {"seconds": "nan"}}) == 5.0   # compact's non-finite
    assert _point_seconds({"kind": "echo", "seconds": 5.0, "result": {"seconds": 7.0}}) == 5.0


def test_error_in_a_worker_is_one_line_with_its_exit_status(tmp_path, monkeypatch, capsys):
    def behaviour(device):
        raise SpecError("data.txt", "training.data", "data.txt", "no such text file")

    _install_fake_train(monkeypatch, behaviour)
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: train\n")
    assert main(["sweep", str(path), "--jobs", "1", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "archsim: error: data.txt: training.data: got 'data.txt'; no such text file"
    assert lines_of(tmp_path / "o" / "results.jsonl") == []


def test_estimate_points_call_the_estimate_api(tmp_path, monkeypatch):
    calls = []

    class _Result:
        def __init__(self, energy):
            self.energy = energy

        def to_json(self):
            return {"energy_J": self.energy, "time_s": 2.0, "breakdown": {"adc_J": self.energy / 2}}

    def estimate(workload, arch, device=None, *, exact=False):
        calls.append(exact)
        return _Result(arch.adc.e_conv_J * workload.training.batch_size)

    module = types.ModuleType("archsim.estimate")
    module.estimate = estimate
    monkeypatch.setitem(sys.modules, "archsim.estimate", module)
    path = write_sweep(tmp_path, """\
        axes:
          architecture.adc.e_conv_J: ["1 pJ", "3 pJ"]
          workload.training.batch_size: [1, 10]
        kind: estimate
        estimate: {exact: true}
        plot: {y: breakdown.adc_J, logy: true}
        """)
    outcome = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    assert calls == [True] * 4
    adc = [r["result"]["breakdown.adc_J"] for r in outcome.rows]
    assert adc == pytest.approx([0.5e-12, 5e-12, 1.5e-12, 15e-12])
    assert outcome.plot_path is not None and outcome.plot_path.is_file()


def test_make_task_is_plain_data(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, "axes: {device: [rpu_asym2]}\nkind: echo\n"))
    task = make_task(sweep, expand(sweep)[0])
    assert json.loads(json.dumps(task)) == task
    assert task["device"] == "rpu_asym2" and task["overrides"]["workload"]["device"] == "rpu_asym2"


def test_example_sweep_files_are_valid():
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        sweep = load_sweep(path)
        assert expand(sweep)


def test_train_eval_every_reaches_the_trainer_unless_a_checkpoint_has_another(tmp_path, monkeypatch):
    from archsim.sweep.evaluate import resumed_eval_every

    calls = _install_fake_train(monkeypatch, lambda d: FakeTrainResult(1.0, 1.1, 1.2, 50, 0.1, []))
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: train\n"
                                 "train: {max_chars: 50, eval_every: 25}\n")
    run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    assert [c["eval_every"] for c in calls] == [25]
    # A point resumed from a checkpoint written at another cadence keeps that cadence.
    ckpt = tmp_path / "ckpt"
    assert resumed_eval_every(str(ckpt), 25) == 25            # no checkpoint yet
    ckpt.mkdir()
    (ckpt / "checkpoint.json").write_text(json.dumps({"step": 90, "eval_every": 90}))
    assert resumed_eval_every(str(ckpt), 25) == 90 and resumed_eval_every(None, 25) == 25
    assert resumed_eval_every(str(ckpt), None) == 90    # the option removed since: still 90
    (ckpt / "checkpoint.json").write_text("{torn")
    assert resumed_eval_every(str(ckpt), 25) == 25 and resumed_eval_every(str(ckpt), None) is None


def test_the_curve_cadence_changes_no_trained_number(tmp_path):
    """Why ``train.eval_every`` may stay out of the key: a run evaluated every 2 steps and one
    evaluated only at the end train the same weights and end with the same losses (the training
    loss too: it is the mean over the last tenth of an epoch, whatever the cadence)."""
    torch = pytest.importorskip("torch")
    from archsim.functional.train import train
    from archsim.specs import load_architecture, load_device, load_workload

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    w = load_workload(Path(__file__).resolve().parents[1] / "workloads" / "tiny.yaml")
    arch, dev = load_architecture("rpu2016"), load_device("rpu_baseline")
    runs = []
    for every in (2, 10**6):
        out = tmp_path / f"e{every}"
        r = train(w, arch, dev, data_path=text, max_chars=400, seed=4, progress=False,
                  eval_every=every, out_dir=out, write_plots=False)
        weights = torch.load(out / "checkpoint.pt", weights_only=False)
        runs.append((r, weights))
    (a, wa), (b, wb) = runs
    assert len(a.curve) > len(b.curve)
    assert (a.train_loss, a.valid_loss, a.test_loss) == (b.train_loss, b.valid_loss, b.test_loss)
    assert a.activity == b.activity      # the evaluations' conversions are not counted either
    tiles = [(ta, tb) for ma, mb in zip(wa["model"]["tiles"], wb["model"]["tiles"])
             for ta, tb in zip(ma, mb)]
    assert tiles
    for ta, tb in tiles:
        assert torch.equal(ta["weight"], tb["weight"])


def test_plot_lines_are_named_by_the_axes_that_vary_and_the_rest_said_once():
    """A zip sweep of eight axes of which two vary: the legend names lines by the varying one
    (the x axis aside), and the constant ones are listed once, however many runs have finished."""
    from archsim.sweep.runner import _legend_axes

    def row(device, dropout, done):
        return {"values": {"device": device, "dropout": dropout, "hidden_size": 512, "lr": 0.01},
                "done": done}

    rows = [row("rpu_baseline", 0.0, False), row("ideal", 0.0, True), row("ideal", 0.5, False)]
    assert _legend_axes(rows, "device") == (["dropout"], [("hidden_size", 512), ("lr", 0.01)])
    assert _legend_axes(rows, "dropout") == (["device"], [("hidden_size", 512), ("lr", 0.01)])
    assert _legend_axes(rows[:1], "device") == ([], [("dropout", 0.0), ("hidden_size", 512), ("lr", 0.01)])
