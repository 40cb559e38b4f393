"""``archsim train --population S S ...``: several seeds as one population from the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from archsim.cli import main  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog; " * 60
WORKLOAD = """\
name: pop_cli
model: {layers: 1, hidden_size: 8, vocab_size: 32}
training: {seq_len: 10, batch_size: 2, learning_rate: 0.1, data: text.txt, epochs: 1}
architecture: rpu2016
device: rpu_baseline
baselines: []
"""


@pytest.fixture
def workload(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD)
    return path


def test_population_writes_each_seed_and_resumes(workload, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["train", str(workload), "--population", "3", "4", "--max-chars", "400", "--out", str(out),
            "--no-progress", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert [m["seed"] for m in first["members"]] == [3, 4]
    for seed in (3, 4):
        result = json.loads((out / f"seed{seed}" / "result.json").read_text())
        assert result["seed"] == seed and result["test_loss"] > 0
        assert (out / f"seed{seed}" / "curve.png").is_file()
    # The checkpoint is refused without --resume/--force; --resume returns the finished run again.
    assert main(args) == 2
    assert "use --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [m["test_loss"] for m in again["members"]] == [m["test_loss"] for m in first["members"]]


@pytest.mark.parametrize("extra, message", [
    (["--population", "3"], "two or more distinct seeds"),
    (["--population", "3", "3"], "two or more distinct seeds"),
    (["--population", "3", "4", "--seed", "1"], "give one: --seed for one model"),
])
def test_population_flags_are_checked_with_one_line(workload, tmp_path, capsys, extra, message):
    assert main(["train", str(workload), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_population_too_large_for_memory_is_one_line():
    from archsim.errors import SpecError
    from archsim.feasibility import check_training_memory
    from archsim.specs import load_architecture, load_device, load_workload

    w = load_workload(str(Path(__file__).resolve().parent.parent / "workloads" / "lstm2x512.yaml"))
    arch, dev = load_architecture("rpu2016"), load_device("rpu_baseline")
    one = check_training_memory(w, arch, dev, vocab_size=98, available=10**15)
    assert check_training_memory(w, arch, dev, vocab_size=98, available=10**15, members=16) == 16 * one
    with pytest.raises(SpecError, match="a population of 16 would need") as info:
        check_training_memory(w, arch, dev, vocab_size=98, available=4 * one, members=16)
    assert "train fewer members" in str(info.value)
    check_training_memory(w, arch, dev, vocab_size=98, available=4 * one, members=2)   # fits


def test_a_damaged_population_checkpoint_is_one_line(workload, tmp_path, capsys):
    import pickle

    out = tmp_path / "out"
    out.mkdir()
    args = ["train", str(workload), "--population", "3", "4", "--max-chars", "400", "--out", str(out),
            "--no-progress", "--resume"]
    for content in (b"garbage, not a checkpoint", pickle.dumps({"format": object()})):
        (out / "checkpoint.pt").write_bytes(content)
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "checkpoint.pt" in err[0] and "delete it to start over" in err[0]


def test_population_refuses_tiki_taka_on_the_command_line(workload, tmp_path, capsys):
    arch = tmp_path / "tt.yaml"
    arch.write_text("inherits: rpu2016\nname: rpu2016_tt\nupdate:\n  algorithm: tiki_taka\n")
    status = main(["train", str(workload), "--arch", str(arch), "--population", "3", "4",
                   "--max-chars", "400", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "command line: --population" in err[0] and "Tiki-Taka" in err[0]


@pytest.mark.parametrize("as_json", [True, False])
def test_a_partly_diverged_population_exits_3_after_its_outputs(workload, tmp_path, capsys,
                                                                 monkeypatch, as_json):
    """Members that finished are written and printed; the status says that not all did."""
    from archsim.functional.lstm import AnalogLSTM

    original = AnalogLSTM.train_step

    def blow_up_second_member(self, ids, targets, state, lr):
        losses, state = original(self, ids, targets, state, lr)
        losses[1] = float("nan")
        return losses, state

    monkeypatch.setattr(AnalogLSTM, "train_step", blow_up_second_member)
    out = tmp_path / "out"
    args = ["train", str(workload), "--population", "3", "4", "--max-chars", "400", "--out", str(out),
            "--no-progress"] + (["--json"] if as_json else [])
    assert main(args) == 3
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("archsim: error")]
    assert len(err) == 1 and "1 of 2 members diverged (seed 4)" in err[0]
    if as_json:
        members = json.loads(captured.out)["members"]
        assert [m.get("diverged", False) for m in members] == [False, True]
    else:
        assert "diverged" in captured.out and "finished" in captured.out
    assert json.loads((out / "seed3" / "result.json").read_text())["test_loss"] > 0
    assert json.loads((out / "seed4" / "result.json").read_text())["diverged"] is True
