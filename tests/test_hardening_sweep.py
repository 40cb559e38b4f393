"""Hardening of `archsim sweep` / `archsim reproduce`: failed points are recorded (not fatal),
SIGTERM and a killed parent leave no workers behind, Dask addresses are checked, sweep names are
plain names, and unwritable --out folders are one line."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from archsim.cli import main
from archsim.errors import SpecError
from archsim.sweep import run_sweep

from conftest import (  # noqa: E402
    TINY_SWEEP_BASE, FakeTrainResult, install_fake_train, lines_of, start_sweep_process,
    write_echo_sweep, write_sweep,
)


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in lines_of(path)]


def one_line_error(capsys, rc: int, expected_rc: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == expected_rc, err
    assert err.startswith("archsim: error:") and "\n" not in err and "Traceback" not in err, err
    return err


# -- 7a: a failed point is recorded, the sweep goes on ----------------------------------------
def test_infeasible_point_is_recorded_with_its_error_and_the_sweep_goes_on(tmp_path, capsys):
    # The tiny workload needs 2 tiles (LSTM layer + output layer): 1 tile cannot hold it.
    path = write_sweep(tmp_path, """\
        axes:
          architecture.system.n_tiles: [64, 1]
          workload.training.batch_size: [1, 4]
        kind: estimate
        """)
    out = tmp_path / "out"
    rc = main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 4, captured.err
    err = captured.err.strip()
    assert err == (f"archsim: error: 2 of 4 points failed (listed under 'Failed points' above and in "
                   f"{out / 'summary.md'})")
    printed = captured.out
    assert "Failed points (2 of 4):" in printed
    for batch in (1, 4):
        label = f"- architecture.system.n_tiles=1, workload.training.batch_size={batch}, seed=0, kind=estimate: "
        line = next(x for x in printed.splitlines() if x.startswith(label))
        error = line.split(label)[1]   # the engine's one-line error: the field, the value, the need
        assert "system.n_tiles" in error and "got 1;" in error and "needs 2 tiles" in error
    assert printed.count("| failed") == 2

    records = records_of(out / "results.jsonl")
    assert len(records) == 4
    good = [r for r in records if r["point"]["architecture.system.n_tiles"] == 64]
    bad = [r for r in records if r["point"]["architecture.system.n_tiles"] == 1]
    assert all("result" in r and "failed" not in r for r in good)
    assert all(r["failed"] is True and "result" not in r for r in bad)
    assert all(r["error"]["message"] == error and r["error"]["exit_status"] == 2 for r in bad)
    summary = (out / "summary.md").read_text()
    assert "## Failed points" in summary and "2 of 4 points failed" in summary
    assert "- architecture.system.n_tiles=1, workload.training.batch_size=4, seed=0, kind=estimate: `" in summary
    assert (out / "plot.png").is_file()   # the feasible points are still plotted


def test_failed_points_are_not_retried_on_resume(tmp_path, capsys):
    path = write_sweep(tmp_path, """\
        axes:
          architecture.system.n_tiles: [64, 1]
        kind: estimate
        """)
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]
    assert main(argv) == 4
    capsys.readouterr()
    before = (out / "results.jsonl").read_bytes()
    assert main(argv) == 4   # the sweep still has a failed point: same status on every run
    captured = capsys.readouterr()
    assert "2 already done, 0 computed, 0 new records" in captured.out
    assert "- architecture.system.n_tiles=1, seed=0, kind=estimate: " in captured.out
    assert captured.err.startswith("archsim: error: 1 of 2 points failed")
    assert (out / "results.jsonl").read_bytes() == before


def test_an_invalid_combination_is_a_failed_point_never_sent_to_a_worker(tmp_path, capsys):
    # train_chars: null is a valid value, but the base workload has no text file either.
    path = write_sweep(tmp_path, """\
        axes:
          workload.training.train_chars: [1000, null]
        kind: echo
        """)
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 4, captured.err
    assert "- workload.training.train_chars=None, seed=0, kind=echo: " in captured.out
    assert "set train_chars" in captured.out
    records = records_of(out / "results.jsonl")
    assert [r["point"] for r in records] == [{"workload.training.train_chars": 1000}]  # not stored
    assert main(argv) == 4
    assert "1 already done, 0 computed" in capsys.readouterr().out
    # No point of the sweep is valid: a mistake in the sweep, stopped before anything runs.
    none = write_sweep(tmp_path, "axes:\n  workload.training.train_chars: [null]\nkind: echo\n", "n.yaml")
    err = one_line_error(capsys, main(["sweep", str(none), "--out", str(tmp_path / "o2"), "--no-progress"]))
    assert "this point gives a bad spec" in err and not (tmp_path / "o2").exists()


def test_an_environment_error_in_a_worker_still_stops_the_sweep_with_one_line(tmp_path, monkeypatch, capsys):
    """An error that is not about the point's own specs would hit every point: it stops the sweep
    (as before), while an error naming the point's architecture is recorded as that point's failure."""
    def train(workload, arch, device, **kwargs):
        if device.up_down > 0.04:
            raise SpecError(arch.name, "system.n_tiles", 1, "the workload needs 2 tiles")
        return FakeTrainResult(2.0, 2.0, 2.0 + device.up_down, 200, 0.01, [])

    install_fake_train(monkeypatch, train)
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0, 0.05]}\nkind: train\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]) == 4
    assert "device.up_down=0.05, seed=0, kind=train: rpu2016: system.n_tiles: got 1" in capsys.readouterr().out
    records = {r["point"]["device.up_down"]: r for r in records_of(out / "results.jsonl")}
    assert records[0.0]["result"]["test_loss"] == 2.0 and records[0.05]["failed"] is True


def reproduce_sweeps(tmp_path: Path) -> Path:
    """An asymmetry sweep over the tiny workload (the fake trainer makes it instant)."""
    (tmp_path / "tiny.yaml").write_text(TINY_SWEEP_BASE)
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "asymmetry.yaml").write_text(textwrap.dedent("""\
        base: ../tiny.yaml
        mode: zip
        axes:
          device: [ideal, rpu_baseline, rpu_baseline]
          device.up_down: [0.0, 0.0, 0.05]
        kind: train
        seeds: [0]
        train: {max_chars: 200}
        """))
    return sweeps


def test_reproduce_lists_failed_points_and_exits_4(tmp_path, monkeypatch, capsys):
    def train(workload, arch, device, **kwargs):
        if device.up_down > 0.04:
            raise SpecError(arch.name, "system.n_tiles", 1, "the workload needs 2 tiles")
        return FakeTrainResult(2.0, 2.0, 2.0 + device.up_down, 200, 0.01, [])

    install_fake_train(monkeypatch, train)
    sweeps, out = reproduce_sweeps(tmp_path), tmp_path / "r"
    rc = main(["reproduce", "asymmetry", "--sweeps", str(sweeps), "--out", str(out), "--jobs", "1",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 4, captured.err
    assert captured.err.strip() == ("archsim: error: 1 of 3 sweep points failed (listed above and in the "
                                    "reports); their claims are judged without them")
    assert "failed point: device=rpu_baseline, device.up_down=0.05, seed=0, kind=train: rpu2016: " \
           "system.n_tiles: got 1" in captured.out
    report = (out / "asymmetry.md").read_text()
    assert "- Failed points: 1 of 3 (not in the analysis): device=rpu_baseline" in report
    assert len(records_of(out / "runs" / "asymmetry" / "results.jsonl")) == 3


# -- 7b: SIGTERM and a killed parent ----------------------------------------------------------
def _alive(procs) -> list:
    import psutil

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(procs, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(procs)


def _wait_for_records(proc, results: Path, n: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while len(lines_of(results)) < n:
        assert proc.poll() is None, "the sweep ended before storing a result"
        assert time.monotonic() < deadline, f"the sweep stored nothing in {seconds} s"
        time.sleep(0.05)


def _cleanup(proc, children) -> None:
    """Kill what this test started (its own session and the children it recorded), by id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for child in _alive(children):
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - gone already
            pass
    proc.wait()


