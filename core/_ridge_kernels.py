"""Numba kernels for multi-scale Hessian ridge detection, non-maximum suppression and tracing.

All coordinates are detection-grid pixels (x right, y down). Ridge responses are the
scale-normalised (sigma**2) second derivative across the line on a relative-contrast
image, so a threshold is a fraction of the shaft's contrast whatever its width.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

# 8-neighbour offsets in angular order, starting east, counter-clockwise in image coords
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1], np.int64)
_DY = np.array([0, 1, 1, 1, 0, -1, -1, -1], np.int64)


@nb.njit(cache=True, error_model="numpy")
def relative_to_background(det, bg, valid):
    """det / bg - 1 where ``valid``, else 0 (float32, one pass; bg floored at 1e-3)."""
    h, w = det.shape
    out = np.empty((h, w), np.float32)
    floor = np.float32(1e-3)
    one = np.float32(1.0)
    for y in range(h):
        for x in range(w):
            out[y, x] = det[y, x] / max(bg[y, x], floor) - one if valid[y, x] else np.float32(0.0)
    return out


@nb.njit(cache=True, error_model="numpy", fastmath=True, inline="always")
def _hessian(g, y, x, sign):
    """Hessian (a = d2/dx2, b = d2/dxdy, d = d2/dy2) of ``g`` at (y, x) times ``sign``, and
    its eigenvalues l1 >= l2."""
    c = g[y, x]
    a = sign * (g[y, x + 1] - 2.0 * c + g[y, x - 1])
    d = sign * (g[y + 1, x] - 2.0 * c + g[y - 1, x])
    b = sign * 0.25 * (g[y + 1, x + 1] - g[y + 1, x - 1] - g[y - 1, x + 1] + g[y - 1, x - 1])
    half_tr = 0.5 * (a + d)
    disc = math.sqrt(0.25 * (a - d) * (a - d) + b * b)
    return a, b, d, half_tr + disc, half_tr - disc


@nb.njit(cache=True, error_model="numpy", inline="always")
def ridge_normal(a, b, d, l1):
    """Eigenvector (vx, vy) of the Hessian (a, b; b, d) for its eigenvalue ``l1`` (across
    the ridge), not normalised, and its length."""
    if a >= d:
        vx, vy = l1 - d, b
    else:
        vx, vy = b, l1 - a
    return vx, vy, math.sqrt(vx * vx + vy * vy)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def ridge_response(g, sigma, dark):
    """Response, across-line unit normal (nx, ny) of a Gaussian-smoothed level image ``g``.

    ``dark`` selects valleys (hair darker than skin); otherwise crests. Blob-like points
    (both curvatures large, e.g. follicle openings) are damped by subtracting the
    second eigenvalue.
    """
    h, w = g.shape
    r = np.zeros((h, w), np.float32)
    nx = np.zeros((h, w), np.float32)
    ny = np.zeros((h, w), np.float32)
    s2 = sigma * sigma
    sign = 1.0 if dark else -1.0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            a, b, d, l1, l2 = _hessian(g, y, x, sign)
            if l1 <= 0.0:
                continue
            resp = l1 - max(l2, 0.0)
            vx, vy, nrm = ridge_normal(a, b, d, l1)
            if nrm < 1e-12:
                vx, vy, nrm = 1.0, 0.0, 1.0
            r[y, x] = s2 * resp
            nx[y, x] = vx / nrm
            ny[y, x] = vy / nrm
    return r, nx, ny


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def merge_level(r_up, nxl, nyl, step, sigma_eff, r, nx, ny, scale):
    """Keep, per fine pixel, the strongest response over scales.

    ``r_up`` is the coarse level's response already interpolated to the fine grid
    (smoothly: a bilinear one would put every maximum on a coarse row and break lines
    into stairs); the direction is taken from the nearest coarse pixel.
    """
    h, w = r.shape
    hl, wl = nxl.shape
    inv = 1.0 / step
    # cv2.pyrDown keeps every other sample: coarse pixel i sits on fine pixel i * step
    xmap = np.empty(w, np.int64)
    for x in range(w):
        xmap[x] = min(int(x * inv + 0.5), wl - 1)
    s = np.float32(sigma_eff)
    cx = np.empty(w, np.float32)
    cy = np.empty(w, np.float32)
    for y in range(h):
        yi = min(int(y * inv + 0.5), hl - 1)
        for x in range(w):
            cx[x] = nxl[yi, xmap[x]]
            cy[x] = nyl[yi, xmap[x]]
        # blends by a 0/1 weight (all values are finite): about 70 % of pixels change, so a
        # branch mispredicts too often, and numba 0.61 (Raspberry Pi OS Bookworm) left the
        # select version of this loop unvectorised (1.2 ms a preview level, now 0.26)
        for x in range(w):
            m = np.float32(r_up[y, x] > r[y, x])
            k = np.float32(1.0) - m
            r[y, x] = m * r_up[y, x] + k * r[y, x]
            nx[y, x] = m * cx[x] + k * nx[y, x]
            ny[y, x] = m * cy[x] + k * ny[y, x]
            scale[y, x] = m * s + k * scale[y, x]


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def non_max_suppress(r, nx, ny, t_low, valid):
    """Ridge pixels: response >= t_low and a maximum across the line. Returns flags, sub-px offset."""
    h, w = r.shape
    flag = np.zeros((h, w), np.uint8)
    off = np.zeros((h, w), np.float32)
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            c = r[y, x]
            if c < t_low or not valid[y, x]:
                continue
            px = x + nx[y, x]
            py = y + ny[y, x]
            mx = x - nx[y, x]
            my = y - ny[y, x]
            rp = _bilinear(r, px, py)
            rm = _bilinear(r, mx, my)
            if c >= rp and c > rm:
                flag[y, x] = 1
                den = rp - 2.0 * c + rm
                if den < 0.0:
                    off[y, x] = min(0.5, max(-0.5, 0.5 * (rm - rp) / den))
    return flag, off


@nb.njit(cache=True, error_model="numpy", inline="always")
def _bilinear(img, x, y):
    """``img`` at (x, y), bilinear, with (x, y) clamped into the image."""
    h, w = img.shape
    return _bilinear_inside(img, min(max(x, 0.0), w - 1.001), min(max(y, 0.0), h - 1.001))


@nb.njit(cache=True, error_model="numpy", inline="always")
def _bilinear_inside(img, x, y):
    """``img`` at (x, y), bilinear; (x, y) must lie in [0, w - 1.001] x [0, h - 1.001]."""
    x0 = int(x)
    y0 = int(y)
    tx = x - x0
    ty = y - y0
    return ((1 - ty) * ((1 - tx) * img[y0, x0] + tx * img[y0, x0 + 1])
            + ty * ((1 - tx) * img[y0 + 1, x0] + tx * img[y0 + 1, x0 + 1]))


@nb.njit(cache=True, error_model="numpy")
def _trace_one(x, y, dx, dy, r, nx, ny, flag, scale, label, lab, buf_xy, max_gap, max_cross):
    """Follow the ridge from (x, y) heading (dx, dy); returns the number of pixels written."""
    h, w = r.shape
    n = 0
    while True:
        best = -1.0
        bx = -1
        by = -1
        hit_other = False
        for reach in range(1, max_gap + 2):
            for k in range(8):
                cx = _DX[k]
                cy = _DY[k]
                cosang = (cx * dx + cy * dy) / math.sqrt(cx * cx + cy * cy)
                if cosang < 0.7:
                    continue
                qx = x + cx * reach
                qy = y + cy * reach
                if qx < 1 or qy < 1 or qx >= w - 1 or qy >= h - 1:
                    continue
                if flag[qy, qx] == 0:
                    continue
                if label[qy, qx] != 0 and label[qy, qx] != lab:
                    hit_other = True
                    continue
                if label[qy, qx] == lab:
                    continue
                # prefer straight continuation, then strength
                dnx = nx[qy, qx]
                dny = ny[qy, qx]
                tcos = abs(-dny * dx + dnx * dy)
                score = cosang + tcos + 0.1 * r[qy, qx] / (r[y, x] + 1e-6)
                if score > best:
                    best = score
                    bx = qx
                    by = qy
            if bx >= 0:
                break
        if bx < 0 and hit_other:
            # another line crosses here: look straight through it for our continuation
            bx, by = _across(x, y, dx, dy, nx, ny, flag, label, lab, max_cross)
        if bx < 0 or n >= buf_xy.shape[0]:
            return n
        # new heading: the line tangent at the new pixel, oriented like the old heading
        tx = -ny[by, bx]
        ty = nx[by, bx]
        if tx * dx + ty * dy < 0:
            tx, ty = -tx, -ty
        stepx = bx - x
        stepy = by - y
        sl = math.sqrt(stepx * stepx + stepy * stepy)
        dx = 0.5 * tx + 0.5 * stepx / sl
        dy = 0.5 * ty + 0.5 * stepy / sl
        dl = math.sqrt(dx * dx + dy * dy)
        dx /= dl
        dy /= dl
        x = bx
        y = by
        _claim(x, y, nx, ny, scale, label, lab)
        buf_xy[n, 0] = x
        buf_xy[n, 1] = y
        n += 1


@nb.njit(cache=True, error_model="numpy")
def _across(x, y, dx, dy, nx, ny, flag, label, lab, max_cross):
    """First free ridge pixel straight ahead (within one px sideways) whose line runs the
    same way, up to ``max_cross`` px through another line; (-1, -1) if none."""
    h, w = flag.shape
    for k in range(2, max_cross + 1):
        for side in (0, -1, 1):
            qx = int(round(x + k * dx - side * dy))
            qy = int(round(y + k * dy + side * dx))
            if qx < 1 or qy < 1 or qx >= w - 1 or qy >= h - 1:
                return -1, -1
            if flag[qy, qx] == 0 or label[qy, qx] != 0:
                continue
            if abs(-ny[qy, qx] * dx + nx[qy, qx] * dy) > 0.9:
                return qx, qy
    return -1, -1


@nb.njit(cache=True, error_model="numpy", inline="always")
def _claim(x, y, nx, ny, scale, label, lab):
    label[y, x] = lab
    # ridge pixels across the line within about half a shaft width belong to this line:
    # on wide shafts the coarse-scale response is flat on top and NMS leaves a band
    reach = min(4, max(1, int(0.8 * scale[y, x] + 0.5)))
    for s in range(-reach, reach + 1):
        if s == 0:
            continue
        qx = int(round(x + s * nx[y, x]))
        qy = int(round(y + s * ny[y, x]))
        if 0 <= qy < label.shape[0] and 0 <= qx < label.shape[1] and label[qy, qx] == 0:
            label[qy, qx] = lab


@nb.njit(cache=True, error_model="numpy")
def _strongest_first(vals, t_min):
    """Indices of ``vals`` >= t_min, strongest first: a counting sort on 2**16 levels (ties
    within 1/65536 of the range keep scan order), ~15x faster than a comparison sort here."""
    n = vals.shape[0]
    top = t_min
    for i in range(n):
        top = max(top, vals[i])
    nb_ = 65536
    scale = (nb_ - 1) / max(top - t_min, 1e-12)
    key = np.full(n, -1, np.int64)
    count = np.zeros(nb_ + 1, np.int64)
    for i in range(n):
        if vals[i] >= t_min:
            k = nb_ - 1 - min(nb_ - 1, int((vals[i] - t_min) * scale))
            key[i] = k
            count[k + 1] += 1
    for k in range(nb_):
        count[k + 1] += count[k]
    out = np.empty(count[nb_], np.int64)
    for i in range(n):
        if key[i] >= 0:
            out[count[key[i]]] = i
            count[key[i]] += 1
    return out


@nb.njit(cache=True, error_model="numpy")
def trace_ridges(r, nx, ny, flag, off, scale, t_high, max_gap, max_cross):
    """Link ridge pixels into lines, strongest seeds first.

    Returns points (M, 2) x, y sub-pixel, per-point smoothing scale (M,), per-point
    response (M,), and line start indices (L + 1,).
    """
    h, w = r.shape
    ys, xs = np.nonzero(flag)
    vals = np.empty(ys.shape[0], np.float32)
    for i in range(ys.shape[0]):
        vals[i] = r[ys[i], xs[i]]
    order = _strongest_first(vals, t_high)
    label = np.zeros((h, w), np.int32)
    cap = ys.shape[0] + 16
    fwd = np.empty((cap, 2), np.int64)
    bwd = np.empty((cap, 2), np.int64)
    pts = np.empty((cap, 2), np.float32)
    sc = np.empty(cap, np.float32)
    rs = np.empty(cap, np.float32)
    starts = [0]
    m = 0
    lab = 0
    for oi in range(order.shape[0]):
        i = order[oi]
        if vals[i] < t_high:
            break
        y = ys[i]
        x = xs[i]
        if label[y, x] != 0:
            continue
        lab += 1
        _claim(x, y, nx, ny, scale, label, lab)
        tx = -ny[y, x]
        ty = nx[y, x]
        nf = _trace_one(x, y, tx, ty, r, nx, ny, flag, scale, label, lab, fwd, max_gap, max_cross)
        nb_ = _trace_one(x, y, -tx, -ty, r, nx, ny, flag, scale, label, lab, bwd, max_gap, max_cross)
        total = nf + nb_ + 1
        if m + total > cap:
            break
        k = m
        for j in range(nb_ - 1, -1, -1):
            pts[k, 0] = bwd[j, 0]
            pts[k, 1] = bwd[j, 1]
            k += 1
        pts[k, 0] = x
        pts[k, 1] = y
        k += 1
        for j in range(nf):
            pts[k, 0] = fwd[j, 0]
            pts[k, 1] = fwd[j, 1]
            k += 1
        for j in range(m, k):
            px = int(pts[j, 0])
            py = int(pts[j, 1])
            o = off[py, px]
            sc[j] = scale[py, px]
            rs[j] = r[py, px]
            pts[j, 0] = px + o * nx[py, px]
            pts[j, 1] = py + o * ny[py, px]
        m = k
        starts.append(m)
    return pts[:m].copy(), sc[:m].copy(), rs[:m].copy(), np.array(starts, np.int64)
