"""Numba kernels of ``core._validate`` and ``core.skin_mask``: one pass over a frame each,
giving exactly what the OpenCV / numpy calls they replace give."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, error_model="numpy")
def scaled_float32(a, scale):
    """float32(a) * scale for a 2-D uint8 array (what ``a.astype(np.float32) * scale`` gives,
    without the intermediate array)."""
    h, w = a.shape
    out = np.empty((h, w), np.float32)
    for y in range(h):
        src = a[y]
        dst = out[y]
        for x in range(w):
            dst[x] = np.float32(src[x]) * scale
    return out


@nb.njit(cache=True, error_model="numpy")
def repeat4(small):
    """Each pixel of a 2-D uint8 array as a 4x4 block: nearest-neighbour x4 upsampling."""
    sh, sw = small.shape
    out = np.empty((4 * sh, 4 * sw), np.uint8)
    for y in range(sh):
        src = small[y]
        row = out[4 * y]
        for x in range(sw):
            v = src[x]
            row[4 * x] = v
            row[4 * x + 1] = v
            row[4 * x + 2] = v
            row[4 * x + 3] = v
        out[4 * y + 1] = row
        out[4 * y + 2] = row
        out[4 * y + 3] = row
    return out


@nb.njit(cache=True, error_model="numpy")
def area4(gray):
    """Mean of every 4x4 block of a 2-D float32 array whose sides are multiples of 4: what
    ``cv2.resize(gray, (w // 4, h // 4), interpolation=cv2.INTER_AREA)`` computes there
    (float32, the 16 values summed in OpenCV's order), ~4x faster."""
    h, w = gray.shape
    out = np.empty((h // 4, w // 4), np.float32)
    scale = np.float32(1.0) / np.float32(16.0)
    for y in range(h // 4):
        r0 = gray[4 * y]
        r1 = gray[4 * y + 1]
        r2 = gray[4 * y + 2]
        r3 = gray[4 * y + 3]
        dst = out[y]
        for x in range(w // 4):
            c = 4 * x
            s = np.float32(0.0)
            s += r0[c] + r0[c + 1] + r0[c + 2] + r0[c + 3]
            s += r1[c] + r1[c + 1] + r1[c + 2] + r1[c + 3]
            s += r2[c] + r2[c + 1] + r2[c + 2] + r2[c + 3]
            s += r3[c] + r3[c + 1] + r3[c + 2] + r3[c + 3]
            dst[x] = s * scale
    return out


@nb.njit(cache=True, error_model="numpy")
def block4_range(gray, small, dark, bright):
    """Range (max - min) of every 4x4 block of ``gray`` whose mean (``small``, from
    ``area4``) lies in ``dark`` (lo, hi) or ``bright`` (lo, hi); inf for the others, most
    of a frame, which are skipped."""
    sh, sw = small.shape
    spread = np.full((sh, sw), np.inf, np.float32)
    for y in range(sh):
        row = small[y]
        for x in range(sw):
            m = row[x]
            if not (dark[0] < m <= dark[1] or bright[0] <= m < bright[1]):
                continue
            c = 4 * x
            lo = gray[4 * y, c]
            hi = lo
            for dy in range(4):
                r = gray[4 * y + dy]
                lo = min(lo, min(min(r[c], r[c + 1]), min(r[c + 2], r[c + 3])))
                hi = max(hi, max(max(r[c], r[c + 1]), max(r[c + 2], r[c + 3])))
            spread[y, x] = hi - lo
    return spread
