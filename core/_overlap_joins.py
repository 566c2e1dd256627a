"""Pieces of one shaft that overlap end to end at a crossing (a staggered overlap).

At a shallow crossing the tracer can run a little way along the other hair before it
stops, or two traces of one shaft can both run through the crossing: the pieces then
overlap by up to a few hundred µm instead of facing each other across a gap, and
``_piece_joins._facing_pairs`` (which refuses overlapping ends) counts the shaft twice.
This kernel finds such pairs for ``_piece_joins.join_at_crossings``: piece A's last stretch
runs along piece B's first (A's tail, and only it, lies within half a width of B), both
stick out of the overlap by ``MIN_OUT_UM``, A before the overlap, the overlap and B after
it run within the turn limits, widths agree, and another kept hair crosses the overlap
(as for gap joins: siblings leaving one opening and traces that switch hairs at a shallow
crossing otherwise pass the same geometric tests).  Full-resolution px; lines resampled
at 1 px (a point count is an arc length).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

MIN_OUT_UM = 100.0  # each piece reaches this far beyond the overlap
# one shaft reads the same width either side of a crossing; the pairs that pass the other
# tests but lie on two hairs (siblings, neighbours) mostly differ by more (development
# frames: median width ratio 1.05 for pieces of one hair, 1.25 for two; 1.2 chosen there,
# where 1.6, the gap joins' limit, lost 15 true detections for 54 false ones removed)
WIDTH_RATIO = 1.2
MIN_OVERLAP_UM = 20.0
BEFORE_UM = 200.0  # A's direction before the overlap is taken over this length
TURN_DEG = 20.0  # A before the overlap against the overlap and against B beyond it
BEYOND_TURN_DEG = 25.0  # B beyond the overlap against the overlap


@nb.njit(cache=True, error_model="numpy", inline="always")
def unit(x0, y0, x1, y1):
    """Unit vector from (x0, y0) to (x1, y1) (zero length: (0, 0))."""
    dx = x1 - x0
    dy = y1 - y0
    n = max(math.hypot(dx, dy), 1e-9)
    return dx / n, dy / n


@nb.njit(cache=True, error_model="numpy", inline="always")
def in_box(boxes, k, x, y, lim):
    """(x, y) lies within ``lim`` of line k's bounding box (``boxes`` row: x0, y0, x1, y1)."""
    return boxes[k, 0] - lim <= x <= boxes[k, 2] + lim and boxes[k, 1] - lim <= y <= boxes[k, 3] + lim


@nb.njit(cache=True, error_model="numpy")
def near_line(pts, a, b, x, y, lim):
    """Index of the point of line a..b nearest (x, y) when within ``lim``, else -1."""
    best = lim * lim
    near = -1
    for j in range(a, b):
        dx = pts[j, 0] - x
        if abs(dx) > lim:
            continue
        dy = pts[j, 1] - y
        if abs(dy) > lim:
            continue
        d2 = dx * dx + dy * dy
        if d2 <= best:
            best = d2
            near = j
    return near


