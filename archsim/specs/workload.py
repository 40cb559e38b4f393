"""Workload spec: the LSTM stack, its training schedule, and the presets it runs on.

A character LSTM with ``layers`` layers of ``hidden_size`` units reads one-hot characters
(``input_size`` = ``vocab_size`` unless set), and an output (softmax) layer maps the top hidden
state to ``output_size`` (= ``vocab_size`` unless set) logits. One training step is one minibatch of
``batch_size`` sequences of ``seq_len`` characters; one epoch covers ``train_chars`` characters,
i.e. ``ceil(train_chars / (batch_size * seq_len))`` steps.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from archsim.specs.base import Fraction, PositiveInt, Seed, Spec


def matrix_names(layers: int) -> list[str]:
    """A network's weight matrices by name: lstm1 .. lstm<layers>, output."""
    return [f"lstm{i + 1}" for i in range(layers)] + ["output"]


#: An initial weight range: positive, at most 10 (weight units; the devices' bounds are about +-0.6).
InitScale = Annotated[float, Field(gt=0, le=10)]


class ModelSpec(Spec):
    """The LSTM network."""

    layers: PositiveInt = Field(description="Number of stacked LSTM layers.")
    hidden_size: PositiveInt = Field(description="Hidden units per LSTM layer (h).")
    vocab_size: PositiveInt = Field(description="Characters in the vocabulary (one-hot input).")
    input_size: PositiveInt | None = Field(None, description="Input width n of layer 1 (default vocab_size).")
    output_size: PositiveInt | None = Field(None, description="Output-layer width (default vocab_size).")
    output_layer: bool = Field(True, description="Map the softmax output layer onto arrays too.")
    init_scale: InitScale | dict[str, InitScale] | None = Field(
        None, description="Initial weights (biases included) are drawn uniformly from "
                          "+-init_scale: one number for every matrix, or one per matrix by name "
                          "(lstm1, lstm2, ..., output; a matrix not named keeps the default); "
                          "default 1/sqrt(hidden_size), torch.nn.LSTM's initialisation. Weight "
                          "units: the devices' bounds are about +-0.6.")

    @field_validator("init_scale")
    @classmethod
    def _init_scale_names(cls, value, info: ValidationInfo):
        layers = info.data.get("layers")
        if isinstance(value, dict) and layers is not None:
            names = matrix_names(layers)
            bad = sorted(set(value) - set(names))
            if bad:
                raise ValueError(f"no matrix is called {bad[0]!r}; the matrices are {', '.join(names)}")
        return value

    @property
    def n_input(self) -> int:
        return self.input_size or self.vocab_size

    @property
    def n_output(self) -> int:
        return self.output_size or self.vocab_size

    def lstm_shapes(self) -> list[tuple[int, int]]:
        """(rows, cols) of each LSTM layer's matrix: 4h x (n + h + 1)."""
        h = self.hidden_size
        shapes = []
        n = self.n_input
        for _ in range(self.layers):
            shapes.append((4 * h, n + h + 1))
            n = h
        return shapes

    def output_shape(self) -> tuple[int, int]:
        """(rows, cols) of the output layer: V x (h + 1)."""
        return (self.n_output, self.hidden_size + 1)

    def n_weights(self) -> int:
        out = math.prod(self.output_shape()) if self.output_layer else 0
        return sum(r * c for r, c in self.lstm_shapes()) + out


class TrainingSpec(Spec):
    """How the network is trained."""

    seq_len: PositiveInt = Field(description="Truncated-BPTT sequence length T.")
    batch_size: PositiveInt = Field(1, description="Sequences per training step (B).")
    epochs: PositiveInt = Field(1, description="Passes over the training characters.")
    train_chars: PositiveInt | None = Field(None, description="Training-set size in characters.")
    data: str | None = Field(None, description="Text file; its training split sets train_chars.")
    train_fraction: float = Field(0.9, gt=0, le=1, description="Share of the text used for training.")
    learning_rate: float = Field(0.01, gt=0, le=1e6, description="SGD learning rate (what arrays implement).")
    dropout: Fraction = Field(0.0, description="Dropout between layers (floating-point only idea).")
    grad_clip: float | None = Field(None, gt=0, le=1e6, description="Clip each gradient element to +-grad_clip (at most 1e6).")
    seed: Seed = Field(0, description="Seed of every random draw (0 to 2^63 - 1).")

    @model_validator(mode="after")
    def _need_size(self):
        if self.train_chars is None and self.data is None:
            raise ValueError("set train_chars (characters) or data (a text file)")
        return self


class WorkloadSpec(Spec):
    """A complete workload: network, training, and the presets it runs on."""

    name: str = Field(description="Workload name.")
    description: str = Field("", description="One sentence on what this workload is.")
    model: ModelSpec
    training: TrainingSpec
    architecture: str = Field("rpu2016", description="Architecture preset name or YAML path.")
    device: str = Field("rpu_baseline", description="Device preset name or YAML path.")
    baselines: list[str] = Field(default_factory=lambda: ["v100"], description="Baseline presets.")

    #: Directory of the YAML file (for resolving relative data paths); not a spec field.
    _origin: Path | None = PrivateAttr(default=None)
    #: The YAML file itself (named in one-line errors about this workload); not a spec field.
    _file: Path | None = PrivateAttr(default=None)

    @property
    def where(self) -> object:
        """What an error about this workload names: its file, else its name."""
        return self._file if self._file is not None else self.name

    def resolved_train_chars(self) -> int:
        """Training characters per epoch (reads the data file's length if train_chars is unset)."""
        if self.training.train_chars is not None:
            return self.training.train_chars
        from archsim.specs.loader import text_length

        return int(text_length(self.data_path()) * self.training.train_fraction)

    def data_path(self) -> Path | None:
        if self.training.data is None:
            return None
        path = Path(self.training.data).expanduser()
        if not path.is_absolute() and self._origin is not None:
            path = self._origin / path
        return path

    def steps_per_epoch(self) -> int:
        t = self.training
        return max(1, math.ceil(self.resolved_train_chars() / (t.batch_size * t.seq_len)))