def test_sigterm_is_143_keeps_stored_results_and_leaves_no_workers(tmp_path, capsys):
    psutil = pytest.importorskip("psutil")
    n_points = 12
    path = write_echo_sweep(tmp_path, n_points, 1.5)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    # stderr to a file, not a pipe: orphaned workers holding a pipe open would block reading it.
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = start_sweep_process(path, out, stderr)
    children: list = []
    try:
        _wait_for_records(proc, results, 1)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2   # the two pool workers (and loky's resource tracker)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        err = (tmp_path / "stderr.txt").read_text()
        assert proc.returncode == 143, err
        assert "archsim: terminated" in err.splitlines() and "Traceback" not in err, err
        assert _wait_gone(children, 15) == [], "workers outlived the sweep"
    finally:
        _cleanup(proc, children)
    stored = records_of(results)   # every complete line is a valid record
    assert 1 <= len(stored) < n_points
    # Resume (without the sleep, which is not part of a point's key): only the rest is computed.
    path.write_text(path.read_text().replace("sleep_s: 1.5", "sleep_s: 0"))
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    assert f"{len(stored)} already done, {n_points - len(stored)} computed" in capsys.readouterr().out
    assert len(records_of(results)) == n_points


DRIVER = """\
import sys
import time

from archsim.sweep import run_sweep
from archsim.sweep.evaluate import run_task


def slow(task):
    # The first point is quick (a stored result shows the workers are computing); the others
    # would run for a minute.
    time.sleep(0.1 if task["index"] == 0 else 60)
    return run_task(task)


if __name__ == "__main__":
    run_sweep(sys.argv[1], out=sys.argv[2], jobs=2, progress=False, worker=slow)
"""


