"""Hardening (issue 15): every bad input a user or an attacker can give gets one line and exit 2.

One test (or one parametrised test) per defect found by the adversarial campaign; each failed on
the code before the fix (a traceback, a hang, a MemoryError, a silently accepted value or a
misleading message). Checkpoints and training are in test_hardening_train.py, sweeps in
test_hardening_sweep.py, the property-based fuzz test in test_hardening_fuzz.py.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from archsim.cli import main

from conftest import WORKLOADS

TINY = WORKLOADS / "tiny.yaml"


def one_line_error(capsys, expect: str | tuple = ()) -> str:
    """The command's stderr: exactly one line, an archsim error, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("archsim: error:"), err
    for word in ([expect] if isinstance(expect, str) else expect):
        assert word in lines[0], lines[0]
    return lines[0]


def write_arch(tmp_path: Path, body: str, name: str = "arch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"inherits: rpu2016\nname: test_arch\n{body}")
    return path


def write_workload(tmp_path: Path, replace: dict[str, str], name: str = "w.yaml") -> Path:
    text = TINY.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


# -- 1. converter bits ----------------------------------------------------------------------------

@pytest.mark.parametrize("converter", ["dac", "adc"])
@pytest.mark.parametrize("bits", [1, 0, 17, 2000, 10**12])
def test_converter_bits_outside_2_to_16_are_one_line_in_estimate(tmp_path, capsys, converter, bits):
    arch = write_arch(tmp_path, f"{converter}:\n  bits: {bits}\n")
    assert main(["estimate", str(TINY), "--arch", str(arch)]) == 2
    one_line_error(capsys, (f"{converter}.bits", str(bits)))


@pytest.mark.parametrize("command", ["train", "run", "validate"])
def test_one_bit_converter_is_one_line_in_the_training_commands(tmp_path, capsys, text_file, command):
    arch = write_arch(tmp_path, "adc:\n  bits: 1\n")
    args = [command, str(TINY), "--arch", str(arch), "--data", str(text_file), "--out", str(tmp_path / "o")]
    args += {"train": ["--max-chars", "40", "--no-progress"], "validate": ["--device", "rpu_baseline",
             "--max-chars", "40", "--no-progress"], "run": ["--steps", "1"]}[command]
    assert main(args) == 2
    one_line_error(capsys, ("adc.bits", "greater than or equal to 2"))
    assert not (tmp_path / "o").exists()


def test_two_bit_converters_train(tmp_path, capsys, text_file, one_torch_thread):
    """2 bits is the smallest resolution aihwkit's 1/(2^bits - 2) expresses: levels -1, 0, +1."""
    arch = write_arch(tmp_path, "dac:\n  bits: 2\nadc:\n  bits: 2\n")
    assert main(["train", str(TINY), "--arch", str(arch), "--data", str(text_file), "--max-chars", "60",
                 "--no-progress", "--json", "--out", str(tmp_path / "o")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_loss"] == result["test_loss"]   # finite, not NaN


# -- 2. unwritable --out --------------------------------------------------------------------------

def _unwritable_cases(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    return {"existing file": a_file, "below a file": a_file / "sub"}


@pytest.mark.parametrize("command", ["estimate", "run", "compare"])
@pytest.mark.parametrize("case", ["existing file", "below a file", "read-only folder"])
def test_unwritable_out_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, text_file,
                                                        command, case):
    before = sorted(p.name for p in tmp_path.iterdir())
    if case == "read-only folder":
        # Tests run as root, for whom chmod 0o555 does not stop writes: make the probe fail as it
        # does for a normal user (or on a read-only file system).
        target = tmp_path / "ro" / "out"
        (tmp_path / "ro").mkdir()
        import tempfile

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", denied)
        before = sorted(p.name for p in tmp_path.iterdir())
    else:
        target = _unwritable_cases(tmp_path)[case]
        before = sorted(p.name for p in tmp_path.iterdir())
    args = {"estimate": ["estimate", str(TINY)],
            "run": ["run", str(TINY), "--steps", "1", "--data", str(text_file)],
            "compare": ["compare", str(TINY), "--arch", "rpu2016", "--no-plots", "--no-progress"]}[command]
    assert main(args + ["--out", str(target)]) == 2
    one_line_error(capsys, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case != "read-only folder":
        assert (tmp_path / "a_file").read_text() == "keep me"
    else:
        assert not target.exists()


# -- 3. sizes: feasibility from the spec, before anything is allocated ----------------------------

@pytest.mark.parametrize("old,new", [
    ("hidden_size: 8", "hidden_size: 1000000000000"),
    ("hidden_size: 8", "hidden_size: 10000000"),
    ("layers: 1", "layers: 1000000000000"),
    ("vocab_size: 16", "vocab_size: 1000000000000"),
    ("vocab_size: 16", "vocab_size: 16\n  input_size: 1000000000000"),
    ("vocab_size: 16", "vocab_size: 16\n  output_size: 1000000000000"),
    ("seq_len: 10", "seq_len: 1000000000000"),
    ("seq_len: 10", "seq_len: 100000"),
])
def test_absurd_sizes_fail_fast_in_estimate(tmp_path, capsys, old, new):
    w = write_workload(tmp_path, {old: new})
    t0 = time.perf_counter()
    assert main(["estimate", str(w)]) == 2
    elapsed = time.perf_counter() - t0
    one_line_error(capsys, str(w))
    # Before: 15-45 s to a MemoryError or the "too many tiles" error, or a hang (seq_len).
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_exact_epoch_too_big_for_the_event_model_says_drop_exact(tmp_path, capsys):
    w = write_workload(tmp_path, {"train_chars: 2000": "train_chars: 2000000000"})
    assert main(["estimate", str(w), "--exact"]) == 2
    one_line_error(capsys, ("--exact", "drop --exact"))
    assert main(["estimate", str(w), "--json"]) == 0   # extrapolated: fine


@pytest.mark.parametrize("old,new,field", [
    ("hidden_size: 8", "hidden_size: 10000000", "model.hidden_size"),
    ("layers: 1", "layers: 1000000000000", "model.layers"),
    ("batch_size: 2", "batch_size: 1000000000000", "training.batch_size"),
])
def test_absurd_sizes_fail_fast_in_train(tmp_path, capsys, text_file, old, new, field):
    w = write_workload(tmp_path, {old: new})
    t0 = time.perf_counter()
    assert main(["train", str(w), "--data", str(text_file), "--max-chars", "100", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    elapsed = time.perf_counter() - t0
    one_line_error(capsys, (field, "memory"))
    assert elapsed < 10, f"{elapsed:.1f} s"
    assert not (tmp_path / "o").exists()


def test_huge_desired_bl_in_exact_mode_is_refused_before_allocating(tmp_path, capsys, text_file):
    arch = write_arch(tmp_path, "update:\n  desired_bl: 1000000\n")   # the spec's upper bound
    assert main(["train", str(TINY), "--arch", str(arch), "--data", str(text_file), "--max-chars", "40",
                 "--update-mode", "exact", "--no-progress", "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, ("update.desired_bl", "--update-mode fast"))


def test_tile_count_is_arithmetic_and_equals_the_mapping():
    """The up-front tile count (no lists) is the one the mapping builds, for every shipped pair."""
    from archsim.feasibility import tiles_needed
    from archsim.mapping import map_workload
    from archsim.specs import load_architecture, load_workload, preset_names

    for path in sorted(WORKLOADS.glob("*.yaml")):
        w = load_workload(path)
        for name in preset_names("architectures"):
            a = load_architecture(name)
            for layers in (1, 3):
                model = w.model.model_copy(update={"layers": layers})
                mapping = map_workload(model, a.array.rows, a.array.cols, a.system.replication)
                assert sum(tiles_needed(model, a).values()) == mapping.n_tiles, (path.name, name)


@pytest.mark.parametrize("device_name", ["rpu_baseline", "soft_bounds", "ecram_tang2018"])
def test_training_memory_estimate_bounds_the_tile_tensors(one_torch_thread, device_name):
    """The memory check's tile share is at least what a real model's tiles allocate."""
    import torch

    from archsim.feasibility import training_memory_bytes
    from archsim.functional.train import build_model
    from archsim.specs import load_architecture, load_device, load_workload

    w = load_workload(WORKLOADS / "lstm2x64.yaml")
    arch, dev = load_architecture("rpu2016"), load_device(device_name)
    model = build_model(w, arch, dev, 50, seed=0)
    seen, total = set(), 0

    def add(obj):
        nonlocal total
        for value in vars(obj).values():
            if isinstance(value, torch.Tensor) and value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.untyped_storage().nbytes()
    for m in model.matrices:
        for tile in m.tiles:
            add(tile)
            if tile.devices is not None:
                add(tile.devices)
    tiny_window = w.model_copy(update={"training": w.training.model_copy(update={"batch_size": 1, "seq_len": 1})})
    assert training_memory_bytes(tiny_window, arch, dev, vocab_size=50) >= total


# -- 5. YAML ---------------------------------------------------------------------------------------

def test_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")   # 10^9 leaves once expanded
    t0 = time.perf_counter()
    assert main(["estimate", str(bomb)]) == 2
    assert time.perf_counter() - t0 < 5
    one_line_error(capsys, "aliases")


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo"])
def test_spec_that_is_not_a_regular_file(tmp_path, capsys, special):
    path = special
    if special == "fifo":
        path = str(tmp_path / "spec.yaml")
        os.mkfifo(path)   # reading it would block forever
    assert main(["estimate", path]) == 2
    one_line_error(capsys, "regular")


def test_oversized_spec_file(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text(TINY.read_text() + ("# padding\n" * 200_000))
    assert main(["estimate", str(big)]) == 2
    one_line_error(capsys, "at most")


# -- 6. paths resolve against the file that names them --------------------------------------------

def test_relative_preset_paths_follow_their_file(tmp_path, monkeypatch, capsys):
    presets = tmp_path / "project" / "presets"
    presets.mkdir(parents=True)
    base = (WORKLOADS.parent / "models" / "architectures" / "rpu2016.yaml").read_text()
    (presets / "base.yaml").write_text(base)
    (presets / "mine.yaml").write_text("inherits: base.yaml\nname: mine\n")
    (presets / "dev.yaml").write_text("inherits: rpu_baseline\nname: mydev\n")
    w = write_workload(tmp_path / "project", {"architecture: rpu2016": "architecture: presets/mine.yaml",
                                              "device: rpu_baseline": "device: presets/dev.yaml"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["estimate", str(w), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "mine" and data["device"] == "mydev"


# -- 8. two runs writing one --out at once ---------------------------------------------------------

def test_concurrent_estimates_leave_a_consistent_report_pair(tmp_path, monkeypatch):
    """Run A writes report.json, then is slow to write report.md; run B (another batch size) writes
    both meanwhile. Without a lock the folder ends with B's JSON beside A's markdown."""
    import archsim.fsutil as fsutil

    out = tmp_path / "same"
    first_json_written = threading.Event()
    real = fsutil.atomic_write_bytes

    def slow_for_a(path, data):
        path = Path(path)
        if threading.current_thread().name == "A" and path.name == "report.md":
            time.sleep(1.0)
        result = real(path, data)
        if threading.current_thread().name == "A" and path.name == "report.json":
            first_json_written.set()
        return result

    monkeypatch.setattr(fsutil, "atomic_write_bytes", slow_for_a)
    codes = {}

    def run(name, batch):
        codes[name] = main(["estimate", str(TINY), "--batch", batch, "--out", str(out), "--json"])

    a = threading.Thread(target=run, args=("A", "2"), name="A")
    a.start()
    assert first_json_written.wait(30)
    b = threading.Thread(target=run, args=("B", "7"), name="B")
    b.start()
    a.join(60)
    b.join(60)
    assert codes == {"A": 0, "B": 0}
    batch_json = json.loads((out / "report.json").read_text())["batch_size"]
    md = (out / "report.md").read_text()
    assert f"--batch {batch_json}" in md, (batch_json, md[:300])


# -- 9. messages -----------------------------------------------------------------------------------

def test_seed_out_of_range_in_a_spec(tmp_path, capsys, text_file):
    w = write_workload(tmp_path, {"learning_rate: 0.1": "learning_rate: 0.1\n  seed: 1180591620717411303424"})
    assert main(["train", str(w), "--data", str(text_file), "--max-chars", "40", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "training.seed")


@pytest.mark.parametrize("flag", ["-5", str(2**70)])
def test_seed_flag_out_of_range_in_run(capsys, flag):
    assert main(["run", str(TINY), "--steps", "1", "--seed", flag]) == 2
    one_line_error(capsys, "--seed")


@pytest.mark.parametrize("old,new,field", [
    ("layers: 1", "layers: true", "model.layers"),
    ("seq_len: 10", "seq_len: 10.0", "training.seq_len"),
    ("learning_rate: 0.1", "learning_rate: true", "training.learning_rate"),
    ("learning_rate: 0.1", "learning_rate: .inf", "training.learning_rate"),
    ("learning_rate: 0.1", "learning_rate: .nan", "training.learning_rate"),
])
def test_strict_numbers(tmp_path, capsys, old, new, field):
    w = write_workload(tmp_path, {old: new})
    assert main(["estimate", str(w)]) == 2
    one_line_error(capsys, field)


def test_bool_field_takes_only_true_or_false(tmp_path, capsys):
    w = write_workload(tmp_path, {"vocab_size: 16": "vocab_size: 16\n  output_layer: 1"})
    assert main(["estimate", str(w)]) == 2
    one_line_error(capsys, ("model.output_layer", "true or false"))


def test_non_finite_periphery_is_a_spec_error(tmp_path, capsys):
    arch = write_arch(tmp_path, "periphery:\n  out_noise: .inf\n")
    assert main(["estimate", str(TINY), "--arch", str(arch)]) == 2
    one_line_error(capsys, ("periphery.out_noise", "finite"))


def test_a_folder_is_not_called_missing(tmp_path, capsys):
    folder = tmp_path / "arch.yaml"
    folder.mkdir()
    assert main(["estimate", str(TINY), "--arch", str(folder)]) == 2
    line = one_line_error(capsys, "folder")
    assert "no such file" not in line
    assert main(["estimate", str(tmp_path)]) == 2
    assert "folder" in one_line_error(capsys)


def test_latin1_spec_names_the_byte(tmp_path, capsys):
    path = tmp_path / "latin.yaml"
    path.write_bytes(TINY.read_bytes().replace(b"tiny workload", b"tiny workl\xe9ad"))
    assert main(["estimate", str(path)]) == 2
    line = one_line_error(capsys, ("0xe9", "UTF-8"))
    assert "binary" not in line


def test_yaml_tags_are_named_not_dumped(tmp_path, capsys):
    w = write_workload(tmp_path, {"learning_rate: 0.1": "learning_rate: !custom 0.1"})
    assert main(["estimate", str(w)]) == 2
    line = one_line_error(capsys, ("training.learning_rate", "!custom"))
    assert "TaggedScalar" not in line


# -- found by the fuzz test --------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
def test_sequence_of_one_character(tmp_path, capsys, layers):
    """T = 1: the first layer's only backward op is the corner without a transposed MVM (the
    closed form raised KeyError); it must still equal the SimPy run."""
    from archsim.engine.analytic import analytic_step
    from archsim.engine.des import simulate
    from archsim.schedule import build_schedule
    from archsim.specs import load_architecture, load_workload

    w = load_workload(TINY, overrides={"training.seq_len": 1, "model.layers": layers})
    s = build_schedule(w, load_architecture("rpu2016"))
    run = simulate(s)
    assert run.total_wait_s == 0.0
    assert run.total_s == pytest.approx(analytic_step(s).step_s, rel=1e-12)
    one = write_workload(tmp_path, {"seq_len: 10": "seq_len: 1", "layers: 1": f"layers: {layers}"})
    assert main(["estimate", str(one), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["time_per_step_s"] > 0


def test_run_checks_the_chip_before_training(tmp_path, capsys, text_file, monkeypatch):
    """`archsim run` on a chip too small for the network fails before any training step."""
    import archsim.functional.train as functional_train

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the chip")

    monkeypatch.setattr(functional_train, "train", no_training)
    arch = write_arch(tmp_path, "system:\n  n_tiles: 1\n")
    assert main(["run", str(TINY), "--arch", str(arch), "--steps", "1", "--data", str(text_file)]) == 2
    one_line_error(capsys, ("n_tiles", "needs 2 tiles"))


def test_a_closed_pipe_is_not_a_traceback():
    """`archsim estimate ... | head -1`: the reader leaves early; archsim stops quietly (141)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "archsim", "estimate", str(WORKLOADS / "lstm2x512.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                      # the reader is gone before anything is printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("special,expect", [("/dev/zero", "regular"), ("folder", "folder")])
def test_activity_file_that_is_not_a_regular_file(tmp_path, capsys, special, expect):
    path = str(tmp_path) if special == "folder" else special
    assert main(["estimate", str(TINY), "--activity", path]) == 2
    line = one_line_error(capsys, expect)
    assert "no such" not in line
