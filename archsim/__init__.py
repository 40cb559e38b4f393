"""archsim: what training an LSTM on resistive cross-point (RPU) arrays costs in time and energy,
and what it does to accuracy.

The package root imports nothing heavy (no torch): sweeps start many short processes.
"""
__version__ = "0.1.0"
