"""Dropping second traces of one shaft (e.g. one traced on each side of a specular streak).

All distances are in detection-grid px.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


def drop_duplicates(pts: np.ndarray, starts: np.ndarray, widths_px: np.ndarray, frac: float = 0.75) -> np.ndarray:
    """Indices (ascending) of lines to keep among the packed lines ``pts[starts[i]:starts[i+1]]``:
    a line lying mostly within about half a shaft width of a longer one, and parallel to
    it, is a second trace of the same shaft (e.g. split by a specular streak)."""
    n = starts.shape[0] - 1
    if n == 0:
        return np.zeros(0, np.int64)
    lengths = packed_lengths(pts, starts)
    order = np.argsort(-lengths, kind="stable")
    h = int(pts[:, 1].max()) + 3
    w = int(pts[:, 0].max()) + 3
    keep = _dedupe(pts, starts, np.asarray(widths_px, np.float64), order, frac, h, w)
    return np.nonzero(keep)[0]


@nb.njit(cache=True, error_model="numpy")
def packed_lengths(pts, starts):
    """Arc length of every packed polyline."""
    n = starts.shape[0] - 1
    out = np.zeros(n)
    for i in range(n):
        acc = 0.0
        for j in range(starts[i], starts[i + 1] - 1):
            acc += math.hypot(pts[j + 1, 0] - pts[j, 0], pts[j + 1, 1] - pts[j, 1])
        out[i] = acc
    return out


@nb.njit(cache=True, error_model="numpy")
def _dedupe(pts, starts, widths, order, frac, h, w):
    # per pixel: directions (0..179 deg, +1) of up to two kept lines covering it, 0 = free
    # (two, so a crossing line does not hide a shaft running along the pixel)
    cover = np.zeros((2, h, w), np.uint8)
    keep = np.zeros(order.shape[0], np.bool_)
    for oi in range(order.shape[0]):
        i = order[oi]
        a, b = starts[i], starts[i + 1]
        hits = 0
        for j in range(a, b):
            x = int(pts[j, 0] + 0.5)
            y = int(pts[j, 1] + 0.5)
            if 0 <= x < w and 0 <= y < h:
                own = _dir_deg(pts, j, a, b)
                for layer in range(2):
                    c = cover[layer, y, x]
                    if c > 0:
                        d = abs((int(c) - 1) - own)
                        if min(d, 180 - d) < 25:
                            hits += 1
                            break
        if hits >= frac * (b - a):
            continue
        keep[i] = True
        r = max(1, int(0.6 * widths[i] + 0.5))
        pcx = -(1 << 30)
        pcy = -(1 << 30)
        for j in range(a, b):
            ang = _dir_deg(pts, j, a, b) + 1
            # walk the segment to the next point: lines may jump across crossings
            nxt = min(j + 1, b - 1)
            steps = max(1, int(math.hypot(pts[nxt, 0] - pts[j, 0], pts[nxt, 1] - pts[j, 1])))
            for k in range(steps):
                f = k / steps
                cx = int(pts[j, 0] + f * (pts[nxt, 0] - pts[j, 0]) + 0.5)
                cy = int(pts[j, 1] + f * (pts[nxt, 1] - pts[j, 1]) + 0.5)
                mx = cx - pcx
                my = cy - pcy
                if -1 <= mx <= 1 and -1 <= my <= 1:
                    # a step to a neighbouring centre: only the row and column entering the square are new
                    if my != 0:
                        _paint(cover, cx - r, cx + r, cy + my * r, cy + my * r, ang, h, w)
                    if mx != 0:
                        _paint(cover, cx + mx * r, cx + mx * r, cy - r, cy + r, ang, h, w)
                else:
                    _paint(cover, cx - r, cx + r, cy - r, cy + r, ang, h, w)
                pcx = cx
                pcy = cy
    return keep


@nb.njit(cache=True, error_model="numpy", inline="always")
def _paint(cover, x0, x1, y0, y1, ang, h, w):
    """Mark pixels [x0, x1] x [y0, y1] as covered by a line running at ``ang``: in the first
    layer when free, else in the second when the first holds another direction."""
    for yy in range(max(0, y0), min(h, y1 + 1)):
        for xx in range(max(0, x0), min(w, x1 + 1)):
            c0 = cover[0, yy, xx]
            if c0 == 0:
                cover[0, yy, xx] = ang
            elif cover[1, yy, xx] == 0:
                d = abs(int(c0) - int(ang))
                if min(d, 180 - d) >= 25:
                    cover[1, yy, xx] = ang


@nb.njit(cache=True, error_model="numpy", inline="always")
def _dir_deg(pts, j, a, b):
    j0 = max(a, j - 3)
    j1 = min(b - 1, j + 3)
    ang = math.degrees(math.atan2(pts[j1, 1] - pts[j0, 1], pts[j1, 0] - pts[j0, 0]))
    if ang < 0:
        ang += 180.0
    return min(179, int(ang))
