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
the validation loss) and a checkpoint written; a checkpoint is also written whenever
``checkpoint_seconds`` (default 60) of wall time have passed since the last one, so that a kill
loses at most about a minute even when a tenth of an epoch is longer than the run. Evaluation draws
its noise from its own freshly seeded stream and leaves the training streams and the tiles'
activity counters untouched, so evaluating more or less often never changes the training trajectory.

Checkpoints: ``checkpoint.pt`` holds only tensors and plain data (numbers, strings, lists, dicts;
generator states as byte tensors) and is loaded with ``torch.load(weights_only=True)``, so a crafted
file cannot run code. ``checkpoint.json`` beside it holds the configuration (format, run key, step,
budget, ``eval_every``) and the SHA-256 of the ``.pt`` bytes. It is written first and names both the
new ``.pt`` and the previous one (step and hash); then the ``.pt`` is replaced. Both writes are
atomic, so whichever instant a kill lands on, the ``.pt`` on disk matches one of the two entries of
the JSON on disk and the pair stays resumable. A checkpoint exists when ``checkpoint.pt`` exists.
The tiles' per-device parameters are not in it, only their SHA-256: building the model from the
run's seed draws them again, and a resume checks the digest (so a checkpoint is the weights, the
devices' wear and the generators: small enough to commit and continue on another machine).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from archsim.errors import DivergenceError, SpecError
from archsim.feasibility import check_training_memory
from archsim.fsutil import atomic_write_bytes, check_out_dir
from archsim.functional import checkpoint_meta
from archsim.functional.data import CharCorpus, StreamBatches, load_corpus, resolve_data_path

#: A training loss above this multiple of ln(V) (a uniform guess) is divergence.
DIVERGENCE_FACTOR = 3.0

#: Evaluation uses at least this many parallel streams when every stream keeps >= 20 windows.
EVAL_MIN_STREAMS = 32

CHECKPOINT_NAME = "checkpoint.pt"
#: The configuration of ``checkpoint.pt`` (run key, step, SHA-256 of the .pt bytes), beside it.
CHECKPOINT_META = checkpoint_meta.CHECKPOINT_META
CHECKPOINT_FORMAT = 2

#: Default wall time (seconds) between checkpoints, besides those at curve points.
CHECKPOINT_SECONDS = 60.0

_START_OVER = "use --force to start over"


