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

# an unmatched hair is still there when its cross-sections in the other visit's image
# correlate with its own (median over a stretch of shaft) at least this well: over the
# middle 60 % of the shaft, or over the first END_STRETCH_UM from an end (from the root
# where it is known), which a shaft clipped shorter or grown longer at the next visit
# still has.  Chosen on phantom pairs (bench_registration section 4, 30 pairs; 20 more,
# seeds 7000-7019, also re-clipped): with 10 % new units, of the current hairs left
# unmatched, 173 of 191 that the baseline scene has pass, 5 of 173 really new ones do
MIDDLE_FRACTION = 0.6
SAME_PROFILE_MIN_CORRELATION = 0.85
END_STRETCH_UM = 200.0
END_MIN_CORRELATION = 0.9  # an end may lie beside another shaft running the same way


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


def shaft_still_there(x: dict, idx: np.ndarray, own: np.ndarray | None, own_m: np.ndarray,
                      other: np.ndarray | None, other_m: np.ndarray, um: float) -> np.ndarray:
    """For hairs ``idx`` of ``x`` (columns from ``core.hair_matching``: xy and root px, ang rad,
    length and thick µm; in one frame's px; ``own_m`` maps that frame to the image
    the hairs were found in, ``other_m`` to the other visit's image): does the other image
    show the same shaft?  Hairs of unknown length are not checked (False), nor is anything
    without both images."""
    if own is None or other is None or not len(idx):
        return np.zeros(len(idx), bool)
    length = x["length"][idx] / um  # the cross-sections are placed in the hairs' frame
    seen = np.zeros(len(idx), bool)
    for centre, span, ang, min_corr in compared_stretches(x, idx, length, um):
        r = profile_agreement(own, np.ascontiguousarray(own_m), other, np.ascontiguousarray(other_m),
                              np.ascontiguousarray(centre[:, 0]), np.ascontiguousarray(centre[:, 1]),
                              ang, span, x["thick"][idx] / um)
        seen |= r >= min_corr
    return seen & (length > 0)


def compared_stretches(x: dict, idx: np.ndarray, length_px: np.ndarray, um: float):
    """[(centre (n, 2) px, length (n,) px, direction (n,) degrees, least correlation), ...]:
    the stretches of each hair whose cross-sections are compared; the hair is there when
    one of them agrees (a stretch of length 0 is skipped).  A hair with a known root: the
    first END_STRETCH_UM from it (at most 60 % of the shaft).  Without: the middle 60 %
    and that end stretch at either end (which end is the root is unknown)."""
    xy, root = x["xy"][idx], x["root"][idx]
    ang = np.degrees(x["ang"][idx])
    u = np.stack([np.cos(x["ang"][idx]), -np.sin(x["ang"][idx])], 1)
    half = (0.5 * length_px)[:, None]
    end_span = np.minimum(MIDDLE_FRACTION * length_px, END_STRETCH_UM / um)
    away = xy - root
    dist = np.hypot(away[:, 0], away[:, 1])
    rooted = np.isfinite(root[:, 0]) & (dist > 1.0)
    u_first = np.where(rooted[:, None], away / np.maximum(dist, 1e-9)[:, None], u)
    first = np.where(rooted[:, None], root, xy - u * half)
    ang_first = np.where(rooted, np.degrees(np.arctan2(-u_first[:, 1], u_first[:, 0])), ang)
    unrooted = np.where(rooted, 0.0, 1.0)
    return [(first + u_first * (0.5 * end_span)[:, None], end_span, ang_first, END_MIN_CORRELATION),
            (xy + u * half - u * (0.5 * end_span)[:, None], end_span * unrooted, ang, END_MIN_CORRELATION),
            (xy, MIDDLE_FRACTION * length_px * unrooted, ang, SAME_PROFILE_MIN_CORRELATION)]