def test_workers_exit_when_their_parent_is_sigkilled(tmp_path):
    psutil = pytest.importorskip("psutil")
    path = write_sweep(tmp_path, """\
        axes:
          workload.training.batch_size: [1, 2, 3, 4, 5, 6]
        kind: echo
        """)
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "driver.py", str(path), str(out)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    children: list = []
    try:
        _wait_for_records(proc, out / "results.jsonl", 1)
        time.sleep(1.0)   # both workers are inside a minute-long point now
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        os.kill(proc.pid, signal.SIGKILL)   # the parent only: nobody shuts the pool down
        proc.wait()
        left = _wait_gone(children, 15)
        assert left == [], f"orphaned workers still running: {[p.cmdline()[:3] for p in left]}"
    finally:
        _cleanup(proc, children)


def test_reproduce_handles_sigterm_like_sigint(tmp_path, monkeypatch, capsys):
    class Killed(Exception):
        pass

    def fallback(signum, frame):   # without archsim's handler this test process would just die
        raise Killed()

    calls = []

    def train(workload, arch, device, **kwargs):
        calls.append(device.name)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)   # the signal interrupts this
        return FakeTrainResult(2.0, 2.0, 2.0, 200, 0.01, [])

    install_fake_train(monkeypatch, train)
    sweeps, out = reproduce_sweeps(tmp_path), tmp_path / "r"
    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        start = time.monotonic()
        rc = main(["reproduce", "asymmetry", "--sweeps", str(sweeps), "--out", str(out), "--jobs", "1",
                   "--no-progress"])
        assert signal.getsignal(signal.SIGTERM) is fallback   # restored afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rc == 143 and time.monotonic() - start < 5
    assert capsys.readouterr().err.strip() == "archsim: terminated"
    assert len(calls) == 2
    assert len(records_of(out / "runs" / "asymmetry" / "results.jsonl")) == 1   # kept
    assert not (out / "asymmetry.md").exists()


# -- 7c: Dask addresses -----------------------------------------------------------------------
@pytest.mark.parametrize("address, message", [
    ("notanaddress", "expected a Dask scheduler address SCHEME://HOST:PORT"),
    ("http://127.0.0.1:8786", "unknown scheme http://"),
    ("tcp://127.0.0.1", "expected a Dask scheduler address"),
    ("tcp://127.0.0.1:99999", "port 99999 is out of range"),
    ("tcp://127.0.0.1:0", "port 0 is out of range"),
    ("inproc://127.0.0.1/1/2", "expected a Dask scheduler address"),
    ("tcp://127.0.0.1:8786/x", "expected a Dask scheduler address"),
    (" tcp://127.0.0.1:8786", "expected a Dask scheduler address"),
])
@pytest.mark.parametrize("command", ["sweep", "reproduce"])
def test_malformed_address_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, address, message, command):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    if command == "sweep":
        path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n")
        argv = ["sweep", str(path), "--address", address, "--out", str(out), "--no-progress"]
    else:
        argv = ["reproduce", "macs", "--address", address, "--out", str(out), "--no-progress"]
    err = one_line_error(capsys, main(argv))
    assert err.startswith(f"archsim: error: command line: --address: got {address!r}; "), err
    assert message in err
    assert not out.exists()


