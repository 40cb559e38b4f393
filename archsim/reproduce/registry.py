"""The claims of the seed paper that ``archsim reproduce`` tests, and where their sweeps and reports live.

Each :class:`Claim` names the sweep files that test it at each budget of :data:`BUDGETS`
(``sweeps/reproduce/<name>.yaml`` at the default budget, ``<name>_mid.yaml`` at an intermediate one,
``<name>_full.yaml`` at paper scale); :data:`CLAIMS` is the registry the command line checks names
against.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from archsim.errors import SpecError

PAPER = "Gokmen, Rasch & Haensch, Front. Neurosci. 12:745 (2018)"


@dataclass(frozen=True)
class Claim:
    """One finding of the seed paper and how archsim tests it."""

    name: str
    """Short name (the CLI argument and the report's file name)."""
    title: str
    statement: str
    """The claim as the paper states it (our wording of its abstract and figures)."""
    sweeps: tuple[str, ...] = ()
    """Sweep files (stems under the sweeps folder) at the default budget; empty: no training."""
    full_sweeps: tuple[str, ...] = ()
    """Sweep files at paper scale (``--full``)."""
    mid_sweeps: tuple[str, ...] = ()
    """Sweep files at the intermediate budget (``--mid``; empty: the claim has none)."""
    prefix_data: bool = False
    """Train on a prefix of the text (``train_chars / train_fraction`` characters); see module doc."""


CLAIMS: dict[str, Claim] = {c.name: c for c in (
    Claim("asymmetry", "Update asymmetry versus floating point",
          "A few percent of up/down asymmetry of the device update raises the test error of LSTM2-64 "
          "on War and Peace over floating point; a symmetric device stays close to floating point.",
          ("asymmetry",), ("asymmetry_full",)),
    Claim("resolution", "Input (DAC) resolution with and without stochastic rounding",
          "Inputs to the arrays need at least 7 bits with deterministic rounding; stochastic "
          "rounding brings the requirement down to 5 bits.",
          ("resolution",), ("resolution_full",)),
    Claim("overfitting", "Device noise as a regulariser",
          "Device variations and analog noise regularise training: an RPU model without dropout "
          "overfits less than a floating-point model without dropout (less need for dropout).",
          ("overfitting",), ("overfitting_full",), ("overfitting_mid",), prefix_data=True),
    Claim("macs", "Multiply-adds per epoch versus the MNIST MLP",
          "The paper's LSTM workloads are about 1500x the MNIST MLP 784-256-128-10 in multiply-adds "
          "per epoch (LSTM2-512 on the 6.2M-character Linux corpus: about 3.4M weights x 6.2M "
          "characters = 2.1e13 versus 1.41e10)."),
)}


#: The budgets of ``archsim reproduce``: what each means (the reports say it).
#:
#: * ``default``: a small fraction of the paper's scale, every claim within about an hour on 2 cores;
#: * ``mid``: where floating point is already below 1.8 nats/char on War and Peace, for claims whose
#:   paper-scale runs are out of reach of a CPU (overfitting: about 80 minutes on 2 cores);
#: * ``full``: the paper's scale (hours to days on a CPU).
BUDGETS = ("default", "mid", "full")

#: Floating point's test loss (nats/char, War and Peace) that a ``mid`` budget must end below; each
#: ``mid`` report checks its own floating-point points against it.
MID_FP_CEILING = 1.8


def claim_sweeps(claim: Claim, budget: str = "default") -> tuple[str, ...]:
    """The stems of a claim's sweep files at ``budget`` (one of :data:`BUDGETS`)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget {budget!r}: allowed {', '.join(BUDGETS)}")
    return {"default": claim.sweeps, "mid": claim.mid_sweeps, "full": claim.full_sweeps}[budget]


def has_budget(claim: Claim, budget: str) -> bool:
    """Whether the claim can be run at ``budget``: it has sweeps there, or trains nothing at all."""
    return bool(claim_sweeps(claim, budget)) or not claim.sweeps


def budget_flag(budget: str) -> list[str]:
    """The command-line flag that selects ``budget`` (none for the default)."""
    return [] if budget == "default" else [f"--{budget}"]


def claim_names() -> list[str]:
    return list(CLAIMS)


def repo_root() -> Path:
    """The checkout this archsim runs from (``sweeps/`` and ``workloads/`` live there)."""
    import archsim

    return Path(archsim.__file__).resolve().parents[1]


def default_sweeps_dir() -> Path:
    """``sweeps/reproduce`` of the checkout, else of the current folder."""
    here = repo_root() / "sweeps" / "reproduce"
    return here if here.is_dir() else Path("sweeps") / "reproduce"


def default_out_dir(budget: str = "default") -> Path:
    """``reports/reproduce``, with a subfolder named after any other budget (``mid``, ``full``)."""
    base = Path("reports") / "reproduce"
    return base if budget == "default" else base / budget


def check_claims(names: Iterable[str] | None, budget: str = "default") -> list[str]:
    """Requested claim names in registry order (all those with ``budget`` when none); an unknown
    name, or a claim without sweeps at ``budget``, is a SpecError."""
    names = list(names or [])
    for name in names:
        if name not in CLAIMS:
            raise SpecError("command line", "CLAIM", name, f"allowed: {', '.join(CLAIMS)}")
        if not has_budget(CLAIMS[name], budget):
            having = [n for n, c in CLAIMS.items() if c.sweeps and claim_sweeps(c, budget)]
            raise SpecError("command line", "CLAIM", name,
                            f"claims with a {' '.join(budget_flag(budget))} budget: {', '.join(having)}")
    return [n for n, c in CLAIMS.items() if (n in names if names else has_budget(c, budget))]


def sweep_paths(claim: Claim, *, budget: str = "default", sweeps_dir: str | Path | None = None) -> list[Path]:
    """The sweep files of a claim at ``budget``; a missing one is a SpecError naming it."""
    folder = Path(sweeps_dir) if sweeps_dir is not None else default_sweeps_dir()
    paths = []
    for stem in claim_sweeps(claim, budget):
        path = folder / f"{stem}.yaml"
        if not path.is_file():
            raise SpecError(path, "", str(path), f"no such sweep file (claim {claim.name}; "
                            "archsim reproduce runs from a checkout holding sweeps/reproduce/)")
        paths.append(path)
    return paths
