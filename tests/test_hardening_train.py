"""Hardening of `archsim train` / `archsim validate`: safe checkpoints (weights_only + a JSON
description), resume/--force policies, wall-time checkpoint cadence, divergence messages, --seed,
and unwritable --out folders."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archsim.cli import main  # noqa: E402
from archsim.errors import DivergenceError, SpecError  # noqa: E402
from archsim.functional import train as train_module  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.functional.train import train, validate  # noqa: E402
from archsim.specs import load_architecture  # noqa: E402

from conftest import TINY, tiny_specs as _specs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli_train(text_file, out, *extra) -> list[str]:
    return ["train", str(TINY), "--device", "rpu_baseline", "--data", str(text_file),
            "--out", str(out), "--no-progress", "--eval-every", "7", *extra]


def _one_line_error(capsys, rc, expected_rc=2) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == expected_rc, err
    assert err.startswith("archsim: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def _strip_seconds(curve):
    return [{k: v for k, v in p.items() if k != "seconds"} for p in curve]


def _same_run(a, b):
    for key in ("train_loss", "valid_loss", "test_loss", "chars_seen", "steps", "activity"):
        assert getattr(a, key) == getattr(b, key), key
    assert _strip_seconds(a.curve) == _strip_seconds(b.curve)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, text_file) -> Path:
    """A folder holding the checkpoint of a real 10-step CLI run (200 chars); copy before use."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(_cli_train(text_file, out, "--max-chars", "200")) == 0
    return out


def _copy_run(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def _rehash(js: Path, pt: Path, **changes) -> None:
    """Make checkpoint.json describe the (tampered) checkpoint.pt, as an attacker could."""
    meta = json.loads(js.read_text()) if js.is_file() else {}
    meta.update(sha256=hashlib.sha256(pt.read_bytes()).hexdigest(), **changes)
    js.write_text(json.dumps(meta))


# -- A. checkpoints: plain data, a JSON description, verified on resume --------------------------
def test_checkpoint_is_plain_data_described_by_json(finished_run):
    pt, js = finished_run / "checkpoint.pt", finished_run / "checkpoint.json"
    ck = torch.load(pt, map_location="cpu", weights_only=True)   # no code, only data
    meta = json.loads(js.read_text())
    assert meta["format"] == ck["format"] == 2 and meta["key"] == ck["key"]
    assert meta["step"] == ck["step"] == 10 and meta["eval_every"] == 7
    assert meta["sha256"] == hashlib.sha256(pt.read_bytes()).hexdigest()
    for gen in ck["model"]["generators"].values():
        assert isinstance(gen, torch.Tensor) and gen.dtype == torch.uint8


class _RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint.pt could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(finished_run, tmp_path, text_file, capsys):
    out = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    pt, js = out / "checkpoint.pt", out / "checkpoint.json"
    ck = torch.load(pt, weights_only=True)
    ck["model"] = _RunsCode(marker)
    torch.save(ck, pt)
    # The attacker can rewrite the description too: the hash matches, weights_only must stop it.
    _rehash(js, pt)
    before = pt.read_bytes()
    try:
        rc = main(_cli_train(text_file, out, "--max-chars", "400", "--resume"))
    except Exception as exc:  # noqa: BLE001 -- the marker is what this test is about
        rc = exc
    assert not marker.exists(), "unpickling the checkpoint ran code"
    err = _one_line_error(capsys, rc)
    assert "checkpoint.pt" in err and "weights_only" in err
    assert pt.read_bytes() == before   # nothing trained over it


@pytest.mark.parametrize("damage, names", [
    ("truncate_pt", "checkpoint.pt"),
    ("garbage_pt_hash_matches", "checkpoint.pt"),
    ("garbage_json", "checkpoint.json"),
    ("json_wrong_key", "checkpoint.json"),
    ("no_json", "checkpoint.pt"),
])
def test_damaged_checkpoint_is_one_line_exit_2(finished_run, tmp_path, text_file, capsys, damage, names):
    out = _copy_run(finished_run, tmp_path)
    pt, js = out / "checkpoint.pt", out / "checkpoint.json"
    if damage == "truncate_pt":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    elif damage == "garbage_pt_hash_matches":
        pt.write_bytes(b"\x80\x02garbage" * 100)
        _rehash(js, pt)
    elif damage == "garbage_json":
        js.write_text("{not json")
    elif damage == "json_wrong_key":
        _rehash(js, pt, key="0123456789abcdef")
    else:
        js.unlink(missing_ok=True)
    rc = main(_cli_train(text_file, out, "--max-chars", "400", "--resume"))
    err = _one_line_error(capsys, rc)
    assert f"{out / names}:" in err
    assert "--force" in err


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, text_file, capsys):
    out = tmp_path / "new"
    assert main(_cli_train(text_file, out, "--max-chars", "100", "--resume", "--json")) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "no checkpoint" in line]
    assert len(notes) == 1 and str(out) in notes[0] and "archsim: error" not in captured.err
    result = json.loads(captured.out)
    assert result["steps"] == 5 and any("no checkpoint" in n for n in result["notes"])
    assert (out / "checkpoint.pt").is_file() and (out / "checkpoint.json").is_file()


