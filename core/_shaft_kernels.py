"""Numba kernels of ``analysis._assemble``: shaft checks, trimming at the opening, visible
length and midpoint of every measured line in one pass each.

Lines are packed as in the width kernels: line i is ``pts[starts[i]:starts[i + 1]]``
(x, y full-resolution px).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, error_model="numpy")
def shaft_candidates(pts, starts, width_px, min_aspect, min_straight):
    """Arc length (px) of every line and whether it is a shaft: a finite width, at least
    ``min_aspect`` widths long and end-to-end at least ``min_straight`` of its length.
    Also the segment lengths: ``seg[j]`` from point j to j + 1 of the same line."""
    n = starts.shape[0] - 1
    arc = np.zeros(n)
    ok = np.zeros(n, np.bool_)
    seg = np.zeros(max(1, pts.shape[0]))
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        s = 0.0
        for j in range(a, b - 1):
            seg[j] = math.hypot(pts[j + 1, 0] - pts[j, 0], pts[j + 1, 1] - pts[j, 1])
            s += seg[j]
        wpx = width_px[i]
        if b - a < 2 or not math.isfinite(wpx):
            continue
        if s < min_aspect * wpx:
            continue
        if math.hypot(pts[b - 1, 0] - pts[a, 0], pts[b - 1, 1] - pts[a, 1]) < min_straight * s:
            continue
        arc[i] = s
        ok[i] = True
    return arc, ok, seg


@nb.njit(cache=True, error_model="numpy")
def _nearest(pts, a, b, rev, rx, ry):
    """Position along line a..b (from b - 1 backwards when ``rev``) of the first point
    nearest (rx, ry)."""
    best = np.inf
    k = 0
    for j in range(b - a):
        jj = b - 1 - j if rev else a + j
        d2 = (pts[jj, 0] - rx) ** 2 + (pts[jj, 1] - ry) ** 2
        if d2 < best:
            best = d2
            k = j
    return k


@nb.njit(cache=True, error_model="numpy")
def orient_and_trim(pts, starts, seg, idx, root_xy, root_end):
    """Line ``idx[c]`` of every candidate c, running from its root end (``root_end[c]`` 0 =
    first point, 1 = last, -1 = no root: unchanged) and starting at the point nearest
    the root (kept whole when fewer than 2 points would remain).  Packed like ``pts``,
    with the segment lengths taken over from ``seg``."""
    nc = idx.shape[0]
    total = 0
    for c in range(nc):
        total += starts[idx[c] + 1] - starts[idx[c]]
    out = np.empty((total, 2))
    out_seg = np.zeros(total)
    new_starts = np.zeros(nc + 1, np.int64)
    m = 0
    for c in range(nc):
        a, b = starts[idx[c]], starts[idx[c] + 1]
        n = b - a
        rev = root_end[c] == 1
        k = 0
        if root_end[c] >= 0:
            k = _nearest(pts, a, b, rev, root_xy[c, 0], root_xy[c, 1])
            if n - k < 2:
                k = 0
        for j in range(k, n):
            jj = b - 1 - j if rev else a + j
            out[m, 0] = pts[jj, 0]
            out[m, 1] = pts[jj, 1]
            if j < n - 1:
                out_seg[m] = seg[jj - 1] if rev else seg[jj]  # hypot(-dx, -dy) == hypot(dx, dy)
            m += 1
        new_starts[c + 1] = m
    return out[:m], new_starts, out_seg[:m]


@nb.njit(cache=True, error_model="numpy")
def under_skin_pieces(pts, starts, has_root, root_xy, thick_um, arc_px, um, max_um):
    """True for short lines (arc <= ``max_um``, >= 3 points) with an end near a root and
    pointing straight away from that rooted hair: its part under the skin."""
    n = starts.shape[0] - 1
    drop = np.zeros(n, np.bool_)
    short = np.zeros(n, np.bool_)
    for j in range(n):
        short[j] = arc_px[j] * um <= max_um and starts[j + 1] - starts[j] >= 3
    ns = short.sum()
    if ns == 0:
        return drop
    ends = np.empty((2 * ns, 2))
    dirs = np.empty((2 * ns, 2))
    owner = np.empty(2 * ns, np.int64)
    e = 0
    for j in range(n):
        if not short[j]:
            continue
        a, b = starts[j], starts[j + 1]
        k = min(b - a - 1, 4)
        for side in range(2):
            p = a if side == 0 else b - 1
            q = a + k if side == 0 else b - 1 - k
            dx = pts[q, 0] - pts[p, 0]
            dy = pts[q, 1] - pts[p, 1]
            nrm = max(math.hypot(dx, dy), 1e-9)
            ends[e, 0] = pts[p, 0]
            ends[e, 1] = pts[p, 1]
            dirs[e, 0] = dx / nrm
            dirs[e, 1] = dy / nrm
            owner[e] = j
            e += 1
    for i in range(n):
        if not has_root[i]:
            continue
        a, b = starts[i], starts[i + 1]
        k = min(b - a - 1, max(2, int(2 * thick_um[i] / um)))
        dx = pts[a + k, 0] - pts[a, 0]
        dy = pts[a + k, 1] - pts[a, 1]
        nrm = max(math.hypot(dx, dy), 1e-9)
        ux = dx / nrm
        uy = dy / nrm
        near = max(60.0, thick_um[i]) / um
        for e in range(2 * ns):
            if owner[e] == i:
                continue
            if (math.hypot(ends[e, 0] - root_xy[i, 0], ends[e, 1] - root_xy[i, 1]) <= near
                    and dirs[e, 0] * ux + dirs[e, 1] * uy < -0.7):
                drop[owner[e]] = True
    return drop


@nb.njit(cache=True, error_model="numpy")
def visible_lengths(pts, starts, seg, skin):
    """Length (px) of every line counting only segments with both ends on ``skin``."""
    n = starts.shape[0] - 1
    h, w = skin.shape
    out = np.zeros(n)
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        prev = False
        for j in range(a, b):
            xi = min(max(int(np.rint(pts[j, 0])), 0), w - 1)
            yi = min(max(int(np.rint(pts[j, 1])), 0), h - 1)
            cur = skin[yi, xi]
            if j > a and cur and prev:
                out[i] += seg[j - 1]
            prev = cur
    return out


@nb.njit(cache=True, error_model="numpy")
def _interp(x, xp, fp, n):
    """Linear interpolation at x in [xp[0], xp[n - 1]] of fp over increasing xp (n >= 2)."""
    j = n - 1
    while j > 0 and xp[j] > x:
        j -= 1
    if j == n - 1 or xp[j + 1] == xp[j]:
        return fp[j]
    return fp[j] + (fp[j + 1] - fp[j]) * (x - xp[j]) / (xp[j + 1] - xp[j])


@nb.njit(cache=True, error_model="numpy")
def midpoints(pts, starts, seg, sel):
    """Per line ``sel[c]``: the point halfway along it (by arc length) and its end-to-end
    vector, (len(sel), 4) x, y, dx, dy."""
    out = np.empty((sel.shape[0], 4))
    cap = 1
    for c in range(sel.shape[0]):
        cap = max(cap, starts[sel[c] + 1] - starts[sel[c]])
    arc = np.empty(cap)
    xs = np.empty(cap)
    ys = np.empty(cap)
    for c in range(sel.shape[0]):
        a, b = starts[sel[c]], starts[sel[c] + 1]
        n = b - a
        arc[0] = 0.0
        for j in range(n):
            xs[j] = pts[a + j, 0]
            ys[j] = pts[a + j, 1]
            if j > 0:
                arc[j] = arc[j - 1] + seg[a + j - 1]
        half = arc[n - 1] / 2
        out[c, 0] = _interp(half, arc, xs, n)
        out[c, 1] = _interp(half, arc, ys, n)
        out[c, 2] = pts[b - 1, 0] - pts[a, 0]
        out[c, 3] = pts[b - 1, 1] - pts[a, 1]
    return out
