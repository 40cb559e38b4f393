"""train()/validate() and the `archsim train` / `archsim validate` commands on tiny runs."""
from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from archsim.cli import main  # noqa: E402
from archsim.errors import DivergenceError, SpecError  # noqa: E402
from archsim.functional.train import train, validate  # noqa: E402
from archsim.specs import load_architecture, load_device, load_workload  # noqa: E402

from conftest import TINY, tiny_specs as _specs  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_writes_outputs_and_learns(tmp_path, text_file):
    w, a, d = _specs("ideal", **{"training.learning_rate": 0.5})
    r = train(w, a, d, data_path=text_file, max_chars=6000, out_dir=tmp_path, progress=False,
              eval_every=100)
    assert r.chars_seen == 6000 and r.steps == 300
    n_vocab = len(set(text_file.read_text()))
    assert r.vocab_size == n_vocab and r.notes  # vocabulary from the text; the workload said 16
    assert 0 < r.test_loss < 0.5 * math.log(n_vocab)  # learned (a uniform guess is ln V)
    assert r.valid_loss > 0 and r.train_loss > 0 and r.seconds > 0
    for name in ("checkpoint.pt", "curve.json", "curve.png", "result.json"):
        assert (tmp_path / name).is_file(), name
    curve = json.loads((tmp_path / "curve.json").read_text())["curve"]
    assert [p["step"] for p in curve] == [100, 200, 300, 300] and curve[-1]["final"]
    # the curve names the machine that computed it (two machines' kernels may round differently)
    machine = json.loads((tmp_path / "curve.json").read_text())["run"]["machine"]
    assert set(machine) == {"cpu", "cpu_capability", "torch"} and machine["torch"] == torch.__version__
    assert json.loads((tmp_path / "result.json").read_text())["test_loss"] == r.test_loss
    assert r.activity["updates"] == 300 * 20 * 2  # K = T*B per tile per step, 2 tiles


def test_resume_equals_uninterrupted(tmp_path, text_file):
    w, a, d = _specs("rpu_baseline", **{"training.dropout": 0.2})
    kw = dict(data_path=text_file, progress=False, eval_every=7)
    full = train(w, a, d, max_chars=1000, out_dir=tmp_path / "full", **kw)
    part = train(w, a, d, max_chars=500, out_dir=tmp_path / "part", **kw)  # stops mid-interval
    assert part.steps == 25
    rest = train(w, a, d, max_chars=1000, out_dir=tmp_path / "part", resume=True, **kw)
    assert rest.steps == full.steps == 50
    for key in ("train_loss", "valid_loss", "test_loss", "chars_seen", "activity"):
        assert getattr(rest, key) == getattr(full, key), key
    strip = [{k: v for k, v in p.items() if k != "seconds"} for p in rest.curve]
    assert strip == [{k: v for k, v in p.items() if k != "seconds"} for p in full.curve]
    ck_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    ck_rest = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    for tiles_full, tiles_rest in zip(ck_full["model"]["tiles"], ck_rest["model"]["tiles"]):
        for tf, tr in zip(tiles_full, tiles_rest):
            assert torch.equal(tf["weight"], tr["weight"])
            assert torch.equal(tf["device_writes"], tr["device_writes"])   # the devices' wear
            # the device-to-device draws: named by digest, drawn again from the seed on resume
            assert "devices" not in tf and tf["devices_sha256"] == tr["devices_sha256"]
    # a checkpoint of another configuration is refused
    w2, _, _ = _specs("rpu_baseline", **{"training.learning_rate": 0.2})
    with pytest.raises(SpecError, match="checkpoint"):
        train(w2, a, d, max_chars=1000, out_dir=tmp_path / "part", resume=True, **kw)


