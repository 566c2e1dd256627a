"""Numba Levenberg-Marquardt fit of a blurred bar to one cross-section profile.

Model: b + g*t + a * [erf((t-c+w/2)/(s*sqrt2)) - erf((t-c-w/2)/(s*sqrt2))] / 2.  Fitting
the edges with their blur, as in Steger (1998), keeps the width unbiased where
thresholds, FWHM or distance transforms read thin hairs too wide.  The fit works in
preallocated buffers (``workspace``) and evaluates the Jacobian only where a step starts.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

NPAR = 6  # b, g, a, c, w, s
_SQRT2 = math.sqrt(2.0)
_ISQRTPI = 1.0 / math.sqrt(math.pi)

# reassociation and fused multiply-add let the sums vectorise (widths ~12 % faster); no
# finite-math or approximate-function flags: NaN/inf checks and libm erf/exp stay exact
FIT_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH, inline="always")
def _erf(u):
    """math.erf(u), without the call in the flat tails where it is exactly +-1 (libm's
    erf returns +-1.0 for |u| >= 6: 1 - erf(6) = 2e-17 is below half an ulp of 1)."""
    if u >= 6.0:
        return 1.0
    if u <= -6.0:
        return -1.0
    return math.erf(u)


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH, inline="always")
def _gauss(u):
    """math.exp(-u * u), without the call where it underflows to 0 (u * u > 746)."""
    v = u * u
    if v > 746.0:
        return 0.0
    return math.exp(-v)


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def _bar(t, p, out, e):
    """Blurred-bar model at ``t`` into ``out``; ``e`` gets its erf term (for ``_bar_jac``)."""
    b, g, a, c, w, s = p[0], p[1], p[2], p[3], p[4], p[5]
    k = 1.0 / (_SQRT2 * s)
    for i in range(t.shape[0]):
        u1 = (t[i] - c + 0.5 * w) * k
        u2 = (t[i] - c - 0.5 * w) * k
        ei = 0.5 * (_erf(u1) - _erf(u2))
        e[i] = ei
        out[i] = b + g * t[i] + a * ei


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def _bar_jac(t, p, e, jac):
    """Columns 2-5 of the model's Jacobian (columns 0 and 1 are 1 and t, set once)."""
    a, c, w, s = p[2], p[3], p[4], p[5]
    k = 1.0 / (_SQRT2 * s)
    for i in range(t.shape[0]):
        u1 = (t[i] - c + 0.5 * w) * k
        u2 = (t[i] - c - 0.5 * w) * k
        g1 = _gauss(u1) * _ISQRTPI
        g2 = _gauss(u2) * _ISQRTPI
        jac[i, 2] = e[i]
        jac[i, 3] = a * (g2 - g1) * k
        jac[i, 4] = a * 0.5 * (g1 + g2) * k
        jac[i, 5] = a * (g2 * u2 - g1 * u1) / s


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def _solve(a, x):
    """Solve a x' = x in place (``a`` is overwritten) by Gaussian elimination with partial
    pivoting; False when singular.  Size NPAR (a constant, so the loops unroll)."""
    n = NPAR
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(a[r, col]) > abs(a[piv, col]):
                piv = r
        if abs(a[piv, col]) < 1e-18:
            return False
        if piv != col:
            for k in range(n):
                tmp = a[col, k]
                a[col, k] = a[piv, k]
                a[piv, k] = tmp
            tmp = x[col]
            x[col] = x[piv]
            x[piv] = tmp
        for r in range(col + 1, n):
            f = a[r, col] / a[col, col]
            for k in range(col, n):
                a[r, k] -= f * a[col, k]
            x[r] -= f * x[col]
    for r in range(n - 1, -1, -1):
        acc = x[r]
        for k in range(r + 1, n):
            acc -= a[r, k] * x[k]
        x[r] = acc / a[r, r]
    return True


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def workspace(n):
    """Buffers of ``fit_bar_in`` for profiles of n samples: (4, n) model and erf terms of the
    current and the trial parameters, the (n, 6) Jacobian, (2, 6, 6) the normal matrix and
    its damped copy, (4, 6) the right-hand side / step, parameters and trial parameters."""
    jac = np.empty((n, NPAR))
    for i in range(n):
        jac[i, 0] = 1.0
    return np.empty((4, n)), jac, np.empty((2, NPAR, NPAR)), np.empty((4, NPAR))


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def fit_bar(t, prof, p0, w_max, iters):
    """Levenberg-Marquardt fit of the blurred bar; returns params and rms residual."""
    vec, jac, mat, par = workspace(t.shape[0])
    p, rms = fit_bar_in(t, prof, p0, w_max, iters, vec, jac, mat, par)
    return p.copy(), rms


