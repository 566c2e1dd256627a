"""Is there a hair shaft at a given place in an image?  Evidence from the pixels, not
from a detector, for confirming a hair lost or new between two visits.

A detector that traces a shaft whole in one visit and in two pieces, or not at all, in
the next would turn its own inconsistency into a change of count.  Looking at the other
visit's image where the hair should be (after registration) tells a real loss from a miss.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._ridge_kernels import _bilinear

N_ALONG = 9  # cross-sections over the middle of the shaft
MIDDLE = 0.6  # fraction of the shaft length they span (ends may be trimmed or crossed)


@nb.njit(cache=True, error_model="numpy")
def shaft_present(gray, x, y, angle_deg, length_px, width_px, min_contrast, min_fraction):
    """For each hair (midpoint x, y px, direction angle_deg counter-clockwise with y down,
    visible length and shaft width px): True when most cross-sections over the middle of
    the shaft show a bar darker (or brighter) than the skin on both sides.

    A cross-section counts when the darkest (brightest) sample within 0.6 width of the
    centre line differs from each side (1.2-1.8 widths out) by at least ``min_contrast``
    of the side's level; the hair is present when ``min_fraction`` of them count.
    """
    h, w = gray.shape
    n = x.shape[0]
    out = np.zeros(n, np.bool_)
    for i in range(n):
        a = math.radians(angle_deg[i])
        ux, uy = math.cos(a), -math.sin(a)  # along the shaft (y down)
        nx, ny = -uy, ux  # across
        wd = max(width_px[i], 2.0)
        hits = 0
        for k in range(N_ALONG):
            t = (k / (N_ALONG - 1) - 0.5) * MIDDLE * length_px[i]
            cx = x[i] + t * ux
            cy = y[i] + t * uy
            reach = 1.8 * wd + 1.0
            if cx - reach < 0 or cy - reach < 0 or cx + reach > w - 1 or cy + reach > h - 1:
                continue
            lo = 1e9
            hi = -1e9
            steps = max(2, int(1.2 * wd))
            for s in range(steps + 1):
                d = (s / steps - 0.5) * 1.2 * wd
                v = _bilinear(gray, cx + d * nx, cy + d * ny)
                lo = min(lo, v)
                hi = max(hi, v)
            left = 0.0
            right = 0.0
            for s in range(5):
                d = (1.2 + 0.15 * s) * wd
                left += _bilinear(gray, cx - d * nx, cy - d * ny)
                right += _bilinear(gray, cx + d * nx, cy + d * ny)
            left /= 5.0
            right /= 5.0
            dark = lo < (1.0 - min_contrast) * min(left, right)
            bright = hi > max(left, right) + min_contrast * max(left, right)
            if dark or bright:
                hits += 1
        out[i] = hits >= min_fraction * N_ALONG
    return out
