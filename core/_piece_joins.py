"""Joining hairs that assembly left in two pieces either side of a crossing.

Where another hair crosses a long shaft, the crossing's dark patch can look like a
follicle opening to the pieces traced up to it: each piece gets a "root" there, is trimmed
at it, and the one shaft is counted twice (development long-hair frames: 189 of 209 false
detections lie on a hair already found).  ``_crossing_joins`` joins such pieces before
roots are known, but only long ones (shorter pieces there are mostly siblings near an
opening).  This pass runs on the kept hairs, after trimming, and joins two of them when:

- both are at least ``MIN_PIECE_UM`` long and their widths agree within ``WIDTH_RATIO``;
- their facing ends are at most ``GAP_UM`` apart, the end directions (over ``END_FIT_UM``)
  face each other within ``TURN_DEG`` and each end lies within ``OFFSET_WIDTHS`` widths
  of the other's line;
- another kept hair crosses the gap at more than ``CROSS_DEG``: a break at a crossing,
  not a clipped tip in front of the next opening in line, nor two siblings;
- not both carry a root at their far ends (a hair has one root).

Pieces that overlap end to end at a crossing instead (``_overlap_joins``) are joined in
the same chains, the first piece cut where the overlap starts.  A root at a joined end is
dropped: it was the crossing.  Distances are in full-resolution px unless a name says
otherwise.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _overlap_joins
from ._overlap_joins import in_box, near_line, unit
from ._crossing_joins import _concatenate
from ._linking import _chains
from ._shaft_kernels import orient_and_trim

MIN_PIECE_UM = 150.0
GAP_UM = 300.0
END_FIT_UM = 400.0
TURN_DEG = 20.0
OFFSET_WIDTHS = 0.75
WIDTH_RATIO = 1.6
CROSS_DEG = 20.0
CROSS_MARGIN_UM = 20.0


def join_at_crossings(q, q_starts, q_seg, keep, has_root, root_xy, thick_um, visible_um, um_per_px):
    """Kept lines ``q[q_starts[c]:q_starts[c + 1]]`` (root end first where ``has_root[c]``;
    ``q_seg`` their segment lengths) for every c in ``keep``, with pieces of one shaft joined.

    Returns packed points, starts, segment lengths (``seg[j]`` from point j to j + 1 of
    the same line), roots (n, 2), has_root, thickness (µm) and visible length (µm) of the
    new lines, one row per line (so every line is kept)."""
    keep = np.asarray(keep, np.int64)
    n = keep.shape[0]
    # the kept lines packed on their own, segments taken over (no root: nothing trimmed)
    pts, starts, seg = orient_and_trim(q, q_starts, q_seg, keep, np.zeros((n, 2)), np.full(n, -1, np.int64))
    thick = np.ascontiguousarray(thick_um[keep], np.float64)
    vis_um = np.ascontiguousarray(visible_um[keep], np.float64)
    rooted = np.ascontiguousarray(has_root[keep], np.bool_)
    roots = np.ascontiguousarray(root_xy[keep], np.float64)
    unchanged = pts, starts, seg, roots, rooted, thick, vis_um
    if n < 3:  # a join needs a third hair crossing the gap
        return unchanged
    width_px = thick / um_per_px
    boxes = _boxes(pts, starts)
    cos_cross = math.cos(math.radians(CROSS_DEG))
    pairs, cost = _facing_pairs(pts, starts, width_px, boxes, vis_um, rooted, MIN_PIECE_UM, GAP_UM / um_per_px,
                                END_FIT_UM / um_per_px, math.cos(math.radians(TURN_DEG)), OFFSET_WIDTHS, WIDTH_RATIO,
                                cos_cross, CROSS_MARGIN_UM / um_per_px)
    ov = _overlap_joins.overlap_pairs(pts, starts, width_px, boxes, rooted, _overlap_joins.WIDTH_RATIO,
                                      _overlap_joins.MIN_OUT_UM / um_per_px, _overlap_joins.MIN_OVERLAP_UM / um_per_px,
                                      _overlap_joins.BEFORE_UM / um_per_px,
                                      math.cos(math.radians(_overlap_joins.TURN_DEG)),
                                      math.cos(math.radians(_overlap_joins.BEYOND_TURN_DEG)))
    crossed = [_crossed(pts, starts, width_px, boxes, int(r[0]) // 2, int(r[1]) // 2, r[3], r[4], r[5], r[6],
                        0.5 * r[2] + CROSS_MARGIN_UM / um_per_px, cos_cross) for r in ov]
    ov = ov[np.array(crossed, bool)] if len(ov) else ov
    if cost.shape[0] == 0 and ov.shape[0] == 0:
        return unchanged
    # overlaps first (the longest first): an overlap is surer than a gap
    pairs = np.vstack([ov[:, :2].astype(np.int64), pairs])
    cost = np.concatenate([-ov[:, 2], cost])
    idx, rev, cst = _chains(pairs[np.argsort(cost, kind="stable")], n)
    out_roots, out_rooted, out_vis = _orient_chains(idx, rev, cst, rooted, roots, vis_um)
    trim = np.zeros(2 * n, np.int64)
    if ov.shape[0]:
        cut = {(int(r[0]), int(r[1])): int(r[2]) for r in ov}
        for c in range(len(cst) - 1):
            for k in range(cst[c], cst[c + 1] - 1):
                tail = 2 * idx[k] + (0 if rev[k] else 1)
                head = 2 * idx[k + 1] + (1 if rev[k + 1] else 0)
                for end_a, end_b in ((tail, head), (head, tail)):
                    if (end_a, end_b) in cut:
                        trim[end_a] = cut[end_a, end_b]
                        out_vis[c] -= cut[end_a, end_b] * um_per_px
                        break
    out, out_starts, out_thick = _concatenate(pts, starts, thick, trim, idx, rev, cst)
    return out, out_starts, _segments(out), out_roots, out_rooted, out_thick, out_vis


@nb.njit(cache=True, error_model="numpy")
def _boxes(pts, starts):
    """(n, 4): every line's x0, y0, x1, y1."""
    n = starts.shape[0] - 1
    boxes = np.zeros((n, 4))
    for i in range(n):
        boxes[i, 0] = boxes[i, 1] = np.inf
        boxes[i, 2] = boxes[i, 3] = -np.inf
        for j in range(starts[i], starts[i + 1]):
            boxes[i, 0] = min(boxes[i, 0], pts[j, 0])
            boxes[i, 1] = min(boxes[i, 1], pts[j, 1])
            boxes[i, 2] = max(boxes[i, 2], pts[j, 0])
            boxes[i, 3] = max(boxes[i, 3], pts[j, 1])
    return boxes


