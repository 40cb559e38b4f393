"""Hardware blocks (one class each): actions return energy and latency; area and leakage are properties."""
from archsim.hw.components import Action, build_components  # noqa: F401
