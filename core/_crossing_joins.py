"""Joining the pieces of a long shaft that tracing broke where other hairs cross it.

Where long hairs cross at a shallow angle, or run over each other for a while, one of
them is traced up to the crossing and again beyond it, and the gap is too long for
``_linking.link_fragments``.  This second pass joins two traced lines across up to
``GAP_UM`` when all of these hold:

- both are at least ``MIN_PIECE_UM`` long.  Shorter pieces are mostly stubs and siblings
  near a follicle opening; joining them ran lines through openings and between the
  hairs of one unit (development phantoms, docs/status.md);
- their end stretches (``FIT_UM`` long, skipping about a shaft width at the tip, whose
  direction a crossing bends) face each other within ``TURN_DEG``, have similar widths
  and lie on one quadratic within a fraction of the width;
- the gap is as dark (bright) as the shaft along most of the path;
- most of the gap's middle is covered by another traced line: the break is at a crossing.

Distances are in detection-grid px unless a name says otherwise.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._duplicate_traces import packed_lengths
from ._linking import GAP_DARK_FRACTION, _chains

GAP_UM = 500.0
FIT_UM = 400.0
MIN_PIECE_UM = 600.0
TURN_DEG = 20.0
WIDTH_RATIO = 1.6
RMS_FRAC = 0.12  # of the mean width: residual of the quadratic through both end stretches
MAX_FRAC = 0.4
DARK_FRACTION = GAP_DARK_FRACTION  # of the gap at least half as dark as the shaft: the linking's rule
COVER_FRACTION = 0.5  # of the gap's middle 60 % lying on another line
BODY_TRIM = 1.5  # widths at each end of a line not counted as its body (tips bend at crossings)


def join_across_crossings(pts, starts, widths, contrast, dark, um_per_det_px):
    """Lines ``pts[starts[i]:starts[i + 1]]`` (detection px) with pieces of one shaft joined.

    ``widths`` (detection px) per line; ``contrast`` the relative-contrast image and ``dark``
    the hair polarity.  Returns new points, starts and point-weighted widths; lines that
    were not joined come out unchanged (in a new order)."""
    n = starts.shape[0] - 1
    if n < 2:
        return pts, starts, widths
    lengths = packed_lengths(pts, starts)
    widths = np.asarray(widths, np.float64)
    ends, trim = _end_stretches(pts, starts, widths, lengths, MIN_PIECE_UM / um_per_det_px, FIT_UM / um_per_det_px)
    sign = -1.0 if dark else 1.0
    contrast = np.ascontiguousarray(contrast, np.float32)
    cost, pairs = _candidate_joins(pts, widths, ends, contrast, sign, GAP_UM / um_per_det_px,
                                   math.cos(math.radians(TURN_DEG)), WIDTH_RATIO, RMS_FRAC, MAX_FRAC, DARK_FRACTION)
    if cost.shape[0] == 0:
        return pts, starts, widths
    # is the gap on another line?  Lines' bodies are painted only around the possible gaps
    tips = pts[ends[pairs, 0]]  # (k, 2 ends, 2)
    margin = 2.0 * widths.max() + 2.0
    boxes = np.hstack([tips.min(axis=1) - margin, tips.max(axis=1) + margin])
    through = _body_count(pts, starts, widths, lengths, BODY_TRIM, contrast.shape[0], contrast.shape[1], boxes)
    covered = _gaps_covered(pts, widths, ends, pairs, contrast, sign, RMS_FRAC, MAX_FRAC, DARK_FRACTION,
                            COVER_FRACTION, through)
    cost, pairs = cost[covered], pairs[covered]
    if cost.shape[0] == 0:
        return pts, starts, widths
    idx, rev, cst = _chains(pairs[np.argsort(cost, kind="stable")], n)
    return _concatenate(pts, starts, widths, trim, idx, rev, cst)


def exercise() -> int:
    """Run every kernel once on a tiny scene (a shaft traced in two pieces either side of
    a crossing hair), so that warm-up compiles them; returns the lines left (2)."""
    con = np.zeros((60, 160), np.float32)
    yy, xx = np.mgrid[0:60, 0:160]
    con[np.abs(yy - 30) <= 2] = -0.4
    con[np.abs((yy - 30) - 0.27 * (xx - 80)) <= 2] = -0.4
    x = np.arange(5.0, 155.0)
    keep = np.abs(x - 80) >= 8
    lines = [np.column_stack([x[keep & (x < 80)], np.full(int((keep & (x < 80)).sum()), 30.0)]),
             np.column_stack([x[keep & (x > 80)], np.full(int((keep & (x > 80)).sum()), 30.0)]),
             np.column_stack([x, 30.0 + 0.27 * (x - 80)])]
    starts = np.zeros(4, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    out = join_across_crossings(np.concatenate(lines), starts, np.full(3, 4.0), con, True, 10.0)
    return out[1].shape[0] - 1


@nb.njit(cache=True, error_model="numpy")
def _end_stretches(pts, starts, widths, lengths, min_len, fit_len):
    """Per end (2i start of line i, 2i + 1 its end): first and last point index of its fit
    stretch, from the tip inwards (-1 when the line is too short to join), and the number
    of points trimmed at the tip."""
    n = starts.shape[0] - 1
    ends = np.full((2 * n, 2), -1, np.int64)
    trim = np.zeros(2 * n, np.int64)
    for i in range(n):
        if lengths[i] < min_len:
            continue
        a, b = starts[i], starts[i + 1]
        skip = max(2.0, widths[i])
        for e in range(2):
            step = 1 if e == 0 else -1
            j = a if e == 0 else b - 1
            arc = 0.0
            k = 0
            first = -1
            last = -1
            while 0 <= k < b - a:
                jj = j + step * k
                if k > 0:
                    arc += math.hypot(pts[jj, 0] - pts[jj - step, 0], pts[jj, 1] - pts[jj - step, 1])
                if arc >= skip and first < 0:
                    first = k
                if arc >= skip + fit_len:
                    break
                last = k
                k += 1
            if first >= 0 and last - first + 1 >= 5:
                ends[2 * i + e, 0] = j + step * first
                ends[2 * i + e, 1] = j + step * last
                trim[2 * i + e] = first
    return ends, trim


@nb.njit(cache=True, error_model="numpy")
def _body_count(pts, starts, widths, lengths, body_trim, h, w, boxes):
    """Per detection pixel inside ``boxes`` (x0, y0, x1, y1): how many lines' bodies (all
    but ``body_trim`` widths at each end of lines ``lengths`` long) cover it, out to half
    their width."""
    # only the pixels under the boxes are needed: the images cover their union
    x0 = max(0, int(boxes[:, 0].min()))
    y0 = max(0, int(boxes[:, 1].min()))
    x1 = min(w, int(boxes[:, 2].max()) + 2)
    y1 = min(h, int(boxes[:, 3].max()) + 2)
    cnt = np.zeros((h, w), np.uint8)
    last = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), np.int32)
    for i in range(starts.shape[0] - 1):
        a, b = starts[i], starts[i + 1]
        total = lengths[i]
        cut = body_trim * widths[i] + 1.0
        r2 = 0.25 * widths[i] * widths[i] + 0.25
        ri = int(0.5 * widths[i] + 1.0)
        arc = 0.0
        for j in range(a, b):
            if j > a:
                arc += math.hypot(pts[j, 0] - pts[j - 1, 0], pts[j, 1] - pts[j - 1, 1])
            if arc < cut or total - arc < cut:
                continue
            x = pts[j, 0]
            y = pts[j, 1]
            inside = False
            for k in range(boxes.shape[0]):
                if boxes[k, 0] <= x <= boxes[k, 2] and boxes[k, 1] <= y <= boxes[k, 3]:
                    inside = True
                    break
            if not inside:
                continue
            for yy in range(max(y0, int(y) - ri), min(y1, int(y) + ri + 2)):
                for xx in range(max(x0, int(x) - ri), min(x1, int(x) + ri + 2)):
                    if (xx - x) ** 2 + (yy - y) ** 2 <= r2 and last[yy - y0, xx - x0] != i + 1:
                        last[yy - y0, xx - x0] = i + 1
                        if cnt[yy, xx] < 255:
                            cnt[yy, xx] += 1
    return cnt


@nb.njit(cache=True, error_model="numpy")
def _candidate_joins(pts, widths, ends, contrast, sign, max_gap, cos_turn, width_ratio, rms_frac, max_frac,
                     dark_fraction):
    """Costs and end pairs (a < b) of every possible join but for the cover test."""
    ne = ends.shape[0]
    tip = np.zeros((ne, 2))
    tan = np.zeros((ne, 2))
    for e in range(ne):
        if ends[e, 0] >= 0:
            p, q = ends[e, 0], ends[e, 1]
            tip[e, 0] = pts[p, 0]
            tip[e, 1] = pts[p, 1]
            vx = pts[p, 0] - pts[q, 0]
            vy = pts[p, 1] - pts[q, 1]
            nrm = max(math.hypot(vx, vy), 1e-9)
            tan[e, 0] = vx / nrm
            tan[e, 1] = vy / nrm
    costs = []
    pa_ = []
    pb_ = []
    no_cover = np.zeros((1, 1), np.uint8)
    for a in range(ne):
        if ends[a, 0] < 0:
            continue
        for b in range(a + 1, ne):
            if ends[b, 0] < 0 or a // 2 == b // 2:
                continue
            wa, wb = widths[a // 2], widths[b // 2]
            gap = math.hypot(tip[b, 0] - tip[a, 0], tip[b, 1] - tip[a, 1])
            if gap > max_gap + 2.0 * max(wa, wb):
                continue
            if tan[a, 0] * tan[b, 0] + tan[a, 1] * tan[b, 1] > -cos_turn:
                continue
            if max(wa, wb) > width_ratio * min(wa, wb):
                continue
            c = _fit_and_test(pts, ends[a], ends[b], wa, wb, contrast, sign, rms_frac, max_frac, dark_fraction,
                              0.0, no_cover, False)
            if c >= 0:
                costs.append(c + gap / max_gap)
                pa_.append(a)
                pb_.append(b)
    m = len(costs)
    cost = np.empty(m)
    pairs = np.empty((m, 2), np.int64)
    for k in range(m):
        cost[k] = costs[k]
        pairs[k, 0] = pa_[k]
        pairs[k, 1] = pb_[k]
    return cost, pairs


@nb.njit(cache=True, error_model="numpy")
def _gaps_covered(pts, widths, ends, pairs, contrast, sign, rms_frac, max_frac, dark_fraction, cover_fraction,
                  through):
    """Which candidate joins also pass the cover test on ``through`` (see ``_body_count``)."""
    out = np.zeros(pairs.shape[0], np.bool_)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        out[k] = _fit_and_test(pts, ends[a], ends[b], widths[a // 2], widths[b // 2], contrast, sign, rms_frac,
                               max_frac, dark_fraction, cover_fraction, through, True) >= 0
    return out


@nb.njit(cache=True, error_model="numpy")
def _stretch(pts, end, k):
    """k-th point of an end stretch, from the tip inwards."""
    step = 1 if end[1] >= end[0] else -1
    return pts[end[0] + step * k]


@nb.njit(cache=True, error_model="numpy")
def _fit_and_test(pts, ea, eb, wa, wb, contrast, sign, rms_frac, max_frac, dark_fraction, cover_fraction, through,
                  use_cover):
    """Residual cost (rms / mean width) of the quadratic through both end stretches, or -1
    when the two stretches are not one shaft across a dark gap (covered by another line on
    ``through`` when ``use_cover``)."""
    h, w = contrast.shape
    na = abs(ea[1] - ea[0]) + 1
    nb_ = abs(eb[1] - eb[0]) + 1
    oa = _stretch(pts, ea, na - 1)
    ob = _stretch(pts, eb, nb_ - 1)
    ux = ob[0] - oa[0]
    uy = ob[1] - oa[1]
    lu = math.hypot(ux, uy)
    if lu < 1e-6:
        return -1.0
    ux /= lu
    uy /= lu
    vx, vy = -uy, ux
    n = na + nb_
    xs = np.empty(n)
    ys = np.empty(n)
    for k in range(na):
        p = _stretch(pts, ea, k)
        xs[k] = (p[0] - oa[0]) * ux + (p[1] - oa[1]) * uy
        ys[k] = (p[0] - oa[0]) * vx + (p[1] - oa[1]) * vy
    for k in range(nb_):
        p = _stretch(pts, eb, k)
        xs[na + k] = (p[0] - oa[0]) * ux + (p[1] - oa[1]) * uy
        ys[na + k] = (p[0] - oa[0]) * vx + (p[1] - oa[1]) * vy
    wm = 0.5 * (wa + wb)
    xa_max = xs[:na].max()
    xb_min = xs[na:].min()
    if xa_max > xb_min + 0.5 * max(wa, wb):
        return -1.0  # side by side, not end to end
    c0, c1, c2 = _quadratic(xs, ys)
    ss = 0.0
    worst = 0.0
    for k in range(n):
        r = ys[k] - (c0 + c1 * xs[k] + c2 * xs[k] * xs[k])
        ss += r * r
        worst = max(worst, abs(r))
    rms = math.sqrt(ss / n)
    if rms > max(0.5, rms_frac * wm) or worst > max(1.5, max_frac * wm):
        return -1.0
    ref_vals = np.empty(n)
    for k in range(n):
        p = _stretch(pts, ea, k) if k < na else _stretch(pts, eb, k - na)
        ref_vals[k] = sign * contrast[min(max(int(p[1] + 0.5), 0), h - 1), min(max(int(p[0] + 0.5), 0), w - 1)]
    ref = np.median(ref_vals)
    if ref <= 0:
        return -1.0
    x0 = xs[0]
    x1 = xs[na]
    m = max(2, int(x1 - x0))
    dark_hits = 0
    inner = 0
    covered = 0
    for k in range(m):
        x = x0 + (x1 - x0) * k / (m - 1)
        y = c0 + c1 * x + c2 * x * x
        gx = min(max(int(oa[0] + x * ux + y * vx + 0.5), 0), w - 1)
        gy = min(max(int(oa[1] + x * uy + y * vy + 0.5), 0), h - 1)
        if sign * contrast[gy, gx] >= 0.5 * ref:
            dark_hits += 1
        if use_cover and (m < 5 or m // 5 <= k < m - m // 5):
            inner += 1
            if through[gy, gx] > 0:
                covered += 1
    if dark_hits < dark_fraction * m:
        return -1.0
    if use_cover and covered < cover_fraction * inner:
        return -1.0
    return rms / wm


@nb.njit(cache=True, error_model="numpy")
def _quadratic(xs, ys):
    """Least-squares y = c0 + c1 x + c2 x^2 (normal equations, x centred for conditioning)."""
    n = xs.shape[0]
    mx = xs.mean()
    s = np.zeros(5)
    t = np.zeros(3)
    for k in range(n):
        x = xs[k] - mx
        xp = 1.0
        for d in range(5):
            s[d] += xp
            if d < 3:
                t[d] += xp * ys[k]
            xp *= x
    # 3x3 normal equations by Cramer's rule (numba's linalg would need scipy)
    a00, a01, a02, a11, a12, a22 = s[0], s[1], s[2], s[2], s[3], s[4]
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    det = a00 * c00 + a01 * c01 + a02 * c02
    if abs(det) < 1e-12 * max(1.0, abs(a00 * a11 * a22)):
        return ys.mean(), 0.0, 0.0
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    d0 = (c00 * t[0] + c01 * t[1] + c02 * t[2]) / det
    d1 = (c01 * t[0] + c11 * t[1] + c12 * t[2]) / det
    d2 = (c02 * t[0] + c12 * t[1] + c22 * t[2]) / det
    # back from centred x: y = d0 + d1 (x - mx) + d2 (x - mx)^2
    return d0 - d1 * mx + d2 * mx * mx, d1 - 2.0 * d2 * mx, d2


@nb.njit(cache=True, error_model="numpy")
def _concatenate(pts, starts, widths, trim, idx, rev, cst):
    """Every chain's lines end to end, each joined end cut back by its trimmed tip;
    width per new line weighted by points."""
    nc = cst.shape[0] - 1
    out = np.empty((pts.shape[0], 2))
    new_starts = np.zeros(nc + 1, np.int64)
    new_w = np.zeros(nc)
    m = 0
    for c in range(nc):
        a, b = cst[c], cst[c + 1]
        wsum = 0.0
        cnt = 0
        for k in range(a, b):
            f = idx[k]
            s0, s1 = starts[f], starts[f + 1]
            head_end = 2 * f + (1 if rev[k] else 0)  # the end walked first
            tail_end = 2 * f + (0 if rev[k] else 1)
            h0 = trim[head_end] if k > a else 0
            t0 = trim[tail_end] if k < b - 1 else 0
            if s1 - s0 - t0 - h0 < 2:
                h0 = 0
                t0 = 0
            if rev[k]:
                for j in range(s1 - 1 - h0, s0 - 1 + t0, -1):
                    out[m] = pts[j]
                    m += 1
            else:
                for j in range(s0 + h0, s1 - t0):
                    out[m] = pts[j]
                    m += 1
            wsum += (s1 - s0) * widths[f]
            cnt += s1 - s0
        new_starts[c + 1] = m
        new_w[c] = wsum / max(cnt, 1)
    return out[:m].copy(), new_starts, new_w
