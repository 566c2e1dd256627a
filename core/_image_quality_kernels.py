"""Numba kernels of ``core.image_quality`` (one pass each over a frame or a pyramid level)."""
from __future__ import annotations

import numba
import numpy as np

@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def counts(gray, clip_level, dark_level):
    """Clipped/dark counts, level sum and noise sum over the whole frame (no mask).

    Returns (n_pixels, n_clipped, n_dark, level_sum, checker_abs_sum, n_blocks).  The
    checkerboard component |a - b - c + d| / 2 of each 2x2 block is the image content at
    the Nyquist frequency: optics blur removes it, so its mean measures sensor noise.
    Per-row int32/float32 accumulators let LLVM vectorise the inner loop.
    """
    h2 = gray.shape[0] // 2
    w2 = gray.shape[1] // 2
    n_clip = 0
    n_dark = 0
    level = 0.0
    checker = 0.0
    for y in range(h2):
        r0 = gray[2 * y]
        r1 = gray[2 * y + 1]
        rc = 0
        rd = 0
        rl = np.float32(0.0)
        rk = np.float32(0.0)
        for x in range(w2):
            a = r0[2 * x]
            b = r0[2 * x + 1]
            c = r1[2 * x]
            d = r1[2 * x + 1]
            rc += np.int32(a >= clip_level) + np.int32(b >= clip_level) + np.int32(c >= clip_level) + np.int32(d >= clip_level)
            rd += np.int32(a <= dark_level) + np.int32(b <= dark_level) + np.int32(c <= dark_level) + np.int32(d <= dark_level)
            rl += (a + b) + (c + d)
            rk += abs(a - b - c + d)
        n_clip += rc
        n_dark += rd
        level += rl
        checker += rk
    return 4 * h2 * w2, n_clip, n_dark, level, 0.5 * checker, h2 * w2


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def counts_masked(gray, mask, clip_level, dark_level):
    """``counts`` over the pixels where ``mask`` (uint8 0/1) is 1; the noise sum uses
    only 2x2 blocks entirely inside the mask.  float32 row accumulators (exact for
    counts below 2^24) keep both loops vectorised.

    In the same pass ``mask[::2, ::2]`` (h // 2, w // 2): returns the 6 figures of
    ``counts``, then that mask.
    """
    h2 = gray.shape[0] // 2
    w2 = gray.shape[1] // 2
    half_mask = np.empty((h2, w2), np.uint8)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    n_mask = 0.0
    n_clip = 0.0
    n_dark = 0.0
    level = 0.0
    checker = 0.0
    n_blocks = 0.0
    for y in range(h2):
        r0 = gray[2 * y]
        r1 = gray[2 * y + 1]
        m0 = mask[2 * y]
        m1 = mask[2 * y + 1]
        rm = zero
        rc = zero
        rd = zero
        rl = zero
        for x in range(2 * w2):
            a = r0[x]
            c = r1[x]
            ma = np.float32(m0[x])
            mc = np.float32(m1[x])
            rm += ma + mc
            rc += ma * (one if a >= clip_level else zero) + mc * (one if c >= clip_level else zero)
            rd += ma * (one if a <= dark_level else zero) + mc * (one if c <= dark_level else zero)
            rl += ma * a + mc * c
        rk = zero
        rb = zero
        for x in range(w2):
            full = np.float32(m0[2 * x] & m0[2 * x + 1] & m1[2 * x] & m1[2 * x + 1])
            rk += full * abs(r0[2 * x] - r0[2 * x + 1] - r1[2 * x] + r1[2 * x + 1])
            rb += full
        n_mask += rm
        n_clip += rc
        n_dark += rd
        level += rl
        checker += rk
        n_blocks += rb
        hm = half_mask[y]
        for x in range(w2):
            hm[x] = m0[2 * x]
    return int(n_mask), int(n_clip), int(n_dark), level, 0.5 * checker, int(n_blocks), half_mask


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def gradient_moments(img, mask):
    """Sums of gx², gy², gx·gy (forward differences) over pixels where mask is 1, and count."""
    h, w = img.shape
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    n = 0
    for y in range(h - 1):
        r0 = img[y]
        r1 = img[y + 1]
        mr = mask[y]
        for x in range(w - 1):
            m = mr[x]
            gx = r0[x + 1] - r0[x]
            gy = r1[x] - r0[x]
            sxx += m * gx * gx
            syy += m * gy * gy
            sxy += m * gx * gy
            n += np.int64(m)
    return sxx, syy, sxy, n


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def pooled_fine_tensor(half, noise_energy):
    """Fine-scale structure tensor (2x2 Roberts gradients of the half-res frame, noise
    energy removed), summed over the 2x2 half-res pixels of each quarter-res pixel.
    Returns (3, h, w) float32: gx², gy², gx·gy."""
    hp = (half.shape[0] - 1) // 2
    wp = (half.shape[1] - 2) // 2
    out = np.zeros((3, hp, wp), np.float32)
    hf = np.float32(0.5)
    for yb in range(hp):
        oxx = out[0, yb]
        oyy = out[1, yb]
        oxy = out[2, yb]
        for y in range(2 * yb, 2 * yb + 2):
            top = half[y]
            bot = half[y + 1]
            for xb in range(wp):
                x = 2 * xb
                gx0 = hf * ((top[x + 1] - top[x]) + (bot[x + 1] - bot[x]))
                gy0 = hf * ((bot[x] - top[x]) + (bot[x + 1] - top[x + 1]))
                gx1 = hf * ((top[x + 2] - top[x + 1]) + (bot[x + 2] - bot[x + 1]))
                gy1 = hf * ((bot[x + 1] - top[x + 1]) + (bot[x + 2] - top[x + 2]))
                oxx[xb] += gx0 * gx0 + gx1 * gx1
                oyy[xb] += gy0 * gy0 + gy1 * gy1
                oxy[xb] += gx0 * gy0 + gx1 * gy1
    remove = np.float32(4.0) * noise_energy
    for yb in range(hp):
        for xb in range(wp):
            out[0, yb, xb] -= remove
            out[1, yb, xb] -= remove
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def pool2_tensor(t3):
    """(3, h, w) tensor -> (h // 2, w // 2, 3), each the sum of a 2x2 block."""
    h = t3.shape[1] // 2
    w = t3.shape[2] // 2
    out = np.empty((h, w, 3), np.float32)
    for y in range(h):
        for x in range(w):
            for k in range(3):
                out[y, x, k] = (t3[k, 2 * y, 2 * x] + t3[k, 2 * y, 2 * x + 1]
                                + t3[k, 2 * y + 1, 2 * x] + t3[k, 2 * y + 1, 2 * x + 1])
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def pool2_products(gx, gy, h, w):
    """Structure tensor gx², gy², gx·gy summed over 2x2 blocks -> (h, w, 3)."""
    out = np.empty((h, w, 3), np.float32)
    for y in range(h):
        for x in range(w):
            sxx = np.float32(0.0)
            syy = np.float32(0.0)
            sxy = np.float32(0.0)
            for dy in range(2):
                for dx in range(2):
                    a = gx[2 * y + dy, 2 * x + dx]
                    b = gy[2 * y + dy, 2 * x + dx]
                    sxx += a * a
                    syy += b * b
                    sxy += a * b
            out[y, x, 0] = sxx
            out[y, x, 1] = syy
            out[y, x, 2] = sxy
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def isotropic_sums(fine, coarse, mask, min_trace):
    """Sum the fine tensor (h, w, 3) weighted by (1 - coherence of the coarse tensor)^4
    where the coarse structure (h, w, 3) is significant; returns (sxx, syy, sxy, weight)."""
    h = min(coarse.shape[0], fine.shape[0], mask.shape[0])
    w = min(coarse.shape[1], fine.shape[1], mask.shape[1])
    lo = np.float32(min_trace)
    wgt = np.empty(w, np.float32)
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    total = 0.0
    for y in range(h):
        for x in range(w):
            a = coarse[y, x, 0]
            b = coarse[y, x, 1]
            c = coarse[y, x, 2]
            tr = a + b
            coh2 = ((a - b) * (a - b) + np.float32(4.0) * c * c) / (tr * tr + np.float32(1e-30))
            t = np.float32(1.0) - np.sqrt(coh2)
            t = t * t
            wgt[x] = t * t * np.float32(tr > lo) * np.float32(mask[y, x])
        rxx = np.float32(0.0)
        ryy = np.float32(0.0)
        rxy = np.float32(0.0)
        rs = np.float32(0.0)
        for x in range(w):
            rxx += wgt[x] * fine[y, x, 0]
            ryy += wgt[x] * fine[y, x, 1]
            rxy += wgt[x] * fine[y, x, 2]
            rs += wgt[x]
        sxx += rxx
        syy += ryy
        sxy += rxy
        total += rs
    return sxx, syy, sxy, total
