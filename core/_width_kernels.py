"""Numba kernels measuring shaft width from cross-section profiles (full-resolution px).

Each measurement averages the image over a short block of shaft (straight enough at
that length) into one profile across the hair, then fits a blurred bar
to it (``_bar_fit``).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from core._bar_fit import FIT_FASTMATH, NPAR, fit_bar_in, workspace
from core._ridge_kernels import _bilinear, _bilinear_inside

FIT_MAX_OFFSET_PX = 1.5
FIT_MAX_OFFSET_PER_WIDTH = 0.12
FIT_MAX_RMS_PER_CONTRAST = 0.45


@nb.njit(cache=True, error_model="numpy", inline="always")
def fit_on_shaft(offset_px, width_px, rms, contrast):
    """A bar fit that stayed on the traced shaft and fits it well: centre offset within
    max(FIT_MAX_OFFSET_PX, FIT_MAX_OFFSET_PER_WIDTH * bar width), rms residual below
    FIT_MAX_RMS_PER_CONTRAST * |contrast|.  False when any of them is NaN."""
    return (rms < FIT_MAX_RMS_PER_CONTRAST * abs(contrast)
            and abs(offset_px) <= max(FIT_MAX_OFFSET_PX, FIT_MAX_OFFSET_PER_WIDTH * width_px)
            and width_px == width_px)


@nb.njit(cache=True, error_model="numpy")
def blocks_on_shaft(blocks):
    """fit_on_shaft for every row of ``measure_blocks``' output."""
    out = np.empty(blocks.shape[0], np.bool_)
    for r in range(blocks.shape[0]):
        out[r] = fit_on_shaft(blocks[r, 2], blocks[r, 1], blocks[r, 5], blocks[r, 3])
    return out


@nb.njit(cache=True, error_model="numpy")
def _block_profile(img, pts, j0, j1, ox, oy, prof):
    """prof[k] = sum over j0..j1 of the image (bilinear) at pts[j] + (ox[k], oy[k])."""
    h, w = img.shape
    nt = prof.shape[0]
    for k in range(nt):
        prof[k] = 0.0
    xlo = xhi = pts[j0, 0]
    ylo = yhi = pts[j0, 1]
    for j in range(j0, j1 + 1):
        xlo = min(xlo, pts[j, 0])
        xhi = max(xhi, pts[j, 0])
        ylo = min(ylo, pts[j, 1])
        yhi = max(yhi, pts[j, 1])
    oxlo = oxhi = ox[0]
    oylo = oyhi = oy[0]
    for k in range(nt):
        oxlo = min(oxlo, ox[k])
        oxhi = max(oxhi, ox[k])
        oylo = min(oylo, oy[k])
        oyhi = max(oyhi, oy[k])
    # rounding is monotone, so when the corner sums lie inside, every sample does and
    # _bilinear's clamping to the image would change nothing
    if xlo + oxlo >= 0.0 and ylo + oylo >= 0.0 and xhi + oxhi <= w - 1.001 and yhi + oyhi <= h - 1.001:
        for j in range(j0, j1 + 1):
            px = pts[j, 0]
            py = pts[j, 1]
            for k in range(nt):
                prof[k] += _bilinear_inside(img, px + ox[k], py + oy[k])
    else:
        for j in range(j0, j1 + 1):
            for k in range(nt):
                prof[k] += _bilinear(img, pts[j, 0] + ox[k], pts[j, 1] + oy[k])


