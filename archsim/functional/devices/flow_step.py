r"""What the nonlinear-step families (exp_step.py, pow_step.py) share: counts applied along the
flow of the step.

One coincidence moves a device by ``F(w)*(1 + dw_min_std*xi)`` and clips it to its hard bounds,
with ``F = step_up_ij*f_up(w)`` (up) or ``F = -step_down_ij*f_down(w)`` (down) and ``f >= 0`` the
family's step factor (aihwkit's ``update_once``: multiplicative cycle-to-cycle noise on the whole
step). Unlike the linear families, n such steps have no closed form; they are applied as follows,
once per call in fast mode (expected counts) and once per chunk in exact mode (sampled counts).

**One direction, mean.** The flow of ``dw/dn = F(w)`` over n (closed form per family) plus the
first-order difference between n discrete steps and that flow. By backward error analysis the map
``w + F(w)`` is the time-1 flow of ``F - F*F'/2 + O(F^3)``; the perturbation this adds, carried
along the flow (whose derivative is ``F(w_n)/F(w_0)``), integrates in closed form::

    w_n = flow_n(w_0) - F(w_n)/2 * ln(F(w_n)/F(w_0))

exact for a constant step, and second order in the per-step change of the step
(``(step*f')^2``) otherwise (tests: within 3e-3 of the pulse-by-pulse walk where steps change by
8 % per pulse; the flow alone is off by up to 3 %). A flow that reaches a bound stops there.

**Mixed directions, mean.** As for soft bounds, the n_up and n_down coincidences of a call (or
chunk) are taken as evenly interleaved: the flow of ``n_up*F_up + n_down*F_down``. Each direction
is replaced by the linear field with the discrete steps' initial speed ``V = n*step*f(w)*(1 -+
step*f'(w)/2)`` (the modified field above; ``-`` up, ``+`` down) and the rate
``lam`` that reproduces its own one-direction move (``V*g(lam)`` = that move,
``g(lam) = (1 - exp(-lam))/lam``), and the two linear fields are interleaved in closed form
(linear_step's formula)::

    w <- w + (V_up - V_down) * g(lam_up + lam_down)

exact for one direction and for linear steps (``pow_gamma = 1``), and with the true fields'
fixed points (``V_up = V_down`` there). Where the linear fields miss the true steps at the end of
the move by more than ``SUBSTEP_MISS`` of the total speed (strong curvature over a long move),
the device's move is redone in ``m`` substeps (``m = miss/SUBSTEP_MISS``, at most
``MAX_SUBSTEPS``; only those devices, one host check per call). The remaining error is below a
few percent of the gross movement ``(V_up + V_down)`` and is of the size of what even
interleaving itself leaves out: a particular order of updates (blocks of one direction) moves the
result by about one block's move times the call's contraction.

**Variance** (linear-noise approximation, first order in the step): the cycle-to-cycle noise of a
coincidence, ``dw_min_std*step*f(w_t)*xi``, is carried to the end of the move by the flow's
derivative (``exp(-(lam_up + lam_down)*(1 - t))`` for the interleaved linear fields, exactly
``f(w_n)/f(w_t)`` in one direction, where n coincidences give ``dw_min_std^2*step^2*f(w_n)^2*n``),
with ``f`` interpolated geometrically between the move's ends; earlier substeps' variance is
carried the same way, and a state that ends at a bound forgets it. In fast mode the counts'
(binomial) variance adds ``(dw/dn)^2*var(n)`` per direction, ``dw/dn`` carried likewise. The
state is then one Gaussian draw with this mean and variance, clipped to the device's bounds.

**Not modelled:** the cycle-to-cycle noise's effect on the mean through the curvature of f
(second order: a relative shift of about ``dw_min_std^2*step^2*f*f''*n/4`` for n coincidences in
one direction; zero for constant and linear steps); it matters only for large ``dw_min_std``
(aihwkit's ReRAM exp-step fit has 5) and many coincidences per call or chunk. Near a bound, the
Gaussian is clipped at the end instead of at each step (as for the linear-step family). Devices
whose steps grow in both directions away from a point (exp_step with ``A < 0`` and ``a > 0``) are
unstable there, and their mixed moves depend on the order of the pulses: the even interleaving is
then only a guess.
"""
from __future__ import annotations

