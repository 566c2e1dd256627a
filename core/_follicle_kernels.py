"""Numba kernels of ``core.follicles``: dark rings around points (follicle openings), the
root end of every line in one pass, and single-linkage grouping of roots."""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._linking import _find
from ._ridge_kernels import _bilinear


@nb.njit(cache=True, error_model="numpy")
def _ring(n_ring):
    """cos and sin of the ``n_ring`` sample angles of a ring."""
    cs = np.empty((n_ring, 2))
    for k in range(n_ring):
        a = 2.0 * math.pi * k / n_ring
        cs[k, 0] = math.cos(a)
        cs[k, 1] = math.sin(a)
    return cs


@nb.njit(cache=True, error_model="numpy")
def _ring_score(contrast, px, py, radius, cs, dark_below, shaft_above):
    """Fraction of the ring around (px, py) darker than ``dark_below``, leaving out the
    samples brighter than ``shaft_above`` (on a bright shaft that leaves the opening);
    0 when those are half the ring or more."""
    n_ring = cs.shape[0]
    hits = 0
    shaft = 0
    for k in range(n_ring):
        v = _bilinear(contrast, px + radius * cs[k, 0], py + radius * cs[k, 1])
        if v < dark_below:
            hits += 1
        elif v > shaft_above:
            shaft += 1
    if 2 * shaft >= n_ring:
        return 0.0
    return hits / (n_ring - shaft)


@nb.njit(cache=True, error_model="numpy")
def _inside(x, y, edge, valid):
    """(x, y) rounded lies in ``valid`` and at least ``edge`` px inside its border."""
    h, w = valid.shape
    tx = int(np.rint(x))
    ty = int(np.rint(y))
    return edge <= tx < w - edge and edge <= ty < h - edge and valid[ty, tx]