def tenth_of_an_epoch(steps_per_epoch: int) -> int:
    """Steps in a tenth of an epoch (at least 1): the default curve cadence, and the window of
    the reported training loss, which therefore does not depend on the cadence."""
    return max(1, steps_per_epoch // 10)


@dataclass
class TrainResult:
    """Outcome of one training run (losses in nats per character)."""

    train_loss: float
    """Mean training loss over the last tenth of an epoch of steps (:func:`tenth_of_an_epoch`;
    the last curve interval at the default cadence), whatever ``eval_every`` is."""
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


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def plot_curves(path: Path, runs: dict[str, list[dict]], title: str = "") -> None:
    """Training and validation loss against characters seen, one colour per run (PNG)."""
    from archsim.plots import figure, write_png

    fig = figure(7, 4.2)
    ax = fig.subplots()
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
    write_png(path, fig, dpi=110)


def build_model(workload, arch, device, vocab_size: int, *, seed: int, update_mode: str = "fast",
                torch_device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                seeds=None, member_devices=None, member_archs=None):
    """The :class:`AnalogLSTM` of a workload on an architecture's arrays with a device preset
    (``seeds``: a population of one member per seed, ``member_devices`` their device specs and
    ``member_archs`` their architectures, which may differ in the periphery's converters only;
    see :class:`AnalogLSTM`)."""
    from archsim.functional.config import RPUConfig
    from archsim.functional.lstm import AnalogLSTM

    config = RPUConfig.from_specs(device, arch, update_mode)
    member_configs = None
    if member_archs is not None:
        devices = member_devices if member_devices is not None else [device] * len(member_archs)
        member_configs = [RPUConfig.from_specs(d, a, update_mode) for d, a in zip(devices, member_archs)]
        member_devices = None
    output_config = None
    if not workload.model.output_layer:
        from archsim.specs import load_device

        output_config = RPUConfig.from_specs(load_device("ideal"), arch, update_mode)
    t = workload.training
    return AnalogLSTM(vocab_size, workload.model.hidden_size, workload.model.layers, config,
                      array_rows=arch.array.rows, array_cols=arch.array.cols,
                      output_config=output_config, seed=seed, device=str(torch_device), dtype=dtype,
                      dropout=t.dropout, grad_clip=t.grad_clip, init_scale=workload.model.init_scale,
                      bptt_state=arch.system.bptt_state, seeds=seeds, member_devices=member_devices,
                      member_configs=member_configs)


def evaluate(model, ids: torch.Tensor, batch_size: int, seq_len: int, *, seed: int,
             max_chars: int | None = None):
    """Mean cross-entropy (nats/char) of a split through the analog model; no update (a
    population: a list, one per member).

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
            total = total + torch.tensor(loss, dtype=torch.float64) if isinstance(loss, list) else total + loss
            count += y.numel()
    finally:
        gen.set_state(saved_rng)
        for t, a in zip(tiles, saved_activity):
            t.activity = a
    if isinstance(total, torch.Tensor):
        return (total / max(count, 1)).tolist()
    return total / max(count, 1)


def step_bar(progress: bool, total_steps: int, step: int, label: str):
    """A tqdm bar over a run's steps that starts at ``step`` (a resumed run shows what it has
    done); None without ``progress`` or when nothing is left to train."""
    if not progress or step >= total_steps:
        return None
    from tqdm import tqdm

    return tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, desc=label,
                leave=True)


def machine() -> dict:
    """What computes a run: the CPU's model, the instruction set torch's CPU kernels use and
    torch's version. Written with a run's curve: two machines' kernels may round differently, so
    one seed can give slightly different curves on each, and a comparison must know where each
    ran."""
    from archsim.baselines.cpu import cpu_model

    # Plain str (torch.__version__ is a subclass): it is saved in checkpoints with the curve,
    # which load with weights_only=True.
    return {"cpu": str(cpu_model()), "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": str(torch.__version__)}


def machine_mark(curve: list[dict], here: dict) -> dict:
    """``{"machine": here}`` for the next curve point when ``here`` is not the machine the curve
    last named, else nothing. The first point names the machine; after a resume on another one
    (from a committed checkpoint) the next point names the new one, so a curve computed in
    segments on several machines says which part each computed."""
    last = next((p["machine"] for p in reversed(curve) if "machine" in p), None)
    return {} if last == here else {"machine": here}


#: Where a tile's state holds its per-device parameters (:meth:`AnalogTile.state_dict`).
_DEVICES = "devices"
#: What a checkpoint holds instead: their SHA-256, checked against the devices drawn again.
_DEVICES_SHA = "devices_sha256"


def _devices_digest(devices: dict[str, torch.Tensor]) -> str:
    """SHA-256 of per-device parameters: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(devices):
        t = devices[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _without_devices(state):
    """A tile's state with every per-device parameter set replaced by its digest. They are drawn
    from the run's seed when the model is built, so a checkpoint need not carry them: for a
    rpu_baseline LSTM2-512 they are four tensors of the weights' size (56 of its 99 MB), and a
    checkpoint small enough to commit lets a run continue on another machine."""
    if not isinstance(state, dict):
        return state
    return {(_DEVICES_SHA if k == _DEVICES else k):
            (_devices_digest(v) if k == _DEVICES else _without_devices(v)) for k, v in state.items()}


def _with_devices(state, drawn, where: str):
    """``state`` with each digest replaced by the devices ``drawn`` again for this model (the
    matching part of a fresh tile's state), after checking that they are the ones the checkpoint
    was trained with. A checkpoint that still holds its devices (written before) keeps them."""
    if not isinstance(state, dict):
        return state
    out = {}
    for k, v in state.items():
        if k == _DEVICES_SHA:
            mine = drawn.get(_DEVICES) if isinstance(drawn, dict) else None
            if mine is None or _devices_digest(mine) != v:
                raise ValueError(f"the devices of {where} drawn from this run's seed are not those the "
                                 "checkpoint was trained with (did the way devices are drawn change?)")
            out[_DEVICES] = mine
        else:
            out[k] = _with_devices(v, drawn.get(k) if isinstance(drawn, dict) else None, where)
    return out


def _model_state(model) -> dict:
    return {
        "tiles": [[_without_devices(t.state_dict()) for t in m.tiles] for m in model.matrices],
        "generators": {"tile": model.tile_generator.get_state(),
                       "dropout": model.dropout_generator.get_state()},
    }


def _load_model_state(model, state: dict) -> None:
    """Load a checkpoint's model state into ``model``, built from the run's seed (which drew the
    devices the checkpoint names by digest)."""
    for m, tiles in zip(model.matrices, state["tiles"]):
        for j, (t, s) in enumerate(zip(m.tiles, tiles)):
            t.load_state_dict(_with_devices(s, t.state_dict(), f"{m.name}[{j}]"))
    model.tile_generator.set_state(state["generators"]["tile"])
    model.dropout_generator.set_state(state["generators"]["dropout"])


def _run_key(workload, arch, device, *, seed, update_mode, lr, corpus: CharCorpus) -> str:
    from archsim.specs import spec_hash

    w = workload.model_copy(deep=True)
    w.training.epochs = 1  # the budget may change between segments
    return spec_hash(w, arch, device, extra={
        "seed": seed, "update_mode": update_mode, "lr": lr,
        # The text by its content, not its path: a checkpoint resumes on another machine.
        "data": corpus.digest or corpus.source,
        "chars": corpus.n_chars, "vocab": "".join(corpus.vocab)})


def has_checkpoint(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a checkpoint (``checkpoint.pt``) that ``resume=True`` continues."""
    return (Path(out_dir) / CHECKPOINT_NAME).is_file()


def _guard_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to train over an existing checkpoint unless resuming or starting over (``force``)."""
    if resume and force:
        raise SpecError("command line", "--resume/--force", "both",
                        "give one: --resume continues the checkpoint, --force starts over")
    if not resume and not force and has_checkpoint(out):
        raise SpecError(out / CHECKPOINT_NAME, "--out", "a folder holding a checkpoint",
                        "use --resume to continue it or --force to start over")


def _remove_checkpoint(out: Path) -> None:
    """Start over: the .pt first (without it there is no checkpoint), then its description."""
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)
    (out / CHECKPOINT_META).unlink(missing_ok=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_checkpoint(out: Path, key: str, eval_every: int) -> tuple[dict, str] | None:
    """The checkpoint in ``out`` and the SHA-256 of its bytes, verified; None when there is none.

    Every problem is a one-line :class:`SpecError` naming the file: a missing, unreadable or
    foreign ``checkpoint.json``; a ``checkpoint.pt`` whose bytes match neither entry of the JSON
    (changed, truncated); one that does not load as tensors and plain data (a pickle that would run
    code is refused by ``weights_only=True`` before anything in it runs).
    """
    pt, js = out / CHECKPOINT_NAME, out / CHECKPOINT_META
    if not pt.is_file():
        return None
    if not js.is_file():
        raise SpecError(pt, "", f"no {CHECKPOINT_META} beside it",
                        f"a checkpoint written by this archsim (format {CHECKPOINT_FORMAT}) comes with "
                        f"its {CHECKPOINT_META}; {_START_OVER}")
    try:
        meta = json.loads(js.read_bytes())
    except json.JSONDecodeError as exc:
        raise SpecError(js, "", f"not JSON ({exc.msg}, line {exc.lineno})",
                        f"the JSON description archsim writes beside {CHECKPOINT_NAME}; {_START_OVER}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(js, "", _first_line(exc),
                        f"the JSON description archsim writes beside {CHECKPOINT_NAME}; {_START_OVER}") from None
    if not isinstance(meta, dict):
        raise SpecError(js, "", type(meta).__name__, f"a JSON object; {_START_OVER}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise SpecError(js, "format", meta.get("format"),
                        f"expected {CHECKPOINT_FORMAT} (written by another archsim version); {_START_OVER}")
    if meta.get("key") != key:
        raise SpecError(js, "key", meta.get("key"),
                        "was written by a run with another workload, architecture, device, seed, "
                        "learning rate, update mode or data; use another --out, or --force to start over")
    if meta.get("eval_every") != eval_every:
        raise SpecError(js, "eval_every", meta.get("eval_every"),
                        f"this run asks for --eval-every {eval_every}; resume with --eval-every "
                        f"{meta.get('eval_every')} (curve points fall on its steps), or {_START_OVER}")
    entries = [meta] + ([meta["previous"]] if isinstance(meta.get("previous"), dict) else [])
    try:
        data = pt.read_bytes()
    except OSError as exc:
        raise SpecError(pt, "", _first_line(exc), f"a readable checkpoint; {_START_OVER}") from None
    digest = _sha256(data)
    match = next((e for e in entries if e.get("sha256") == digest), None)
    if match is None:
        raise SpecError(pt, "sha256", digest[:16],
                        f"does not match {CHECKPOINT_META} (step {meta.get('step')}): the file was "
                        f"changed, truncated or damaged; {_START_OVER}")
    try:
        # CPU first: generator states must stay CPU byte tensors; tiles copy to their device.
        ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- whatever the bytes make torch raise
        raise SpecError(pt, "", f"a file that does not load as plain data ({type(exc).__name__})",
                        f"a checkpoint of tensors and plain data only, loaded with weights_only=True "
                        f"(a pickle that would run code is refused); {_START_OVER}") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or ck.get("key") != key:
        raise SpecError(pt, "key", ck.get("key") if isinstance(ck, dict) else type(ck).__name__,
                        f"the run key {key} of {CHECKPOINT_META}; {_START_OVER}")
    step = ck.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 1 or step != match.get("step"):
        raise SpecError(pt, "step", step,
                        f"a positive step, {match.get('step')!r} as {CHECKPOINT_META} records; {_START_OVER}")
    return ck, digest


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
def training_plan(workload, arch, device, *, data_path, corpus: CharCorpus | None, epochs: int | None,
                  max_chars: int | None, update_mode: str) -> tuple[CharCorpus, StreamBatches, int]:
    """The corpus (read unless given), its training batches and the budget in steps
    (``max_chars`` rounded up to whole steps, else ``epochs`` or the workload's epochs)."""
    tr = workload.training
    B, T = tr.batch_size, tr.seq_len
    # Before the text is read: a run that cannot fit even with a one-character vocabulary.
    check_training_memory(workload, arch, device, vocab_size=1, update_mode=update_mode)
    if corpus is None:
        corpus = load_corpus(resolve_data_path(data_path, workload), train_fraction=tr.train_fraction,
                             batch_size=B, seq_len=T)
    batches = StreamBatches(corpus.train, B, T)
    if max_chars is not None:
        return corpus, batches, math.ceil(max_chars / (B * T))
    return corpus, batches, (epochs if epochs is not None else tr.epochs) * len(batches)


def train(workload, arch, device, *, data_path: str | Path | None = None, epochs: int | None = None,
          max_chars: int | None = None, seed: int | None = None, out_dir: str | Path | None = None,
          resume: bool = False, force: bool = False, update_mode: str = "fast", progress: bool = True,
          torch_device: str | None = "cpu", learning_rate: float | None = None,
          eval_every: int | None = None, eval_seed_offset: int = 1_000_003,
          corpus: CharCorpus | None = None, progress_label: str | None = None,
          checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
          write_plots: bool = True) -> TrainResult:
    """Train ``workload``'s LSTM on ``arch``'s tiles with ``device``'s devices.

    Budget: ``max_chars`` training characters (rounded up to whole steps) or ``epochs`` passes
    (default the workload's ``training.epochs``); not both. ``seed`` defaults to the workload's.
    With ``out_dir`` the run writes ``checkpoint.pt`` (+ ``checkpoint.json``), ``curve.json``,
    ``curve.png`` (unless ``write_plots`` is False) and ``result.json`` there. Checkpoints are
    written at every curve point, at the
    end of the budget and, in between, whenever ``checkpoint_seconds`` of wall time have passed
    since the last one (0: after every step; None: only at curve points); when a checkpoint is
    written never changes what the run records.

    Checkpoint policies (``out_dir`` given):

    * ``resume=True`` continues from the checkpoint; the result equals an uninterrupted run's.
      Without a checkpoint in ``out_dir`` the run starts from step 0 and says so in ``notes``.
      A budget smaller than the steps the checkpoint has done is a :class:`SpecError`; a budget
      equal to them returns the finished run's result again (evaluated as it was, no training).
      A checkpoint of another configuration, a damaged one or one that is not plain data is a
      :class:`SpecError` naming the file.
    * Without ``resume`` a folder that already holds a checkpoint is refused (:class:`SpecError`)
      unless ``force=True``, which deletes that checkpoint and starts over.

    Raises :class:`SpecError` on bad input, :class:`DivergenceError` when the loss becomes
    NaN/inf or exceeds ``3 ln V``.
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
    if eval_every is not None and not 1 <= eval_every <= 10**9:
        raise SpecError("command line", "--eval-every", eval_every, "expected a number of steps from 1 to 10^9")
    if checkpoint_seconds is not None and not (0 <= checkpoint_seconds < math.inf):
        raise SpecError("command line", "checkpoint_seconds", checkpoint_seconds,
                        "expected a finite number of seconds >= 0 (or None: only at curve points)")
    if update_mode not in ("fast", "exact"):
        raise SpecError("command line", "--update-mode", update_mode, "allowed: fast, exact")
    seed = tr.seed if seed is None else int(seed)
    lr = float(learning_rate if learning_rate is not None else tr.learning_rate)
    if not 0 < lr <= 1e6:
        raise SpecError("command line", "--lr", learning_rate, "expected a learning rate above 0 and at most 1e6")
    dev = resolve_torch_device(torch_device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        check_out_dir(out, "--out")
        _guard_out_dir(out, resume=resume, force=force)
    elif resume:
        raise SpecError("command line", "--resume", True, "needs --out DIR holding a checkpoint")
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    B, T = tr.batch_size, tr.seq_len
    corpus, batches, total_steps = training_plan(workload, arch, device, data_path=data_path,
                                                 corpus=corpus, epochs=epochs, max_chars=max_chars,
                                                 update_mode=update_mode)
    steps_per_epoch = len(batches)
    eval_every = eval_every or tenth_of_an_epoch(steps_per_epoch)
    notes = []
    if workload.model.vocab_size != corpus.vocab_size:
        notes.append(f"model.vocab_size {workload.model.vocab_size} replaced by the data's "
                     f"{corpus.vocab_size} distinct characters")
    for name in ("input_size", "output_size"):
        value = getattr(workload.model, name)
        if value is not None and value != corpus.vocab_size:
            notes.append(f"model.{name} {value} ignored: one-hot characters in and out need "
                         f"{corpus.vocab_size}")

    # Before any tile is allocated: a hidden size of 10^7 or BL = 10^12 in exact mode fails here
    # in microseconds with one line, not after minutes of allocation.
    check_training_memory(workload, arch, device, vocab_size=corpus.vocab_size, update_mode=update_mode)
    model = build_model(workload, arch, device, corpus.vocab_size, seed=seed,
                        update_mode=update_mode, torch_device=dev)
    key = _run_key(workload, arch, device, seed=seed, update_mode=update_mode, lr=lr, corpus=corpus)

    step, seconds_before = 0, 0.0
    curve: list[dict] = []
    window: list[float] = []   # losses since the last curve point
    # The last tenth of an epoch's losses: train_loss (whatever the curve's cadence).
    recent: deque[float] = deque(maxlen=tenth_of_an_epoch(steps_per_epoch))
    state = model.zero_state(B)
    saved: dict | None = None   # step and SHA-256 of the checkpoint.pt on disk (this run's)
    if resume:
        found = _read_checkpoint(out, key, eval_every)
        if found is None:
            notes.append(f"--resume: no checkpoint in {out}; started from step 0")
        else:
            ck, digest = found
            if ck["step"] > total_steps:
                flag, value = (("--max-chars", max_chars) if max_chars is not None else
                               ("--epochs", epochs) if epochs is not None else ("training.epochs", tr.epochs))
                raise SpecError("command line", flag, value,
                                f"the checkpoint in {out} has already done {ck['step']} steps "
                                f"({ck['step'] * B * T} chars, {ck['step'] / steps_per_epoch:.3g} epochs) "
                                f"and this budget is {total_steps} steps; give at least that budget, "
                                f"or {_START_OVER}")
            try:
                _load_model_state(model, ck["model"])
                step, seconds_before = int(ck["step"]), float(ck["seconds"])
                curve = [p for p in ck["curve"] if not p.get("final")]
                window = [float(v) for v in ck["window"]]
                recent.extend(float(v) for v in ck["recent"])
                state = [(h.to(dev), c.to(dev)) for h, c in ck["state"]]
                zero = model.zero_state(B)
                if len(state) != len(zero) or any(h.shape != z.shape or c.shape != z.shape
                                                  for (h, c), (z, _) in zip(state, zero)):
                    raise ValueError("the hidden state has another shape")
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
                raise SpecError(ckpt_path, "model", _first_line(exc),
                                f"the state of this run's model; {_START_OVER}") from None
            saved = {"step": step, "sha256": digest}
    elif force and out is not None:
        _remove_checkpoint(out)

    info = dict(workload=workload.name, device=device.name, architecture=arch.name,
                data=corpus.source, vocab_size=corpus.vocab_size, n_tiles=model.n_tiles,
                learning_rate=lr, seed=seed, update_mode=update_mode, torch_device=str(dev), notes=notes)
    ln_v = math.log(corpus.vocab_size)
    computed_on = machine()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t_start

    def snapshot() -> dict:
        # Tensors and plain data only: it must load with torch.load(weights_only=True).
        return {"format": CHECKPOINT_FORMAT, "key": key, "step": step, "seconds": elapsed(),
                "model": _model_state(model), "curve": curve, "window": window,
                "recent": list(recent),
                "state": [(h.detach().cpu(), c.detach().cpu()) for h, c in state],
                "chars_seen": step * B * T, "vocab": list(corpus.vocab)}

    def save_checkpoint() -> None:
        nonlocal saved
        buf = io.BytesIO()
        torch.save(snapshot(), buf)
        data = buf.getvalue()
        digest = _sha256(data)
        # The description first, naming the new .pt and the one still on disk; then the .pt.
        # Each write is atomic, so after a kill at any instant the .pt matches one entry.
        write_json(out / CHECKPOINT_META, {
            "format": CHECKPOINT_FORMAT, "key": key, "file": CHECKPOINT_NAME, "step": step,
            "chars_seen": step * B * T, "sha256": digest, "previous": saved,
            "total_steps": total_steps, "eval_every": eval_every, "steps_per_epoch": steps_per_epoch,
            "workload": workload.name, "architecture": arch.name, "device": device.name,
            "seed": seed, "learning_rate": lr, "update_mode": update_mode, "data": corpus.source})
        atomic_write_bytes(ckpt_path, data)
        saved = {"step": step, "sha256": digest}

    def save_outputs(final_result: TrainResult | None = None) -> None:
        if out is None:
            return
        write_json(out / checkpoint_meta.CURVE_FILE, {"run": {**info, "machine": computed_on},
                                                      "curve": curve})
        if write_plots:
            plot_curves(out / "curve.png", {f"{device.name}": curve},
                        title=f"{workload.name} on {arch.name} / {device.name} ({update_mode})")
        if final_result is not None:
            write_json(out / "result.json", final_result.to_dict())

    def divergence(loss: float) -> DivergenceError:
        err = _divergence(loss)
        err.seconds = elapsed()
        return err

    def _divergence(loss: float) -> DivergenceError:
        finite = math.isfinite(loss)
        what = "is not finite" if not finite else \
            f"exceeds {DIVERGENCE_FACTOR:g} ln V = {DIVERGENCE_FACTOR * ln_v:.3g}"
        where = f"training diverged at step {step} ({step * B * T} chars): loss {loss:.4g} nats/char {what}"
        if step == 1:
            # The first step's loss is the untrained model's forward pass, before any update:
            # the learning rate cannot be the cause.
            return DivergenceError(
                f"{where}; the model produced a {'non-finite' if not finite else 'far too large'} loss "
                f"on its first step, before any weight update, so the learning rate is not the cause: "
                f"check the parameters of device {device.name} and of architecture {arch.name}'s "
                f"periphery (e.g. out_noise, out_bound, inp_bound, out_scale) for non-finite or "
                f"extreme values")
        return DivergenceError(f"{where}; lower training.learning_rate ({lr:g}) or set training.grad_clip")

    last_save = time.perf_counter()
    bar = step_bar(progress, total_steps, step, progress_label or f"{workload.name}/{device.name}")
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
                raise divergence(loss)
            window.append(loss)
            recent.append(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", refresh=False)
            # Curve points fall on fixed steps (not on the end of the budget, nor on a checkpoint),
            # so that a run cut into resumed segments records exactly what an uninterrupted run
            # records. A checkpoint holds the losses since the last point (window, recent).
            boundary = step % eval_every == 0 or step % steps_per_epoch == 0
            if boundary:
                valid = evaluate(model, corpus.valid, B, T, seed=seed + eval_seed_offset)
                curve.append({"step": step, "chars": step * B * T, "epoch": step / steps_per_epoch,
                              "train_loss": sum(window) / len(window), "valid_loss": valid,
                              "seconds": elapsed(), **machine_mark(curve, computed_on)})
                window = []
            if out is None:
                continue
            due = checkpoint_seconds is not None and time.perf_counter() - last_save >= checkpoint_seconds
            if boundary or step == total_steps or due:
                save_checkpoint()
                last_save = time.perf_counter()
            if boundary or step == total_steps:
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
                  "seconds": elapsed(), "final": True, **machine_mark(curve, computed_on)})
    result = TrainResult(train_loss=train_loss, valid_loss=valid, test_loss=test,
                         chars_seen=step * B * T, seconds=elapsed(), steps=step,
                         epochs=step / steps_per_epoch, curve=curve, activity=activity, **info)
    if out is not None:
        save_outputs(result)
    return result


def validate(workload, arch, device, *, data_path: str | Path | None = None,
             epochs: int | None = None, max_chars: int | None = None, seed: int | None = None,
             out_dir: str | Path | None = None, resume: bool = False, force: bool = False,
             update_mode: str = "fast", progress: bool = True, torch_device: str | None = "cpu",
             learning_rate: float | None = None, eval_every: int | None = None,
             checkpoint_seconds: float | None = CHECKPOINT_SECONDS) -> ValidateResult:
    """Train floating point (the ideal device) and ``device`` with the same seed, data and budget.

    With ``out_dir`` each run writes into ``out_dir/fp`` and ``out_dir/<device name>``, and
    ``validate.json`` and ``curves.png`` compare them. ``resume``, ``force`` and
    ``checkpoint_seconds`` apply to both runs as in :func:`train`; both folders are checked for
    an existing checkpoint before either run starts. A :class:`DivergenceError` names the run that
    diverged ("floating-point run" or the device preset's name).
    """
    from archsim.specs import load_device

    tr = workload.training
    out = Path(out_dir) if out_dir is not None else None
    runs = [("floating-point run", load_device("ideal"), "fp"),
            (f"{device.name} run", device, device.name)]
    if out is not None:
        check_out_dir(out, "--out")
        for _, _, sub in runs:
            _guard_out_dir(out / sub, resume=resume, force=force)
    corpus = load_corpus(resolve_data_path(data_path, workload), train_fraction=tr.train_fraction,
                         batch_size=tr.batch_size, seq_len=tr.seq_len)
    common = dict(epochs=epochs, max_chars=max_chars, seed=seed, resume=resume, force=force,
                  progress=progress, torch_device=torch_device, learning_rate=learning_rate,
                  eval_every=eval_every, corpus=corpus, update_mode=update_mode,
                  checkpoint_seconds=checkpoint_seconds)
    results = []
    for label, dev_spec, sub in runs:
        try:
            results.append(train(workload, arch, dev_spec, out_dir=out / sub if out else None,
                                 progress_label=f"{workload.name}/{sub}", **common))
        except DivergenceError as exc:
            raise DivergenceError(f"{label}: {exc}") from exc
    fp, analog = results
    result = ValidateResult(fp, analog)
    if out is not None:
        write_json(out / "validate.json", result.to_dict())
        plot_curves(out / "curves.png", {"floating point": fp.curve, r_name(analog): analog.curve},
                    title=f"{workload.name}: floating point vs {device.name} on {arch.name}")
    return result
