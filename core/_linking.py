"""Joining traced ridge fragments into whole hairs, and dropping duplicate traces.

The tracer can leave gaps (a crossing too wide to look through, a flake lying on the
shaft) and can turn from one shaft onto another where they meet at a shallow angle.
So traced lines are cut where they turn sharply, then piece ends that face each other
across a short gap with the same direction are joined; second traces of one shaft are
dropped.  All distances are in detection-grid px.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True)
def fragment_ends(pts, starts, scale, width_per_sigma):
    """Per fragment: mean width estimate (px), end points and outward unit tangents.

    Returns width (n,), pos (2n, 2) and tan (2n, 2); end 2i is the start of fragment i,
    end 2i+1 its last point.  Tangents are fitted over about two shaft widths.
    """
    n = starts.shape[0] - 1
    width = np.empty(n)
    pos = np.empty((2 * n, 2))
    tan = np.empty((2 * n, 2))
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        acc = 0.0
        for j in range(a, b):
            acc += scale[j]
        width[i] = acc / (b - a) * width_per_sigma
        k = min(b - a - 1, max(3, int(2 * width[i])))
        for e in range(2):
            if e == 0:
                p, q = a, a + k
            else:
                p, q = b - 1, b - 1 - k
            vx = pts[p, 0] - pts[q, 0]
            vy = pts[p, 1] - pts[q, 1]
            nrm = math.sqrt(vx * vx + vy * vy)
            pos[2 * i + e, 0] = pts[p, 0]
            pos[2 * i + e, 1] = pts[p, 1]
            if nrm > 0:
                tan[2 * i + e, 0] = vx / nrm
                tan[2 * i + e, 1] = vy / nrm
            else:
                tan[2 * i + e, 0] = 1.0
                tan[2 * i + e, 1] = 0.0
    return width, pos, tan


def link_fragments(pos: np.ndarray, tan: np.ndarray, widths: np.ndarray, max_gap_px: float,
                   max_turn_deg: float = 20.0) -> list:
    """Join fragments end to end across crossings and short gaps.

    ``pos``/``tan``: end points and outward tangents from ``fragment_ends``.
    Returns a list of index chains with orientation: [(fragment_index, reversed), ...].
    """
    n = pos.shape[0] // 2
    if n == 0:
        return []
    owner = np.repeat(np.arange(n), 2)
    cands = _end_pairs(pos, tan, owner, np.asarray(widths, np.float64), float(max_gap_px),
                       math.cos(math.radians(max_turn_deg)))
    cands.sort()
    partner = [-1] * (2 * n)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for _, a, b in cands:
        if partner[a] >= 0 or partner[b] >= 0:
            continue
        ra, rb = find(a // 2), find(b // 2)
        if ra == rb:
            continue  # would close a loop
        partner[a], partner[b] = b, a
        parent[ra] = rb

    chains, seen = [], [False] * n
    for i in range(n):
        if seen[i]:
            continue
        # walk backwards through the start ends to the free end of the chain holding i
        cur, leave_start = i, True
        for _ in range(n + 1):
            p = partner[2 * cur + (0 if leave_start else 1)]
            if p < 0:
                break
            cur, leave_start = p // 2, p % 2 == 1  # entered through p; leave through the other end
        chain = []
        line, enter_start = cur, leave_start
        for _ in range(n + 1):
            if seen[line]:
                break
            seen[line] = True
            chain.append((line, not enter_start))
            p = partner[2 * line + (1 if enter_start else 0)]
            if p < 0:
                break
            line, enter_start = p // 2, p % 2 == 0
        chains.append(chain)
    return chains


def polyline_lengths(lines: list) -> np.ndarray:
    """Arc length of every polyline, in one vectorised pass."""
    if not lines:
        return np.zeros(0)
    counts = np.array([len(p) for p in lines])
    pts = np.concatenate(lines)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    seg = np.concatenate([seg, [0.0]])
    ends = np.cumsum(counts) - 1
    seg[ends] = 0.0  # the step from one line's last point to the next line's first
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.add.reduceat(seg, starts)


@nb.njit(cache=True)
def _end_pairs(pos, tan, owner, width, max_gap, cos_turn):
    """Candidate joins (cost, end a, end b): ends facing each other across a short gap.

    Ends closer than about a shaft width may even overlap a little (two traces of one
    shaft meeting at a crossing); further apart, the gap itself must run along both ends.
    """
    order = np.argsort(pos[:, 0])
    out = []
    ne = pos.shape[0]
    for ii in range(ne):
        a = order[ii]
        for jj in range(ii + 1, ne):
            b = order[jj]
            dx = pos[b, 0] - pos[a, 0]
            if dx > max_gap:
                break
            dy = pos[b, 1] - pos[a, 1]
            gap = math.sqrt(dx * dx + dy * dy)
            if gap > max_gap or owner[a] == owner[b]:
                continue
            dot = tan[a, 0] * tan[b, 0] + tan[a, 1] * tan[b, 1]
            if dot > -cos_turn:
                continue
            w = max(width[owner[a]], width[owner[b]])
            lateral = abs(tan[a, 0] * dy - tan[a, 1] * dx)
            if gap <= max(3.0, 0.8 * w):
                if lateral > max(2.0, 0.4 * w):
                    continue
            else:
                vx = dx / gap
                vy = dy / gap
                if vx * tan[a, 0] + vy * tan[a, 1] < cos_turn or -(vx * tan[b, 0] + vy * tan[b, 1]) < cos_turn:
                    continue
                if lateral > max(2.0, 0.15 * gap, 0.3 * w):
                    continue
            lo = min(a, b)
            hi = max(a, b)
            out.append((gap / max_gap + 1.0 + dot, lo, hi))
    return out


def drop_duplicates(lines: list, widths_px: list, frac: float = 0.75) -> list:
    """Indices of lines to keep: a line lying mostly within about half a shaft width of a
    longer one, and parallel to it, is a second trace of the same shaft (e.g. split by a
    specular streak)."""
    n = len(lines)
    if n == 0:
        return []
    lengths = polyline_lengths(lines)
    order = np.argsort(-lengths, kind="stable")
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    pts = np.concatenate(lines).astype(np.float64)
    h = int(pts[:, 1].max()) + 3
    w = int(pts[:, 0].max()) + 3
    keep = _dedupe(pts, starts, np.asarray(widths_px, np.float64), order, frac, h, w)
    return sorted(int(i) for i in np.nonzero(keep)[0])


@nb.njit(cache=True)
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
        for j in range(a, b):
            ang = _dir_deg(pts, j, a, b) + 1
            # walk the segment to the next point: lines may jump across crossings
            nxt = min(j + 1, b - 1)
            steps = max(1, int(math.hypot(pts[nxt, 0] - pts[j, 0], pts[nxt, 1] - pts[j, 1])))
            for k in range(steps):
                f = k / steps
                cx = int(pts[j, 0] + f * (pts[nxt, 0] - pts[j, 0]) + 0.5)
                cy = int(pts[j, 1] + f * (pts[nxt, 1] - pts[j, 1]) + 0.5)
                for yy in range(max(0, cy - r), min(h, cy + r + 1)):
                    for xx in range(max(0, cx - r), min(w, cx + r + 1)):
                        c0 = cover[0, yy, xx]
                        if c0 == 0:
                            cover[0, yy, xx] = ang
                        elif cover[1, yy, xx] == 0:
                            d = abs(int(c0) - int(ang))
                            if min(d, 180 - d) >= 25:
                                cover[1, yy, xx] = ang
    return keep


@nb.njit(cache=True, inline="always")
def _dir_deg(pts, j, a, b):
    j0 = max(a, j - 3)
    j1 = min(b - 1, j + 3)
    ang = math.degrees(math.atan2(pts[j1, 1] - pts[j0, 1], pts[j1, 0] - pts[j0, 0]))
    if ang < 0:
        ang += 180.0
    return min(179, int(ang))


@nb.njit(cache=True)
def split_at_kinks(pts, starts, widths, max_turn_deg):
    """New fragment boundaries: every fragment is cut where its direction turns by more
    than ``max_turn_deg`` within about a shaft width either side.  Shafts bend gently; a
    sharp turn is the tracer leaving one hair for another at a shallow crossing or fork."""
    cos_max = math.cos(math.radians(max_turn_deg))
    out = [starts[0]]
    for i in range(starts.shape[0] - 1):
        a, b = starts[i], starts[i + 1]
        span = max(4, int(widths[i] + 0.5))
        best_j = -1
        best_c = 2.0
        for j in range(a + span, b - span):
            bx = pts[j, 0] - pts[j - span, 0]
            by = pts[j, 1] - pts[j - span, 1]
            fx = pts[j + span, 0] - pts[j, 0]
            fy = pts[j + span, 1] - pts[j, 1]
            nb_ = math.sqrt(bx * bx + by * by) * math.sqrt(fx * fx + fy * fy)
            c = (bx * fx + by * fy) / nb_ if nb_ > 0 else 1.0
            if c < cos_max:
                if c < best_c:
                    best_c = c
                    best_j = j
            elif best_j >= 0:
                out.append(best_j)
                best_j = -1
                best_c = 2.0
        if best_j >= 0:
            out.append(best_j)
        out.append(b)
    return np.array(out, np.int64)