@nb.njit(cache=True, error_model="numpy")
def find_roots(pts, starts, sel, thick_um, contrast, factor, um_per_px, valid, min_radius_um, search_um,
               dark_below, shaft_above, min_score, n_ring, max_points):
    """Root of line ``sel[c]`` (full-res px, packed as ``pts[starts[i]:starts[i + 1]]``,
    at least 2 points) for every c: (x, y) and the end (0 first point, 1 last, -1 none).

    At each end inside ``valid`` (detection grid) and clear of its border, up to about
    ``max_points`` points within ``search_um`` (and 45 % of the line) of the tip are
    scored from the tip inwards; the first whose ring of radius max(``min_radius_um``,
    0.7 * thickness) is at least ``min_score`` dark (``_ring_score``) is that end's
    opening, and the end with the darker opening wins (the first end on a tie).
    """
    nc = sel.shape[0]
    xy = np.full((nc, 2), np.nan)
    end_of = np.full(nc, -1, np.int64)
    det_um = um_per_px * factor
    reach = search_um / det_um
    cap = 2
    for c in range(nc):
        cap = max(cap, starts[sel[c] + 1] - starts[sel[c]])
    det = np.empty((cap, 2))
    arc = np.empty(cap)
    cs = _ring(n_ring)
    for c in range(nc):
        a, b = starts[sel[c]], starts[sel[c] + 1]
        n = b - a
        for j in range(n):
            det[j, 0] = (pts[a + j, 0] + 0.5) / factor - 0.5
            det[j, 1] = (pts[a + j, 1] + 0.5) / factor - 0.5
        radius = max(min_radius_um, 0.7 * thick_um[c]) / det_um
        edge = 2 + int(radius)
        # ends at the edge of the analysed area are not roots: the shaft leaves the field there
        ok0 = _inside(det[0, 0], det[0, 1], edge, valid)
        ok1 = _inside(det[n - 1, 0], det[n - 1, 1], edge, valid)
        if not (ok0 or ok1):
            continue
        arc[0] = 0.0
        for j in range(1, n):
            arc[j] = arc[j - 1] + math.hypot(det[j, 0] - det[j - 1, 0], det[j, 1] - det[j - 1, 1])
        total = arc[n - 1]
        if total <= 0:
            continue
        lim = min(reach, 0.45 * total)
        best = 0.0
        for end in range(2):
            if not (ok0 if end == 0 else ok1):
                continue
            # the points within reach of the tip: a run from the tip (arc is monotone)
            if end == 0:
                lo = 0
                hi = 0
                while hi < n and arc[hi] <= lim:
                    hi += 1
            else:
                hi = n
                lo = n
                while lo > 0 and total - arc[lo - 1] <= lim:
                    lo -= 1
            size = hi - lo
            if size == 0:
                continue
            step = max(1, size // max_points)
            cnt = (size + step - 1) // step  # every step-th from lo, then from the tip inwards
            for r in range(cnt):
                j = lo + r * step if end == 0 else lo + (cnt - 1 - r) * step
                s = _ring_score(contrast, det[j, 0], det[j, 1], radius, cs, dark_below, shaft_above)
                if s >= min_score:
                    if s > best:
                        best = s
                        xy[c, 0] = (det[j, 0] + 0.5) * factor - 0.5
                        xy[c, 1] = (det[j, 1] + 0.5) * factor - 0.5
                        end_of[c] = end
                    break
    return xy, end_of


@nb.njit(cache=True, error_model="numpy")
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra != rb:
        parent[ra] = rb


@nb.njit(cache=True, error_model="numpy")
def _runs_out_of(lines, t0, t1, head, m, hx, hy, near, reach_px, min_cos):
    """An end of the line ``lines[t0:t1]`` lies within ``near`` of the polyline
    ``head[:m]`` (a rooted hair's first ``reach_px``, root first) and leaves it in a
    direction within acos(``min_cos``) of the head's (``hx``, ``hy``: a unit vector), the
    line's taken over its first 8 points from that end."""
    if t1 - t0 < 2:
        return False
    for e in range(2):
        tip = t0 if e == 0 else t1 - 1
        inner = t0 + min(t1 - t0 - 1, 8) if e == 0 else t1 - 1 - min(t1 - t0 - 1, 8)
        bx = lines[inner, 0] - lines[tip, 0]
        by = lines[inner, 1] - lines[tip, 1]
        bl = math.hypot(bx, by)
        if bl > 0 and abs(bx * hx + by * hy) >= min_cos * bl and _on_head(
                head, m, lines[tip, 0], lines[tip, 1], near, reach_px):
            return True
    return False


@nb.njit(cache=True, error_model="numpy")
def _on_head(head, m, x, y, near, reach_px):
    """(x, y) lies within ``near`` of a point of ``head[:m]`` (a rooted hair's first
    ``reach_px``, root first)."""
    if math.hypot(x - head[0, 0], y - head[0, 1]) > reach_px + near:
        return False  # too far from the root to lie on its first reach_px
    near2 = near * near
    for j in range(m):
        dx = head[j, 0] - x
        dy = head[j, 1] - y
        if dx * dx + dy * dy <= near2:
            return True
    return False


@nb.njit(cache=True, error_model="numpy")
def unit_labels(xy, has, lim, lines, starts, keep, thick_px, min_near_px, reach_px, min_cos):
    """Unit index per hair c (-1 where it has no unit), single linkage of three rules:
    roots ``xy`` (where ``has[c]``) closer than ``lim``; or the root of one hair lying
    within max(``min_near_px``, mean thickness) of the first ``reach_px`` of another rooted
    hair's centre line (``lines[starts[keep[c]]:starts[keep[c] + 1]]``, root end first):
    hairs of one opening run together before they part, so a sibling's traced root often
    sits on the other shaft; or a hair without a root that runs out of a rooted hair's
    first ``reach_px`` (``_runs_out_of``; off when ``min_cos`` > 1): its trace stopped
    where it merged with its sibling.  Units are numbered in order of their first hair."""
    n = xy.shape[0]
    parent = np.arange(n)
    member = has.copy()
    for a in range(n):
        if not has[a]:
            continue
        for b in range(a + 1, n):
            if has[b] and math.hypot(xy[b, 0] - xy[a, 0], xy[b, 1] - xy[a, 1]) <= lim:
                _union(parent, a, b)
    cap = 1
    for a in range(n):
        cap = max(cap, starts[keep[a] + 1] - starts[keep[a]])
    head = np.empty((cap, 2))
    for a in range(n):
        if not has[a]:
            continue
        # a's centre line from its root up to reach_px along it
        s0, s1 = starts[keep[a]], starts[keep[a] + 1]
        m = 0
        arc = 0.0
        for j in range(s0, s1):
            if j > s0:
                arc += math.hypot(lines[j, 0] - lines[j - 1, 0], lines[j, 1] - lines[j - 1, 1])
                if arc > reach_px:
                    break
            head[m, 0] = lines[j, 0]
            head[m, 1] = lines[j, 1]
            m += 1
        if m == 0:
            continue
        for b in range(n):
            if b != a and has[b] and _on_head(head, m, xy[b, 0], xy[b, 1],
                                              max(min_near_px, 0.5 * (thick_px[a] + thick_px[b])), reach_px):
                _union(parent, a, b)
        # the head's direction over its first 8 points, for the rootless hairs running out of it
        k = min(m - 1, 8)
        hx = head[k, 0] - head[0, 0]
        hy = head[k, 1] - head[0, 1]
        hl = math.hypot(hx, hy)
        if min_cos > 1.0 or hl <= 0:
            continue
        for b in range(n):
            if not has[b] and _runs_out_of(lines, starts[keep[b]], starts[keep[b] + 1], head, m, hx / hl, hy / hl,
                                           max(min_near_px, 0.5 * (thick_px[a] + thick_px[b])), reach_px, min_cos):
                _union(parent, a, b)
                member[b] = True
    label = np.full(n, -1, np.int64)
    of_root = np.full(n, -1, np.int64)
    nxt = 0
    for i in range(n):
        if not member[i]:
            continue
        r = _find(parent, i)
        if of_root[r] < 0:
            of_root[r] = nxt
            nxt += 1
        label[i] = of_root[r]
    return label
