"""Train the same workload with several seeds at once, as one population (one batched model).

:func:`train_population` is :func:`archsim.functional.train.train` for ``K`` seeds in one process:
the members share the data stream and every op (:mod:`archsim.functional.members`), each has its
own initial weights and device variations (those of a separate run with its seed), and the per-op
random draws come from population streams. A member equals the separate run with its seed in
distribution, not draw for draw, so its numbers depend on the population's seed list too; sweeps
key a population's points by that list (``train.population`` in a sweep file).

A member whose loss diverges is retired (:meth:`AnalogLSTM.retire`: weights 0, no more updates)
and reported as a :class:`DivergenceError`; the others go on. With ``out_dir`` the population
keeps one checkpoint there (``checkpoint.pt``, written atomically at every curve point, at the end
and every ``checkpoint_seconds``) and continues from it when started again with the same
configuration; the result equals an uninterrupted run's.
"""
from __future__ import annotations

import io
import math
import time
import warnings
from collections import deque
from pathlib import Path

import torch

from archsim.errors import DivergenceError, SpecError
from archsim.feasibility import check_training_memory
from archsim.fsutil import atomic_write_bytes
from archsim.functional.data import CharCorpus
from archsim.functional.train import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, CHECKPOINT_SECONDS,
                                      DIVERGENCE_FACTOR, TrainResult, _activity_dict,
                                      _load_model_state, _model_state, _run_key, build_model,
                                      evaluate, machine, machine_mark, resolve_torch_device,
                                      step_bar, tenth_of_an_epoch, training_plan)


