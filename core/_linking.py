"""Joining traced ridge fragments into whole hairs.

The tracer can leave gaps (a crossing too wide to look through, a flake lying on the
shaft) and can turn from one shaft onto another where they meet at a shallow angle.
So traced lines are cut where they turn sharply, then piece ends that face each other
across a short gap with the same direction are joined.  All distances are in
detection-grid px.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

# A gap longer than about a shaft width is joined only when this much of the straight path
# across it is at least half as dark as the two ends: at a crossing the other hair covers
# the gap, between one hair's tip and the next hair's start there is skin.
GAP_DARK_FRACTION = 0.8
# Cost of a join: the gap (in maximum gaps) plus the turn, where a turn at the limit costs
# this many maximum gaps.  The turn used to weigh 0.06 of a gap, so at a shallow crossing
# the nearest end won even when it bent away, and the trace jumped onto the other hair
# (1.5 chosen on development phantoms: F1 0.804 -> 0.817; 0.5 and 3 gained less).
TURN_WEIGHT = 1.5


@nb.njit(cache=True, error_model="numpy")
def fragment_ends(pts, starts, scale, width_per_sigma, skip_widths, fit_widths):
    """Per fragment: mean width estimate (px), end points and outward unit tangents.

    Returns width (n,), pos (2n, 2) and tan (2n, 2); end 2i is the start of fragment i,
    end 2i+1 its last point.  Tangents are fitted over ``fit_widths`` shaft widths,
    starting ``skip_widths`` widths in from the end (on a long enough fragment): where a
    trace stops at a crossing, its last width bends towards the other hair.
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
        k = min(b - a - 1, max(3, int(fit_widths * width[i])))
        skip = min(int(skip_widths * width[i]), (b - a - 1 - k) // 2)
        for e in range(2):
            if e == 0:
                p, q, tip = a + skip, a + skip + k, a
            else:
                p, q, tip = b - 1 - skip, b - 1 - skip - k, b - 1
            vx = pts[p, 0] - pts[q, 0]
            vy = pts[p, 1] - pts[q, 1]
            nrm = math.sqrt(vx * vx + vy * vy)
            pos[2 * i + e, 0] = pts[tip, 0]
            pos[2 * i + e, 1] = pts[tip, 1]
            if nrm > 0:
                tan[2 * i + e, 0] = vx / nrm
                tan[2 * i + e, 1] = vy / nrm
            else:
                tan[2 * i + e, 0] = 1.0
                tan[2 * i + e, 1] = 0.0
    return width, pos, tan


@nb.njit(cache=True, error_model="numpy")
def end_contrast(pts, starts, width, contrast, sign):
    """Per end (2i start, 2i+1 last point of fragment i): median of ``sign * contrast`` over
    the end's first ~two shaft widths of points (or the whole fragment when shorter)."""
    n = starts.shape[0] - 1
    h, w = contrast.shape
    out = np.zeros(2 * n)
    kmax = 3
    for i in range(n):
        kmax = max(kmax, int(2 * width[i]))
    buf = np.empty(kmax)
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        k = min(b - a, max(3, int(2 * width[i])))
        for e in range(2):
            for j in range(k):
                p = a + j if e == 0 else b - 1 - j
                x = min(max(int(pts[p, 0] + 0.5), 0), w - 1)
                y = min(max(int(pts[p, 1] + 0.5), 0), h - 1)
                v = sign * contrast[y, x]
                m = j  # insertion sort: k is a few dozen at most
                while m > 0 and buf[m - 1] > v:
                    buf[m] = buf[m - 1]
                    m -= 1
                buf[m] = v
            out[2 * i + e] = buf[k // 2] if k % 2 == 1 else 0.5 * (buf[k // 2 - 1] + buf[k // 2])
    return out


def link_fragments(pos: np.ndarray, tan: np.ndarray, widths: np.ndarray, max_gap_px: float, contrast: np.ndarray,
                   sign: float, end_ref: np.ndarray, max_turn_deg: float = 20.0, turn_weight: float = TURN_WEIGHT):
    """Join fragments end to end across crossings and short gaps.

    ``pos``/``tan``: end points and outward tangents from ``fragment_ends``; ``contrast``
    the relative-contrast image (detection grid), ``sign`` -1 for dark hairs, +1 for bright
    ones, ``end_ref`` the ends' own contrast from ``end_contrast``.  Joins are taken
    cheapest first: gap / ``max_gap_px`` + ``turn_weight`` * turn (1 at ``max_turn_deg``).
    Returns chains as arrays: fragment indices ``idx``, whether each is walked backwards
    ``rev``, and chain starts ``cst`` (chain c is ``idx[cst[c]:cst[c+1]]``).
    """
    n = pos.shape[0] // 2
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.bool_), np.zeros(1, np.int64)
    owner = np.repeat(np.arange(n), 2)
    cands = _end_pairs(pos, tan, owner, np.asarray(widths, np.float64), float(max_gap_px),
                       math.cos(math.radians(max_turn_deg)), np.ascontiguousarray(contrast, np.float32), float(sign),
                       np.asarray(end_ref, np.float64), GAP_DARK_FRACTION, float(turn_weight))
    cands.sort()
    arr = np.array([(a, b) for _, a, b in cands], np.int64).reshape(-1, 2)
    return _chains(arr, n)


@nb.njit(cache=True, error_model="numpy")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@nb.njit(cache=True, error_model="numpy")
def _chains(pairs, n):
    """Greedy pairing of ends (``pairs`` best first, no loops), then the chains walked
    from one free end to the other."""
    partner = np.full(2 * n, -1, np.int64)
    parent = np.arange(n)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        if partner[a] >= 0 or partner[b] >= 0:
            continue
        ra, rb = _find(parent, a // 2), _find(parent, b // 2)
        if ra == rb:
            continue  # would close a loop
        partner[a] = b
        partner[b] = a
        parent[ra] = rb
    seen = np.zeros(n, np.bool_)
    idx = np.empty(n, np.int64)
    rev = np.empty(n, np.bool_)
    cst = [0]
    m = 0
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
        line, enter_start = cur, leave_start
        for _ in range(n + 1):
            if seen[line]:
                break
            seen[line] = True
            idx[m] = line
            rev[m] = not enter_start
            m += 1
            p = partner[2 * line + (1 if enter_start else 0)]
            if p < 0:
                break
            line, enter_start = p // 2, p % 2 == 0
        cst.append(m)
    return idx[:m], rev[:m], np.array(cst, np.int64)


@nb.njit(cache=True, error_model="numpy")
def _end_pairs(pos, tan, owner, width, max_gap, cos_turn, contrast, sign, end_ref, dark_fraction, turn_weight):
    """Candidate joins (cost, end a, end b): ends facing each other across a short gap.

    Ends closer than about a shaft width may even overlap a little (two traces of one
    shaft meeting at a crossing); further apart, the gap itself must run along both ends
    and be shaft-dark (``_gap_dark``).
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
                level = 0.5 * min(end_ref[a], end_ref[b])
                if not _gap_dark(pos[a], pos[b], contrast, sign, level, dark_fraction):
                    continue
            lo = min(a, b)
            hi = max(a, b)
            # 1 + dot: 0 straight on, 1 - cos_turn at the limit
            out.append((gap / max_gap + turn_weight * (1.0 + dot) / (1.0 - cos_turn), lo, hi))
    return out


@nb.njit(cache=True, error_model="numpy")
def _gap_dark(pa, pb, contrast, sign, level, dark_fraction):
    """True when at least ``dark_fraction`` of the straight path from ``pa`` to ``pb`` has
    ``sign * contrast >= level``."""
    h, w = contrast.shape
    m = max(2, int(math.hypot(pb[0] - pa[0], pb[1] - pa[1])) + 1)
    hits = 0
    for k in range(m):
        f = k / (m - 1)
        x = min(max(int(pa[0] + f * (pb[0] - pa[0]) + 0.5), 0), w - 1)
        y = min(max(int(pa[1] + f * (pb[1] - pa[1]) + 0.5), 0), h - 1)
        if sign * contrast[y, x] >= level:
            hits += 1
    return hits >= dark_fraction * m


@nb.njit(cache=True, error_model="numpy")
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


@nb.njit(cache=True, error_model="numpy")
def join_chains(pts, starts, frag_len, widths, end_pos, idx, rev, cst, min_len, half):
    """Concatenate each chain's fragments into one line, smoothed by a moving average of
    2 * half + 1 points (ends kept).  Chains shorter than ``min_len`` (fragments plus the
    gaps between them) are left out.  Returns points, line starts and the point-weighted
    mean width of every line."""
    nc = cst.shape[0] - 1
    total = 0
    for k in range(idx.shape[0]):
        total += starts[idx[k] + 1] - starts[idx[k]]
    raw = np.empty((total, 2))
    out = np.empty((total, 2))
    lstarts = [0]
    wl = []
    m = 0
    for c in range(nc):
        a, b = cst[c], cst[c + 1]
        length = 0.0
        for k in range(a, b):
            length += frag_len[idx[k]]
            if k > a:
                p, rp = idx[k - 1], rev[k - 1]
                q, rq = idx[k], rev[k]
                e1 = 2 * p + (0 if rp else 1)
                e0 = 2 * q + (1 if rq else 0)
                length += math.hypot(end_pos[e1, 0] - end_pos[e0, 0], end_pos[e1, 1] - end_pos[e0, 1])
        if length < min_len:
            continue
        n0 = m
        wsum = 0.0
        for k in range(a, b):
            f = idx[k]
            s0, s1 = starts[f], starts[f + 1]
            wsum += (s1 - s0) * widths[f]
            if rev[k]:
                for j in range(s1 - 1, s0 - 1, -1):
                    raw[m, 0] = pts[j, 0]
                    raw[m, 1] = pts[j, 1]
                    m += 1
            else:
                for j in range(s0, s1):
                    raw[m, 0] = pts[j, 0]
                    raw[m, 1] = pts[j, 1]
                    m += 1
        n = m - n0
        if n < 2:
            m = n0
            continue
        kk = 2 * half + 1
        for j in range(n0, m):
            out[j, 0] = raw[j, 0]
            out[j, 1] = raw[j, 1]
        if n >= 2 * half + 2:
            for j in range(n0 + half, m - half):
                sx = 0.0
                sy = 0.0
                for t in range(j - half, j + half + 1):
                    sx += raw[t, 0]
                    sy += raw[t, 1]
                out[j, 0] = sx / kk
                out[j, 1] = sy / kk
        lstarts.append(m)
        wl.append(wsum / n)
    return out[:m].copy(), np.array(lstarts, np.int64), np.array(wl, np.float64)