@nb.njit(cache=True, error_model="numpy")
def _segments(pts):
    seg = np.zeros(max(1, pts.shape[0]))
    for j in range(pts.shape[0] - 1):
        dx = pts[j + 1, 0] - pts[j, 0]
        dy = pts[j + 1, 1] - pts[j, 1]
        seg[j] = math.sqrt(dx * dx + dy * dy)
    return seg


@nb.njit(cache=True, error_model="numpy")
def _end_direction(pts, a, b, end, fit_px):
    """Unit vector pointing out of line a..b at ``end`` (0 first point, 1 last), from the
    point ``fit_px`` (at most half the line) in from the end.  Lines are resampled at
    1 px, so a point count is an arc length."""
    k = int(min(fit_px, 0.5 * (b - a - 1)))
    k = max(k, 1)
    if end == 0:
        e, f = a, a + k
    else:
        e, f = b - 1, b - 1 - k
    return unit(pts[f, 0], pts[f, 1], pts[e, 0], pts[e, 1])


@nb.njit(cache=True, error_model="numpy")
def _crossed(pts, starts, widths, boxes, skip_a, skip_b, mx, my, ux, uy, reach, cos_cross):
    """Does a line other than ``skip_a``/``skip_b`` pass within ``reach`` plus half its
    width of (mx, my), at its nearest point more than the angle of ``cos_cross`` off
    direction (ux, uy)?  ``boxes`` (n, 4): every line's x0, y0, x1, y1."""
    for k in range(starts.shape[0] - 1):
        if k == skip_a or k == skip_b:
            continue
        lim = reach + 0.5 * widths[k]
        if not in_box(boxes, k, mx, my, lim):
            continue
        a, b = starts[k], starts[k + 1]
        near = near_line(pts, a, b, mx, my, lim)
        if near < 0:
            continue
        j0, j1 = max(a, near - 1), min(b - 1, near + 1)
        tx = pts[j1, 0] - pts[j0, 0]
        ty = pts[j1, 1] - pts[j0, 1]
        tn = math.hypot(tx, ty)
        if tn > 0 and abs(tx * ux + ty * uy) / tn < cos_cross:
            return True
    return False