class Listener:
    """A loopback TCP listener that is not a Dask scheduler: ``silent`` accepts and never answers,
    ``exabytes`` answers with a length prefix of 3 EiB, ``http`` answers like a web server,
    ``closed`` is a port nobody listens on."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = None
        if mode == "closed":
            self.sock.close()
            return
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            try:
                if self.mode == "exabytes":
                    conn.sendall(struct.pack("<Q", 3 << 60) + b"\0" * 64)
                elif self.mode == "http":
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("mode, message", [
    ("silent", "no Dask scheduler answered within 1 s (raise --connect-timeout for a slow one)"),
    ("exabytes", "something that is not a Dask scheduler answered there (garbled handshake: MemoryError)"),
    ("http", "something that is not a Dask scheduler answered there (garbled handshake"),
    ("closed", "nothing accepted a connection within 1 s"),
])
def test_address_that_is_not_a_scheduler_is_one_line_within_the_timeout(tmp_path, capsys, mode, message):
    pytest.importorskip("distributed")
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0, 0.1]}\nkind: echo\n")
    out = tmp_path / "out"
    listener = Listener(mode)
    try:
        start = time.monotonic()
        rc = main(["sweep", str(path), "--address", listener.address, "--connect-timeout", "1",
                   "--out", str(out), "--no-progress"])
        took = time.monotonic() - start
    finally:
        listener.close()
    err = one_line_error(capsys, rc)
    assert err.startswith(f"archsim: error: command line: --address: got {listener.address!r}; {message}"), err
    assert took < 15
    assert not out.exists()


# -- 6b: sweep names ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../x", "a/b", ".hidden", "..", "/tmp/abs", "a b", "x\\y", "a\u0000b"])
def test_sweep_name_must_be_a_plain_name(tmp_path, monkeypatch, capsys, name):
    work = tmp_path / "a" / "b" / "c"
    write_sweep(work, "")
    path = work / "s.yaml"
    body = "axes: {device.up_down: [0.0]}\nkind: echo\nbase: tiny.yaml\n"
    path.write_text(f"name: {json.dumps(name)}\n" + body)   # a JSON string is a YAML string
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*"))
    err = one_line_error(capsys, main(["sweep", str(path), "--no-progress"]))
    assert err.startswith(f"archsim: error: {path}:1: name: got {name!r}; a plain name: letters, digits"), err
    assert sorted(p for p in tmp_path.rglob("*")) == before   # nothing written anywhere
    # A plain name with dots, dashes and underscores is fine.
    path.write_text("name: v1.2_run-3\n" + body)
    assert main(["sweep", str(path), "--no-progress"]) == 0
    assert (work / "reports" / "sweeps" / "v1.2_run-3" / "results.jsonl").is_file()


def test_a_file_name_that_is_not_a_plain_name_needs_a_name_field(tmp_path, capsys):
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n", name=".x.yaml")
    err = one_line_error(capsys, main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]))
    assert "name: got '.x'" in err and "set name:" in err


# -- 2: --out that cannot be written ------------------------------------------------------------
@pytest.mark.parametrize("where", ["file", "below_file"])
@pytest.mark.parametrize("command", ["sweep", "reproduce"])
def test_out_that_is_a_file_or_below_one_is_one_line(tmp_path, capsys, where, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    out = blocker if where == "file" else blocker / "sub" / "dir"
    if command == "sweep":
        path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n")
        argv = ["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]
    else:
        argv = ["reproduce", "macs", "--out", str(out), "--no-progress"]
    err = one_line_error(capsys, main(argv))
    assert err.startswith("archsim: error: command line: --out: got '"), err   # (long paths are shortened)
    assert ("; a folder to write into (this is a file)" if where == "file"
            else f"; a folder to write into ({blocker} is a file)") in err
    assert blocker.read_text() == "not a folder\n"


def test_default_out_below_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    path = write_sweep(tmp_path, "name: dflt\naxes: {device.up_down: [0.0]}\nkind: echo\n")
    (tmp_path / "reports").write_text("a file where the reports folder would go\n")
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, main(["sweep", str(path), "--no-progress"]))
    assert "--out (default): got 'reports/sweeps/dflt'; a folder to write into (reports is a file)" in err


@pytest.mark.parametrize("command", ["sweep", "reproduce"])
def test_read_only_out_is_one_line_and_nothing_is_computed(tmp_path, monkeypatch, capsys, command):
    # Tests run as root, which can write to a 0o555 folder: a read-only folder is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    out = tmp_path / "ro"
    out.mkdir()
    if command == "sweep":
        path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n")
        argv = ["sweep", str(path), "--out", str(out), "--jobs", "1", "--no-progress"]
    else:
        argv = ["reproduce", "macs", "--out", str(out), "--no-progress"]
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    err = one_line_error(capsys, main(argv))
    assert err.startswith("archsim: error: command line: --out: got '"), err
    assert err.endswith(f"; a folder you can write to ({out}: permission denied)"), err
    assert list(out.iterdir()) == []


def test_library_checks_out_before_computing(tmp_path):
    path = write_sweep(tmp_path, "axes: {device.up_down: [0.0]}\nkind: echo\n")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SpecError, match="--out: got .*a folder to write into"):
        run_sweep(path, out=tmp_path / "f", jobs=1, progress=False)
