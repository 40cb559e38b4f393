"""Sweeps that train each axis combination's seeds as one population (``train.population``).

The points of a population are stored one by one and keyed by the sweep's seed list too (a
member's numbers depend on the whole population); a sweep interrupted half-way reruns the whole
population and stores only what is missing, with the numbers the first run would have stored.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archsim.errors import DivergenceError  # noqa: E402
from archsim.functional.lstm import AnalogLSTM  # noqa: E402
from archsim.functional.train_population import train_population  # noqa: E402
from archsim.specs import load_architecture, load_device, load_workload  # noqa: E402
from archsim.sweep import expand, load_sweep, resolve_point, run_sweep  # noqa: E402
from archsim.sweep.evaluate import group_populations  # noqa: E402

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness. ") * 40

BASE = """\
name: pop_base
model: {layers: 1, hidden_size: 8, vocab_size: 32}
training: {seq_len: 10, batch_size: 2, learning_rate: 0.1, data: text.txt, epochs: 1}
architecture: rpu2016
device: rpu_baseline
baselines: []
"""


def write_sweep(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / name
    path.write_text("base: base.yaml\n" + textwrap.dedent(body))
    return path


def keys(path: Path) -> list[str]:
    sweep = load_sweep(path)
    return [resolve_point(sweep, p)[1] for p in expand(sweep)]


def records(path: Path) -> dict[str, dict]:
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_population_off_keeps_the_keys_and_on_keys_by_the_seed_list(tmp_path):
    body = "axes: {device.up_down: [0.0]}\nkind: train\nseeds: [0, 1]\ntrain: {max_chars: 400%s}\n"
    plain = keys(write_sweep(tmp_path, body % ""))
    assert keys(write_sweep(tmp_path, body % ", population: false")) == plain
    pop = keys(write_sweep(tmp_path, body % ", population: true"))
    assert len(set(pop)) == 2 and not set(pop) & set(plain)
    # Seed 0 in a population with seeds [0, 2] is another run than in [0, 1].
    other = keys(write_sweep(tmp_path, body.replace("[0, 1]", "[0, 2]") % ", population: true"))
    assert other[0] != pop[0]


def test_group_populations_gathers_the_seeds_of_each_combination(tmp_path):
    path = write_sweep(tmp_path, """\
        axes: {device.up_down: [0.0, 0.1]}
        kind: both
        seeds: [0, 1, 0]
        train: {max_chars: 400, population: true}
        """)
    sweep = load_sweep(path)
    tasks = [resolve_point(sweep, p)[0] for p in expand(sweep)]
    out = group_populations(tasks)
    groups = [t for t in out if "group" in t]
    assert len(groups) == 2
    for g in groups:
        assert [t["seed"] for t in g["group"]] == [0, 1]          # the repeated seed once
        assert len({t["values"]["device.up_down"] for t in g["group"]}) == 1
    assert sum(1 for t in out if t.get("kind") == "estimate") == 6   # untouched


def test_population_sweep_stores_each_point_and_resumes_a_partial_population(tmp_path):
    path = write_sweep(tmp_path, """\
        axes: {device.up_down: [0.0, 0.05]}
        kind: train
        seeds: [0, 1, 2]
        train: {max_chars: 400, population: true}
        """)
    out = tmp_path / "out"
    outcome = run_sweep(path, jobs=1, out=out, progress=False)
    assert outcome.computed == 6 and outcome.new == 6
    assert not (out / "checkpoints").exists()      # each population's folder went with it
    first = records(out / "results.jsonl")
    losses = [r["result"]["test_loss"] for r in first.values()]
    assert all(math.isfinite(v) for v in losses) and len(set(losses)) == 6
    # Lose one member of a population: the rerun trains that population again and stores the
    # missing member only, with the numbers of the first run.
    lines = (out / "results.jsonl").read_text().splitlines()
    gone = json.loads(lines[4])["key"]
    (out / "results.jsonl").write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    again = run_sweep(path, jobs=1, out=out, progress=False)
    assert again.computed == 1 and again.new == 1
    redo = records(out / "results.jsonl")
    assert redo[gone]["result"]["test_loss"] == first[gone]["result"]["test_loss"]
    assert redo[gone]["result"]["train_loss"] == first[gone]["result"]["train_loss"]
    # Nothing missing: nothing runs.
    assert run_sweep(path, jobs=1, out=out, progress=False).computed == 0


def test_population_on_the_ideal_device_equals_separate_runs(tmp_path):
    body = """\
        axes: {device: [ideal]}
        kind: train
        seeds: [4, 9]
        train: {max_chars: 400%s}
        """
    pop = run_sweep(write_sweep(tmp_path, body % ", population: true", "p.yaml"), jobs=1,
                    out=tmp_path / "p", progress=False)
    sep = run_sweep(write_sweep(tmp_path, body % "", "q.yaml"), jobs=1, out=tmp_path / "q",
                    progress=False)
    for a, b in zip(pop.rows, sep.rows):
        assert a["seed"] == b["seed"]
        for col in ("train_loss", "valid_loss", "test_loss"):
            assert a["result"][col] == pytest.approx(b["result"][col], rel=1e-5, abs=1e-6)


def test_a_diverged_member_is_retired_and_the_others_finish(tmp_path, monkeypatch):
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(BASE)
    workload = load_workload(str(tmp_path / "base.yaml"))
    arch, device = load_architecture("rpu2016"), load_device("ideal")
    original = AnalogLSTM.train_step
    calls = []

    def blow_up_member_1(self, ids, targets, state, lr):
        losses, state = original(self, ids, targets, state, lr)
        calls.append(list(self.alive))
        if len(calls) == 3:
            losses[1] = float("nan")
        return losses, state

    monkeypatch.setattr(AnalogLSTM, "train_step", blow_up_member_1)
    out = tmp_path / "ck"
    results = train_population(workload, arch, device, seeds=[0, 1, 2], max_chars=200, out_dir=out)
    assert isinstance(results[1], DivergenceError) and "step 3" in str(results[1])
    assert 0 < results[1].seconds <= results[0].seconds      # it trained until step 3
    assert [type(r).__name__ for r in (results[0], results[2])] == ["TrainResult"] * 2
    assert calls[3] == [1, 0, 1] and calls[-1] == [1, 0, 1]
    monkeypatch.setattr(AnalogLSTM, "train_step", original)
    # The survivors are what they would have been without the retired member (ideal device:
    # nothing random), i.e. a population of the two of them.
    pair = train_population(workload, arch, device, seeds=[0, 2], max_chars=200)
    for got, want in zip((results[0], results[2]), pair):
        assert got.test_loss == pytest.approx(want.test_loss, rel=1e-5)
    # Resumed from its checkpoint with a larger budget, the retired member keeps its seconds.
    longer = train_population(workload, arch, device, seeds=[0, 1, 2], max_chars=400, out_dir=out)
    assert str(longer[1]) == str(results[1]) and longer[1].seconds == results[1].seconds
    assert longer[0].steps > results[0].steps


def test_a_resumed_population_shows_its_progress_from_the_checkpoint(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(BASE)
    workload = load_workload(str(tmp_path / "base.yaml"))
    arch, device = load_architecture("rpu2016"), load_device("ideal")
    out = tmp_path / "ck"
    first = train_population(workload, arch, device, seeds=[0, 1], max_chars=200, out_dir=out)
    done = first[0].steps
    capsys.readouterr()
    longer = train_population(workload, arch, device, seeds=[0, 1], max_chars=400, out_dir=out,
                              progress=True)
    total = longer[0].steps
    bar = capsys.readouterr().err
    # The bar's first frame counts the steps the checkpoint had done, as a single run's does.
    assert f" {done}/{total} " in bar and f" 0/{total} " not in bar, bar
    # Nothing left to train: no bar at all.
    train_population(workload, arch, device, seeds=[0, 1], max_chars=400, out_dir=out, progress=True)
    assert "step" not in capsys.readouterr().err


def test_population_refuses_tiki_taka_with_one_line(tmp_path, capsys):
    from archsim.cli import main

    path = write_sweep(tmp_path, """\
        axes: {architecture.update.algorithm: [tiki_taka]}
        kind: train
        seeds: [0, 1]
        train: {max_chars: 400, population: true}
        """)
    status = main(["sweep", str(path), "--jobs", "1", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "population" in err[0] and "Tiki-Taka" in err[0]


def test_population_devices_gathers_device_axes_and_refuses_per_tile_numbers(tmp_path, capsys):
    from archsim.cli import main

    body = """\
        axes: {%s, architecture.dac.bits: [7]}
        kind: train
        seeds: [0, 1]
        train: {max_chars: 400, population: true%s}
        """
    path = write_sweep(tmp_path, body % ("device.up_down: [0.0, 0.05]", ", population_devices: true"))
    sweep = load_sweep(path)
    groups = group_populations([resolve_point(sweep, p)[0] for p in expand(sweep)])
    assert len(groups) == 1 and [(t["seed"], t["values"]["device.up_down"]) for t in groups[0]["group"]] \
        == [(0, 0.0), (1, 0.0), (0, 0.05), (1, 0.05)]
    # Keyed by the device values too: not the points of a seeds-only population.
    seeds_only = keys(write_sweep(tmp_path, body % ("device.up_down: [0.0, 0.05]", ""), "t.yaml"))
    assert not set(keys(path)) & set(seeds_only)
    outcome = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    assert outcome.computed == 4 and outcome.new == 4
    losses = [r["result"]["test_loss"] for r in outcome.rows]
    assert all(math.isfinite(v) for v in losses) and len(set(losses)) == 4
    # dw_min is one number per tile: one line, exit 2, naming it.
    bad = write_sweep(tmp_path, body % ("device.dw_min: [0.001, 0.002]", ", population_devices: true"),
                      "bad.yaml")
    status = main(["sweep", str(bad), "--jobs", "1", "--out", str(tmp_path / "b"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "dw_min" in err[0] and "population_devices" in err[0]
    # population_devices alone is a mistake in the sweep file.
    lone = write_sweep(tmp_path, (body % ("device.up_down: [0.0]", "")).replace(
        "population: true", "population_devices: true"), "lone.yaml")
    assert main(["sweep", str(lone), "--no-progress"]) == 2
    assert "needs train.population" in capsys.readouterr().err


def test_a_killed_training_point_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A plain training point trains in ``<out>/checkpoints/<key>/``: a checkpoint left there by an
    interrupted sweep is continued (fewer steps run), the result equals an uninterrupted run's,
    and the folder is deleted once the point is stored."""
    from archsim.functional.train import train

    path = write_sweep(tmp_path, """\
        axes: {device.up_down: [0.02]}
        kind: train
        seeds: [5]
        train: {max_chars: 800}
        """)
    fresh = run_sweep(path, jobs=1, out=tmp_path / "fresh", progress=False)
    assert not (tmp_path / "fresh" / "checkpoints").exists()
    # An interrupted run of the same point: 20 of its 40 steps done, checkpoint on disk.
    sweep = load_sweep(path)
    task, key = resolve_point(sweep, expand(sweep)[0])
    from archsim.sweep.expand import resolve_task

    workload, arch, device = resolve_task(task)
    ck = tmp_path / "out" / "checkpoints" / key
    train(workload, arch, device, max_chars=400, seed=5, out_dir=ck, progress=False)
    steps = []
    original = AnalogLSTM.train_step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnalogLSTM, "train_step", counted)
    resumed = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    assert len(steps) == 20
    a, b = fresh.rows[0]["result"], resumed.rows[0]["result"]
    for col in ("train_loss", "valid_loss", "test_loss"):
        assert a[col] == b[col]
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_an_interrupted_population_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """train_population with out_dir: stopped after some steps (a checkpoint on disk), run again
    with the same configuration it continues and ends as the uninterrupted run; a checkpoint of
    another population is refused with one line."""
    from archsim.errors import SpecError

    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(BASE)
    workload = load_workload(str(tmp_path / "base.yaml"))
    arch, device = load_architecture("rpu2016"), load_device("rpu_baseline")
    whole = train_population(workload, arch, device, seeds=[0, 1], max_chars=400, eval_every=7)
    out = tmp_path / "ck"
    original = AnalogLSTM.train_step
    steps = []

    def stop_at_13(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 14:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnalogLSTM, "train_step", stop_at_13)
    with pytest.raises(KeyboardInterrupt):
        train_population(workload, arch, device, seeds=[0, 1], max_chars=400, eval_every=7,
                         out_dir=out, checkpoint_seconds=0)
    steps.clear()
    again = train_population(workload, arch, device, seeds=[0, 1], max_chars=400, eval_every=7,
                             out_dir=out)
    assert len(steps) == 20 - 13
    for a, b in zip(whole, again):
        assert (a.train_loss, a.valid_loss, a.test_loss) == (b.train_loss, b.valid_loss, b.test_loss)
        assert [p["valid_loss"] for p in a.curve] == [p["valid_loss"] for p in b.curve]
    with pytest.raises(SpecError, match="another configuration"):
        train_population(workload, arch, device, seeds=[0, 2], max_chars=400, eval_every=7,
                         out_dir=out)