import math

import torch

from archsim.functional.devices.base import PulsedDevices, StateDependentSteps

#: Step factors are capped here: a step a trillion times dw_min crosses any device's range, and
#: the cap keeps squares (variances) finite in float32.
FACTOR_MAX = 1e12
#: Largest rate of a linear field over one move (``exp(2*LAMBDA_MAX)`` stays inside float32).
LAMBDA_MAX = 30.0
#: A device's mixed move is redone in substeps when its linear fields miss the true steps at the
#: end by more than this fraction of the total speed (one substep more per this much).
SUBSTEP_MISS = 0.02
#: Most substeps per call.
MAX_SUBSTEPS = 4
#: Newton steps for the matched rate (from the inverse's series: round-off for |lam| <= 3, 2e-3 at 30).
NEWTON_STEPS = 3


class FlowStepDevices(StateDependentSteps, PulsedDevices):
    """A device family with a nonlinear step factor ``f_up(w)``, ``f_down(w)`` and hard bounds.

    Subclasses give the factor (``_factor``), its slope (``_slope``) and the closed-form flow of
    n coincidences in one direction (``_flow``)."""

    clamp_count_variance = True

    def _factor(self, w: torch.Tensor, up: bool, idx=None) -> torch.Tensor:
        """Step factor ``0 <= f <= FACTOR_MAX`` at ``w`` (the step is ``step_ij*f``)."""
        raise NotImplementedError

    def _flow(self, w: torch.Tensor, n: torch.Tensor, f0: torch.Tensor, up: bool, idx=None) -> torch.Tensor:
        """``w`` after the flow of ``dw/dn = +-step*f(w)`` over ``n`` (``f0 = f(w)``); at or past a
        bound (or at infinity) where the flow leaves the device's range."""
        raise NotImplementedError

    def _slope(self, w: torch.Tensor, up: bool, idx=None) -> torch.Tensor:
        """``df/dw`` at ``w`` (finite)."""
        raise NotImplementedError

    def _move(self, w, n, up: bool, idx=None):
        """n coincidences in one direction from ``w``, the bounds left out: the size of the move
        (``>= 0``, with the discreteness correction; inf where the flow runs away), the initial
        speed (``n*step*f(w)``, of the discrete steps: times ``1 -+ step*f'(w)/2``), ``f(w)``
        and ``ln(f(w_n)/f(w))`` (``w_n`` clipped to the bounds; 0 where either is 0)."""
        lo, hi = self._get("w_min", idx), self._get("w_max", idx)
        step = self._get("step_up" if up else "step_down", idx)
        f0 = self._factor(w, up, idx)
        flow = self._flow(w, n, f0, up, idx)
        inside = (flow < hi) & (flow > lo)
        f_n = self._factor(torch.minimum(torch.maximum(flow, lo), hi), up, idx)
        log_ratio = _log_ratio(f_n, f0)
        # -F(w_n)/2 * ln(F(w_n)/F(w_0)), F = +step*f (up) or -step*f (down); not past a bound.
        corr = torch.where(inside, step * f_n * log_ratio * (-0.5 if up else 0.5), 0.0)
        size = torch.where(f0 > 0, (flow + corr - w).abs(), 0.0)
        # The discrete steps' initial speed: the modified field F - F*F'/2 (see above).
        discrete = (1.0 + (-0.5 if up else 0.5) * step * self._slope(w, up, idx)).clamp(0.5, 2.0)
        return size, n * step * f0 * discrete, f0, log_ratio

    def _substep(self, x, nu, nd, only_up, only_dn, idx=None):
        """One move from ``x`` with ``nu``/``nd`` coincidences: the new state (clipped), the rate
        that carries perturbations to its end (``exp(-lam)``), whether it ends at a bound, the
        step factors ``[f_up(x), f_up(new), f_down(x), f_down(new)]`` and the linear fields' miss."""
        lo, hi = self._get("w_min", idx), self._get("w_max", idx)
        size_up, v_u, f_up0, r_up = self._move(x, nu, True, idx)
        size_dn, v_d, f_dn0, r_dn = self._move(x, nd, False, idx)
        l_up, l_dn = _matched_rate(size_up, v_u), _matched_rate(size_dn, v_d)
        lam = l_up + l_dn
        move = torch.where(only_up, size_up, torch.where(only_dn, -size_dn, (v_u - v_d) * _g(lam)))
        move = torch.nan_to_num(move, nan=0.0)
        new = x + move
        pinned = (new >= hi) | (new <= lo)
        new = torch.minimum(torch.maximum(new, lo), hi)
        f_up1, f_dn1 = self._factor(new, True, idx), self._factor(new, False, idx)
        # The true speeds at the end against the linear fields' (V - lam*move up, V + lam*move
        # down), as a fraction of the total speed.
        miss = ((nu * self._get("step_up", idx) * f_up1 - v_u + l_up * move).abs()
                + (nd * self._get("step_down", idx) * f_dn1 - v_d - l_dn * move).abs())
        miss = torch.where(only_up | only_dn, 0.0, miss / (v_u + v_d).clamp(min=torch.finfo(x.dtype).tiny))
        # One direction: carried by f(w_n)/f(w) exactly.
        lam = torch.where(only_up, -r_up, torch.where(only_dn, -r_dn, lam)).clamp(-LAMBDA_MAX, LAMBDA_MAX)
        return new, lam, pinned, (f_up0, f_up1, f_dn0, f_dn1), miss

    def _mean_var(self, w, n_up, n_dn, v_up, v_dn, idx=None):
        """Mean change and variance of the state after ``n_up``/``n_dn`` coincidences with count
        variances ``v_up``/``v_dn`` (0 in exact mode), see the module docstring: one move for
        every device, then substeps for the devices whose linear fields missed."""
        n_up = torch.as_tensor(n_up, dtype=w.dtype, device=w.device).expand_as(w)
        n_dn = torch.as_tensor(n_dn, dtype=w.dtype, device=w.device).expand_as(w)
        mean, var, miss = self._mean_var_in(w, n_up, n_dn, v_up, v_dn, idx, 1)
        flagged = (miss > SUBSTEP_MISS).reshape(-1).nonzero().squeeze(1)      # host sync
        if flagged.numel():
            top = float(miss.reshape(-1).index_select(0, flagged).max())
            m = MAX_SUBSTEPS if not math.isfinite(top) else min(MAX_SUBSTEPS, math.ceil(top / SUBSTEP_MISS))

            def pick(t):
                return t.reshape(-1).index_select(0, flagged) if isinstance(t, torch.Tensor) else t

            sub = flagged if idx is None else idx.index_select(0, flagged)
            mean_f, var_f, _ = self._mean_var_in(pick(w), pick(n_up), pick(n_dn), pick(v_up), pick(v_dn), sub, m)
            mean, var = mean.contiguous(), var.contiguous()
            mean.view(-1).index_copy_(0, flagged, mean_f)
            var.view(-1).index_copy_(0, flagged, var_f)
        return mean, var

    def _mean_var_in(self, w, n_up, n_dn, v_up, v_dn, idx, m: int):
        """``_mean_var`` in ``m`` substeps; also the linear fields' miss of the first."""
        s2 = self.dw_min_std ** 2
        su, sd = self._get("step_up", idx), self._get("step_down", idx)
        only_up, only_dn = n_dn <= 0, n_up <= 0
        counts = not (isinstance(v_up, float) and isinstance(v_dn, float) and v_up == 0.0 and v_dn == 0.0)
        nu, nd = n_up / m, n_dn / m
        x = w
        var = torch.zeros_like(w)
        g_up = g_dn = miss = None
        for _ in range(m):
            new, lam, pinned, f, miss_k = self._substep(x, nu, nd, only_up, only_dn, idx)
            miss = miss_k if miss is None else miss
            decay = torch.where(pinned, 0.0, torch.exp(-lam))
            var = var * decay * decay + s2 * (nu * su * su * _carried2(f[0], f[1], lam)
                                              + nd * sd * sd * _carried2(f[2], f[3], lam))
            if counts:   # d(new)/d(n_up), d(new)/d(n_down) (magnitudes)
                e_up = su * _carried(f[0], f[1], lam) / m
                e_dn = sd * _carried(f[2], f[3], lam) / m
                g_up = e_up if g_up is None else g_up * decay + e_up
                g_dn = e_dn if g_dn is None else g_dn * decay + e_dn
            x = new
        if counts:
            var = var + g_up * g_up * v_up + g_dn * g_dn * v_dn
        return x - w, var, miss


