"""Synthetic test images: calibration cards, white reference cards and scalp-like frames.

Everything is seeded and rendered analytically, so the truth (µm per pixel, rotation,
distortion) is known exactly.  Images are float32 grey in [0, 1] unless stated.

Distortion model (``core.calibration``'s): a point at undistorted position ``u`` (pixels)
is imaged at ``c + (u - c) * (1 + k1 ρ² + k2 ρ⁴)``, ρ = |u - c| / R, with ``c`` the
distortion centre (image centre + ``distortion_centre_px``) and ``R`` the half diagonal
in pixels; k1 < 0 is barrel distortion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FRAME_W, FRAME_H = 2028, 1520


@dataclass(frozen=True)
class CardSpec:
    """Ground truth of a rendered calibration card."""

    pitch_um: float = 500.0
    um_per_px: float = 4.0
    aspect: float = 1.0  # um_per_px_y / um_per_px_x (non-square pixels)
    rotation_deg: float = 0.0
    phase_px: tuple[float, float] = (0.0, 0.0)  # lattice origin offset from the image centre
    dot_fraction: float = 0.4  # dot diameter / pitch
    k1: float = 0.0
    k2: float = 0.0  # r⁴ term
    distortion_centre_px: tuple[float, float] = (0.0, 0.0)  # optical axis off the image centre
    vignetting: float = 0.0  # relative fall-off at the corners (0.3 = corners 30 % darker)
    lighting_tilt: float = 0.0  # relative left-to-right gradient of the lighting
    blur_px: float = 0.0  # Gaussian sigma of the optics, pixels
    noise: float = 0.0  # Gaussian noise sigma, in units of full scale
    jpeg_quality: int | None = None
    width: int = FRAME_W
    height: int = FRAME_H
    paper: float = 0.85
    ink: float = 0.08

    @property
    def um_per_px_x(self) -> float:
        return self.um_per_px / math.sqrt(self.aspect)

    @property
    def um_per_px_y(self) -> float:
        return self.um_per_px * math.sqrt(self.aspect)


def _undistort_grid(spec: CardSpec) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted pixel coordinates (relative to the image centre) of every image pixel."""
    h, w = spec.height, spec.width
    ox, oy = spec.distortion_centre_px
    cx, cy = (w - 1) / 2.0 + ox, (h - 1) / 2.0 + oy
    dx = (np.arange(w, dtype=np.float64) - cx)[None, :]
    dy = (np.arange(h, dtype=np.float64) - cy)[:, None]
    if spec.k1 == 0.0 and spec.k2 == 0.0:
        return np.broadcast_to(dx + ox, (h, w)), np.broadcast_to(dy + oy, (h, w))
    r_half = math.hypot(w, h) / 2.0
    # invert r_d = r_u (1 + k1 r_u² + k2 r_u⁴) (radii / r_half) on a fine 1-D table
    ru_table = np.linspace(0.0, 1.3, 26001)
    rd_table = ru_table * (1.0 + spec.k1 * ru_table ** 2 + spec.k2 * ru_table ** 4)
    rd = np.sqrt(dx * dx + dy * dy) / r_half
    ru = np.interp(rd, rd_table, ru_table)
    scale = np.where(rd > 0, ru / np.maximum(rd, 1e-12), 1.0)
    return dx * scale + ox, dy * scale + oy


