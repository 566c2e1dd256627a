"""Scale calibration from an image of a dot-grid calibration card.

The technician puts a card with dark dots on a square lattice of known pitch under the
trichoscope.  ``calibrate_grid`` finds the dots with sub-pixel centres, walks the
lattice to give every dot its integer index (i, j), and fits an affine lattice plus
radial lens distortion.  It raises ``CalibrationError`` with the reason rather than
return a doubtful scale.

Distortion unit: a point at undistorted distance r_u (px) from the image centre is
imaged at r_d = r_u (1 + k1 ρ² + k2 ρ⁴), ρ = r_u / R, R = half the image diagonal in px,
radii measured from the distortion centre (the image centre unless fitted);
k1 < 0 is barrel distortion, and k1 = -0.01 moves a corner point by 1 % of R.  The
scale is the paraxial one, at the image centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from core._calibration_lattice import assign_indices, canonical_basis, fit_lattice, lattice_basis
from core._validate import as_gray_float32, check_positive

MIN_DOTS = 12
MIN_DOT_CONTRAST = 0.2  # dots must be at least 20 % darker than the local card background
MIN_DOT_AREA_PX = 12
MIN_LATTICE_SHARE = 0.6  # share of round dots that must sit on one lattice
MIN_COHERENCE = 0.6  # neighbour-direction agreement (1 = perfect square lattice)
MAX_RESIDUAL_SHARE = 0.03  # RMS residual as a share of the dot spacing
MAX_RESIDUAL_PX = 1.0
MAX_ABS_K1 = 0.25
MIN_DOTS_FOR_K2 = 40
MAX_ANISOTROPY = 0.05  # square card: row and column spacing agree within 5 % (pixel aspect)
MAX_SKEW_DEG = 2.0


class CalibrationError(ValueError):
    """The image is not a usable calibration grid; the message says why."""


@dataclass(frozen=True)
class GridCalibration:
    """Result of ``calibrate_grid``.

    um_per_px:     geometric mean of um_per_px_x and um_per_px_y (µm per pixel), at the
                   image centre (distortion removed).
    um_per_px_x:   µm on the card per pixel step along image x.
    um_per_px_y:   µm on the card per pixel step along image y.
    rotation_deg:  angle of the card's rows from the image x axis towards image y (i.e.
                   clockwise on screen), in [0, 90) — a square grid repeats every 90°.
    distortion_k1: radial distortion per normalised radius² (see module docstring).
    distortion_k2: the r⁴ term per normalised radius⁴ (fitted when ≥ 40 dots reach 60 %
                   of the half diagonal, else 0).
    distortion_centre_px: (dx, dy) px of the distortion centre (optical axis) from the
                   image centre; fitted under the same condition as k2, else (0, 0).
    residual_px:   RMS distance between the dots and the fitted model, px.
    dots:          number of dots used in the fit.
    pitch_um:      dot pitch of the card, µm (as given).
    """

    um_per_px: float
    um_per_px_x: float
    um_per_px_y: float
    rotation_deg: float
    distortion_k1: float
    distortion_k2: float
    distortion_centre_px: tuple[float, float]
    residual_px: float
    dots: int
    pitch_um: float

    def to_dict(self) -> dict:
        return {
            "um_per_px": round(self.um_per_px, 6),
            "um_per_px_x": round(self.um_per_px_x, 6),
            "um_per_px_y": round(self.um_per_px_y, 6),
            "rotation_deg": round(self.rotation_deg, 3),
            "distortion_k1": round(self.distortion_k1, 5),
            "distortion_k2": round(self.distortion_k2, 5),
            "distortion_centre_px": [round(float(v), 2) for v in self.distortion_centre_px],
            "residual_px": round(self.residual_px, 4),
            "dots": int(self.dots),
            "pitch_um": float(self.pitch_um),
        }


def calibrate_grid(image: np.ndarray, pitch_um: float, *,
                   expected_um_per_px: tuple[float, float] = (1.0, 12.0)) -> GridCalibration:
    """Measure µm per pixel from an image of a dot-grid card of ``pitch_um`` pitch.

    Parameters
    ----------
    image : ndarray
        Grey or RGB capture of the card (uint8, uint16 or float in [0, 1]).
    pitch_um : float
        Centre-to-centre distance of neighbouring dots on the card, µm.
    expected_um_per_px : (float, float)
        Plausible scale range, µm per pixel; a result outside it is refused.

    Raises
    ------
    ValueError
        Invalid arguments.
    CalibrationError
        The image is not a usable grid (too few dots, not a lattice, blank, blurred,
        irregular spacing, implausible scale); the message says which.
    """
    gray = as_gray_float32(image, "image")
    pitch = check_positive(pitch_um, "pitch_um", 0.0, 100_000.0)
    try:
        lo, hi = (float(v) for v in expected_um_per_px)
    except (TypeError, ValueError):
        raise ValueError(f"expected_um_per_px must be a pair (low, high), got {expected_um_per_px!r}") from None
    if not (0.0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"expected_um_per_px must satisfy 0 < low < high, got {expected_um_per_px!r}")

    h, w = gray.shape
    darkness, contrast = _normalised_darkness(gray, max_dot_px=0.55 * pitch / lo)
    if contrast < MIN_DOT_CONTRAST:
        raise CalibrationError(
            f"not a usable grid: no dark dots (darkest features only {100 * contrast:.0f} % below the "
            f"card background, need {100 * MIN_DOT_CONTRAST:.0f} %); blank, featureless or badly blurred image"
        )
    points, n_blobs = _find_dots(darkness, 0.5 * contrast)
    if len(points) < MIN_DOTS:
        raise CalibrationError(
            f"not a usable grid: only {len(points)} round dots found (need {MIN_DOTS}) among {n_blobs} dark "
            "blobs; is the card in view and in focus? (a finer-pitch card gives more dots)"
        )

    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    r_half = math.hypot(w, h) / 2.0
    spacing, theta, coherence = lattice_basis(points, centre)
    if coherence < MIN_COHERENCE:
        raise CalibrationError(
            f"not a usable grid: dots are not on a square lattice (neighbour directions agree "
            f"{coherence:.2f} < {MIN_COHERENCE}); {len(points)} dots found"
        )
    indices, reached, conflicts = assign_indices(points, spacing, theta, centre)
    n_on = int(reached.sum())
    if n_on < MIN_DOTS or n_on < MIN_LATTICE_SHARE * len(points) or conflicts > 0.05 * n_on:
        raise CalibrationError(
            f"not a usable grid: only {n_on} of {len(points)} dots lie on one lattice "
            f"({conflicts} index conflicts); irregular or random dots"
        )
    pts, q = points[reached], indices[reached]
    params, res, pts, q = _robust_fit(pts, q, centre, r_half)
    if len(pts) < max(MIN_DOTS, MIN_LATTICE_SHARE * n_on):
        raise CalibrationError(
            f"not a usable grid: only {len(pts)} of {n_on} lattice dots fit the model; irregular spacing"
        )
    rms = float(np.sqrt(np.mean(np.sum(res * res, axis=1))))
    limit = min(MAX_RESIDUAL_PX, MAX_RESIDUAL_SHARE * spacing)
    if rms > limit:
        raise CalibrationError(
            f"not a usable grid: dots deviate {rms:.2f} px RMS from a regular lattice (limit {limit:.2f} px); "
            "irregular spacing, a bent card or strong distortion"
        )
    k1, k2 = float(params[6]), float(params[7])
    if abs(k1) > MAX_ABS_K1:
        raise CalibrationError(f"not a usable grid: implausible lens distortion k1 = {k1:.3f}")

    m = canonical_basis(params[2:6].reshape(2, 2))
    len_a, len_b = float(np.hypot(*m[:, 0])), float(np.hypot(*m[:, 1]))
    skew = abs(90.0 - math.degrees(math.acos(np.clip(m[:, 0] @ m[:, 1] / (len_a * len_b), -1.0, 1.0))))
    if abs(len_a / len_b - 1.0) > MAX_ANISOTROPY or skew > MAX_SKEW_DEG:
        raise CalibrationError(
            f"not a usable grid: not a square lattice (spacings differ by {100 * abs(len_a / len_b - 1):.1f} %, "
            f"axes {skew:.1f}° off square; limits {100 * MAX_ANISOTROPY:.0f} %, {MAX_SKEW_DEG:g}°); "
            "wrong card, or the card is not flat against the lens"
        )
    um_per_px_map = pitch * np.linalg.inv(m)  # image px step -> card µm
    ux = float(np.hypot(*um_per_px_map[:, 0]))
    uy = float(np.hypot(*um_per_px_map[:, 1]))
    scale = math.sqrt(ux * uy)
    if not (lo <= scale <= hi):
        raise CalibrationError(
            f"not a usable grid: scale {scale:.3f} µm/px is outside the expected {lo:g}-{hi:g} µm/px; "
            f"wrong pitch ({pitch:g} µm given) or wrong card?"
        )
    rotation = math.degrees(math.atan2(m[1, 0], m[0, 0])) % 90.0
    if rotation > 90.0 - 5e-4:  # would print as 90.000: same as 0 for a square grid
        rotation = 0.0
    return GridCalibration(
        um_per_px=scale,
        um_per_px_x=ux,
        um_per_px_y=uy,
        rotation_deg=rotation,
        distortion_k1=k1,
        distortion_k2=k2,
        distortion_centre_px=(float(params[8]), float(params[9])),
        residual_px=rms,
        dots=len(pts),
        pitch_um=pitch,
    )


def _robust_fit(pts, q, centre, r_half):
    """Fit, drop dots far off the model (dust, a damaged dot), refit.

    The r⁴ term and the optical-axis offset are fitted only when the dots reach well out
    from the centre and are numerous enough to tell them from k1; otherwise they stay 0.
    """
    rho_max = float(np.max(np.hypot(*(pts - centre).T))) / r_half
    full = len(pts) >= MIN_DOTS_FOR_K2 and rho_max >= 0.6
    params, res = fit_lattice(pts, q, centre, r_half, full=full)
    for _ in range(2):
        err = np.hypot(res[:, 0], res[:, 1])
        cut = max(0.3, 4.0 * 1.4826 * float(np.median(err)))
        keep = err <= cut
        if keep.all():
            break
        pts, q = pts[keep], q[keep]
        if len(pts) < MIN_DOTS:
            break
        params, res = fit_lattice(pts, q, centre, r_half, full=full)
    return params, res, pts, q


def _normalised_darkness(gray: np.ndarray, max_dot_px: float) -> tuple[np.ndarray, float]:
    """1 - image / card background, and the typical depth of the darkest features.

    The background (vignetting, uneven light) is a morphological closing that removes
    dots up to ``max_dot_px`` wide, computed on a reduced copy.
    """
    h, w = gray.shape
    factor = int(min(16, max(1, max_dot_px // 12)))
    small = cv2.resize(gray, (max(8, w // factor), max(8, h // factor)), interpolation=cv2.INTER_AREA)
    k = int(max_dot_px / factor) + 3
    k = min(k, 2 * max(small.shape) + 1) | 1
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, element, borderType=cv2.BORDER_REPLICATE)
    bg = cv2.GaussianBlur(bg, (0, 0), max(1.0, k / 4.0))
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    darkness = 1.0 - gray / np.maximum(bg, 1e-3)
    sample = darkness[::4, ::4]
    depth = float(np.percentile(sample, 99.5)) if sample.size else 0.0
    return np.ascontiguousarray(darkness, dtype=np.float32), depth


def _find_dots(darkness: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Sub-pixel centres of round dark blobs; returns (points (n, 2) x/y px, blobs seen)."""
    binary = (darkness > threshold).view(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    h, w = darkness.shape
    x, y, bw, bh, area = (stats[1:, k] for k in range(5))
    inside = (x > 1) & (y > 1) & (x + bw < w - 1) & (y + bh < h - 1)
    fill = area / (0.25 * math.pi * np.maximum(bw * bh, 1))
    aspect = np.maximum(bw, bh) / np.maximum(np.minimum(bw, bh), 1)
    round_ = inside & (area >= MIN_DOT_AREA_PX) & (fill > 0.7) & (fill < 1.3) & (aspect < 1.6)
    if round_.sum() >= 3:
        median = float(np.median(area[round_]))
        round_ &= (area > 0.5 * median) & (area < 2.0 * median)
    boxes = np.column_stack([x, y, bw, bh])[round_].astype(np.int64)
    if len(boxes) == 0:
        return np.zeros((0, 2)), n - 1
    return _weighted_centroids(darkness, boxes, np.float32(0.3 * threshold)), n - 1


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _weighted_centroids(darkness, boxes, floor):
    """Darkness-weighted centroid of each box grown by a quarter of its size."""
    h, w = darkness.shape
    out = np.empty((boxes.shape[0], 2))
    for k in range(boxes.shape[0]):
        x0, y0, bw, bh = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        pad = max(2, (max(bw, bh) + 3) // 4)
        sx = 0.0
        sy = 0.0
        s = 0.0
        for y in range(max(0, y0 - pad), min(h, y0 + bh + pad)):
            for x in range(max(0, x0 - pad), min(w, x0 + bw + pad)):
                v = darkness[y, x] - floor
                if v > 0:
                    sx += v * x
                    sy += v * y
                    s += v
        out[k, 0] = sx / s
        out[k, 1] = sy / s
    return out