def train_population(workload, arch, device, *, seeds, data_path=None, epochs: int | None = None,
                     max_chars: int | None = None, update_mode: str = "fast", progress: bool = False,
                     torch_device: str | None = "cpu", learning_rate: float | None = None,
                     eval_every: int | None = None, eval_seed_offset: int = 1_000_003,
                     corpus: CharCorpus | None = None, member_devices=None, member_archs=None,
                     out_dir: str | Path | None = None, checkpoint_seconds: float = CHECKPOINT_SECONDS,
                     where: tuple[str, str] = ("command line", "--population"),
                     ) -> list[TrainResult | DivergenceError]:
    """Train ``workload`` on ``arch`` with ``device`` once per seed in ``seeds`` (two or more,
    distinct), as one population. Budget, learning rate and evaluation as in
    :func:`~archsim.functional.train.train`; returns one :class:`TrainResult` or
    :class:`DivergenceError` per seed, in order. Evaluation noise comes from one stream for the
    whole population, seeded with the first member's ``seed + eval_seed_offset``.

    ``member_devices`` (one device spec per seed): member k trains on ``member_devices[k]``
    (:class:`~archsim.functional.lstm.AnalogLSTM`); a seed may then repeat with other devices.
    ``device`` is the first member's. ``member_archs`` (one architecture per seed; ``arch`` is
    the first member's): member k's tiles take their periphery from ``member_archs[k]``, which
    may differ from ``arch`` in the converters only (DAC/ADC bits, ``periphery``'s ranges,
    rounding, output noise and bound-management limits:
    :data:`~archsim.functional.config.MEMBER_PERIPHERY_FIELDS`); a seed may then
    repeat with other settings. ``where``: the file and field that errors about the
    population itself name (a sweep passes its file and ``train.population``)."""
    seeds = [int(s) for s in seeds]
    devices = list(member_devices) if member_devices is not None else [device] * len(seeds)
    archs = list(member_archs) if member_archs is not None else [arch] * len(seeds)
    members = [(s, d.model_dump_json(), a.model_dump_json()) for s, d, a in zip(seeds, devices, archs)]
    if len(seeds) < 2 or len(set(members)) != len(seeds) or len(devices) != len(seeds) \
            or len(archs) != len(seeds):
        raise SpecError(*where, seeds, "a population needs two or more members, each a distinct "
                        "seed, device and architecture")
    shared = {(a.array.rows, a.array.cols, a.system.bptt_state) for a in archs}
    if len(shared) > 1:
        raise SpecError(*where, sorted(shared), "the members' architectures must share their "
                        "array size and system.bptt_state (one mapping, one program)")
    if not 0 <= checkpoint_seconds < math.inf:
        raise SpecError(*where, checkpoint_seconds, "checkpoint_seconds: a finite number of seconds >= 0")
    if epochs is not None and max_chars is not None:
        raise SpecError("command line", "--epochs/--max-chars", f"{epochs}/{max_chars}",
                        "give one budget: epochs or max-chars")
    if update_mode not in ("fast", "exact"):
        raise SpecError("command line", "--update-mode", update_mode, "allowed: fast, exact")
    t_start = time.perf_counter()
    tr = workload.training
    lr = float(learning_rate if learning_rate is not None else tr.learning_rate)
    if not 0 < lr <= 1e6:
        raise SpecError("command line", "--lr", learning_rate, "expected a learning rate above 0 and at most 1e6")
    dev = resolve_torch_device(torch_device)
    B, T, K = tr.batch_size, tr.seq_len, len(seeds)
    corpus, batches, total_steps = training_plan(workload, arch, device, data_path=data_path,
                                                 corpus=corpus, epochs=epochs, max_chars=max_chars,
                                                 update_mode=update_mode)
    steps_per_epoch = len(batches)
    eval_every = eval_every or tenth_of_an_epoch(steps_per_epoch)
    check_training_memory(workload, arch, device, vocab_size=corpus.vocab_size, update_mode=update_mode,
                          members=K, where=where)
    try:
        model = build_model(workload, arch, device, corpus.vocab_size, seed=seeds[0],
                            update_mode=update_mode, torch_device=dev, seeds=seeds,
                            member_devices=member_devices, member_archs=member_archs)
    except ValueError as exc:   # Tiki-Taka, weight mapping, devices unlike per tile
        file, field = where
        if "devices differ" in str(exc) and field == "train.population":
            field = "train.population_devices"
        elif "settings differ" in str(exc) and field == "train.population":
            field = "train.population_periphery"
        raise SpecError(file, field, True, f"{exc}; train these models one by one") from None
    ln_v = math.log(corpus.vocab_size)
    eval_seed = seeds[0] + eval_seed_offset

    curves: list[list[dict]] = [[] for _ in seeds]
    windows: list[list[float]] = [[] for _ in seeds]
    recents = [deque(maxlen=tenth_of_an_epoch(steps_per_epoch)) for _ in seeds]   # train_loss
    failed: list[DivergenceError | None] = [None] * K
    state = model.zero_state(B)
    step, seconds_before = 0, 0.0
    from archsim.specs import spec_hash

    members_key = {"population": seeds, "devices": [spec_hash(d) for d in devices],
                   "eval_every": eval_every}
    if member_archs is not None:   # only then: checkpoints made before keep their keys
        members_key["architectures"] = [spec_hash(a) for a in archs]
    key = _run_key(workload, arch, device, update_mode=update_mode, lr=lr, corpus=corpus,
                   seed=members_key)
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt is not None and ckpt.is_file():
        try:
            with warnings.catch_warnings():   # torch warns about foreign pickles: one line only
                warnings.simplefilter("ignore")
                ck = torch.load(io.BytesIO(ckpt.read_bytes()), weights_only=True)
            if ck.get("format") != CHECKPOINT_FORMAT or ck.get("key") != key:
                raise ValueError("a checkpoint of another configuration")
            if ck["step"] > total_steps:
                raise ValueError(f"{ck['step']} steps done, more than this budget's {total_steps}")
            _load_model_state(model, ck["model"])
            model.alive = [int(a) for a in ck["alive"]]
            step, seconds_before = int(ck["step"]), float(ck["seconds"])
            curves, windows = ck["curves"], ck["windows"]
            for r, values in zip(recents, ck["recents"]):
                r.extend(values)
            failed = [None if m is None else DivergenceError(m) for m in ck["failed"]]
            # The seconds each diverged member had trained (checkpoints before them: unknown).
            for f, s in zip(failed, ck.get("failed_seconds", [None] * K)):
                if f is not None:
                    f.seconds = s
            state = [(h.to(dev), c.to(dev)) for h, c in ck["state"]]
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one line, never a traceback
            text = str(exc).strip().splitlines()
            got = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
            raise SpecError(ckpt, "checkpoint", got[:200], "a checkpoint of this population's "
                            "configuration (archsim's torch.save of plain data); delete it to start "
                            "over") from None

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t_start

    def save_checkpoint() -> None:
        buf = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "key": key, "step": step, "seconds": elapsed(),
                    "model": _model_state(model), "alive": list(model.alive), "curves": curves,
                    "windows": windows, "recents": [list(r) for r in recents],
                    "failed": [None if f is None else str(f) for f in failed],
                    "failed_seconds": [None if f is None else f.seconds for f in failed],
                    "state": [(h.detach().cpu(), c.detach().cpu()) for h, c in state]}, buf)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(ckpt, buf.getvalue())

    computed_on = machine()
    last_save = time.perf_counter()
    bar = step_bar(progress, total_steps, step, f"{workload.name}/{device.name} x{K}")
    try:
        while step < total_steps and not all(failed):
            k_step = step % steps_per_epoch
            if k_step == 0:
                state = model.zero_state(B)
            x, y = batches.batch(k_step)
            losses, state = model.train_step(x, y, state, lr)
            step += 1
            for k, loss in enumerate(losses):
                if failed[k] is not None:
                    continue
                if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * ln_v:
                    curves[k].append({"step": step, "chars": step * B * T, "train_loss": loss,
                                      "diverged": True})
                    failed[k] = DivergenceError(
                        f"training diverged at step {step} ({step * B * T} chars): loss {loss:.4g} "
                        f"nats/char exceeds {DIVERGENCE_FACTOR:g} ln V = {DIVERGENCE_FACTOR * ln_v:.3g} "
                        f"(seed {seeds[k]}, in a population of {K}); lower training.learning_rate "
                        f"({lr:g}) or set training.grad_clip")
                    failed[k].seconds = elapsed()
                    state = model.retire(k, state)
                    continue
                windows[k].append(loss)
                recents[k].append(loss)
            if bar is not None:
                bar.update(1)
            if step % eval_every == 0 or step % steps_per_epoch == 0:
                valid = evaluate(model, corpus.valid, B, T, seed=eval_seed)
                for k in range(K):
                    if failed[k] is None:
                        curves[k].append({"step": step, "chars": step * B * T,
                                          "epoch": step / steps_per_epoch,
                                          "train_loss": sum(windows[k]) / len(windows[k]),
                                          "valid_loss": valid[k],
                                          "seconds": elapsed(),
                                          **machine_mark(curves[k], computed_on)})
                        windows[k] = []
                boundary = True
            else:
                boundary = False
            if ckpt is not None and (boundary or step == total_steps or
                                     time.perf_counter() - last_save >= checkpoint_seconds):
                save_checkpoint()
                last_save = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()

    activity = _activity_dict(model)
    if any(f is None for f in failed):
        last_eval = step % eval_every == 0 or step % steps_per_epoch == 0
        valid = evaluate(model, corpus.valid, B, T, seed=eval_seed) if not last_eval else None
        test = evaluate(model, corpus.test, B, T, seed=eval_seed + 1)
    seconds = elapsed()
    results: list[TrainResult | DivergenceError] = []
    for k, seed in enumerate(seeds):
        if failed[k] is not None:
            results.append(failed[k])
            continue
        curve = curves[k]
        train_loss = sum(recents[k]) / len(recents[k]) if recents[k] else float("nan")
        v = curve[-1]["valid_loss"] if valid is None else valid[k]
        curve.append({"step": step, "chars": step * B * T, "epoch": step / steps_per_epoch,
                      "train_loss": train_loss, "valid_loss": v, "test_loss": test[k],
                      "seconds": seconds, "final": True, **machine_mark(curve, computed_on)})
        results.append(TrainResult(
            train_loss=train_loss, valid_loss=v, test_loss=test[k], chars_seen=step * B * T,
            seconds=seconds, steps=step, epochs=step / steps_per_epoch, curve=curve,
            activity=activity, workload=workload.name, device=devices[k].name, architecture=archs[k].name,
            data=corpus.source, vocab_size=corpus.vocab_size, n_tiles=model.n_tiles,
            learning_rate=lr, seed=seed, update_mode=update_mode, torch_device=str(dev),
            notes=[f"trained in a population of {K} (seeds {seeds}): seconds is the population's "
                   f"wall time and activity its {K} members' total"]))
    return results
