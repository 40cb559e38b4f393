"""Train a character LSTM on simulated RPU tiles; compare it with floating point.

:func:`train` runs truncated BPTT with plain SGD (what arrays implement) over the workload's data,
evaluates validation and test cross-entropy (nats/char) on the analog model (forward MVMs through
the tiles, no update), writes loss curves (JSON + PNG) and atomic checkpoints, and resumes from
them bit for bit. :func:`validate` trains the ideal (floating-point) device and a device preset
side by side with the same seed and budget.

Schedule: an epoch is one pass over the training split in ``B`` streams (see
:mod:`archsim.functional.data`); the hidden state is carried between steps and reset at every
epoch start. Every ``eval_every`` steps (default a tenth of an epoch), at every epoch end and at
the end of the budget a curve point is recorded (mean training loss since the previous point and
the validation loss) and a checkpoint written. Evaluation draws its noise from its own freshly
seeded stream and leaves the training streams and the tiles' activity counters untouched, so
evaluating more or less often never changes the training trajectory.
"""
from __future__ import annotations

import copy
import io
import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from archsim.errors import DivergenceError, SpecError
from archsim.fsutil import atomic_write_bytes, atomic_write_png
from archsim.functional.data import CharCorpus, StreamBatches, load_corpus, resolve_data_path

#: A training loss above this multiple of ln(V) (a uniform guess) is divergence.
DIVERGENCE_FACTOR = 3.0

#: Evaluation uses at least this many parallel streams when every stream keeps >= 20 windows.
EVAL_MIN_STREAMS = 32

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    """Outcome of one training run (losses in nats per character)."""

    train_loss: float
    """Mean training loss over the last curve interval (at most ``eval_every`` steps)."""
    valid_loss: float
    """Cross-entropy on the whole validation split, analog forward MVMs, no update."""
    test_loss: float
    """Cross-entropy on the whole test split."""
    chars_seen: int
    """Training characters processed (steps * B * T)."""
    seconds: float
    """Wall time of training and evaluation (summed over resumed segments)."""
    steps: int
    epochs: float
    """Passes over the training split (fractional)."""
    curve: list[dict] = field(default_factory=list)
    activity: dict = field(default_factory=dict)
    """Summed tile activity of the training steps (evaluation excluded)."""
    workload: str = ""
    device: str = ""
    architecture: str = ""
    data: str = ""
    vocab_size: int = 0
    n_tiles: int = 0
    learning_rate: float = 0.0
    seed: int = 0
    update_mode: str = "fast"
    torch_device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValidateResult:
    """Floating point and a device trained side by side."""

    fp: TrainResult
    analog: TrainResult

    @property
    def gap(self) -> float:
        """Test loss of the device minus that of floating point (nats/char)."""
        return self.analog.test_loss - self.fp.test_loss

    def to_dict(self) -> dict:
        return {"fp": self.fp.to_dict(), "analog": self.analog.to_dict(), "gap": self.gap,
                "test_loss_fp": self.fp.test_loss, "test_loss_device": self.analog.test_loss}

    def table(self) -> list[dict]:
        rows = []
        for label, r in (("floating point", self.fp), (r_name(self.analog), self.analog)):
            rows.append({"run": label, "device": r.device, "train": r.train_loss, "valid": r.valid_loss,
                         "test": r.test_loss, "chars": r.chars_seen, "seconds": r.seconds})
        return rows


def r_name(result: TrainResult) -> str:
    return f"{result.device} ({result.update_mode})"


