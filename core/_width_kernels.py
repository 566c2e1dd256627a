"""Numba kernels measuring shaft width from cross-section profiles (full-resolution px).

Each measurement averages the image over a short block of shaft (straight enough at
that length) into one profile across the hair, then fits a blurred bar
(b + g*t + a * [erf((t-c+w/2)/(s*sqrt2)) - erf((t-c-w/2)/(s*sqrt2))] / 2) by
Levenberg-Marquardt.  Fitting the edges with their blur, as in Steger (1998), keeps the
width unbiased where thresholds, FWHM or distance transforms read thin hairs too wide.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from core._ridge_kernels import _bilinear

NPAR = 6  # b, g, a, c, w, s
_SQRT2 = math.sqrt(2.0)
_ISQRTPI = 1.0 / math.sqrt(math.pi)


@nb.njit(cache=True)
def _model(t, p, out, jac):
    b, g, a, c, w, s = p[0], p[1], p[2], p[3], p[4], p[5]
    k = 1.0 / (_SQRT2 * s)
    for i in range(t.shape[0]):
        u1 = (t[i] - c + 0.5 * w) * k
        u2 = (t[i] - c - 0.5 * w) * k
        e = 0.5 * (math.erf(u1) - math.erf(u2))
        g1 = math.exp(-u1 * u1) * _ISQRTPI
        g2 = math.exp(-u2 * u2) * _ISQRTPI
        out[i] = b + g * t[i] + a * e
        jac[i, 0] = 1.0
        jac[i, 1] = t[i]
        jac[i, 2] = e
        jac[i, 3] = a * (g2 - g1) * k
        jac[i, 4] = a * 0.5 * (g1 + g2) * k
        jac[i, 5] = a * (g2 * u2 - g1 * u1) / s


@nb.njit(cache=True)
def _solve(a, b):
    """Solve a small dense system by Gaussian elimination with partial pivoting."""
    n = b.shape[0]
    m = a.copy()
    x = b.copy()
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(m[r, col]) > abs(m[piv, col]):
                piv = r
        if abs(m[piv, col]) < 1e-18:
            return x * 0.0, False
        if piv != col:
            for k in range(n):
                tmp = m[col, k]
                m[col, k] = m[piv, k]
                m[piv, k] = tmp
            tmp = x[col]
            x[col] = x[piv]
            x[piv] = tmp
        for r in range(col + 1, n):
            f = m[r, col] / m[col, col]
            for k in range(col, n):
                m[r, k] -= f * m[col, k]
            x[r] -= f * x[col]
    for r in range(n - 1, -1, -1):
        acc = x[r]
        for k in range(r + 1, n):
            acc -= m[r, k] * x[k]
        x[r] = acc / m[r, r]
    return x, True


@nb.njit(cache=True)
def fit_bar(t, prof, p0, w_max, iters):
    """Levenberg-Marquardt fit of the blurred bar; returns params and rms residual."""
    n = t.shape[0]
    p = p0.copy()
    model = np.empty(n)
    jac = np.empty((n, NPAR))
    _model(t, p, model, jac)
    cost = 0.0
    for i in range(n):
        cost += (prof[i] - model[i]) ** 2
    lam = 1e-3
    trial = np.empty(NPAR)
    tm = np.empty(n)
    tj = np.empty((n, NPAR))
    rel = 1.0
    for _ in range(iters):
        jtj = np.zeros((NPAR, NPAR))
        jtr = np.zeros(NPAR)
        for i in range(n):
            r = prof[i] - model[i]
            for k in range(NPAR):
                jtr[k] += jac[i, k] * r
                for q in range(k, NPAR):
                    jtj[k, q] += jac[i, k] * jac[i, q]
        for k in range(NPAR):
            for q in range(k):
                jtj[k, q] = jtj[q, k]
        improved = False
        for _ in range(6):
            a = jtj.copy()
            for k in range(NPAR):
                a[k, k] += lam * (jtj[k, k] + 1e-12)
            dp, ok = _solve(a, jtr)
            if not ok:
                lam *= 10.0
                continue
            for k in range(NPAR):
                trial[k] = p[k] + dp[k]
            trial[4] = min(max(trial[4], 0.3), w_max)
            trial[5] = min(max(trial[5], 0.35), 6.0)
            _model(t, trial, tm, tj)
            c2 = 0.0
            for i in range(n):
                c2 += (prof[i] - tm[i]) ** 2
            if c2 < cost:
                p[:] = trial
                model[:] = tm
                jac[:, :] = tj
                rel = (cost - c2) / (cost + 1e-18)
                cost = c2
                lam = max(lam * 0.3, 1e-7)
                improved = True
                break
            lam *= 10.0
        if not improved or rel < 1e-4:
            break
    return p, math.sqrt(cost / n)


@nb.njit(cache=True)
def measure_blocks(img, skin, labels, label_step, avoid, active, pts, starts, w_est, block_px, max_blocks, n_samples,
                   dark):
    """Fit one averaged profile per block of (at most) ``block_px`` along every line.

    ``pts`` (M, 2) are dense centre-line points (about 1 px apart) of all lines, line i
    being ``pts[starts[i]:starts[i+1]]``; ``w_est[i]`` its rough width (px).  At most
    ``max_blocks`` blocks per line, spread evenly, each profile ``n_samples`` long.
    Blocks whose profile reaches outside ``skin`` (bool mask) are skipped, and so are
    blocks whose profile meets another line in ``labels`` (line index + 1 drawn on a grid
    ``label_step`` times coarser) when ``avoid[i]``: a second shaft in the profile (a
    crossing, a sibling from the same opening) would widen the fit.
    Returns per block: line index, bar width px, centre offset px, contrast, edge blur px,
    rms residual, the block's centre point (x, y), and the skin level beside it.
    """
    nl = starts.shape[0] - 1
    nblk = np.zeros(nl, np.int64)
    for i in range(nl):
        if not active[i]:
            continue
        n = starts[i + 1] - starts[i]
        margin = int(0.6 * w_est[i]) + 2
        usable = n - 2 * margin
        # short shafts get shorter blocks rather than fewer: many cross-sections matter more
        blk = max(4, min(block_px, usable // max_blocks))
        nblk[i] = min(max_blocks, max(0, usable // blk))
    first = np.zeros(nl + 1, np.int64)
    for i in range(nl):
        first[i + 1] = first[i] + nblk[i]
    total = first[nl]
    out = np.full((total, 9), np.nan)
    for i in range(nl):
        a = starts[i]
        n = starts[i + 1] - a
        margin = int(0.6 * w_est[i]) + 2
        usable = n - 2 * margin
        half = 1.6 * w_est[i] + 6.0
        nt = n_samples
        t = np.empty(nt)
        for k in range(nt):
            t[k] = -half + 2.0 * half * k / (nt - 1)
        prof = np.empty(nt)
        p0 = np.empty(NPAR)
        if nblk[i] == 0:
            continue
        blk = max(4, min(block_px, usable // max_blocks))
        spacing = usable / nblk[i]
        for bi in range(nblk[i]):
            j0 = a + margin + int(bi * spacing + 0.5 * (spacing - blk))
            j1 = j0 + blk - 1
            cx = 0.5 * (pts[j0, 0] + pts[j1, 0])
            cy = 0.5 * (pts[j0, 1] + pts[j1, 1])
            jm = (j0 + j1) // 2
            ja = max(a, jm - max(3, blk // 2 + 2))
            jb = min(a + n - 1, jm + max(3, blk // 2 + 2))
            tx = pts[jb, 0] - pts[ja, 0]
            ty = pts[jb, 1] - pts[ja, 1]
            tl = math.sqrt(tx * tx + ty * ty)
            if tl < 1e-6:
                continue
            tx /= tl
            ty /= tl
            nx = -ty
            ny = tx
            off_skin = False
            for k in range(0, nt, 4):
                for j in (j0, j1):
                    xs = int(pts[j, 0] + t[k] * nx + 0.5)
                    ys = int(pts[j, 1] + t[k] * ny + 0.5)
                    if xs < 0 or ys < 0 or xs >= img.shape[1] or ys >= img.shape[0] or not skin[ys, xs]:
                        off_skin = True
                    if avoid[i]:
                        lx = int((pts[j, 0] + t[k] * nx) / label_step + 0.5)
                        ly = int((pts[j, 1] + t[k] * ny) / label_step + 0.5)
                        if 0 <= lx < labels.shape[1] and 0 <= ly < labels.shape[0]:
                            lab = labels[ly, lx]
                            if lab != 0 and lab != i + 1:
                                off_skin = True
            if off_skin:
                continue
            for k in range(nt):
                prof[k] = 0.0
            for j in range(j0, j1 + 1):
                for k in range(nt):
                    prof[k] += _bilinear(img, pts[j, 0] + t[k] * nx, pts[j, 1] + t[k] * ny)
            for k in range(nt):
                prof[k] /= blk
            edge = max(2, nt // 8)
            b0 = 0.0
            for k in range(edge):
                b0 += prof[k] + prof[nt - 1 - k]
            b0 /= 2 * edge
            p0[0] = b0
            p0[1] = 0.0
            p0[2] = prof[nt // 2] - b0
            p0[3] = 0.0
            p0[4] = max(1.0, w_est[i])
            p0[5] = 1.0
            if (p0[2] >= 0.0) == dark:
                continue
            p, rms = fit_bar(t, prof, p0, 3.0 * w_est[i] + 8.0, 15)
            out[first[i] + bi, 0] = i
            out[first[i] + bi, 1] = p[4]
            out[first[i] + bi, 2] = p[3]
            out[first[i] + bi, 3] = p[2]
            out[first[i] + bi, 4] = p[5]
            out[first[i] + bi, 5] = rms
            out[first[i] + bi, 6] = cx + p[3] * nx
            out[first[i] + bi, 7] = cy + p[3] * ny
            out[first[i] + bi, 8] = p[0] + p[1] * p[3]
    return out


@nb.njit(cache=True)
def resample_lines(pts, starts, step):
    """Resample every polyline at arc-length spacing ``step`` (keeps both ends)."""
    nl = starts.shape[0] - 1
    cap = 0
    for i in range(nl):
        length = 0.0
        for j in range(starts[i], starts[i + 1] - 1):
            length += math.hypot(pts[j + 1, 0] - pts[j, 0], pts[j + 1, 1] - pts[j, 1])
        cap += int(length / step) + 2
    out = np.empty((cap, 2))
    new_starts = np.zeros(nl + 1, np.int64)
    m = 0
    for i in range(nl):
        a, b = starts[i], starts[i + 1]
        out[m, 0] = pts[a, 0]
        out[m, 1] = pts[a, 1]
        m += 1
        carry = 0.0
        for j in range(a, b - 1):
            dx = pts[j + 1, 0] - pts[j, 0]
            dy = pts[j + 1, 1] - pts[j, 1]
            seg = math.hypot(dx, dy)
            pos = step - carry
            while pos <= seg and m < cap:
                f = pos / seg
                out[m, 0] = pts[j, 0] + f * dx
                out[m, 1] = pts[j, 1] + f * dy
                m += 1
                pos += step
            carry = seg - (pos - step)
        new_starts[i + 1] = m
    return out[:m].copy(), new_starts
