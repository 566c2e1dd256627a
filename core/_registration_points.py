"""Private kernels of ``core.registration``: follicle-opening detection and point-pattern matching.

Follicle openings (and hair roots) do not move between visits, whatever the hairs do, so
their pattern is the fingerprint of the spot.  ``detect_openings`` finds dark round blobs
in the hair-suppressed working image; ``match_point_patterns`` finds the similarity
transform (rotation, scale ≈ 1, shift) under which most points of one set land on points
of the other: every pair of points of set B is paired with every pair of set A of the same
length (± tol) and the hypothesis with the most inliers wins (a geometric-hashing RANSAC
that needs no descriptors).
"""
from __future__ import annotations

import math

import cv2
import numba as nb
import numpy as np

OPENING_SIGMA_UM = 35.0  # DoG scale of a follicle opening (radius ~45-100 µm)
OPENING_CONTRAST = 0.08  # minimum darkness of an opening relative to the skin around it
MAX_POINTS = 120  # strongest openings kept per image
MIN_PAIR_FRACTION = 0.08  # pairs shorter than this share of the frame diagonal are not used


def detect_openings(flat: np.ndarray, keep: np.ndarray, work_umpp: float) -> np.ndarray:
    """(N, 2) float64 working-px centres of dark round blobs (openings), strongest first.

    ``flat`` is the hair-suppressed working image (float32, skin ≈ 1), ``keep`` the mask of
    usable skin (uint8).
    """
    s = max(1.0, OPENING_SIGMA_UM / work_umpp)
    r = max(1, int(s / 2.5))  # detect on a copy where the opening scale is ~2.5 px
    h, w = flat.shape
    if r > 1:
        flat = cv2.resize(flat, (w // r, h // r), interpolation=cv2.INTER_AREA)
        keep = cv2.resize(keep, (w // r, h // r), interpolation=cv2.INTER_NEAREST)
        s /= r
    small = cv2.GaussianBlur(flat, (0, 0), s)
    large = cv2.GaussianBlur(flat, (0, 0), 3.0 * s)
    dog = small - large  # negative on dark blobs of about the opening size
    k = int(2 * round(1.5 * s) + 1)
    minf = cv2.erode(dog, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    cand = (dog <= minf) & (dog < -OPENING_CONTRAST) & (keep > 0)
    ys, xs = np.nonzero(cand)
    xs = xs * r + 0.5 * (r - 1)
    ys = ys * r + 0.5 * (r - 1)
    if xs.size == 0:
        return np.zeros((0, 2))
    strength = -dog[cand]
    order = np.argsort(-strength)[:MAX_POINTS]
    return np.stack([xs[order], ys[order]], axis=1).astype(np.float64)


@nb.njit(cache=True, error_model="numpy")
def _best_similarity(a, b, pa_i, pa_j, pa_d, pb_i, pb_j, pb_d, tol, max_scale_dev, max_hyp):
    """Best (count, s*cos, s*sin, tx, ty) mapping b -> a; pair lists sorted by distance."""
    na, nb_ = a.shape[0], b.shape[0]
    best = 0
    bc, bs, btx, bty = 1.0, 0.0, 0.0, 0.0
    tol2 = tol * tol
    n_hyp = 0
    lo = 0
    for p in range(pb_d.shape[0]):
        d = pb_d[p]
        while lo < pa_d.shape[0] and pa_d[lo] < d * (1.0 - max_scale_dev) - tol:
            lo += 1
        q = lo
        while q < pa_d.shape[0] and pa_d[q] <= d * (1.0 + max_scale_dev) + tol:
            for flip in range(2):
                i0, j0 = pb_i[p], pb_j[p]
                if flip == 0:
                    k0, l0 = pa_i[q], pa_j[q]
                else:
                    k0, l0 = pa_j[q], pa_i[q]
                vbx, vby = b[j0, 0] - b[i0, 0], b[j0, 1] - b[i0, 1]
                vax, vay = a[l0, 0] - a[k0, 0], a[l0, 1] - a[k0, 1]
                nb2 = vbx * vbx + vby * vby
                c = (vax * vbx + vay * vby) / nb2
                s = (vay * vbx - vax * vby) / nb2
                tx = a[k0, 0] - (c * b[i0, 0] - s * b[i0, 1])
                ty = a[k0, 1] - (s * b[i0, 0] + c * b[i0, 1])
                cnt = 0
                for u in range(nb_):
                    x = c * b[u, 0] - s * b[u, 1] + tx
                    y = s * b[u, 0] + c * b[u, 1] + ty
                    for v in range(na):
                        dx = a[v, 0] - x
                        dy = a[v, 1] - y
                        if dx * dx + dy * dy < tol2:
                            cnt += 1
                            break
                if cnt > best:
                    best, bc, bs, btx, bty = cnt, c, s, tx, ty
                n_hyp += 1
            q += 1
            if n_hyp >= max_hyp:
                return best, bc, bs, btx, bty
    return best, bc, bs, btx, bty


def _pairs(p: np.ndarray, dmin: float, limit: int, rng: np.random.Generator):
    i, j = np.triu_indices(len(p), 1)
    d = np.hypot(p[i, 0] - p[j, 0], p[i, 1] - p[j, 1])
    ok = d >= dmin
    i, j, d = i[ok], j[ok], d[ok]
    if len(d) > limit:
        sel = rng.choice(len(d), limit, replace=False)
        i, j, d = i[sel], j[sel], d[sel]
    o = np.argsort(d)
    return i[o].astype(np.int64), j[o].astype(np.int64), d[o].astype(np.float64)


def match_point_patterns(a: np.ndarray, b: np.ndarray, tol: float, diag: float, max_scale_dev: float = 0.05,
                         max_pairs: int = 1500, max_hyp: int = 60000):
    """Similarity 2x3 (b -> a) with the most inliers, refined on them: (matrix, inlier pairs (k, 2)).

    Returns (None, empty) when fewer than 3 points in either set.  Deterministic.
    """
    if len(a) < 3 or len(b) < 3:
        return None, np.zeros((0, 2), np.int64)
    rng = np.random.default_rng(12345)
    dmin = MIN_PAIR_FRACTION * diag
    ai, aj, ad = _pairs(a, dmin, 4 * max_pairs, rng)
    bi, bj, bd = _pairs(b, dmin, max_pairs // 2, rng)
    if len(ad) == 0 or len(bd) == 0:
        return None, np.zeros((0, 2), np.int64)
    cnt, c, s, tx, ty = _best_similarity(a, b, ai, aj, ad, bi, bj, bd, float(tol), float(max_scale_dev),
                                         int(max_hyp))
    m = np.array([[c, -s, tx], [s, c, ty]])
    pairs = inlier_pairs(m, a, b, tol)
    if len(pairs) >= 3:
        m2, _ = cv2.estimateAffinePartial2D(b[pairs[:, 1]].astype(np.float32), a[pairs[:, 0]].astype(np.float32),
                                            method=cv2.LMEDS)
        if m2 is not None:
            m = m2
            pairs = inlier_pairs(m, a, b, tol)
    return m, pairs


def inlier_pairs(m: np.ndarray, a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Mutual-nearest pairs (index in a, index in b) closer than ``tol`` after b -> m -> a."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    p = b @ m[:, :2].T + m[:, 2]
    d = np.hypot(a[:, None, 0] - p[None, :, 0], a[:, None, 1] - p[None, :, 1])
    jb = np.argmin(d, axis=1)
    ia = np.argmin(d, axis=0)
    ok = (ia[jb] == np.arange(len(a))) & (d[np.arange(len(a)), jb] < tol)
    idx = np.nonzero(ok)[0]
    return np.stack([idx, jb[idx]], axis=1).astype(np.int64) if len(idx) else np.zeros((0, 2), np.int64)


def similarity_params(m: np.ndarray) -> tuple[float, float]:
    """(scale, rotation degrees) of a 2x3 similarity."""
    return float(math.hypot(m[0, 0], m[1, 0])), float(math.degrees(math.atan2(m[1, 0], m[0, 0])))
