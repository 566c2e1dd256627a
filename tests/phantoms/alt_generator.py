"""A second, independent family of phantoms, never tuned on.

``generator.py`` is what the detector was developed against, so its figures may hold only
for its own way of drawing a scalp. This renderer differs in every choice it can:

- shafts are flat, nearly opaque bands with anti-aliased edges (reflected light), not
  Beer-Lambert cylinders; their specular streak sits off the centre line;
- shafts follow a smoothly turning random walk around a crown whorl, not a quadratic curve
  along one flow direction;
- openings are faint brown halos, sometimes absent; the skin carries empty pores and
  yellow dots (sebum-plugged openings, common in androgenetic alopecia) that are not hairs;
- some images mix white and dark hairs, as a greying scalp does;
- the device's text sits in the top-left corner and its scale bar bottom right, and some
  images show the lens's round field of view with black corners;
- every image is a JPEG of quality 80-95, at 2-8 µm per pixel.

``render_alt(seed, kind) -> (image, truth)`` returns the same truth classes as
``render_phantom`` so ``matching.score_image`` scores both.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .generator import PhantomTruth, hair_truth, in_mask, unit_histogram

ALT_KINDS = ("plain", "mixed_grey", "round_field")
SS = 3  # supersampling of each shaft's mask


def _skin(rng, h, w, um):
    tone = np.array([rng.uniform(0.72, 0.9), rng.uniform(0.55, 0.72), rng.uniform(0.45, 0.62)], np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = tone
    for scale_um, amp in ((900.0, 0.06), (150.0, 0.025), (25.0, 0.015)):
        k = max(2, int(scale_um / um))
        n = rng.uniform(-1, 1, (h // k + 3, w // k + 3)).astype(np.float32)
        n = cv2.resize(n, (w + 2 * k, h + 2 * k), interpolation=cv2.INTER_LINEAR)[k:k + h, k:k + w]
        img *= (1.0 + amp * n)[:, :, None]
    # empty pores (dark) and yellow dots: round marks that are not hairs
    for _ in range(rng.poisson(h * w * (um * 1e-4) ** 2 * 40)):
        c = (int(rng.uniform(0, w) * 4), int(rng.uniform(0, h) * 4))
        _blend_disc(img, c, int(rng.uniform(20, 45) / um * 4), 0.35, (0.35, 0.25, 0.22), 0.0)
    for _ in range(rng.poisson(h * w * (um * 1e-4) ** 2 * 15)):
        c = (int(rng.uniform(0, w) * 4), int(rng.uniform(0, h) * 4))
        _blend_disc(img, c, int(rng.uniform(40, 90) / um * 4), 0.5, (0.92, 0.8, 0.45), max(1.0, 10 / um))
    return img


def _blend_disc(img, centre_q, radius_q, alpha, colour, blur_sigma):
    """Blend ``colour`` into ``img`` (in place) through an anti-aliased disc of opacity
    ``alpha``, softened by a Gaussian of ``blur_sigma`` px (0: none); centre and radius in
    quarter px (cv2's shift=2).  Only the disc's neighbourhood is touched: the same pixels
    a whole-frame mask would give."""
    h, w = img.shape[:2]
    pad = radius_q // 4 + 2 + (int(math.ceil(8 * blur_sigma)) + 2 if blur_sigma > 0 else 0)
    x0, y0 = max(0, centre_q[0] // 4 - pad), max(0, centre_q[1] // 4 - pad)
    x1, y1 = min(w, centre_q[0] // 4 + pad + 1), min(h, centre_q[1] // 4 + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.circle(m, (centre_q[0] - 4 * x0, centre_q[1] - 4 * y0), radius_q, float(alpha), -1, cv2.LINE_AA, shift=2)
    if blur_sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur_sigma)
    roi = img[y0:y1, x0:x1]
    roi[:] = roi * (1 - m[:, :, None]) + np.float32(colour) * m[:, :, None]


def _walk(rng, start, ang, length_px, um, step=2.0):
    """A shaft that turns smoothly: a curvature of its own (radius mostly over 3 mm) plus a
    slow wobble, sampled every ``step`` px."""
    n = max(2, int(length_px / step) + 1)
    wobble = cv2.GaussianBlur(rng.normal(0, 1, (1, n + 40)), (0, 0), 12.0)[0, 20:20 + n]
    curv = (rng.normal(0, 1 / 5000.0) + wobble / 20000.0) * um * step  # radians per step
    a = ang + np.concatenate([[0.0], np.cumsum(curv[:-1])])
    pts = np.empty((n, 2))
    pts[0] = start
    pts[1:, 0] = start[0] + np.cumsum(np.cos(a[:-1]) * step)
    pts[1:, 1] = start[1] + np.cumsum(np.sin(a[:-1]) * step)
    return pts


def _shaft(img, pts, diam_px, colour, opacity, streak):
    """Composite a flat band of width ``diam_px`` along ``pts`` into ``img`` (in place)."""
    h, w = img.shape[:2]
    pad = int(diam_px) + 4
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    bw, bh = (x1 - x0) * SS, (y1 - y0) * SS
    p = np.round(((pts - [x0, y0]) * SS + (SS - 1) / 2) * 16).astype(np.int32)
    centre = np.full((bh, bw), 255, np.uint8)
    cv2.polylines(centre, [p], False, 0, 1, cv2.LINE_8, shift=4)
    dist = cv2.distanceTransform(centre, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    m = np.clip(0.5 * diam_px * SS - dist + 0.5, 0, 1).astype(np.float32)  # exact width, a 1-px soft edge
    a = cv2.resize(m, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) * opacity
    roi = img[y0:y1, x0:x1]
    roi[:] = roi * (1 - a[:, :, None]) + colour * a[:, :, None]
    if streak > 0 and diam_px > 6:
        d = np.gradient(pts, axis=0)
        nrm = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        sp = np.round(((pts + 0.22 * diam_px * nrm - [x0, y0]) * SS + (SS - 1) / 2) * 16).astype(np.int32)
        s = np.zeros((bh, bw), np.uint8)
        cv2.polylines(s, [sp[2:-2]], False, 255, max(1, int(round(0.15 * diam_px * SS))), cv2.LINE_AA, shift=4)
        s = cv2.resize(s, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        roi += (streak * cv2.GaussianBlur(s, (0, 0), 0.7))[:, :, None]


def _diameter(rng, vellus_fraction):
    if rng.random() < vellus_fraction:
        return float(rng.uniform(12, 38)), True
    return float(np.clip(rng.normal(rng.uniform(58, 80), 14), 42, 115)), False


def render_alt(seed: int, kind: str = "plain", width: int = 2028, height: int = 1520):
    """One image of ``kind`` (see ALT_KINDS) and its truth."""
    if kind not in ALT_KINDS:
        raise ValueError(f"unknown alt phantom kind {kind!r}; expected one of {ALT_KINDS}")
    rng = np.random.default_rng([seed, 77, ALT_KINDS.index(kind)])
    um = float(np.exp(rng.uniform(np.log(2.0), np.log(8.0))))
    h, w = height, width
    img = _skin(rng, h, w, um)
    area = h * w * (um * 1e-4) ** 2
    whorl = np.array([rng.uniform(-0.5, 1.5) * w, rng.uniform(-0.5, 1.5) * h])
    n_units = rng.poisson(area * rng.uniform(150, 260) / 1.6)
    grey = rng.uniform(0.2, 0.4) if kind == "mixed_grey" else 0.0
    shafts, units = [], []
    for u in range(n_units):
        c = rng.uniform([-0.05 * w, -0.05 * h], [1.05 * w, 1.05 * h])
        r = c - whorl
        base = math.atan2(r[1], r[0]) + math.pi / 2 + rng.normal(0, 0.25)  # swirl around the whorl
        size = int(rng.choice([1, 2, 3], p=[0.5, 0.38, 0.12]))
        diams = [_diameter(rng, 0.15) for _ in range(size)]
        halo = rng.random() < 0.7
        if halo:
            _blend_disc(img, (int(c[0] * 4), int(c[1] * 4)), int((max(d for d, _ in diams) * 0.9 + 20) / um * 4),
                        rng.uniform(0.2, 0.4), (0.45, 0.3, 0.25), max(1.0, 8 / um))
        for k, (d, vellus) in enumerate(diams):
            ang = base + (k - (size - 1) / 2) * rng.uniform(0.1, 0.4)
            if rng.random() < 0.08:
                length_um = rng.uniform(4000, 10000)
            else:
                length_um = float(np.exp(rng.uniform(np.log(250), np.log(2200))))
            pts = _walk(rng, c + rng.normal(0, 5 / um, 2), ang, length_um / um, um)
            white = rng.random() < grey
            colour = np.float32([0.93, 0.92, 0.9]) if white else np.float32(
                [0.12, 0.08, 0.06]) * rng.uniform(0.6, 1.4)
            opacity = (rng.uniform(0.55, 0.8) if vellus else rng.uniform(0.85, 1.0)) * (0.8 if white else 1.0)
            streak = rng.uniform(0.08, 0.2) if (not vellus and rng.random() < 0.4) else 0.0
            shafts.append((rng.random(), pts, d / um, colour, opacity, streak))
            units.append((u, pts, d, c))
    order = sorted(range(len(shafts)), key=lambda i: shafts[i][0])
    for i in order:
        _, pts, dpx, colour, opacity, streak = shafts[i]
        _shaft(img, pts, dpx, colour, opacity, streak)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.7, 1.5))
    mask = np.ones((h, w), bool)
    if kind == "round_field":
        yy, xx = np.mgrid[0:h, 0:w]
        rad = 0.5 * math.hypot(w, h) * rng.uniform(0.78, 0.9)
        dist = np.hypot(xx - w / 2, yy - h / 2)
        img *= np.clip((rad - dist) / 6.0, 0, 1).astype(np.float32)[:, :, None]
        mask &= dist < rad - 12
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w / 4 + h * h / 4)
    img *= (1 - rng.uniform(0.05, 0.3) * r2).astype(np.float32)[:, :, None]
    img += rng.normal(0, rng.uniform(0.006, 0.015), img.shape).astype(np.float32)
    # the device's text top left and a scale bar bottom right
    th, tw = int(0.06 * h), int(0.42 * w)
    img[:th, :tw] = 0.05
    text = np.zeros((th, tw), np.uint8)
    cv2.putText(text, f"SCALP 0{seed % 10}  ZONE C", (8, int(th * 0.75)), cv2.FONT_HERSHEY_DUPLEX, th / 40, 255,
                max(1, th // 20), cv2.LINE_AA)
    img[:th, :tw] += (text.astype(np.float32) / 255 * 0.9)[:, :, None]
    mask[:th, :tw] = False
    bar = int(1000 / um)
    y = h - int(0.04 * h)
    img[y - 6:y + 7, w - 30 - bar:w - 29] = 0.98
    mask[y - 14:y + 14, w - 38 - bar:w - 22] = False
    out = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
    out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out, _truth(units, mask, um)


def _truth(units, mask, um):
    hairs = []
    for u, pts, d, c in units:
        root_in = bool(in_mask(mask, np.array([c]))[0])
        hair = hair_truth(pts, d, tuple(c) if root_in else None, u, mask, um)
        if hair is not None:
            hairs.append(hair)
    return PhantomTruth(hairs, mask, float(mask.sum()) * (um * 1e-4) ** 2, um, unit_histogram(hairs))