def _finish(img: np.ndarray, spec_blur: float, noise: float, jpeg: int | None, rng) -> np.ndarray:
    if spec_blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), spec_blur)
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    if jpeg is not None:
        ok, buf = cv2.imencode(".jpg", (img * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        assert ok
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    return img


def lighting_field(width: int, height: int, vignetting: float = 0.0, tilt: float = 0.0) -> np.ndarray:
    """Multiplicative lighting: 1 at the centre, 1 - vignetting at the corners, plus a tilt."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    xx = (np.arange(width, dtype=np.float32) - cx)[None, :]
    yy = (np.arange(height, dtype=np.float32) - cy)[:, None]
    field = 1.0 - vignetting * (xx * xx + yy * yy) / (cx * cx + cy * cy)
    if tilt:
        field = field * (1.0 + tilt * xx / width)
    return field.astype(np.float32)


def render_card(spec: CardSpec, seed: int = 0) -> np.ndarray:
    """Dark dots of diameter ``dot_fraction * pitch`` on a square lattice of ``pitch_um``."""
    rng = np.random.default_rng(seed)
    ux, uy = _undistort_grid(spec)
    ux = (ux - spec.phase_px[0]).astype(np.float32)
    uy = (uy - spec.phase_px[1]).astype(np.float32)
    # undistorted px -> card lattice units (anisotropic pixel scale, then rotate); float32
    # keeps ~1e-5 lattice units, far below a pixel
    t = math.radians(spec.rotation_deg)
    sx, sy = spec.um_per_px_x / spec.pitch_um, spec.um_per_px_y / spec.pitch_um
    cu = np.float32(math.cos(t) * sx) * ux + np.float32(math.sin(t) * sy) * uy
    cv = np.float32(-math.sin(t) * sx) * ux + np.float32(math.cos(t) * sy) * uy
    cu -= np.round(cu)
    cv -= np.round(cv)
    dist = np.sqrt(cu * cu + cv * cv)  # lattice units from the nearest dot centre
    radius = 0.5 * spec.dot_fraction
    px = spec.um_per_px / spec.pitch_um  # one pixel in lattice units
    coverage = np.clip(np.float32(0.5 + radius / px) - dist * np.float32(1.0 / px), 0.0, 1.0)
    img = (np.float32(spec.paper) - np.float32(spec.paper - spec.ink) * coverage).astype(np.float32)
    img *= lighting_field(spec.width, spec.height, spec.vignetting, spec.lighting_tilt)
    return _finish(img, spec.blur_px, spec.noise, spec.jpeg_quality, rng)


def random_card_spec(rng: np.random.Generator, **overrides) -> CardSpec:
    """A plausible station capture of a card: 2-8 µm/px, any rotation, mild barrel, noise."""
    pitch = float(rng.choice([250.0, 500.0, 1000.0]))
    lo = 2.0 if pitch <= 500 else 4.0  # 1 mm at < 4 µm/px leaves fewer than ~24 dots in frame
    kw = dict(
        pitch_um=pitch,
        um_per_px=float(rng.uniform(lo, 8.0)),
        rotation_deg=float(rng.uniform(0.0, 90.0)),
        phase_px=(float(rng.uniform(-100, 100)), float(rng.uniform(-100, 100))),
        dot_fraction=float(rng.uniform(0.35, 0.45)),
        k1=float(rng.uniform(-0.04, 0.0)),
        vignetting=float(rng.uniform(0.0, 0.35)),
        lighting_tilt=float(rng.uniform(-0.15, 0.15)),
        blur_px=float(rng.uniform(0.5, 2.0)),
        noise=float(rng.uniform(0.005, 0.02)),
        jpeg_quality=int(rng.choice([0, 85, 92])) or None,
    )
    kw.update(overrides)
    return CardSpec(**kw)


# ---------------------------------------------------------------- bad cards

def render_random_dots(n: int, seed: int = 0, width: int = FRAME_W, height: int = FRAME_H,
                       diameter_px: float = 40.0) -> np.ndarray:
    """Dots of card size scattered at random (not a lattice)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 0.85, np.float32)
    for _ in range(n):
        x, y = rng.uniform(60, width - 60), rng.uniform(60, height - 60)
        cv2.circle(img, (int(x * 16), int(y * 16)), int(diameter_px * 8), 0.08, -1, cv2.LINE_AA, 4)
    return _finish(img, 1.0, 0.01, None, rng)


def render_dots(centres: np.ndarray, diameter_px: float = 48.0, seed: int = 0, width: int = FRAME_W,
                height: int = FRAME_H) -> np.ndarray:
    """Card-like dots at the given (x, y) px centres: for lattices that are not square."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 0.85, np.float32)
    for x, y in centres:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), int(diameter_px * 8), 0.08, -1, cv2.LINE_AA, 4)
    return _finish(img, 1.0, 0.01, None, rng)


def jittered_grid(jitter_px: float, seed: int = 0, pitch_px: float = 120.0) -> np.ndarray:
    """A square grid whose dots are displaced at random (a badly printed or bent card)."""
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(16), np.arange(12))
    centres = np.column_stack([80 + pitch_px * ii.ravel(), 80 + pitch_px * jj.ravel()])
    return render_dots(centres + rng.normal(0, jitter_px, centres.shape), seed=seed)


def hexagonal_grid(pitch_px: float = 110.0) -> np.ndarray:
    rows = []
    for r in range(int(1400 / (pitch_px * 0.866))):
        for c in range(int(1900 / pitch_px)):
            rows.append((60 + c * pitch_px + (pitch_px / 2 if r % 2 else 0), 60 + r * pitch_px * 0.866))
    return render_dots(np.array(rows), diameter_px=0.4 * pitch_px)


def rectangular_grid(pitch_x_px: float = 100.0, pitch_y_px: float = 125.0) -> np.ndarray:
    ii, jj = np.meshgrid(np.arange(int(1900 / pitch_x_px)), np.arange(int(1400 / pitch_y_px)))
    centres = np.column_stack([60 + pitch_x_px * ii.ravel(), 60 + pitch_y_px * jj.ravel()])
    return render_dots(centres, diameter_px=40.0)


def render_blank(level: float = 0.8, seed: int = 0, width: int = FRAME_W, height: int = FRAME_H,
                 vignetting: float = 0.25, noise: float = 0.01) -> np.ndarray:
    """A uniform (white reference) card under the lens: vignetting and noise only."""
    rng = np.random.default_rng(seed)
    img = level * lighting_field(width, height, vignetting)
    return _finish(img, 0.0, noise, None, rng)


# ---------------------------------------------------------------- scalp-like frames

def _bezier(p0, p1, p2, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2


def render_scalp(seed: int = 0, width: int = FRAME_W, height: int = FRAME_H, n_hairs: int = 40,
                 hair_width_px: tuple[float, float] = (8.0, 22.0), level: float = 0.62,
                 vignetting: float = 0.2, blur_px: float = 0.8, noise: float = 0.008,
                 glare_spots: int = 0, motion_px: float = 0.0, motion_deg: float = 0.0,
                 exposure: float = 1.0, rgb: bool = False) -> np.ndarray:
    """A trichoscope-like frame: textured skin, follicle openings, dark curved hairs.

    ``exposure`` scales the whole frame before clipping (2.0 = two stops over-ish);
    ``glare_spots`` adds saturated specular blobs; ``motion_px`` adds a linear motion blur
    of that length along ``motion_deg``.  Returns float32 grey, or uint8 RGB if ``rgb``.
    """
    rng = np.random.default_rng(seed)
    # skin: low-frequency mottling + fine texture (furrows), slightly brighter centre
    base = rng.normal(0.0, 1.0, (height // 16 + 2, width // 16 + 2)).astype(np.float32)
    base = cv2.resize(cv2.GaussianBlur(base, (0, 0), 2.0), (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0.0, 1.0, (height, width)).astype(np.float32), (0, 0), 2.5)
    fine /= float(fine.std()) + 1e-9
    skin = level * (1.0 + 0.06 * base / (float(base.std()) + 1e-9) + 0.035 * fine)
    img = skin.astype(np.float32)
    # follicle openings: small darker round spots
    for _ in range(n_hairs // 2):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(6, 14)
        cv2.circle(img, (int(x * 16), int(y * 16)), int(r * 16), level * 0.75, -1, cv2.LINE_AA, 4)
    # hairs: dark quadratic curves of varying width
    for _ in range(n_hairs):
        p0 = np.array([rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height])
        ang = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.3, 0.9) * width
        p2 = p0 + length * np.array([math.cos(ang), math.sin(ang)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * length, 2)
        pts = (_bezier(p0, p1, p2) * 16).astype(np.int32).reshape(-1, 1, 2)
        wpx = rng.uniform(*hair_width_px)
        shade = float(rng.uniform(0.08, 0.25))
        cv2.polylines(img, [pts], False, shade, max(1, int(round(wpx))), cv2.LINE_AA, 4)
    img *= lighting_field(width, height, vignetting)
    img *= exposure
    for _ in range(glare_spots):
        x, y = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        axes = (int(rng.uniform(25, 70) * 16), int(rng.uniform(15, 45) * 16))
        cv2.ellipse(img, (int(x * 16), int(y * 16)), axes, rng.uniform(0, 180), 0, 360, 1.2, -1, cv2.LINE_AA, 4)
    if blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_px)
    if motion_px > 0:
        k = int(math.ceil(motion_px)) | 1
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        dx, dy = math.cos(math.radians(motion_deg)), math.sin(math.radians(motion_deg))
        for s in np.linspace(-motion_px / 2, motion_px / 2, 4 * k):
            kernel[int(round(c + s * dy)), int(round(c + s * dx))] += 1.0
        img = cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    out = _finish(img, 0.0, noise, None, rng)
    if rgb:
        tint = np.array([1.0, 0.86, 0.78], np.float32)  # skin is reddish
        return (np.clip(out[:, :, None] * tint, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out
