"""Property-based fuzzing (issue 15): every numeric field of a workload, architecture and device
spec, and the numeric command-line flags of every command, get adversarial values (zero, negatives, 2^31, 2^63,
10^12, 1e300, 1e-300, inf, nan, booleans, strings, lists, mappings, nothing). Whatever comes in:

- the exit status is 0, 2 (bad input) or 3 (training diverged);
- nothing is printed that looks like a traceback, and an error is exactly one line;
- nothing is written to --out when the command fails;
- every run ends within a bounded time.

Hypothesis runs derandomized (a fixed seed: CI sees the same examples every time) and with a
bounded number of examples, so the default test run stays fast.
"""
from __future__ import annotations

import time
import typing
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")  # a test dependency (pyproject [test])
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from archsim.cli import main  # noqa: E402
from archsim.specs import ArchitectureSpec, DeviceSpec, WorkloadSpec, _read_preset  # noqa: E402
from archsim.specs.loader import read_yaml, set_path  # noqa: E402

from conftest import WORKLOADS  # noqa: E402

#: Seconds one command may take on the tiny workload (they take well under one; the bound is for
#: a loaded 2-core CI machine). Before the hardening some inputs hung for minutes.
TIME_BOUND_S = 60

ADVERSARIAL = [0, -1, 1, 2, 3, 2**31, 2**63, 10**12, 10**30, 0.5, -0.5, 1e-300, 1e300,
               float("inf"), float("-inf"), float("nan"), True, False, "", "abc", "1e400 ns",
               "-5 pJ", "12 parsecs", None, [], {}, [1, 2], {"value": 3}]
FLAG_VALUES = ["0", "-1", "1", "3", str(2**31), str(2**63), str(10**12), "1e300", "inf", "nan",
               "-inf", "0.5", "abc", "", "1e-300", "0x10", "True"]


def _numeric(annotation) -> bool:
    text = str(annotation)
    return any(word in text for word in ("int", "float", "Annotated"))