@nb.njit(cache=True, error_model="numpy", nogil=True, fastmath=FIT_FASTMATH)
def measure_blocks(img, skin, labels, label_step, avoid, active, pts, starts, w_est, block_px, max_blocks, n_samples,
                   dark, streak_open_widths, streak_min_gain):
    """Fit one averaged profile per block of (at most) ``block_px`` along every line.

    ``pts`` (M, 2) are dense centre-line points (about 1 px apart) of all lines, line i
    being ``pts[starts[i]:starts[i+1]]``; ``w_est[i]`` its rough width (px).  At most
    ``max_blocks`` blocks per line, spread evenly, each profile ``n_samples`` long.
    Blocks whose profile reaches outside ``skin`` (bool mask) are skipped, and so are
    blocks whose profile meets another line in ``labels`` (line index + 1 drawn on a grid
    ``label_step`` times coarser) when ``avoid[i]``: a second shaft in the profile (a
    crossing, a sibling from the same opening) would widen the fit.
    For shafts brighter than the skin (``dark`` False) a second fit runs on the profile
    opened by ``streak_open_widths`` times the line's width plus 2 px (``_open_profile``);
    when its bar is ``streak_min_gain`` times wider, the profile is fitted again without the
    samples the opening lowered, and that fit is kept; 0 turns this off.
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
    nt = n_samples
    t = np.empty(nt)
    prof = np.empty(nt)
    p0 = np.empty(NPAR)
    vec, jac, mat, par = workspace(nt)
    ox = np.empty(nt)
    oy = np.empty(nt)
    tmp = np.empty(nt)
    opened = np.empty(nt)
    p1 = np.empty(NPAR)
    t_kept = np.empty(nt)
    prof_kept = np.empty(nt)
    for i in range(nl):
        if nblk[i] == 0:
            continue
        a = starts[i]
        n = starts[i + 1] - a
        margin = int(0.6 * w_est[i]) + 2
        usable = n - 2 * margin
        half = 1.6 * w_est[i] + 6.0
        for k in range(nt):
            t[k] = -half + 2.0 * half * k / (nt - 1)
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
                ox[k] = t[k] * nx
                oy[k] = t[k] * ny
            _block_profile(img, pts, j0, j1, ox, oy, prof)
            for k in range(nt):
                prof[k] /= blk
            _initial_bar(prof, w_est[i], p0)
            if (p0[2] >= 0.0) == dark:
                continue
            w_max = 3.0 * w_est[i] + 8.0
            p, rms = fit_bar_in(t, prof, p0, w_max, 15, vec, jac, mat, par)
            if not dark and streak_open_widths > 0.0:
                # a shaft brighter than the skin carries its specular streak on the same side,
                # and the fit may take the streak for the shaft: fit again with bright
                # features narrower than the element opened away, keep that when it reads a
                # clearly wider bar that fits
                p1[:] = p
                rms1 = rms
                half = int(0.5 * (streak_open_widths * w_est[i] + 2.0) / (t[1] - t[0]) + 0.5)
                _open_profile(prof, half, tmp, opened)
                _initial_bar(opened, w_est[i], p0)
                p, rms = fit_bar_in(t, opened, p0, w_max, 15, vec, jac, mat, par)
                if not (p[4] > streak_min_gain * p1[4] and fit_on_shaft(p[3], p[4], rms, p[2])):
                    p[:] = p1
                    rms = rms1
                else:
                    # the opening also flattens the shaft's rounded top, which reads as a
                    # wider bar: refit the profile itself without the samples it lowered
                    m = _unlowered(t, prof, opened, 0.2 * abs(p[2]), t_kept, prof_kept)
                    if m >= nt // 2:
                        p0[:] = p
                        p, rms = fit_bar_in(t_kept[:m], prof_kept[:m], p0, w_max, 15, vec, jac, mat, par)
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


@nb.njit(cache=True, error_model="numpy")
def _initial_bar(prof, w_est, p0):
    """Start parameters of a bar fit to ``prof`` into ``p0``: the baseline from the outer
    eighths, the contrast at the centre sample, the width ``w_est``."""
    nt = prof.shape[0]
    edge = max(2, nt // 8)
    b0 = 0.0
    for k in range(edge):
        b0 += prof[k] + prof[nt - 1 - k]
    b0 /= 2 * edge
    p0[0] = b0
    p0[1] = 0.0
    p0[2] = prof[nt // 2] - b0
    p0[3] = 0.0
    p0[4] = max(1.0, w_est)
    p0[5] = 1.0


@nb.njit(cache=True, error_model="numpy")
def _open_profile(prof, half, tmp, out):
    """Grey opening of ``prof`` with a flat element of 2 * half + 1 samples into ``out``:
    bright features narrower than the element (a specular streak) sink to their
    surroundings, wider ones (the shaft) keep their shape."""
    nt = prof.shape[0]
    for k in range(nt):
        m = prof[k]
        for q in range(max(0, k - half), min(nt, k + half + 1)):
            m = min(m, prof[q])
        tmp[k] = m
    for k in range(nt):
        m = tmp[k]
        for q in range(max(0, k - half), min(nt, k + half + 1)):
            m = max(m, tmp[q])
        out[k] = m


@nb.njit(cache=True, error_model="numpy")
def _unlowered(t, prof, opened, thr, t_out, prof_out):
    """Copy the samples that the opening lowered by at most ``thr`` to ``t_out``,
    ``prof_out``; return how many."""
    m = 0
    for k in range(prof.shape[0]):
        if prof[k] - opened[k] <= thr:
            t_out[m] = t[k]
            prof_out[m] = prof[k]
            m += 1
    return m


@nb.njit(cache=True, error_model="numpy")
def resample_lines(pts, starts, step):
    """Resample every polyline at arc-length spacing ``step`` (keeps both ends)."""
    nl = starts.shape[0] - 1
    cap = 0
    segs = np.empty(max(1, pts.shape[0]))
    for i in range(nl):
        length = 0.0
        for j in range(starts[i], starts[i + 1] - 1):
            segs[j] = math.hypot(pts[j + 1, 0] - pts[j, 0], pts[j + 1, 1] - pts[j, 1])
            length += segs[j]
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
            seg = segs[j]
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


@nb.njit(cache=True, error_model="numpy")
def _percentile(s, n, q):
    """``np.percentile(s[:n], 100 * q)`` (linear) of sorted ``s``, as numpy computes it."""
    vi = (n - 1) * q
    lo = math.floor(vi)
    g = vi - lo
    a = s[int(lo)]
    b = s[min(int(lo) + 1, n - 1)]
    d = b - a
    if g >= 0.5:
        return b - d * (1 - g)
    return a + d * g


@nb.njit(cache=True, error_model="numpy")
def robust_widths(idx, values, width):
    """For every line i with values (``values[k]`` belongs to line ``idx[k]``, idx sorted),
    set ``width[i]`` to their median, or their lower quartile when the quartiles are more
    than 10 % apart."""
    m = idx.shape[0]
    buf = np.empty(max(1, m))
    a = 0
    while a < m:
        b = a
        while b < m and idx[b] == idx[a]:
            b += 1
        n = b - a
        buf[:n] = np.sort(values[a:b])
        q25 = _percentile(buf, n, 0.25)
        q75 = _percentile(buf, n, 0.75)
        width[idx[a]] = q25 if q75 > 1.1 * q25 else _percentile(buf, n, 0.5)
        a = b


@nb.njit(cache=True, error_model="numpy")
def _line8(img, x0, y0, x1, y1, v):
    """Line of value ``v`` from (x0, y0) to (x1, y1) (thickness 1, 8-connected; OpenCV's
    Bresenham walk, from left to right), pixels outside ``img`` left out."""
    dx = x1 - x0
    dy = y1 - y0
    if dx < 0:
        x0, y0 = x1, y1
        dx, dy = -dx, -dy
    sy = 1
    if dy < 0:
        sy = -1
        dy = -dy
    steep = dy > dx
    if steep:
        dx, dy = dy, dx
    err = dx - (dy + dy)
    x, y = x0, y0
    h, w = img.shape
    for _ in range(dx + 1):
        if 0 <= x < w and 0 <= y < h:
            img[y, x] = v
        if err < 0:
            err += dx + dx - (dy + dy)
            if steep:
                x += 1
            else:
                y += sy
        else:
            err -= dy + dy
        if steep:
            y += sy
        else:
            x += 1


@nb.njit(cache=True, error_model="numpy")
def draw_lines(img, pts, starts):
    """Draw line i (``pts[starts[i]:starts[i + 1]]``, integer x, y) with value i + 1, in
    order, as ``cv2.polylines(img, [line], False, i + 1)`` does for lines inside ``img``."""
    for i in range(starts.shape[0] - 1):
        for k in range(starts[i] + 1, starts[i + 1]):
            _line8(img, pts[k - 1, 0], pts[k - 1, 1], pts[k, 0], pts[k, 1], i + 1)