@nb.njit(cache=True, error_model="numpy")
def overlap_pairs(pts, starts, widths, boxes, rooted, width_ratio, min_out, min_overlap, before, cos_turn,
                  cos_beyond):
    """Candidate overlap joins: rows (end of A, end of B, overlap length: the points to cut
    from A's end, overlap midpoint x, y, overlap direction x, y), ends numbered 2 i + e
    (e 0 first point, 1 last; a rooted line's root is its first point).  ``boxes`` (n, 4)
    every line's x0, y0, x1, y1; ``widths`` in px.  The crossing test is left to the
    caller."""
    n = starts.shape[0] - 1
    out = []
    for i in range(n):
        a0, a1 = starts[i], starts[i + 1]
        na = a1 - a0
        if na < 3:
            continue
        for j in range(n):
            if j == i:
                continue
            b0, b1 = starts[j], starts[j + 1]
            if b1 - b0 < 3:
                continue
            if max(widths[i], widths[j]) > width_ratio * min(widths[i], widths[j]):
                continue
            tol = 0.5 * max(widths[i], widths[j]) + 2.0
            if (boxes[i, 0] > boxes[j, 2] + tol or boxes[j, 0] > boxes[i, 2] + tol or boxes[i, 1] > boxes[j, 3] + tol
                    or boxes[j, 1] > boxes[i, 3] + tol):
                continue
            for ea in range(2):
                end_a = a1 - 1 if ea == 1 else a0
                if not in_box(boxes, j, pts[end_a, 0], pts[end_a, 1], tol):
                    continue
                mm = near_line(pts, b0, b1, pts[end_a, 0], pts[end_a, 1], tol)  # where B passes A's end
                if mm < 0:
                    continue
                # the run of A's points within tol of B, from A's end inwards; B's nearest point
                # moves a few points a step, so it is looked for near the last one
                run = 1
                mk = mm
                win = int(2.0 * tol) + 3
                for r in range(1, na):
                    p = a1 - 1 - r if ea == 1 else a0 + r
                    near = near_line(pts, max(b0, mk - win), min(b1, mk + win + 1), pts[p, 0], pts[p, 1], tol)
                    if near < 0:
                        break
                    mk = near
                    run += 1
                if run < max(3, min_overlap) or na - run < min_out:
                    continue
                k = a1 - run if ea == 1 else a0 + run - 1  # first point of the overlap, walking out
                tx, ty = unit(pts[k, 0], pts[k, 1], pts[end_a, 0], pts[end_a, 1])
                # B's end at the start of the overlap
                d0 = math.hypot(pts[b0, 0] - pts[k, 0], pts[b0, 1] - pts[k, 1])
                d1 = math.hypot(pts[b1 - 1, 0] - pts[k, 0], pts[b1 - 1, 1] - pts[k, 1])
                eb = 0 if d0 <= d1 else 1
                if rooted[i] and ea == 1 and rooted[j] and eb == 1:
                    continue  # both rooted at their far ends: two hairs
                far = b1 - 1 if eb == 0 else b0
                beyond = (b1 - 1 - mm) if eb == 0 else (mm - b0)
                if beyond < min_out:
                    continue
                bx, by = unit(pts[mm, 0], pts[mm, 1], pts[far, 0], pts[far, 1])
                if bx * tx + by * ty < cos_beyond:
                    continue
                # B runs along the overlap (A's tail lies along B, not across it)
                ox, oy = unit(pts[mk, 0], pts[mk, 1], pts[mm, 0], pts[mm, 1])
                if abs(ox * tx + oy * ty) < cos_turn:
                    continue
                kb = int(min(before, na - run - 1))
                kb = max(kb, 1)
                pb = k - kb if ea == 1 else k + kb
                ux, uy = unit(pts[pb, 0], pts[pb, 1], pts[k, 0], pts[k, 1])
                if ux * tx + uy * ty < cos_turn or ux * bx + uy * by < cos_turn:
                    continue
                # only the tail: no other point of A comes near B (a crossing, not a shared
                # stretch); every step-th point, a second contact being at least a width long
                clean = True
                step = max(1, int(0.5 * tol))
                for r in range(run, na, step):
                    p = a1 - 1 - r if ea == 1 else a0 + r
                    x, y = pts[p, 0], pts[p, 1]
                    if in_box(boxes, j, x, y, tol) and near_line(pts, b0, b1, x, y, tol) >= 0:
                        clean = False
                        break
                if not clean:
                    continue
                out.append((2.0 * i + ea, 2.0 * j + eb, float(run), 0.5 * (pts[k, 0] + pts[end_a, 0]),
                            0.5 * (pts[k, 1] + pts[end_a, 1]), tx, ty))
    res = np.zeros((len(out), 7))
    for r in range(len(out)):
        for c in range(7):
            res[r, c] = out[r][c]
    return res