def numeric_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every numeric field of a spec class (set or not in the shipped files)."""
    paths = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        sub = next((a for a in (annotation, *typing.get_args(annotation))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            paths += numeric_fields(sub, f"{prefix}{name}.")
        elif annotation is not bool and _numeric(annotation):
            paths.append(prefix + name)
    return paths


WORKLOAD_FIELDS = numeric_fields(WorkloadSpec)
ARCH_FIELDS = numeric_fields(ArchitectureSpec)
DEVICE_FIELDS = numeric_fields(DeviceSpec)


def test_every_kind_of_field_is_fuzzed():
    assert {"model.hidden_size", "training.seq_len", "training.seed", "training.grad_clip"} <= set(WORKLOAD_FIELDS)
    assert {"dac.bits", "adc.bits", "update.desired_bl", "periphery.out_noise", "system.n_tiles",
            "bus.width_bits"} <= set(ARCH_FIELDS)
    assert {"dw_min", "w_max", "up_down"} <= set(DEVICE_FIELDS)


def _dump(data: dict, path: Path) -> Path:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    with open(path, "w") as fh:
        yaml.dump(data, fh)
    return path


def _specs(tmp: Path, kind: str, field: str, value) -> tuple[Path, Path, Path]:
    """Workload, architecture and device files with one field of one of them set to ``value``."""
    w = read_yaml(WORKLOADS / "tiny.yaml").data
    a = _read_preset("architectures", "rpu2016", "test").data
    d = _read_preset("devices", "rpu_baseline", "test").data
    set_path({"workload": w, "architecture": a, "device": d}[kind], field, value)
    a_path, d_path = _dump(a, tmp / "arch.yaml"), _dump(d, tmp / "dev.yaml")
    w["architecture"], w["device"] = str(a_path), str(d_path)
    return _dump(w, tmp / "w.yaml"), a_path, d_path


def _check(capsys, code: int, out: Path, elapsed: float, what: str) -> None:
    captured = capsys.readouterr()
    assert code in (0, 2, 3), (what, code, captured.err[-2000:])
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, (what, captured.err[-2000:])
    if code != 0:
        errors = [line for line in captured.err.splitlines() if line.startswith("archsim: error")]
        assert len(errors) == 1, (what, captured.err[-2000:])
        if code == 2:
            assert not out.exists(), (what, "wrote", sorted(p.name for p in out.rglob("*")))
    assert elapsed < TIME_BOUND_S, (what, elapsed)


spec_change = st.one_of(
    st.tuples(st.just("workload"), st.sampled_from(WORKLOAD_FIELDS), st.sampled_from(ADVERSARIAL)),
    st.tuples(st.just("architecture"), st.sampled_from(ARCH_FIELDS), st.sampled_from(ADVERSARIAL)),
    st.tuples(st.just("device"), st.sampled_from(DEVICE_FIELDS), st.sampled_from(ADVERSARIAL)),
)

FUZZ = dict(derandomize=True, deadline=None, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=120, **FUZZ)
@given(change=spec_change)
def test_fuzz_estimate_specs(tmp_path_factory, capsys, change):
    tmp = tmp_path_factory.mktemp("fz")
    kind, field, value = change
    w, _, _ = _specs(tmp, kind, field, value)
    out = tmp / "out"
    t0 = time.perf_counter()
    code = main(["estimate", str(w), "--out", str(out)])
    _check(capsys, code, out, time.perf_counter() - t0, f"estimate {kind}.{field}={value!r}")


@settings(max_examples=40, **FUZZ)
@given(change=spec_change, mode=st.sampled_from(["fast", "exact"]))
def test_fuzz_train_specs(tmp_path_factory, capsys, one_torch_thread, change, mode):
    tmp = tmp_path_factory.mktemp("fz")
    kind, field, value = change
    w, _, _ = _specs(tmp, kind, field, value)
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp / "out"
    t0 = time.perf_counter()
    code = main(["train", str(w), "--data", str(text), "--max-chars", "40", "--update-mode", mode,
                 "--no-progress", "--json", "--out", str(out)])
    _check(capsys, code, out, time.perf_counter() - t0, f"train {kind}.{field}={value!r} {mode}")


ESTIMATE_FLAGS = ["--batch", "--epochs"]
TRAIN_FLAGS = ["--epochs", "--max-chars", "--seed", "--lr", "--eval-every", "--threads"]


@settings(max_examples=30, **FUZZ)
@given(flag=st.sampled_from(ESTIMATE_FLAGS), value=st.sampled_from(FLAG_VALUES))
def test_fuzz_estimate_flags(tmp_path_factory, capsys, flag, value):
    out = tmp_path_factory.mktemp("fz") / "out"
    t0 = time.perf_counter()
    code = main(["estimate", str(WORKLOADS / "tiny.yaml"), flag, value, "--out", str(out)])
    _check(capsys, code, out, time.perf_counter() - t0, f"estimate {flag} {value!r}")


@settings(max_examples=40, **FUZZ)
@given(flag=st.sampled_from(TRAIN_FLAGS), value=st.sampled_from(FLAG_VALUES))
def test_fuzz_train_flags(tmp_path_factory, capsys, one_torch_thread, flag, value):
    tmp = tmp_path_factory.mktemp("fz")
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp / "out"
    budget = [] if flag in ("--epochs", "--max-chars") else ["--max-chars", "40"]
    # A budget of 10^12 characters is valid input for a very long run, not a defect: leave it out.
    assume(not (flag == "--epochs" and value.isdigit() and int(value) > 3))
    assume(not (flag == "--max-chars" and value.isdigit() and int(value) > 10_000))
    t0 = time.perf_counter()
    code = main(["train", str(WORKLOADS / "tiny.yaml"), "--data", str(text), flag, value, *budget,
                 "--no-progress", "--json", "--out", str(out)])
    _check(capsys, code, out, time.perf_counter() - t0, f"train {flag} {value!r}")


def _sweep_file(tmp: Path) -> Path:
    (tmp / "tiny.yaml").write_text((WORKLOADS / "tiny.yaml").read_text())
    path = tmp / "s.yaml"
    path.write_text("name: fz\nbase: tiny.yaml\naxes:\n  workload.training.batch_size: [1, 2]\nkind: estimate\n")
    return path


#: The numeric flags of the other commands, each with the arguments that make a run short.
OTHER_FLAGS = [
    ("run", "--steps"), ("run", "--seed"), ("run", "--lr"),
    ("validate", "--seed"), ("validate", "--max-chars"), ("validate", "--eval-every"),
    ("compare", "--hidden-sizes"), ("compare", "--batch-sizes"), ("compare", "--simpy-max-tiles"),
    ("sweep", "--jobs"), ("sweep", "--connect-timeout"),
    ("reproduce", "--jobs"),
]


@settings(max_examples=40, **FUZZ)
@given(case=st.sampled_from(OTHER_FLAGS), value=st.sampled_from(FLAG_VALUES))
def test_fuzz_other_commands_flags(tmp_path_factory, capsys, one_torch_thread, case, value):
    command, flag = case
    # A budget of 10^12 steps or characters is valid input for a very long run: leave it out.
    assume(not (flag in ("--steps", "--max-chars") and value.isdigit() and int(value) > 3))
    tmp = tmp_path_factory.mktemp("fz")
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp / "out"
    tiny = str(WORKLOADS / "tiny.yaml")
    base = {
        "run": ["run", tiny, "--data", str(text), "--steps", "1"],
        "validate": ["validate", tiny, "--device", "rpu_baseline", "--data", str(text),
                     "--max-chars", "40", "--no-progress"],
        "compare": ["compare", tiny, "--arch", "rpu2016", "--baselines", "v100", "--no-progress",
                    "--hidden-sizes", "8,16", "--batch-sizes", "1,2"],
        "sweep": ["sweep", str(_sweep_file(tmp)), "--no-progress"],
        "reproduce": ["reproduce", "--list"],
    }[command]
    args = base + [flag, value] + ([] if command == "reproduce" else ["--out", str(out)])
    t0 = time.perf_counter()
    code = main(args)
    _check(capsys, code, out, time.perf_counter() - t0, f"{command} {flag} {value!r}")
