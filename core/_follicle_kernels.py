"""Numba kernel scoring how completely a ring around a point is darker than the skin."""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True)
def ring_dark_fraction(contrast, pts, radius, n_ring, dark_below):
    """For each point (x, y, detection px): fraction of ``n_ring`` samples on a circle of
    ``radius`` px whose relative contrast is below ``dark_below`` (a negative number)."""
    h, w = contrast.shape
    out = np.zeros(pts.shape[0])
    for i in range(pts.shape[0]):
        hits = 0
        for k in range(n_ring):
            a = 2.0 * math.pi * k / n_ring
            x = min(max(pts[i, 0] + radius * math.cos(a), 0.0), w - 1.001)
            y = min(max(pts[i, 1] + radius * math.sin(a), 0.0), h - 1.001)
            x0 = int(x)
            y0 = int(y)
            tx = x - x0
            ty = y - y0
            v = ((1 - ty) * ((1 - tx) * contrast[y0, x0] + tx * contrast[y0, x0 + 1])
                 + ty * ((1 - tx) * contrast[y0 + 1, x0] + tx * contrast[y0 + 1, x0 + 1]))
            if v < dark_below:
                hits += 1
        out[i] = hits / n_ring
    return out
