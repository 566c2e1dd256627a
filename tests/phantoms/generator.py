"""Synthetic trichoscopy images with exact ground truth.

The scene (skin, follicle openings, shafts) is built in a "world" canvas a little larger
than the frame, then seen through a camera pose (shift, rotation, exposure) so the same
spot can be captured twice.  Every length is drawn in µm and converted with ``um_per_px``.

``render_phantom(seed, spec) -> (image, truth)``: ``image`` is uint8/uint16, RGB or grey;
``truth.hairs`` lists every shaft with its centre line in frame px, diameter µm, root and unit.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ._raster import draw_tubes

SKIN_RGB = {"light": (0.86, 0.70, 0.63), "dark": (0.40, 0.28, 0.21)}
HAIR_RGB = {"dark": (0.09, 0.07, 0.06), "grey": (0.97, 0.97, 0.96), "blond": (0.97, 0.88, 0.66)}
HAIR_ABSORB = {"dark": 2.3, "grey": 1.4, "blond": 1.2}
SUBSKIN_RGB = (0.42, 0.47, 0.60)
MIN_COUNTED_UM = 150.0
# Truth hairs whose visible length is this close to the 150 µm rule are "don't care".
AMBIGUOUS_UM = (110.0, 210.0)


@dataclasses.dataclass(frozen=True)
class PhantomSpec:
    width: int = 2028
    height: int = 1520
    um_per_px: float = 4.0
    density_per_cm2: float = 220.0
    hairs_per_unit_p: tuple = (0.55, 0.35, 0.08, 0.02)  # P(1), P(2), P(3), P(4)
    vellus_fraction: float = 0.15
    terminal_mean_um: float = 70.0
    terminal_sd_um: float = 14.0
    long_fraction: float = 0.1  # long uncut hairs crossing the frame; others are clipped stubs
    tiny_fraction: float = 0.03  # stubs shorter than the 150 µm counting rule
    stub_length_mm: tuple = (0.4, 1.6)
    skin: str = "light"
    hair: str = "dark"
    # a greying scalp: each hair is grey (white) with this probability, the others ``hair``
    grey_fraction: float = 0.0
    blur_px: float = 1.1
    noise: float = 0.012
    vignetting: float = 0.25
    furrows: int = 3
    dandruff: int = 4
    specular_fraction: float = 0.3
    subskin_fraction: float = 0.5
    jpeg_quality: int | None = None
    banner: bool = True
    bits: int = 8
    rgb: bool = True
    flow_deg: float = 30.0
    # camera pose for repeat captures of the same spot
    shift_um: tuple = (0.0, 0.0)
    rotation_deg: float = 0.0
    exposure: float = 1.0
    extra_density_fraction: float = 0.0  # add this fraction of extra units (density change test)
    noise_seed: int | None = None
    # a later visit after the zone was clipped again: every stub's length is drawn anew from
    # this stream (root, direction and bend stay); None keeps the scene's own lengths
    length_seed: int | None = None


@dataclasses.dataclass
class HairTruth:
    centerline_px: np.ndarray  # (N, 2) x, y in frame px, root end first
    diameter_um: float
    root_px: tuple | None  # opening centre (x, y) when inside the analysed area
    unit: int
    visible_length_um: float
    counted: bool  # >= 150 µm of shaft visible in the analysed area
    ambiguous: bool  # near the 150 µm rule: neither a hit nor a miss


@dataclasses.dataclass
class PhantomTruth:
    hairs: list
    analysed_mask: np.ndarray  # bool, True = skin the analysis should use
    area_cm2: float
    um_per_px: float
    follicular_units: dict  # {"1","2","3","4+"} over openings inside the analysed area

    @property
    def counted(self):
        return [h for h in self.hairs if h.counted]


def _bezier(p0, p1, p2, n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _skin_canvas(rng, spec, h, w):
    base = np.array(SKIN_RGB[spec.skin], np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    for sigma_um, amp in ((400.0, 0.05), (60.0, 0.03), (12.0, 0.02)):
        s = max(0.8, sigma_um / spec.um_per_px)
        k = max(1, int(s / 2))  # blur a coarse grid, then upsample: same texture, much faster
        n = rng.standard_normal((h // k + 2, w // k + 2)).astype(np.float32)
        n = cv2.resize(cv2.GaussianBlur(n, (0, 0), s / k), (w, h), interpolation=cv2.INTER_CUBIC)
        n *= amp / (n.std() + 1e-9)
        img *= (1.0 + n)[:, :, None]
    # skin furrows: long, wide, faint, soft
    pts, starts, diam = [], [0], []
    for _ in range(spec.furrows):
        p0 = rng.uniform([0, 0], [w, h])
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)]) * max(w, h) * 1.5
        p1 = p0 + rng.normal(0, 0.1, 2) * max(w, h)
        line = _bezier(p0 - d / 2, p1, p0 + d / 2, 200)
        pts.append(line)
        starts.append(starts[-1] + len(line))
        diam.append(rng.uniform(100, 220) / spec.um_per_px)
    if pts:
        n = len(diam)
        draw_tubes(img, np.concatenate(pts).astype(np.float64), np.array(starts, np.int64),
                   np.array(diam, np.float64), np.full(n, 0.07), np.tile(base * 0.4, (n, 1)).astype(np.float64),
                   np.zeros(n))
    return cv2.GaussianBlur(img, (0, 0), max(0.8, 15.0 / spec.um_per_px), borderType=cv2.BORDER_REFLECT)


def _diameter_um(rng, spec):
    if rng.random() < spec.vellus_fraction:
        return float(rng.uniform(12.0, 38.0)), True
    return float(np.clip(rng.normal(spec.terminal_mean_um, spec.terminal_sd_um), 42.0, 115.0)), False


def _make_units(rng, spec, cw, ch):
    """Openings with their hairs, in world px. Unit sizes follow ``hairs_per_unit_p``."""
    p = np.array(spec.hairs_per_unit_p, float)
    p /= p.sum()
    mean_hairs = float(np.dot(p, [1, 2, 3, 4]))
    area_cm2 = cw * ch * (spec.um_per_px * 1e-4) ** 2
    n_units = rng.poisson(spec.density_per_cm2 * area_cm2 / mean_hairs)
    n_extra = int(round(n_units * spec.extra_density_fraction))
    min_gap = 250.0 / spec.um_per_px
    units, placed = [], []
    tries = 0
    while len(units) < n_units + n_extra and tries < 50 * (n_units + n_extra + 1):
        tries += 1
        c = rng.uniform([0, 0], [cw, ch])
        if placed and np.min(np.hypot(*(np.array(placed) - c).T)) < min_gap:
            continue
        placed.append(c)
        units.append(c)
    # extra units for the density test come last so the base scene is unchanged
    base_units, extra_units = units[:n_units], units[n_units:]
    if spec.extra_density_fraction <= 0:
        extra_units = []
    return base_units + extra_units, p


def _hairs_for_unit(rng, spec, centre, p):
    size = int(rng.choice([1, 2, 3, 4], p=p))
    flow = math.radians(spec.flow_deg) + rng.normal(0, 0.3)
    hairs = []
    for k in range(size):
        diam, vellus = _diameter_um(rng, spec)
        ang = flow + (k - (size - 1) / 2) * rng.uniform(0.15, 0.35) + rng.normal(0, 0.05)
        r = rng.random()
        if r < spec.tiny_fraction:
            length_um = rng.uniform(50, 140)
        elif r < spec.tiny_fraction + spec.long_fraction:
            length_um = rng.uniform(4000, 12000)
        else:
            length_um = rng.uniform(*spec.stub_length_mm) * 1000
            if spec.length_seed is not None:
                key = [spec.length_seed, int(centre[0] * 16), int(centre[1] * 16), k]
                length_um = np.random.default_rng(key).uniform(*spec.stub_length_mm) * 1000
        length = length_um / spec.um_per_px
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        bend = rng.normal(0, 0.12 if length_um > 3000 else 0.05)
        p0 = centre + rng.normal(0, 4.0 / spec.um_per_px, 2)
        p2 = p0 + d * length
        p1 = (p0 + p2) / 2 + nrm * bend * length
        n = max(8, int(length / 3))
        hairs.append(dict(line=_bezier(p0, p1, p2, n), diam=diam, vellus=vellus,
                          specular=rng.random() < spec.specular_fraction and not vellus,
                          subskin=rng.random() < spec.subskin_fraction, dir=d))
    return hairs


def _camera_matrix(spec, cw, ch):
    """2x3 affine taking frame px to world px (used with WARP_INVERSE_MAP)."""
    a = math.radians(spec.rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    fc = np.array([spec.width / 2, spec.height / 2])
    wc = np.array([cw / 2, ch / 2]) + np.array(spec.shift_um) / spec.um_per_px
    return np.hstack([rot, (wc - rot @ fc)[:, None]])


def _to_frame(m, pts):
    rot, t = m[:, :2], m[:, 2]
    return (pts - t) @ rot  # inverse of world = rot @ frame + t


def _banner(spec, img):
    mask = np.ones((spec.height, spec.width), bool)
    if not spec.banner:
        return mask
    bh = max(24, int(0.07 * spec.height))
    img[-bh:] = 0.0
    mask[-bh:] = False
    text = np.zeros((bh, spec.width), np.uint8)
    fs = bh / 45.0
    th = max(1, int(2 * fs))
    cv2.putText(text, "TRICHO 20x  2026-11-21  ID 0042", (int(0.02 * spec.width), bh - bh // 3),
                cv2.FONT_HERSHEY_SIMPLEX, fs, 255, th, cv2.LINE_AA)
    bar = int(1000 / spec.um_per_px)
    x1 = spec.width - int(0.03 * spec.width)
    cv2.line(text, (x1 - bar, bh // 2), (x1, bh // 2), 255, max(2, bh // 8))
    cv2.putText(text, "1 mm", (x1 - bar // 2 - int(30 * fs), bh // 2 - bh // 6), cv2.FONT_HERSHEY_SIMPLEX,
                fs * 0.8, 255, th, cv2.LINE_AA)
    img[-bh:] = (text.astype(np.float32) / 255.0)[:, :, None]
    return mask


def render_phantom(seed: int, spec: PhantomSpec | None = None):
    spec = spec or PhantomSpec()
    # Independent random streams, and a canvas size that does not depend on the camera
    # pose, so a re-capture (other pose) or a denser variant shows the same scene.
    rng = np.random.default_rng([seed, 0])
    margin = int(math.ceil(0.6 * max(spec.width, spec.height) * math.sin(math.radians(6.0))
                           + 400.0 / spec.um_per_px + 40))
    if max(abs(v) for v in spec.shift_um) > 400.0 or abs(spec.rotation_deg) > 6.0:
        raise ValueError("phantom poses are limited to 0.4 mm shift and 6 degrees rotation")
    cw, ch = spec.width + 2 * margin, spec.height + 2 * margin
    canvas = _skin_canvas(rng, spec, ch, cw)
    centres, p = _make_units(np.random.default_rng([seed, 1]), spec, cw, ch)
    unit_rngs = [np.random.default_rng([seed, 2, u]) for u in range(len(centres))]
    units = [_hairs_for_unit(r, spec, c, p) for r, c in zip(unit_rngs, centres)]
    # its own stream, so a scene without grey hair is drawn exactly as before
    for u, hs in enumerate(units):
        grey = np.random.default_rng([seed, 5, u]).random(len(hs)) < spec.grey_fraction
        for hr, g in zip(hs, grey.tolist()):
            hr["grey"] = g

    # follicle openings and blue-grey shafts under the skin, drawn beneath the visible shafts
    sub_pts, sub_starts, sub_d = [], [0], []
    for c, hs, ur in zip(centres, units, unit_rngs):
        for hr in hs:
            if hr["subskin"] and spec.hair == "dark" and not hr["grey"]:
                seg = np.array([c, c - hr["dir"] * ur.uniform(80, 250) / spec.um_per_px])
                seg = _bezier(seg[0], seg.mean(0), seg[1], 12)
                sub_pts.append(seg)
                sub_starts.append(sub_starts[-1] + len(seg))
                sub_d.append(hr["diam"] / spec.um_per_px)
    if sub_d:
        n = len(sub_d)
        draw_tubes(canvas, np.concatenate(sub_pts), np.array(sub_starts, np.int64), np.array(sub_d),
                   np.full(n, 0.6), np.tile(np.array(SUBSKIN_RGB) * canvas.mean((0, 1)) / 0.7, (n, 1)),
                   np.zeros(n))
    alpha = np.zeros((ch, cw), np.float32)
    for c, hs, ur in zip(centres, units, unit_rngs):
        r_um = max(45.0, 0.8 * max(hr["diam"] for hr in hs)) + ur.uniform(0, 15)
        cv2.circle(alpha, (int(round(c[0] * 4)), int(round(c[1] * 4))), int(round(r_um / spec.um_per_px * 4)),
                   float(ur.uniform(0.45, 0.7)), -1, cv2.LINE_AA, shift=2)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.7, 6.0 / spec.um_per_px))
    opening_rgb = (0.5 * np.array(SUBSKIN_RGB) + 0.5 * np.array(HAIR_RGB["dark"])) * (
        0.6 if spec.skin == "dark" else 1.0)
    canvas = canvas * (1 - alpha[:, :, None]) + opening_rgb.astype(np.float32) * alpha[:, :, None]

    shafts = []  # (drawing order key, hair, absorbance, colour, specular amplitude)
    for hs, ur in zip(units, unit_rngs):
        for hr in hs:
            colour = "grey" if hr["grey"] else spec.hair
            k = HAIR_ABSORB[colour] * ur.uniform(0.8, 1.2)
            if hr["vellus"]:
                k *= ur.uniform(0.4, 0.6)
            shafts.append((ur.random(), hr, k, np.array(HAIR_RGB[colour]) * ur.uniform(0.9, 1.1),
                           ur.uniform(0.15, 0.35) if hr["specular"] else 0.0))
    shafts.sort(key=lambda t: t[0])
    if shafts:
        starts = np.cumsum([0] + [len(t[1]["line"]) for t in shafts]).astype(np.int64)
        draw_tubes(canvas, np.concatenate([t[1]["line"] for t in shafts]), starts,
                   np.array([t[1]["diam"] / spec.um_per_px for t in shafts]), np.array([t[2] for t in shafts]),
                   np.array([t[3] for t in shafts]), np.array([t[4] for t in shafts]))
    rng = np.random.default_rng([seed, 3])
    for _ in range(spec.dandruff):
        c = rng.uniform([0, 0], [cw, ch])
        axes = (int(rng.uniform(40, 200) / spec.um_per_px) + 1, int(rng.uniform(20, 90) / spec.um_per_px) + 1)
        r = axes[0] + 8
        x0, y0 = int(c[0]) - r, int(c[1]) - r
        if x0 < 0 or y0 < 0 or x0 + 2 * r >= cw or y0 + 2 * r >= ch:
            continue
        fl = np.zeros((2 * r, 2 * r), np.float32)
        cv2.ellipse(fl, (r, r), axes, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.5, 0.8)), -1, cv2.LINE_AA)
        fl = cv2.GaussianBlur(fl, (0, 0), 2.0)[:, :, None]
        patch = canvas[y0:y0 + 2 * r, x0:x0 + 2 * r]
        canvas[y0:y0 + 2 * r, x0:x0 + 2 * r] = patch * (1 - fl) + np.float32(0.95) * fl

    # camera
    m = _camera_matrix(spec, cw, ch)
    img = cv2.warpAffine(canvas, m, (spec.width, spec.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    img = cv2.GaussianBlur(img, (0, 0), spec.blur_px)
    yy, xx = np.mgrid[0:spec.height, 0:spec.width].astype(np.float32)
    r2 = ((xx - spec.width / 2) ** 2 + (yy - spec.height / 2) ** 2) / ((spec.width / 2) ** 2 + (spec.height / 2) ** 2)
    img *= (spec.exposure * (1.0 - spec.vignetting * r2))[:, :, None]
    nrng = np.random.default_rng(spec.noise_seed if spec.noise_seed is not None else seed + 7919)
    img += nrng.standard_normal(img.shape).astype(np.float32) * (spec.noise * np.sqrt(np.clip(img, 0.02, 1) / 0.5))
    mask = _banner(spec, img)
    img = np.clip(img, 0, 1)
    if not spec.rgb:
        img = img @ np.array([0.299, 0.587, 0.114], np.float32)
    if spec.bits == 16:
        out = np.round(img * 65535).astype(np.uint16)
    else:
        out = np.round(img * 255).astype(np.uint8)
        if spec.jpeg_quality:
            bgr = out[:, :, ::-1] if out.ndim == 3 else out
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            if out.ndim == 3:
                out = np.ascontiguousarray(out[:, :, ::-1])
    return out, _truth(spec, m, centres, units, mask)


def _truth(spec, m, centres, units, mask):
    hairs = []
    for u, (c, hs) in enumerate(zip(centres, units)):
        root = _to_frame(m, np.array([c]))
        root_in = bool(in_mask(mask, root)[0])
        for hr in hs:
            hair = hair_truth(_to_frame(m, hr["line"]), hr["diam"], tuple(root[0]) if root_in else None, u, mask,
                              spec.um_per_px)
            if hair is not None:
                hairs.append(hair)
    area_cm2 = float(mask.sum()) * (spec.um_per_px * 1e-4) ** 2
    return PhantomTruth(hairs, mask, area_cm2, spec.um_per_px, unit_histogram(hairs))


def in_mask(mask: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per point of ``p`` (x, y frame px, rounded): inside the frame and True in ``mask``."""
    h, w = mask.shape
    xi, yi = np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    ok[ok] = mask[yi[ok], xi[ok]]
    return ok


def hair_truth(line, diameter_um, root_px, unit, mask, um_per_px) -> HairTruth | None:
    """The truth of a shaft along ``line`` (frame px, root end first): its visible length
    is what lies in ``mask``; None when no point of it does."""
    ok = in_mask(mask, line)
    if not ok.any():
        return None
    seg = np.hypot(*np.diff(line, axis=0).T)
    vis = float(np.sum(seg * (ok[1:] & ok[:-1]))) * um_per_px
    return HairTruth(line, diameter_um, root_px, unit, vis, vis >= MIN_COUNTED_UM,
                     AMBIGUOUS_UM[0] <= vis < AMBIGUOUS_UM[1])


def unit_histogram(hairs) -> dict:
    """Follicular units {"1", "2", "3", "4+"}: counted hairs per opening inside the analysed area."""
    sizes: dict = {}
    for hair in hairs:
        if hair.counted and hair.root_px is not None:
            sizes[hair.unit] = sizes.get(hair.unit, 0) + 1
    fu = {"1": 0, "2": 0, "3": 0, "4+": 0}
    for n in sizes.values():
        fu["4+" if n >= 4 else str(n)] += 1
    return fu