def test_a_repeated_seed_is_one_member(tmp_path):
    path = write_sweep(tmp_path, """\
        axes: {device.up_down: [0.0]}
        kind: train
        seeds: [0, 0, 1]
        train: {max_chars: 200, population: true}
        """)
    outcome = run_sweep(path, jobs=1, out=tmp_path / "out", progress=False)
    assert outcome.unique == 2 and outcome.new == 2


def test_train_torch_device_is_passed_keyed_and_checked(tmp_path, capsys):
    from archsim.cli import main

    body = "axes: {device.up_down: [0.0]}\nkind: train\nseeds: [0, 1]\ntrain: {max_chars: 200%s}\n"
    plain = keys(write_sweep(tmp_path, body % ""))
    cpu = write_sweep(tmp_path, body % ", torch_device: cpu, population: true", "cpu.yaml")
    assert not set(keys(cpu)) & set(plain)
    outcome = run_sweep(cpu, jobs=1, out=tmp_path / "out", progress=False)
    assert all(r["result"]["torch_device"] == "cpu" for r in outcome.rows)
    bad = write_sweep(tmp_path, body % ", torch_device: tpu", "bad.yaml")
    assert main(["sweep", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train.torch_device" in err and "tpu" in err


def test_population_periphery_gathers_converter_axes_into_one_population(tmp_path, capsys,
                                                                         monkeypatch):
    """The resolution scan's shape (DAC bits x rounding x seeds) as one population: one group,
    keyed apart from per-combination populations, its tiles built with each member's converters,
    every point stored with its own numbers, and a lost point recomputed with the numbers the
    first run stored."""
    from archsim.cli import main
    from archsim.functional.periphery_members import MemberPeriphery

    built = []
    original = MemberPeriphery.__init__

    def spy(self, config, weight, *, member_configs, **kw):
        built.append([(round(1 / c.inp_res), c.inp_sto_round) for c in member_configs])
        original(self, config, weight, member_configs=member_configs, **kw)

    monkeypatch.setattr(MemberPeriphery, "__init__", spy)

    body = """\
        axes: {architecture.dac.bits: [3, 7], architecture.periphery.inp_sto_round: [false, true]%s}
        kind: train
        seeds: [0, 1]
        train: {max_chars: 400, population: true%s}
        """
    path = write_sweep(tmp_path, body % ("", ", population_periphery: true"))
    sweep = load_sweep(path)
    groups = group_populations([resolve_point(sweep, p)[0] for p in expand(sweep)])
    assert len(groups) == 1 and len(groups[0]["group"]) == 8
    per_combination = keys(write_sweep(tmp_path, body % ("", ""), "t.yaml"))
    assert not set(keys(path)) & set(per_combination)
    out = tmp_path / "out"
    outcome = run_sweep(path, jobs=1, out=out, progress=False)
    assert outcome.computed == 8 and outcome.new == 8
    # every tile of the one population: members in seed order within each combination
    assert built and all(b == [(6, False)] * 2 + [(6, True)] * 2 + [(126, False)] * 2 +
                         [(126, True)] * 2 for b in built)
    first = records(out / "results.jsonl")
    losses = [r["result"]["test_loss"] for r in first.values()]
    assert all(math.isfinite(v) for v in losses) and len(set(losses)) == 8
    lines = (out / "results.jsonl").read_text().splitlines()
    gone = json.loads(lines[5])["key"]
    (out / "results.jsonl").write_text("\n".join(lines[:5] + lines[6:]) + "\n")
    again = run_sweep(path, jobs=1, out=out, progress=False)
    assert again.computed == 1 and again.new == 1
    redo = records(out / "results.jsonl")[gone]["result"]
    assert {k: v for k, v in redo.items() if k != "seconds"} == \
        {k: v for k, v in first[gone]["result"].items() if k != "seconds"}
    # With population_devices too, device axes join the same population.
    both = write_sweep(tmp_path, body % (", device.up_down: [0.0, 0.05]",
                                         ", population_periphery: true, population_devices: true"),
                       "both.yaml")
    sweep = load_sweep(both)
    groups = group_populations([resolve_point(sweep, p)[0] for p in expand(sweep)])
    assert [len(g["group"]) for g in groups] == [16]
    # Another architecture axis still splits the sweep into populations.
    split = write_sweep(tmp_path, body % (", architecture.update.desired_bl: [10, 31]",
                                          ", population_periphery: true"), "u.yaml")
    sweep = load_sweep(split)
    groups = group_populations([resolve_point(sweep, p)[0] for p in expand(sweep)])
    assert [len(g["group"]) for g in groups] == [8, 8]
    # Without a converter axis, or without population: one line, exit 2.
    none = write_sweep(tmp_path, (body % ("", ", population_periphery: true")).replace(
        "architecture.dac.bits: [3, 7], architecture.periphery.inp_sto_round: [false, true]",
        "device.up_down: [0.0]"), "none.yaml")
    assert main(["sweep", str(none), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "population_periphery" in err[0] and "architecture.dac.bits" in err[0]
    lone = write_sweep(tmp_path, (body % ("", ", population_periphery: true")).replace(
        "population: true, ", ""), "lone.yaml")
    assert main(["sweep", str(lone), "--no-progress"]) == 2
    assert "needs train.population" in capsys.readouterr().err


def test_member_archs_unlike_beyond_the_converters_are_refused_in_one_line(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(BASE)
    workload = load_workload(str(tmp_path / "base.yaml"))
    arch, device = load_architecture("rpu2016"), load_device("rpu_baseline")
    other = load_architecture("rpu2016", overrides={"update.desired_bl": 31})
    from archsim.errors import SpecError

    with pytest.raises(SpecError, match="desired_bl") as exc:
        train_population(workload, arch, device, seeds=[0, 1], member_archs=[arch, other],
                         max_chars=400)
    assert "train these models one by one" in str(exc.value)
    wide = load_architecture("rpu2016", overrides={"array.rows": 512})
    with pytest.raises(SpecError, match="array size"):
        train_population(workload, arch, device, seeds=[0, 1], member_archs=[arch, wide],
                         max_chars=400)
    # Unlike converters only: it trains, with unlike devices too.
    coarse = load_architecture("rpu2016", overrides={"dac.bits": 3})
    results = train_population(workload, arch, device, seeds=[0, 0], member_archs=[arch, coarse],
                               max_chars=400)
    assert results[0].test_loss != results[1].test_loss
    skewed = load_device("rpu_baseline", overrides={"up_down": 0.05})
    results = train_population(workload, arch, device, seeds=[0, 0, 1],
                               member_archs=[arch, coarse, coarse],
                               member_devices=[device, skewed, device], max_chars=400)
    assert [r.device for r in results] == ["rpu_baseline"] * 3
    assert all(math.isfinite(r.test_loss) for r in results)


@pytest.mark.parametrize("name, sizes", [("resolution_full_population", [42]),
                                         ("asymmetry_full_population", [3, 18, 3])])
def test_the_shipped_gpu_sweeps_form_their_populations(name, sizes):
    sweep = load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / f"{name}.yaml")
    groups = group_populations([resolve_point(sweep, p)[0] for p in expand(sweep)])
    assert [len(g["group"]) for g in groups] == sizes