def test_a_checkpoint_names_its_devices_by_digest_and_refuses_other_draws(tmp_path, text_file,
                                                                          monkeypatch):
    """A checkpoint carries the weights and the wear, not the per-device parameters the seed draws
    again (small enough to commit: a run continues on another machine); a resume whose draws differ
    from the checkpoint's (the way devices are drawn changed) is refused, and one written with the
    devices inside still resumes."""
    from archsim.functional import train as train_module
    from archsim.functional.devices.base import PulsedDevices

    w, a, d = _specs("rpu_baseline")
    kw = dict(data_path=text_file, progress=False, eval_every=7)
    full = train(w, a, d, max_chars=1000, out_dir=tmp_path / "full", **kw)
    train(w, a, d, max_chars=500, out_dir=tmp_path / "part", **kw)
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    tiles = [t for m in ck["model"]["tiles"] for t in m]
    assert tiles and all("devices" not in t and len(t["devices_sha256"]) == 64 for t in tiles)

    # the checkpoint format before: devices inside; it resumes to the same result
    monkeypatch.setattr(train_module, "_without_devices", lambda state: state)
    train(w, a, d, max_chars=500, out_dir=tmp_path / "old", **kw)
    old = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    assert all("devices" in t for m in old["model"]["tiles"] for t in m)
    monkeypatch.undo()
    rest = train(w, a, d, max_chars=1000, out_dir=tmp_path / "old", resume=True, **kw)
    assert (rest.test_loss, rest.activity) == (full.test_loss, full.activity)

    # devices drawn otherwise than when the checkpoint was written
    def drawn_otherwise(self, spec, gauss):
        self.w_max.mul_(1.01)

    monkeypatch.setattr(PulsedDevices, "_draw_family", drawn_otherwise)
    with pytest.raises(SpecError, match=r"checkpoint\.pt: model: .*devices of lstm1\[0\] drawn"):
        train(w, a, d, max_chars=1000, out_dir=tmp_path / "part", resume=True, **kw)


def test_a_curve_names_the_machines_that_computed_it(tmp_path, text_file, monkeypatch):
    """The first curve point names the machine; a run resumed on another machine (from a committed
    checkpoint) names the new one at its next point, and nothing else in the curve changes."""
    from archsim.functional import train as train_module

    w, a, d = _specs("rpu_baseline")
    kw = dict(data_path=text_file, progress=False, eval_every=7)
    here = train_module.machine()
    full = train(w, a, d, max_chars=1000, out_dir=tmp_path / "full", **kw)
    assert [(p["step"], p["machine"]) for p in full.curve if "machine" in p] == [(7, here)]
    train(w, a, d, max_chars=500, out_dir=tmp_path / "moved", **kw)     # stops at step 25
    other = {**here, "cpu": "another CPU"}
    monkeypatch.setattr(train_module, "machine", lambda: other)
    moved = train(w, a, d, max_chars=1000, out_dir=tmp_path / "moved", resume=True, **kw)
    assert [(p["step"], p["machine"]) for p in moved.curve if "machine" in p] == [(7, here), (28, other)]
    strip = [[{k: v for k, v in p.items() if k not in ("seconds", "machine")} for p in r.curve]
             for r in (full, moved)]
    assert strip[0] == strip[1]


def test_divergence_is_an_error(tmp_path, text_file):
    w, a, d = _specs("ideal", **{"training.learning_rate": 1e4})
    with pytest.raises(DivergenceError, match="diverged at step") as info:
        train(w, a, d, data_path=text_file, max_chars=2000, progress=False)
    assert info.value.seconds is not None and info.value.seconds > 0   # how long it trained
    from archsim.sweep.evaluate import diverged_result
    assert diverged_result(info.value) == {"diverged": True, "error": str(info.value),
                                           "seconds": info.value.seconds}
    assert "seconds" not in diverged_result(DivergenceError("no clock"))
    rc = main(["train", str(TINY), "--device", "ideal", "--data", str(text_file), "--lr", "1e4",
               "--max-chars", "2000", "--out", str(tmp_path), "--no-progress"])
    assert rc == DivergenceError.exit_status != 0


def test_validate_runs_both_side_by_side(tmp_path, text_file):
    w, a, d = _specs("rpu_baseline")
    r = validate(w, a, d, data_path=text_file, max_chars=400, out_dir=tmp_path, progress=False)
    assert r.fp.device == "ideal" and r.analog.device == "rpu_baseline"
    assert r.fp.chars_seen == r.analog.chars_seen == 400
    assert r.gap == pytest.approx(r.analog.test_loss - r.fp.test_loss)
    assert (tmp_path / "validate.json").is_file() and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "fp" / "result.json").is_file() and (tmp_path / "rpu_baseline" / "curve.json").is_file()