def _log_ratio(f1, f0):
    """``ln(f1/f0)`` where both are positive, else 0."""
    tiny = torch.finfo(f0.dtype).tiny
    return torch.where((f0 > 0) & (f1 > 0), torch.log(f1.clamp(min=tiny) / f0.clamp(min=tiny)), 0.0)


def _g(lam):
    """``(1 - exp(-lam))/lam``, 1 at 0."""
    small = lam.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(lam), lam)
    return torch.where(small, 1.0 - 0.5 * lam, -torch.expm1(-safe) / safe)


def _log_g(lam):
    """``ln g(lam)`` and its derivative ``1/expm1(lam) - 1/lam`` (one expm1)."""
    small = lam.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(lam), lam)
    e = torch.expm1(-safe)                                     # 1/expm1(lam) = -(1 + e)/e
    val = torch.where(small, -0.5 * lam + lam * lam / 24.0, torch.log(-e / safe))
    der = torch.where(small, -0.5 + lam / 12.0, -(1.0 + e) / e - 1.0 / safe)
    return val, der


def _matched_rate(size, speed):
    """The rate ``lam`` of the linear field that moves by ``size`` from the initial speed
    ``speed``: ``speed*g(lam) = size`` (Newton on ``ln g``, convex and decreasing, from the
    series of its inverse), within ``+-LAMBDA_MAX``; 0 where ``speed`` is 0."""
    moving = speed > 0
    tiny = torch.finfo(size.dtype).tiny
    ratio = torch.where(moving, size / speed.clamp(min=tiny), 1.0)
    lo_g = (1.0 - math.exp(-LAMBDA_MAX)) / LAMBDA_MAX
    hi_g = math.expm1(LAMBDA_MAX) / LAMBDA_MAX
    target = torch.log(torch.nan_to_num(ratio, nan=1.0, posinf=hi_g).clamp(min=lo_g, max=hi_g))
    y = -target
    lam = (2.0 * y + y * y / 3.0 + y * y * y / 9.0).clamp(-LAMBDA_MAX, LAMBDA_MAX)
    for _ in range(NEWTON_STEPS):
        val, der = _log_g(lam)
        lam = (lam - (val - target) / der).clamp(-LAMBDA_MAX, LAMBDA_MAX)
    return torch.where(moving, lam, 0.0)


def _quotient(a, b):
    """``(exp(a) - exp(b))/(a - b)``, ``exp(a)`` where ``a = b``."""
    d = a - b
    small = d.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(d), d)
    return torch.exp(b) * torch.where(small, 1.0 + 0.5 * d, torch.expm1(safe) / safe)


def _interp(f0, f1):
    """``(f0, ln(f1/f0))`` for ``f(t) = f0*(f1/f0)^t``; where either end is 0, their mean held."""
    both = (f0 > 0) & (f1 > 0)
    log_r = _log_ratio(f1, f0).clamp(min=-LAMBDA_MAX, max=LAMBDA_MAX)
    return torch.where(both, f0, 0.5 * (f0 + f1)), log_r


def _carried(f0, f1, lam):
    """``int_0^1 f(t)*exp(-lam*(1 - t)) dt``: a step at time t, carried to the end of the move."""
    base, log_r = _interp(f0, f1)
    return base * _quotient(log_r, -lam)


def _carried2(f0, f1, lam):
    """``int_0^1 f(t)^2*exp(-2*lam*(1 - t)) dt``: noise injected at time t, carried to the end."""
    base, log_r = _interp(f0, f1)
    return base * base * _quotient(2.0 * log_r, -2.0 * lam)
