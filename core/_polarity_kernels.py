"""Numba kernels of ``core.polarity``: ridge pixels and traced lines that stand out from the
skin on both sides.  Contrast values are relative to the skin background (0 = skin);
distances are in pixels of the image the kernel is given."""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._ridge_kernels import _bilinear, _hessian, ridge_normal


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def ridge_pixel_counts(g, valid, sigma, t_ridge, t_contrast, side_px, t_side, other_max, along_px):
    """Counts over ``g`` (a smoothed relative-contrast image) of ridge pixels, as
    [dark, bright, dark on skin, bright on skin].

    A dark (bright) ridge pixel lies in ``valid``, is below -``t_contrast`` (above
    +``t_contrast``) and its valley (crest) response at scale ``sigma`` exceeds
    ``t_ridge``.  It is also "on skin" when, ``side_px`` away across the ridge on both
    sides, the contrast is at least ``t_side`` less dark (bright) than at the pixel and
    not more than ``other_max`` of the other polarity (a shaft lying on skin, not the
    gap between two shafts of the other colour or the rim beside one), and ``along_px``
    along the ridge both ways the contrast is still beyond half of ``t_contrast``.
    """
    h, w = g.shape
    s2 = sigma * sigma
    out = np.zeros(4, np.int64)
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            c = g[y, x]
            if not valid[y, x] or (c >= -t_contrast and c <= t_contrast):
                continue
            sign = 1.0 if c < 0.0 else -1.0  # only the polarity the contrast allows can count
            a, b, d, l1, l2 = _hessian(g, y, x, sign)
            if l1 <= 0.0 or s2 * (l1 - max(l2, 0.0)) <= t_ridge:
                continue
            k = 0 if sign > 0.0 else 1
            out[k] += 1
            vx, vy, nrm = ridge_normal(a, b, d, l1)
            if nrm < 1e-12:
                continue
            vx /= nrm
            vy /= nrm
            own = -sign * c  # > 0: how far the pixel stands out in its own direction
            s_a = -sign * _bilinear(g, x + side_px * vx, y + side_px * vy)
            s_b = -sign * _bilinear(g, x - side_px * vx, y - side_px * vy)
            if own - s_a > t_side and own - s_b > t_side and s_a > -other_max and s_b > -other_max:
                # and the ridge runs on: the rim of a follicle opening curves away from its tangent
                a_a = -sign * _bilinear(g, x - along_px * vy, y + along_px * vx)
                a_b = -sign * _bilinear(g, x + along_px * vy, y - along_px * vx)
                if a_a > 0.5 * t_contrast and a_b > 0.5 * t_contrast:
                    out[2 + k] += 1
    return out


@nb.njit(cache=True, error_model="numpy")
def on_skin_runs(pts, starts, width_px, contrast, bright, side_gap_px, t_side, other_max, max_gap_widths):
    """Per packed line ``pts[starts[i]:starts[i + 1]]`` (x, y px of ``contrast``, width
    ``width_px[i]``): where the shaft stands out from both sides, sampled
    ``0.5 * width + side_gap_px`` away along the local normal, as in ``ridge_pixel_counts``
    (by more than ``t_side`` in its own direction, and neither side more than
    ``other_max`` of the other polarity; ``bright``: the line's shaft is brighter than the
    skin).  Returns (n, 4): the fraction of its points that do, the first and last + 1
    point of its longest stretch that does, bridging gaps of up to ``max_gap_widths``
    widths (a crossing shaft), -1, -1 when no point does, and how far that stretch stands
    out from its less different side (mean over its points, in contrast units)."""
    n = starts.shape[0] - 1
    out = np.zeros((n, 4))
    sign = 1.0 if bright else -1.0
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        d = 0.5 * max(width_px[i], 1.0) + side_gap_px
        max_gap = max_gap_widths * max(width_px[i], 1.0)
        good = 0
        tot = 0
        best_a, best_b, best_len, best_step = -1, -1, -1.0, 0.0
        run_a, last_good = -1, -1
        step_sum = 0.0
        step_n = 0
        run_start_arc = 0.0
        arc = 0.0
        last_arc = 0.0
        for j in range(a, b):
            if j > a:
                arc += math.hypot(pts[j, 0] - pts[j - 1, 0], pts[j, 1] - pts[j - 1, 1])
            j0 = max(a, j - 2)
            j1 = min(b - 1, j + 2)
            tx = pts[j1, 0] - pts[j0, 0]
            ty = pts[j1, 1] - pts[j0, 1]
            tl = math.hypot(tx, ty)
            if tl <= 0.0:
                continue
            nx = -ty / tl
            ny = tx / tl
            own = sign * _bilinear(contrast, pts[j, 0], pts[j, 1])
            s_a = sign * _bilinear(contrast, pts[j, 0] + d * nx, pts[j, 1] + d * ny)
            s_b = sign * _bilinear(contrast, pts[j, 0] - d * nx, pts[j, 1] - d * ny)
            tot += 1
            if not (own - s_a > t_side and own - s_b > t_side and s_a > -other_max and s_b > -other_max):
                continue
            good += 1
            if run_a < 0 or arc - last_arc > max_gap:
                run_a = j
                run_start_arc = arc
                step_sum = 0.0
                step_n = 0
            last_good = j
            last_arc = arc
            step_sum += min(own - s_a, own - s_b)
            step_n += 1
            if arc - run_start_arc > best_len:
                best_len, best_a, best_b = arc - run_start_arc, run_a, last_good + 1
                best_step = step_sum / step_n
        out[i, 0] = good / tot if tot else 0.0
        out[i, 1] = best_a
        out[i, 2] = best_b
        out[i, 3] = best_step
    return out