def test_existing_checkpoint_needs_resume_or_force(finished_run, tmp_path, text_file, capsys):
    out = _copy_run(finished_run, tmp_path)
    before = (out / "checkpoint.pt").read_bytes()
    # the same run again, without --resume: refused, nothing touched
    rc = main(_cli_train(text_file, out, "--max-chars", "200"))
    err = _one_line_error(capsys, rc)
    assert "checkpoint.pt" in err and "--resume" in err and "--force" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    # both flags at once: a usage error
    assert main(_cli_train(text_file, out, "--max-chars", "200", "--resume", "--force")) == 2
    capsys.readouterr()
    # --force starts over (a new run of 5 steps replaces the 10-step checkpoint)
    assert main(_cli_train(text_file, out, "--max-chars", "100", "--force", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 5
    # validate checks both of its folders before training either
    vout = tmp_path / "v"
    shutil.copytree(finished_run, vout / "rpu_baseline")
    args = ["validate", str(TINY), "--device", "rpu_baseline", "--data", str(text_file),
            "--max-chars", "100", "--out", str(vout), "--no-progress", "--eval-every", "7"]
    err = _one_line_error(capsys, main(args))
    assert "rpu_baseline/checkpoint.pt" in err and "--force" in err
    assert not (vout / "fp").exists()
    assert main(args + ["--force"]) == 0


def test_resume_budget_smaller_is_an_error_equal_returns_the_result(finished_run, tmp_path, text_file, capsys):
    out = _copy_run(finished_run, tmp_path)
    result_before = json.loads((out / "result.json").read_text())
    err = _one_line_error(capsys, main(_cli_train(text_file, out, "--max-chars", "100", "--resume")))
    assert "--max-chars" in err and "10 steps" in err
    # equal budget: the finished run's result again, nothing trained
    assert main(_cli_train(text_file, out, "--max-chars", "200", "--resume", "--json")) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("train_loss", "valid_loss", "test_loss", "steps", "activity"):
        assert again[key] == result_before[key], key


def test_resume_with_another_eval_every_is_refused(finished_run, tmp_path, text_file, capsys):
    out = _copy_run(finished_run, tmp_path)
    args = _cli_train(text_file, out, "--max-chars", "400", "--resume")
    args[args.index("--eval-every") + 1] = "5"
    err = _one_line_error(capsys, main(args))
    assert "checkpoint.json" in err and "eval_every" in err


def test_kill_between_the_two_checkpoint_writes_stays_resumable(tmp_path, text_file, monkeypatch):
    w, a, d = _specs()
    kw = dict(data_path=text_file, progress=False, eval_every=7, checkpoint_seconds=0, max_chars=300)
    full = train(w, a, d, out_dir=tmp_path / "full", **kw)
    real_write = train_module.atomic_write_bytes
    pt_writes = []

    def killed_before_third_pt(path, data):
        if Path(path).name == "checkpoint.pt":
            pt_writes.append(path)
            if len(pt_writes) == 3:
                raise KeyboardInterrupt   # the JSON of step 3 is on disk, the .pt of step 2
        return real_write(path, data)

    monkeypatch.setattr(train_module, "atomic_write_bytes", killed_before_third_pt)
    with pytest.raises(KeyboardInterrupt):
        train(w, a, d, out_dir=tmp_path / "part", **kw)
    monkeypatch.setattr(train_module, "atomic_write_bytes", real_write)
    meta = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    pt_sha = hashlib.sha256((tmp_path / "part" / "checkpoint.pt").read_bytes()).hexdigest()
    assert meta["step"] == 3 and meta["previous"] == {"step": 2, "sha256": pt_sha}
    rest = train(w, a, d, out_dir=tmp_path / "part", resume=True, **kw)
    _same_run(rest, full)


# -- B. wall-time checkpoints never change what a run records ------------------------------------
def test_wall_time_checkpoints_resume_bit_identical(tmp_path, text_file, monkeypatch):
    w, a, d = _specs("rpu_baseline", **{"training.dropout": 0.2})
    kw = dict(data_path=text_file, progress=False, eval_every=7, max_chars=600)
    full = train(w, a, d, out_dir=tmp_path / "full", checkpoint_seconds=None, **kw)
    real_step = AnalogLSTM.train_step
    calls = []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 12:
            raise KeyboardInterrupt   # a kill during step 12
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(AnalogLSTM, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train(w, a, d, out_dir=tmp_path / "part", checkpoint_seconds=0, **kw)
    monkeypatch.setattr(AnalogLSTM, "train_step", real_step)
    # step 11 is no curve point (eval_every 7): only the wall-time cadence saved it
    assert json.loads((tmp_path / "part" / "checkpoint.json").read_text())["step"] == 11
    rest = train(w, a, d, out_dir=tmp_path / "part", resume=True, checkpoint_seconds=0, **kw)
    _same_run(rest, full)
    # the curve files are written at curve points only, and agree with the uninterrupted run's
    curve = json.loads((tmp_path / "part" / "curve.json").read_text())["curve"]
    assert [p["step"] for p in curve] == [p["step"] for p in full.curve]


def test_checkpoint_seconds_must_be_finite_and_not_negative(tmp_path, text_file):
    w, a, d = _specs()
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(SpecError, match="checkpoint_seconds"):
            train(w, a, d, data_path=text_file, max_chars=20, progress=False, checkpoint_seconds=bad)


# -- C. messages ---------------------------------------------------------------------------------
def _broken_periphery_arch():
    a = load_architecture("rpu2016")
    # model_copy(update=...) skips validation: the state a spec without finiteness checks let through
    periphery = a.periphery.model_copy(update={"out_noise": math.inf})
    return a.model_copy(update={"periphery": periphery})


def test_validate_divergence_names_the_run(tmp_path, text_file, capsys):
    rc = main(["validate", str(TINY), "--device", "rpu_baseline", "--data", str(text_file),
               "--lr", "1e4", "--max-chars", "2000", "--out", str(tmp_path / "o"), "--no-progress"])
    err = _one_line_error(capsys, rc, DivergenceError.exit_status)
    assert err.startswith("archsim: error: floating-point run: training diverged at step")
    assert "learning_rate" in err   # a later step: the learning rate is the likely cause
    w, _, d = _specs()
    with pytest.raises(DivergenceError, match=r"^rpu_baseline run: training diverged at step 1"):
        validate(w, _broken_periphery_arch(), d, data_path=text_file, max_chars=200, progress=False)


def test_first_step_blowup_blames_the_parameters_not_the_learning_rate(text_file, monkeypatch):
    w, _, d = _specs()
    with pytest.raises(DivergenceError) as info:
        train(w, _broken_periphery_arch(), d, data_path=text_file, max_chars=200, progress=False)
    message = str(info.value)
    assert "first step" in message and "out_noise" in message and "learning_rate" not in message

    def nan_step(self, ids, targets, state, lr):
        return float("nan"), state

    monkeypatch.setattr(AnalogLSTM, "train_step", nan_step)
    with pytest.raises(DivergenceError) as info:
        train(w, load_architecture("rpu2016"), d, data_path=text_file, max_chars=200, progress=False)
    message = str(info.value)
    assert "non-finite loss on its first step" in message and "learning_rate" not in message


@pytest.mark.parametrize("seed", ["-5", str(2**70), "2**3", "1.5"])
def test_seed_out_of_range_is_a_usage_error(tmp_path, text_file, capsys, seed):
    rc = main(_cli_train(text_file, tmp_path / "o", "--max-chars", "20", "--seed", seed))
    err = _one_line_error(capsys, rc)
    assert "--seed" in err and "2^63-1" in err
    assert not (tmp_path / "o").exists()


# -- D. an --out that cannot be written: one line, exit 2, nothing computed or written -----------
@pytest.mark.parametrize("command", ["train", "validate"])
@pytest.mark.parametrize("case", ["file", "below_file", "read_only"])
def test_unwritable_out_is_one_line_exit_2(tmp_path, text_file, capsys, monkeypatch, command, case):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    out = {"file": a_file, "below_file": a_file / "sub" / "run", "read_only": tmp_path / "ro" / "run"}[case]
    if case == "read_only":
        (tmp_path / "ro").mkdir()
        # Tests run as root, for whom chmod 0o555 changes nothing: make every create fail instead.

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    trained = []

    def no_training(*args, **kwargs):
        trained.append(1)
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(AnalogLSTM, "train_step", no_training)
    rc = main([command, str(TINY), "--device", "rpu_baseline", "--data", str(text_file),
               "--max-chars", "20", "--out", str(out), "--no-progress"])
    err = _one_line_error(capsys, rc)
    assert "--out" in err and not trained
    assert a_file.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["a_file"] + (["ro"] if case == "read_only" else []))
