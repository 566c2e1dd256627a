"""Does the other visit's image show the same shaft?  Evidence from the pixels, not from a
detector, for confirming a hair lost or new between two visits.

A detector that traces a shaft whole in one visit and in two pieces, or not at all, in
the next would turn its own inconsistency into a change of count.  After registration, the
cross-sections of a shaft that is still there look the same in both images (same scene,
sub-pixel registration, the same fixed lighting); where a hair is gone (or new), one image
shows the shaft and the other skin, or a shaft that crosses at another angle.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._ridge_kernels import _bilinear

N_ALONG = 9  # cross-sections along the stretch compared
N_ACROSS = 21  # samples per cross-section
ACROSS_WIDTHS = 2.0  # each side of the centre line, in shaft widths


@nb.njit(cache=True, error_model="numpy")
def profile_agreement(own, own_m, other, other_m, x, y, angle_deg, span_px, width_px):
    """For each stretch of shaft (centre x, y px, direction angle_deg counter-clockwise
    with y down, length ``span_px`` and shaft width px, all in one frame): the median, over
    N_ALONG cross-sections spread along it, of the correlation coefficient between the
    cross-section's profile in ``own`` and in ``other``.  ``own_m`` and ``other_m`` (2x3)
    map the hairs' frame to each image's px.  1 is the same profile; a stretch of zero
    length, or one whose profiles are flat, gets -1.
    """
    n = x.shape[0]
    out = np.full(n, -1.0)
    ncc = np.empty(N_ALONG)
    a_vals = np.empty(N_ACROSS)
    b_vals = np.empty(N_ACROSS)
    for i in range(n):
        if not span_px[i] > 0:
            continue
        a = math.radians(angle_deg[i])
        ux, uy = math.cos(a), -math.sin(a)  # along the shaft (y down)
        nx, ny = -uy, ux  # across
        reach = ACROSS_WIDTHS * max(width_px[i], 2.0)
        m = 0
        for k in range(N_ALONG):
            t = (k / (N_ALONG - 1) - 0.5) * span_px[i]
            for s in range(N_ACROSS):
                d = (2.0 * s / (N_ACROSS - 1) - 1.0) * reach
                px = x[i] + t * ux + d * nx
                py = y[i] + t * uy + d * ny
                a_vals[s] = _bilinear(own, own_m[0, 0] * px + own_m[0, 1] * py + own_m[0, 2],
                                      own_m[1, 0] * px + own_m[1, 1] * py + own_m[1, 2])
                b_vals[s] = _bilinear(other, other_m[0, 0] * px + other_m[0, 1] * py + other_m[0, 2],
                                      other_m[1, 0] * px + other_m[1, 1] * py + other_m[1, 2])
            c = _correlation(a_vals, b_vals)
            if c > -2.0:
                ncc[m] = c
                m += 1
        if m:
            out[i] = np.median(ncc[:m])
    return out


@nb.njit(cache=True, error_model="numpy")
def _correlation(a, b):
    """Pearson correlation of a and b; -3 when either is flat."""
    n = a.shape[0]
    ma = a.mean()
    mb = b.mean()
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for k in range(n):
        da = a[k] - ma
        db = b[k] - mb
        sab += da * db
        saa += da * da
        sbb += db * db
    if saa <= 1e-12 or sbb <= 1e-12:
        return -3.0
    return sab / math.sqrt(saa * sbb)
