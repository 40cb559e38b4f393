"""Timing engines over one schedule: closed-form analytic, exact SimPy, steady-state extrapolation."""