# -- helpers ---------------------------------------------------------------------------------
def resolve_torch_device(name: str | None) -> torch.device:
    """"cpu" (default), "cuda", "cuda:N" or "auto" (CUDA when available)."""
    name = name or "cpu"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SpecError("command line", "--torch-device", name, "allowed: cpu, cuda, cuda:N, auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("command line", "--torch-device", name, "CUDA is not available here; use cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise SpecError("command line", "--torch-device", name, "allowed: cpu, cuda, cuda:N, auto")
    return dev


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to memory, then one atomic write (a reader never sees half a checkpoint)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def plot_curves(path: Path, runs: dict[str, list[dict]], title: str = "") -> None:
    """Training and validation loss against characters seen, one colour per run (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, curve) in enumerate(runs.items()):
        colour = f"C{i}"
        pts = [p for p in curve if p.get("train_loss") is not None]
        if pts:
            ax.plot([p["chars"] for p in pts], [p["train_loss"] for p in pts], color=colour,
                    alpha=0.45, lw=1, label=f"{label} train")
        pts = [p for p in curve if p.get("valid_loss") is not None]
        if pts:
            ax.plot([p["chars"] for p in pts], [p["valid_loss"] for p in pts], color=colour,
                    marker="o", ms=3, lw=1.6, label=f"{label} valid")
    ax.set_xlabel("training characters")
    ax.set_ylabel("cross-entropy (nats/char)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_png(path, fig, dpi=110)


def build_model(workload, arch, device, vocab_size: int, *, seed: int, update_mode: str = "fast",
                torch_device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The :class:`AnalogLSTM` of a workload on an architecture's arrays with a device preset."""
    from archsim.functional.config import RPUConfig
    from archsim.functional.lstm import AnalogLSTM

    config = RPUConfig.from_specs(device, arch, update_mode)
    output_config = None
    if not workload.model.output_layer:
        from archsim.specs import load_device

        output_config = RPUConfig.from_specs(load_device("ideal"), arch, update_mode)
    t = workload.training
    return AnalogLSTM(vocab_size, workload.model.hidden_size, workload.model.layers, config,
                      array_rows=arch.array.rows, array_cols=arch.array.cols,
                      output_config=output_config, seed=seed, device=str(torch_device), dtype=dtype,
                      dropout=t.dropout, grad_clip=t.grad_clip)


def evaluate(model, ids: torch.Tensor, batch_size: int, seq_len: int, *, seed: int,
             max_chars: int | None = None) -> float:
    """Mean cross-entropy (nats/char) of a split through the analog model; no update.

    Noise comes from a stream seeded with ``seed``; the training stream and the tiles' activity
    counters are restored afterwards.
    """
    if max_chars is not None and len(ids) > max_chars:
        ids = ids[:max_chars]
    # More streams than the training batch where the split allows it: the evaluation cost is
    # per timestep, so few long streams (tiny workloads) would be slow. Each stream starts from
    # a zero state, a negligible difference for streams of thousands of characters.
    while batch_size < EVAL_MIN_STREAMS and len(ids) >= 2 * batch_size * (seq_len * 20 + 1):
        batch_size *= 2
    batches = StreamBatches(ids, batch_size, seq_len, drop_last=False)
    gen = model.tile_generator
    saved_rng = gen.get_state()
    tiles = [t for m in model.matrices for t in m.tiles]
    saved_activity = [copy.deepcopy(t.activity) for t in tiles]
    gen.manual_seed(seed)
    try:
        state = model.zero_state(batch_size)
        total, count = 0.0, 0
        for x, y in batches:
            loss, state = model.loss(x, y, state)
            total += loss
            count += y.numel()
    finally:
        gen.set_state(saved_rng)
        for t, a in zip(tiles, saved_activity):
            t.activity = a
    return total / max(count, 1)


def _model_state(model) -> dict:
    return {
        "tiles": [[t.state_dict() for t in m.tiles] for m in model.matrices],
        "generators": {"tile": model.tile_generator.get_state(),
                       "dropout": model.dropout_generator.get_state()},
    }


def _load_model_state(model, state: dict) -> None:
    for m, tiles in zip(model.matrices, state["tiles"]):
        for t, s in zip(m.tiles, tiles):
            t.load_state_dict(s)
    model.tile_generator.set_state(state["generators"]["tile"])
    model.dropout_generator.set_state(state["generators"]["dropout"])


def _run_key(workload, arch, device, *, seed, update_mode, lr, corpus: CharCorpus) -> str:
    from archsim.specs import spec_hash

    w = workload.model_copy(deep=True)
    w.training.epochs = 1  # the budget may change between segments
    return spec_hash(w, arch, device, extra={
        "seed": seed, "update_mode": update_mode, "lr": lr, "data": corpus.source,
        "chars": corpus.n_chars, "vocab": "".join(corpus.vocab)})


def _activity_dict(model) -> dict:
    a = model.activity()
    if a is None:
        return {}
    d = a.to_dict()
    d["rates"] = a.rates()
    # Per tile, keyed like the schedule's placements ("lstm1[0]": block 0 of lstm1), so that
    # archsim.activity_run can re-time and re-price each tile with its own measured activity.
    d["per_tile"] = {f"{m.name}[{j}]": t.activity.to_dict()
                     for m in model.matrices for j, t in enumerate(m.tiles)}
    return d


# -- training --------------------------------------------------------------------------------
def train(workload, arch, device, *, data_path: str | Path | None = None, epochs: int | None = None,
          max_chars: int | None = None, seed: int | None = None, out_dir: str | Path | None = None,
          resume: bool = False, update_mode: str = "fast", progress: bool = True,
          torch_device: str | None = "cpu", learning_rate: float | None = None,
          eval_every: int | None = None, eval_seed_offset: int = 1_000_003,
          corpus: CharCorpus | None = None, progress_label: str | None = None) -> TrainResult:
    """Train ``workload``'s LSTM on ``arch``'s tiles with ``device``'s devices.

    Budget: ``max_chars`` training characters (rounded up to whole steps) or ``epochs`` passes
    (default the workload's ``training.epochs``); not both. ``seed`` defaults to the workload's.
    With ``out_dir`` the run writes ``checkpoint.pt``, ``curve.json``, ``curve.png`` and
    ``result.json`` there; ``resume=True`` continues from its checkpoint (same result as an
    uninterrupted run). Raises :class:`SpecError` on bad input, :class:`DivergenceError` when the
    loss becomes NaN/inf or exceeds ``3 ln V``.
    """
    t_start = time.perf_counter()
    tr = workload.training
    if epochs is not None and max_chars is not None:
        raise SpecError("command line", "--epochs/--max-chars", f"{epochs}/{max_chars}",
                        "give one budget: epochs or max-chars")
    if epochs is not None and epochs < 1:
        raise SpecError("command line", "--epochs", epochs, "expected a positive number of epochs")
    if max_chars is not None and max_chars < 1:
        raise SpecError("command line", "--max-chars", max_chars, "expected a positive number of characters")
    if update_mode not in ("fast", "exact"):
        raise SpecError("command line", "--update-mode", update_mode, "allowed: fast, exact")
    seed = tr.seed if seed is None else int(seed)
    lr = float(learning_rate if learning_rate is not None else tr.learning_rate)
    if not lr > 0:
        raise SpecError("command line", "--lr", learning_rate, "expected a positive learning rate")
    dev = resolve_torch_device(torch_device)
    B, T = tr.batch_size, tr.seq_len
    if corpus is None:
        corpus = load_corpus(resolve_data_path(data_path, workload), train_fraction=tr.train_fraction,
                             batch_size=B, seq_len=T)
    batches = StreamBatches(corpus.train, B, T)
    steps_per_epoch = len(batches)
    if max_chars is not None:
        total_steps = math.ceil(max_chars / (B * T))
    else:
        total_steps = (epochs if epochs is not None else tr.epochs) * steps_per_epoch
    eval_every = eval_every or max(1, steps_per_epoch // 10)
    notes = []
    if workload.model.vocab_size != corpus.vocab_size:
        notes.append(f"model.vocab_size {workload.model.vocab_size} replaced by the data's "
                     f"{corpus.vocab_size} distinct characters")
    for name in ("input_size", "output_size"):
        value = getattr(workload.model, name)
        if value is not None and value != corpus.vocab_size:
            notes.append(f"model.{name} {value} ignored: one-hot characters in and out need "
                         f"{corpus.vocab_size}")

    model = build_model(workload, arch, device, corpus.vocab_size, seed=seed,
                        update_mode=update_mode, torch_device=dev)
    key = _run_key(workload, arch, device, seed=seed, update_mode=update_mode, lr=lr, corpus=corpus)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None

    step, seconds_before = 0, 0.0
    curve: list[dict] = []
    window: list[float] = []   # losses since the last curve point
    recent: deque[float] = deque(maxlen=eval_every)   # the last eval_every losses: train_loss
    state = model.zero_state(B)
    if resume and ckpt_path is not None and ckpt_path.is_file():
        # CPU first: generator states must stay CPU byte tensors; tiles copy to their device.
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("key") != key:
            raise SpecError(ckpt_path, "checkpoint", ck.get("key"),
                            "was written by a run with another workload, architecture, device, seed, "
                            "learning rate, update mode or data; use another --out or drop --resume")
        _load_model_state(model, ck["model"])
        step, seconds_before = ck["step"], ck["seconds"]
        curve = [p for p in ck["curve"] if not p.get("final")]
        window = list(ck["window"])
        recent.extend(ck["recent"])
        state = [(h.to(dev), c.to(dev)) for h, c in ck["state"]]
    elif resume and ckpt_path is None:
        raise SpecError("command line", "--resume", True, "needs --out DIR holding a checkpoint")

    info = dict(workload=workload.name, device=device.name, architecture=arch.name,
                data=corpus.source, vocab_size=corpus.vocab_size, n_tiles=model.n_tiles,
                learning_rate=lr, seed=seed, update_mode=update_mode, torch_device=str(dev), notes=notes)
    ln_v = math.log(corpus.vocab_size)

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t_start

    def snapshot() -> dict:
        return {"format": CHECKPOINT_FORMAT, "key": key, "step": step, "seconds": elapsed(),
                "model": _model_state(model), "curve": curve, "window": window,
                "recent": list(recent),
                "state": [(h.detach().cpu(), c.detach().cpu()) for h, c in state],
                "chars_seen": step * B * T, "vocab": corpus.vocab}

    def save_outputs(final_result: TrainResult | None = None) -> None:
        if out is None:
            return
        write_json(out / "curve.json", {"run": info, "curve": curve})
        plot_curves(out / "curve.png", {f"{device.name}": curve},
                    title=f"{workload.name} on {arch.name} / {device.name} ({update_mode})")
        if final_result is not None:
            write_json(out / "result.json", final_result.to_dict())

    bar = None
    if progress and step < total_steps:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True,
                   desc=progress_label or f"{workload.name}/{device.name}", leave=True)
    try:
        while step < total_steps:
            k = step % steps_per_epoch
            if k == 0:
                state = model.zero_state(B)
            x, y = batches.batch(k)
            loss, state = model.train_step(x, y, state, lr)
            step += 1
            if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * ln_v:
                curve.append({"step": step, "chars": step * B * T, "train_loss": loss, "diverged": True})
                save_outputs()
                raise DivergenceError(
                    f"training diverged at step {step} ({step * B * T} chars): loss {loss:.4g} nats/char "
                    f"{'is not finite' if not math.isfinite(loss) else f'exceeds {DIVERGENCE_FACTOR:g} ln V = {DIVERGENCE_FACTOR * ln_v:.3g}'}"
                    f"; lower training.learning_rate ({lr:g}) or set training.grad_clip")
            window.append(loss)
            recent.append(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", refresh=False)
            # Curve points fall on fixed steps (not on the end of the budget), so that a run cut
            # into resumed segments records exactly what an uninterrupted run records.
            boundary = step % eval_every == 0 or step % steps_per_epoch == 0
            if boundary:
                valid = evaluate(model, corpus.valid, B, T, seed=seed + eval_seed_offset)
                curve.append({"step": step, "chars": step * B * T, "epoch": step / steps_per_epoch,
                              "train_loss": sum(window) / len(window), "valid_loss": valid,
                              "seconds": elapsed()})
                window = []
            if out is not None and (boundary or step == total_steps):
                atomic_torch_save(snapshot(), ckpt_path)
                save_outputs()
    finally:
        if bar is not None:
            bar.close()

    activity = _activity_dict(model)
    train_loss = sum(recent) / len(recent) if recent else float("nan")
    last = curve[-1] if curve else None
    valid = last["valid_loss"] if last is not None and last["step"] == step else \
        evaluate(model, corpus.valid, B, T, seed=seed + eval_seed_offset)
    test = evaluate(model, corpus.test, B, T, seed=seed + eval_seed_offset + 1)
    curve.append({"step": step, "chars": step * B * T, "epoch": step / steps_per_epoch,
                  "train_loss": train_loss, "valid_loss": valid, "test_loss": test,
                  "seconds": elapsed(), "final": True})
    result = TrainResult(train_loss=train_loss, valid_loss=valid, test_loss=test,
                         chars_seen=step * B * T, seconds=elapsed(), steps=step,
                         epochs=step / steps_per_epoch, curve=curve, activity=activity, **info)
    if out is not None:
        save_outputs(result)
    return result


def validate(workload, arch, device, *, data_path: str | Path | None = None,
             epochs: int | None = None, max_chars: int | None = None, seed: int | None = None,
             out_dir: str | Path | None = None, resume: bool = False, update_mode: str = "fast",
             progress: bool = True, torch_device: str | None = "cpu",
             learning_rate: float | None = None, eval_every: int | None = None) -> ValidateResult:
    """Train floating point (the ideal device) and ``device`` with the same seed, data and budget.

    With ``out_dir`` each run writes into ``out_dir/fp`` and ``out_dir/<device name>``, and
    ``validate.json`` and ``curves.png`` compare them.
    """
    from archsim.specs import load_device

    tr = workload.training
    corpus = load_corpus(resolve_data_path(data_path, workload), train_fraction=tr.train_fraction,
                         batch_size=tr.batch_size, seq_len=tr.seq_len)
    out = Path(out_dir) if out_dir is not None else None
    common = dict(epochs=epochs, max_chars=max_chars, seed=seed, resume=resume, progress=progress,
                  torch_device=torch_device, learning_rate=learning_rate, eval_every=eval_every,
                  corpus=corpus)
    fp = train(workload, arch, load_device("ideal"), out_dir=out / "fp" if out else None,
               update_mode=update_mode, progress_label=f"{workload.name}/fp", **common)
    analog = train(workload, arch, device, out_dir=out / device.name if out else None,
                   update_mode=update_mode, progress_label=f"{workload.name}/{device.name}", **common)
    result = ValidateResult(fp, analog)
    if out is not None:
        write_json(out / "validate.json", result.to_dict())
        plot_curves(out / "curves.png", {"floating point": fp.curve, r_name(analog): analog.curve},
                    title=f"{workload.name}: floating point vs {device.name} on {arch.name}")
    return result
