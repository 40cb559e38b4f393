"""Every point of the shipped reproduction sweeps survives its first training steps (slow: run with
``pytest -m slow tests/test_shipped_sweeps_train.py``; 4 minutes beside a running 2-job sweep on 2
cores; needs War and Peace beside the repository or in $ARCHSIM_DATA_DIR, and skips without it).

Why: the first paper-scale overfitting sweep (LSTM2-512 at learning rate 0.05, no error clip) was
shipped untried and diverged at step 20 (floating point) and step 8 (rpu_baseline), hours of
planned runs that could not have given a result; this test, run on that sweep, stops at the same
steps with the same losses. A sweep is cheap to check before it is run: each point of its first
seed, trained for :data:`STEPS` steps on the text and batch shape its sweep gives, must not
diverge. Later divergence (hundreds of steps in) is not caught here.
"""
from __future__ import annotations

import pytest

from conftest import shared_data_dir

#: Training steps per point: past the step (20) where the first version of the paper-scale
#: overfitting sweep diverged.
STEPS = 25

pytestmark = pytest.mark.slow


def _claims_and_budgets() -> list[tuple[str, str]]:
    from archsim.reproduce.registry import BUDGETS, CLAIMS, claim_sweeps

    return [(name, budget) for name, claim in CLAIMS.items() for budget in BUDGETS
            if claim_sweeps(claim, budget)]


def first_steps_of_each_point(sweep_path, prefix_data: bool, monkeypatch) -> dict[str, dict]:
    """Label -> worker output of each point of the sweep's first seed, trained for :data:`STEPS`
    steps through the sweep's own worker (the prefix worker for prefix claims). The validation
    and test passes are skipped (a fixed loss): only the training steps are being checked."""
    import archsim.functional.train as train_module
    from archsim.reproduce.prefix import prefix_train_task
    from archsim.sweep import load_sweep
    from archsim.sweep.evaluate import run_task
    from archsim.sweep.expand import expand, resolve_point, resolve_task

    monkeypatch.setattr(train_module, "evaluate", lambda *args, **kwargs: 1.0)
    sweep = load_sweep(sweep_path)
    worker = prefix_train_task if prefix_data else run_task
    outputs = {}
    for point in expand(sweep):
        if point.seed != sweep.spec.seeds[0]:
            continue
        task, _ = resolve_point(sweep, point)
        training = resolve_task(task)[0].training
        # No key and no checkpoint folder: the budget differs from the stored point's.
        options = {**task["options"], "max_chars": STEPS * training.batch_size * training.seq_len,
                   "eval_every": STEPS}
        task = {k: v for k, v in task.items() if k != "key"}
        outputs[point.label()] = worker({**task, "options": options})
    return outputs


@pytest.fixture
def one_torch_thread():
    """One torch thread, as each worker of ``--jobs 2`` on 2 cores has: beside a running sweep,
    two threads per process wait on each other and the small LSTM-64 steps take 12x as long."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("claim_name,budget", _claims_and_budgets())
def test_every_point_of_a_shipped_sweep_survives_its_first_steps(claim_name, budget, monkeypatch,
                                                                  one_torch_thread):
    from archsim.reproduce.registry import CLAIMS, sweep_paths

    data = shared_data_dir()
    if data is None or not (data / "warpeace_input.txt").is_file():
        pytest.skip("War and Peace not found (../shared/data or $ARCHSIM_DATA_DIR)")
    monkeypatch.setenv("ARCHSIM_DATA_DIR", str(data))
    claim = CLAIMS[claim_name]
    for path in sweep_paths(claim, budget=budget):
        outputs = first_steps_of_each_point(path, claim.prefix_data, monkeypatch)
        assert outputs
        for label, output in outputs.items():
            assert "result" in output, f"{path.name} {label}: {output}"
            result = output["result"]
            assert not result.get("diverged"), f"{path.name} {label}: {result.get('error')}"
            assert result["steps"] == STEPS, f"{path.name} {label}: {result}"