@nb.njit(cache=True, error_model="numpy")
def _facing_pairs(pts, starts, widths, boxes, vis_um, rooted, min_um, max_gap, fit_px, cos_turn, offset_widths,
                  width_ratio, cos_cross, margin):
    """Candidate joins as (end a, end b) with end e of line i numbered 2 i + e, and their
    cost (gap length, px).  A rooted line's root is at its first point (end 0); ``boxes``
    from ``_boxes``."""
    n = starts.shape[0] - 1
    ends = np.zeros((2 * n, 4))  # x, y, outward direction
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        for e in range(2):
            p = a if e == 0 else b - 1
            ends[2 * i + e, 0] = pts[p, 0]
            ends[2 * i + e, 1] = pts[p, 1]
            if b - a >= 2:
                ends[2 * i + e, 2], ends[2 * i + e, 3] = _end_direction(pts, a, b, e, fit_px)
    out_pairs = []
    out_cost = []
    for i in range(n):
        if vis_um[i] < min_um or starts[i + 1] - starts[i] < 2:
            continue
        for j in range(i + 1, n):
            if vis_um[j] < min_um or starts[j + 1] - starts[j] < 2:
                continue
            if max(widths[i], widths[j]) > width_ratio * min(widths[i], widths[j]):
                continue
            w = 0.5 * (widths[i] + widths[j])
            for ea in range(2):
                for eb in range(2):
                    # the far ends: a root there means the piece starts at an opening
                    if rooted[i] and ea == 1 and rooted[j] and eb == 1:
                        continue
                    pa, pb = 2 * i + ea, 2 * j + eb
                    vx = ends[pb, 0] - ends[pa, 0]
                    vy = ends[pb, 1] - ends[pa, 1]
                    gap = math.hypot(vx, vy)
                    if gap > max_gap:
                        continue
                    ax, ay = ends[pa, 2], ends[pa, 3]
                    bx, by = ends[pb, 2], ends[pb, 3]
                    if -(ax * bx + ay * by) < cos_turn:
                        continue
                    if max(abs(vx * ay - vy * ax), abs(vx * by - vy * bx)) > offset_widths * w + 2.0:
                        continue
                    if vx * ax + vy * ay < -w:
                        continue  # the pieces overlap
                    ux, uy = ax - bx, ay - by
                    un = max(math.hypot(ux, uy), 1e-9)
                    if not _crossed(pts, starts, widths, boxes, i, j, 0.5 * (ends[pa, 0] + ends[pb, 0]),
                                    0.5 * (ends[pa, 1] + ends[pb, 1]), ux / un, uy / un, 0.5 * gap + margin,
                                    cos_cross):
                        continue
                    out_pairs.append((pa, pb))
                    out_cost.append(gap)
    pairs = np.zeros((len(out_pairs), 2), np.int64)
    cost = np.zeros(len(out_cost))
    for k in range(len(out_pairs)):
        pairs[k, 0] = out_pairs[k][0]
        pairs[k, 1] = out_pairs[k][1]
        cost[k] = out_cost[k]
    return pairs, cost


@nb.njit(cache=True, error_model="numpy")
def _orient_chains(idx, rev, cst, rooted, roots, vis_um):
    """Per chain: its root (the root of a line whose root end is a free end of the chain),
    whether it has one, and the sum of its lines' visible lengths (µm).  A chain whose
    root is at its tail is reversed in place in ``idx``/``rev``, so that it starts there."""
    nc = cst.shape[0] - 1
    out = np.full((nc, 2), np.nan)
    has = np.zeros(nc, np.bool_)
    vis = np.zeros(nc)
    for c in range(nc):
        a, b = cst[c], cst[c + 1]
        for k in range(a, b):
            vis[c] += vis_um[idx[k]]
        head, tail = idx[a], idx[b - 1]
        if rooted[head] and not rev[a]:
            has[c] = True
            out[c] = roots[head]
        elif rooted[tail] and (rev[b - 1] or b - a == 1):
            has[c] = True
            out[c] = roots[tail]
            if b - a > 1:
                idx[a:b] = idx[a:b][::-1].copy()
                rev[a:b] = ~rev[a:b][::-1]
    return out, has, vis


def exercise() -> int:
    """Run every kernel once (a shaft in two rooted pieces either side of a crossing hair,
    and the same shaft in two pieces overlapping there), so that warm-up compiles them;
    returns the lines left in both cases (4)."""
    x = np.arange(0.0, 200.0)
    crossing = np.column_stack([np.full(100, 100.0), np.arange(0.0, 100.0)])
    left = np.column_stack([x[x < 95][::-1], np.full(95, 50.0)])  # root (at the crossing) first
    left_overlap = np.column_stack([x[x < 135][::-1], np.full(135, 50.0)])
    right = np.column_stack([x[x > 105], np.full(94, 50.0)])
    roots = np.array([[95.0, 50.0], [105.0, 50.0], [np.nan, np.nan]])
    left_in = 0
    for first in (left, left_overlap):
        lines = [first, right, crossing]
        starts = np.zeros(4, np.int64)
        starts[1:] = np.cumsum([len(p) for p in lines])
        pts = np.concatenate(lines)
        seg = np.zeros(len(pts))
        seg[:-1] = np.hypot(*np.diff(pts, axis=0).T)  # across line ends too: never read there
        out = join_at_crossings(pts, starts, seg, np.arange(3), np.array([True, True, False]), roots,
                                np.full(3, 20.0), np.full(3, 400.0), 2.0)
        left_in += out[1].shape[0] - 1
    return left_in