@nb.njit(cache=True, error_model="numpy", fastmath=FIT_FASTMATH)
def fit_bar_in(t, prof, p0, w_max, iters, vec, jac, mat, par):
    """``fit_bar`` in the buffers of ``workspace(len(t))``; the parameters returned are
    a view into them.  The Jacobian is evaluated only where a step starts."""
    n = t.shape[0]
    model, e, tm, te = vec[0], vec[1], vec[2], vec[3]
    jtj, a = mat[0], mat[1]
    jtr, dp, p, trial = par[0], par[1], par[2], par[3]
    p[:] = p0
    for i in range(n):
        jac[i, 1] = t[i]
    _bar(t, p, model, e)
    cost = 0.0
    for i in range(n):
        cost += (prof[i] - model[i]) ** 2
    lam = 1e-3
    rel = 1.0
    # J^T J and J^T r, each entry summed over the samples in order; column 0 of J is 1
    # and column 1 is t, so the entries of those two alone stay the same
    s00 = 0.0
    s01 = 0.0
    s11 = 0.0
    for i in range(n):
        s00 += 1.0
        s01 += t[i]
        s11 += t[i] * t[i]
    for _ in range(iters):
        _bar_jac(t, p, e, jac)  # at the parameters accepted last (none is needed after the last step)
        r0 = r1 = r2 = r3 = r4 = r5 = 0.0
        s02 = s03 = s04 = s05 = s12 = s13 = s14 = s15 = 0.0
        s22 = s23 = s24 = s25 = s33 = s34 = s35 = s44 = s45 = s55 = 0.0
        for i in range(n):
            r = prof[i] - model[i]
            ti, j2, j3, j4, j5 = jac[i, 1], jac[i, 2], jac[i, 3], jac[i, 4], jac[i, 5]
            r0 += r
            r1 += ti * r
            r2 += j2 * r
            r3 += j3 * r
            r4 += j4 * r
            r5 += j5 * r
            s02 += j2
            s03 += j3
            s04 += j4
            s05 += j5
            s12 += ti * j2
            s13 += ti * j3
            s14 += ti * j4
            s15 += ti * j5
            s22 += j2 * j2
            s23 += j2 * j3
            s24 += j2 * j4
            s25 += j2 * j5
            s33 += j3 * j3
            s34 += j3 * j4
            s35 += j3 * j5
            s44 += j4 * j4
            s45 += j4 * j5
            s55 += j5 * j5
        jtr[0], jtr[1], jtr[2], jtr[3], jtr[4], jtr[5] = r0, r1, r2, r3, r4, r5
        jtj[0, 0], jtj[0, 1], jtj[0, 2], jtj[0, 3], jtj[0, 4], jtj[0, 5] = s00, s01, s02, s03, s04, s05
        jtj[1, 1], jtj[1, 2], jtj[1, 3], jtj[1, 4], jtj[1, 5] = s11, s12, s13, s14, s15
        jtj[2, 2], jtj[2, 3], jtj[2, 4], jtj[2, 5] = s22, s23, s24, s25
        jtj[3, 3], jtj[3, 4], jtj[3, 5] = s33, s34, s35
        jtj[4, 4], jtj[4, 5] = s44, s45
        jtj[5, 5] = s55
        for k in range(NPAR):
            for q in range(k):
                jtj[k, q] = jtj[q, k]
        improved = False
        for _ in range(6):
            a[:, :] = jtj
            for k in range(NPAR):
                a[k, k] += lam * (jtj[k, k] + 1e-12)
            dp[:] = jtr
            if not _solve(a, dp):
                lam *= 10.0
                continue
            for k in range(NPAR):
                trial[k] = p[k] + dp[k]
            trial[4] = min(max(trial[4], 0.3), w_max)
            trial[5] = min(max(trial[5], 0.35), 6.0)
            _bar(t, trial, tm, te)
            c2 = 0.0
            for i in range(n):
                c2 += (prof[i] - tm[i]) ** 2
            if c2 < cost:
                p[:] = trial
                model[:] = tm
                e[:] = te
                rel = (cost - c2) / (cost + 1e-18)
                cost = c2
                lam = max(lam * 0.3, 1e-7)
                improved = True
                break
            lam *= 10.0
        if not improved or rel < 1e-4:
            break
    return p, math.sqrt(cost / n)
