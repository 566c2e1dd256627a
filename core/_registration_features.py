"""Private kernels of ``core.registration``: working copy, hair suppression, ORB features.

The working copy is the frame reduced to the registration resolution, flattened (divided
by a broad blur of the skin, so vignetting and exposure drop out) and contrast-normalised.
Hair shafts move, grow and get clipped between visits, so they are found with a Hessian
line measure (high on thin dark or bright lines, ~0 on round blobs such as follicle
openings), filled with the skin around them and kept out of the feature mask; ORB
features then come from what is stable: skin texture and openings.  Near-black and
clipped areas (burnt-in banners, glare) are masked out too.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core._registration_points import detect_openings

FLATTEN_SIGMA_UM = 250.0  # broad blur that the image is divided by (illumination, exposure)
DETAIL_SIGMA_UM = 6.0  # small blur against sensor noise before the features
SUPPRESS_HAIRS = True  # mask and fill hair shafts before the features
HAIR_SIGMAS_UM = (12.0, 28.0)  # Hessian scales of the hair-shaft line measure
HAIR_MASK_UMPP = 6.0  # the line measure runs at half the working size below this µm/px
LINE_THRESHOLD = 0.4  # line measure (relative contrast, sigma²-normalised) of a shaft
FILL_SIGMA_UM = 40.0  # hair pixels are replaced by the skin around them at this scale
DARK_LEVEL = 0.03  # masked: smoothed level below this (banners, vignetted corners)
BRIGHT_LEVEL = 0.985  # masked: clipped / glare
RATIO_TEST = 0.8


@dataclass(frozen=True)
class FeatureSet:
    """ORB keypoints (x, y working px, float32 (N, 2)) and their descriptors (N, 32 uint8)."""

    xy: np.ndarray
    desc: np.ndarray
    size: tuple  # working image (w, h)
    openings: np.ndarray  # (K, 2) float64 working-px centres of follicle openings, strongest first

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def _broad_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of large ``sigma`` px, computed on a copy reduced by ~sigma/4."""
    h, w = img.shape
    k = max(1, int(sigma / 4))
    if k == 1:
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(img, (max(2, w // k), max(2, h // k)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _line_score(img: np.ndarray, sigma: float) -> np.ndarray:
    """Hessian line measure at ``sigma`` px: |μ1| - 2|μ2| (μ1 the larger-magnitude eigenvalue).

    High on thin dark or bright lines (hair shafts), ~0 or negative on round blobs
    (follicle openings) and flat skin; scale-normalised by sigma².
    """
    g = cv2.GaussianBlur(img, (0, 0), sigma)
    xx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
    yy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3)
    xy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3)
    half = 0.5 * (xx + yy)
    d = cv2.magnitude(0.5 * (xx - yy), xy)
    a1 = np.abs(half + d)
    a2 = np.abs(half - d)
    return (np.maximum(a1, a2) - 2.0 * np.minimum(a1, a2)) * np.float32(sigma * sigma)


def hair_mask(flat: np.ndarray, work_umpp: float) -> np.ndarray:
    """uint8 mask (1 = hair shaft or its flank) of the flattened working image."""
    h, w = flat.shape
    k = 2 if work_umpp < HAIR_MASK_UMPP else 1
    img = cv2.resize(flat, (w // k, h // k), interpolation=cv2.INTER_AREA) if k > 1 else flat
    umpp = work_umpp * k
    score = None
    for sig_um in HAIR_SIGMAS_UM:
        s = _line_score(img, max(0.8, sig_um / umpp))
        score = s if score is None else np.maximum(score, s)
    m = (score > LINE_THRESHOLD).astype(np.uint8)
    m = cv2.dilate(m, np.ones((3, 3), np.uint8))
    if k > 1:
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    return m


def working_image(gray: np.ndarray, factor: float, um_per_px: float):
    """(uint8 working copy, uint8 feature mask, float32 flattened hair-suppressed copy).

    All at ``factor`` x the size of ``gray``; the uint8 copy is contrast-normalised on skin.
    """
    h, w = gray.shape
    if abs(factor - 1.0) > 1e-3:
        size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    else:
        small = gray
    work_umpp = um_per_px / factor
    base = _broad_blur(small, max(4.0, FLATTEN_SIGMA_UM / work_umpp))
    usable = (base > DARK_LEVEL) & (small > DARK_LEVEL) & (small < BRIGHT_LEVEL)
    usable = cv2.erode(usable.astype(np.uint8), np.ones((9, 9), np.uint8))
    flat = small / np.maximum(base, 0.02)
    keep = usable
    if SUPPRESS_HAIRS:
        hair = hair_mask(flat, work_umpp)
        skin = (1 - hair).astype(np.float32)
        # illumination from skin pixels only (dense dark hair would bias it), then fill
        # every hair pixel with the skin around it: near scale where there is skin nearby,
        # broad scale inside wide tufts
        sig_b = max(4.0, FLATTEN_SIGMA_UM / work_umpp)
        wb = _broad_blur(skin, sig_b)
        base = np.where(wb > 0.05, _broad_blur(small * skin, sig_b) / np.maximum(wb, 0.05), base)
        flat = small / np.maximum(base, 0.02)
        sig_f = max(1.0, FILL_SIGMA_UM / work_umpp)
        w1 = _broad_blur(skin, sig_f)
        fill1 = _broad_blur(flat * skin, sig_f) / np.maximum(w1, 1e-3)
        w2 = _broad_blur(skin, 4 * sig_f)
        fill2 = _broad_blur(flat * skin, 4 * sig_f) / np.maximum(w2, 1e-3)
        fill = np.where(w1 > 0.2, fill1, np.where(w2 > 0.05, fill2, 1.0))
        flat = np.where(hair > 0, fill, flat).astype(np.float32)
        keep = usable & (1 - hair)
    sig_d = DETAIL_SIGMA_UM / work_umpp
    if sig_d > 0.5:
        flat = cv2.GaussianBlur(flat, (0, 0), sig_d)
    m = keep.astype(bool)
    if m.sum() > 100:
        mu, sd = float(flat[m].mean()), float(flat[m].std())
    else:
        mu, sd = 1.0, 1.0
    out = np.clip((flat - mu) * (40.0 / max(sd, 1e-3)) + 128.0, 0, 255).astype(np.uint8)
    return out, keep, flat


def detect_features(gray: np.ndarray, factor: float, n_features: int, um_per_px: float) -> FeatureSet:
    img, mask, flat = working_image(gray, factor, um_per_px)
    openings = detect_openings(flat, mask, um_per_px / factor)
    orb = cv2.ORB_create(nfeatures=n_features, scaleFactor=1.3, nlevels=3, edgeThreshold=19, patchSize=19,
                         fastThreshold=8)
    kps, desc = orb.detectAndCompute(img, mask)
    if desc is None or not kps:
        return FeatureSet(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), img.shape[::-1], openings)
    xy = np.array([k.pt for k in kps], np.float32)
    return FeatureSet(xy, desc, img.shape[::-1], openings)


def match_features(cur: FeatureSet, base: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches: (current xy, baseline xy) float32 (M, 2) each."""
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = bf.knnMatch(cur.desc, base.desc, k=2)
    qi, ti = [], []
    for p in pairs:
        if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance:
            qi.append(p[0].queryIdx)
            ti.append(p[0].trainIdx)
        elif len(p) == 1:
            qi.append(p[0].queryIdx)
            ti.append(p[0].trainIdx)
    if not qi:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    return cur.xy[np.array(qi)], base.xy[np.array(ti)]