def test_cli_train_json_on_default_corpus(tmp_path, capsys):
    # tiny.yaml names no data file: the Python standard library's sources are the corpus
    rc = main(["train", str(TINY), "--device", "ideal", "--max-chars", "200", "--json",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("train_loss", "valid_loss", "test_loss", "chars_seen", "seconds"):
        assert key in out
    assert out["chars_seen"] == 200 and out["data"] == "<python-stdlib>"


def test_cli_validate_table_and_json(tmp_path, text_file, capsys):
    args = ["validate", str(TINY), "--device", "rpu_baseline", "--data", str(text_file),
            "--max-chars", "200", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "floating point" in text and "rpu_baseline" in text and "gap" in text
    assert main(args + ["--json", "--force"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["gap"] == pytest.approx(d["test_loss_device"] - d["test_loss_fp"])


@pytest.mark.parametrize("extra, words", [
    (["--max-chars", "0"], "--max-chars"),
    (["--epochs", "-1"], "--epochs"),
    (["--device", "no_such_device"], "unknown device preset"),
    (["--data", "/nonexistent/file.txt"], "no such file"),
    (["--torch-device", "tpu"], "--torch-device"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, capsys, extra, words):
    rc = main(["train", str(TINY), "--out", str(tmp_path / "o"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_cli_budget_flags_are_exclusive(capsys):
    assert main(["train", str(TINY), "--epochs", "1", "--max-chars", "10"]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available on this machine")
def test_resume_equals_uninterrupted_on_cuda(tmp_path, text_file):
    w, a, d = _specs("rpu_baseline")
    kw = dict(data_path=text_file, progress=False, eval_every=7, torch_device="cuda")
    full = train(w, a, d, max_chars=600, out_dir=tmp_path / "full", **kw)
    train(w, a, d, max_chars=300, out_dir=tmp_path / "part", **kw)
    rest = train(w, a, d, max_chars=600, out_dir=tmp_path / "part", resume=True, **kw)
    assert rest.torch_device.startswith("cuda")
    assert (rest.train_loss, rest.valid_loss, rest.test_loss) == (full.train_loss, full.valid_loss, full.test_loss)


def test_model_init_scale_sets_the_initial_weight_range():
    """``model.init_scale``: weights drawn from +-init_scale (default 1/sqrt(h), torch's), the
    draw itself unchanged (the same uniform numbers, scaled), and a spec without it keyed as
    before (the field is left out of the spec hash at its default)."""
    from archsim.functional.train import build_model
    from archsim.specs import spec_hash

    arch, dev = load_architecture("rpu2016"), load_device("ideal")
    w = load_workload(TINY)
    default = build_model(w, arch, dev, 20, seed=3)
    wide = w.model_copy(update={"model": w.model.model_copy(update={"init_scale": 0.3})})
    model = build_model(wide, arch, dev, 20, seed=3)
    bound = 1 / math.sqrt(w.model.hidden_size)
    for a, b in zip(default.matrices, model.matrices):
        wa, wb = a.weight, b.weight
        assert float(wa.abs().max()) <= bound and float(wb.abs().max()) <= 0.3
        assert float(wb.abs().max()) > 0.9 * 0.3            # the range is used
        assert torch.allclose(wb, wa * (0.3 / bound), atol=1e-6)
    assert spec_hash(w) == spec_hash(w.model_copy(update={"model": w.model.model_copy(
        update={"init_scale": None})}))
    assert spec_hash(wide) != spec_hash(w)
    # One range per matrix by name; the others keep the default.
    out_only = w.model_copy(update={"model": w.model.model_copy(update={"init_scale": {"output": 0.3}})})
    model = build_model(out_only, arch, dev, 20, seed=3)
    for a, b in zip(default.matrices, model.matrices):
        factor = 0.3 / bound if a.name == "output" else 1.0
        assert torch.allclose(b.weight, a.weight * factor, atol=1e-6), a.name


def test_model_init_scale_names_only_the_networks_matrices(tmp_path, capsys):
    text = TINY.read_text()
    assert "\nmodel:\n" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("\nmodel:\n", "\nmodel:\n  init_scale: {lstm9: 0.2}\n", 1))
    assert main(["estimate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.init_scale" in err and "lstm9" in err
    assert "the matrices are lstm1, output" in err
    # A bad range inside the mapping is named where it is (not "a mapping is not a number").
    bad.write_text(text.replace("\nmodel:\n", "\nmodel:\n  init_scale: {output: -1}\n", 1))
    assert main(["estimate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.init_scale.output: got -1; input should be greater than 0" in err
