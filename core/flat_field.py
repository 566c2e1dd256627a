"""Flat-field correction and lighting-drift check from a white reference card.

A capture of a plain white card under the trichoscope records the lighting and lens
fall-off (vignetting).  ``flat_field_from_reference`` reduces it to a small smooth gain
map (64 x 48 float32, 12 KB, storable as bytes); ``apply_flat_field`` divides a frame by
it; ``compare_lighting`` re-images the card later and says whether the LED ring still
gives the baseline light.
"""
from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass, field

import cv2
import numba
import numpy as np

from core._validate import MAX_SIDE_PX, MIN_SIDE_PX, as_gray_float32, check_positive

MAP_W, MAP_H = 64, 48
MIN_REFERENCE_LEVEL = 0.2  # mean of a usable white card capture, of full scale
MAX_CLIPPED_FRACTION = 0.001
MIN_UNIFORMITY = 0.25  # darkest / brightest part of the lighting
STRUCTURE_DEVIATION = 0.04  # a 8x8-px patch this far (relative) from the smooth map is structure
MAX_STRUCTURE_FRACTION = 0.0005
MAX_ASPECT_MISMATCH = 0.02
_MAGIC = b"TFF1"
_HEADER = struct.Struct("<4sHHHHf")  # magic, map w, map h, source w, source h, mean level


@dataclass(frozen=True, eq=False)
class FlatField:
    """Lighting of the station, from a white reference card.

    gain:       (48, 64) float32 smooth card brightness divided by its mean (mean 1);
                cell centres are spread evenly over the source frame.
    mean_level: mean grey level of the card, 0..1 of full scale: the lighting baseline.
    uniformity: min / max of ``gain`` (1 = perfectly even light).
    source_shape: (height, width) px of the reference capture.
    """

    gain: np.ndarray = field(repr=False)
    mean_level: float
    source_shape: tuple[int, int]

    @property
    def uniformity(self) -> float:
        return float(self.gain.min() / self.gain.max())

    def correction_map(self, height: int, width: int) -> np.ndarray:
        """Per-pixel factor 1 / gain (float32, height x width) for frames of that size.

        Compute it once per frame size and pass it to ``apply_flat_field(correction=...)``.
        """
        h = int(check_positive(height, "height", 0, MAX_SIDE_PX))
        w = int(check_positive(width, "width", 0, MAX_SIDE_PX))
        sh, sw = self.source_shape
        if abs((w / h) / (sw / sh) - 1.0) > MAX_ASPECT_MISMATCH:
            raise ValueError(
                f"frame {w}x{h} does not have the aspect ratio of the reference {sw}x{sh}; "
                "capture a new white reference for this camera mode"
            )
        return _upsample_linear((1.0 / self.gain).astype(np.float32), h, w)

    def to_bytes(self) -> bytes:
        gh, gw = self.gain.shape
        sh, sw = self.source_shape
        header = _HEADER.pack(_MAGIC, gw, gh, sw, sh, self.mean_level)
        return header + np.ascontiguousarray(self.gain, dtype="<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "FlatField":
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < _HEADER.size:
            raise ValueError("data is not a stored flat field (too short)")
        magic, gw, gh, sw, sh, level = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 4 * gw * gh:
            raise ValueError("data is not a stored flat field (bad header or length)")
        gain = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).reshape(gh, gw).astype(np.float32)
        if not np.all(np.isfinite(gain)) or gain.min() <= 0:
            raise ValueError("data is not a stored flat field (invalid gain values)")
        return cls(gain=gain, mean_level=float(level), source_shape=(sh, sw))

    def to_dict(self) -> dict:
        return {
            "mean_level": round(self.mean_level, 4),
            "uniformity": round(self.uniformity, 4),
            "source_shape": list(self.source_shape),
            "map_shape": list(self.gain.shape),
            "data_base64": base64.b64encode(self.to_bytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FlatField":
        try:
            return cls.from_bytes(base64.b64decode(d["data_base64"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored flat field: {exc}") from None


@dataclass(frozen=True)
class LightingDrift:
    """Change of the lighting since the reference, measured on a new card capture.

    level_change: relative change of the mean card level (-0.08 = 8 % darker).
    shape_change: largest relative difference of the normalised lighting shape
                  (vignetting / LED pattern) anywhere in the frame (0.05 = 5 %).
    """

    reference_level: float
    level: float
    level_change: float
    shape_change: float
    tolerance: float
    within_tolerance: bool
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {
            "reference_level": round(self.reference_level, 4),
            "level": round(self.level, 4),
            "level_change": round(self.level_change, 4),
            "shape_change": round(self.shape_change, 4),
            "tolerance": self.tolerance,
            "within_tolerance": self.within_tolerance,
            "reason": self.reason,
        }


def _smooth_map(gray: np.ndarray) -> np.ndarray:
    """Card brightness averaged over 64 x 48 cells (float32)."""
    # a cell averages ~1000 px: noise is gone, and lighting varies little within a cell
    return cv2.resize(gray, (MAP_W, MAP_H), interpolation=cv2.INTER_AREA)


def flat_field_from_reference(image: np.ndarray) -> FlatField:
    """Build the flat field from a capture of a plain white card.

    Raises ValueError if the capture is not a plausible white card: too dark, clipped,
    too unevenly lit, or showing structure (hairs, dust, print) above 4 % contrast.
    """
    gray = as_gray_float32(image, "image")
    h, w = gray.shape
    mean = float(cv2.mean(gray)[0])
    if mean < MIN_REFERENCE_LEVEL:
        raise ValueError(
            f"image is too dark for a white reference (mean level {mean:.2f} < {MIN_REFERENCE_LEVEL}); "
            "is the LED ring on and the card under the lens?"
        )
    clipped = cv2.countNonZero((gray >= 0.99).view(np.uint8)) / gray.size
    if clipped > MAX_CLIPPED_FRACTION:
        raise ValueError(
            f"image is clipped ({100 * clipped:.1f} % of pixels at full scale); a white reference must "
            "not saturate: lower the exposure time"
        )
    smooth = _smooth_map(gray)
    gain = smooth / float(smooth.mean())
    ff = FlatField(gain=gain.astype(np.float32), mean_level=mean, source_shape=(h, w))
    structure = _structure_fraction(gray, ff)
    if structure > MAX_STRUCTURE_FRACTION:
        raise ValueError(
            f"image is not a plain white card: {100 * structure:.1f} % of it deviates more than "
            f"{100 * STRUCTURE_DEVIATION:.0f} % from smooth lighting (hairs, dust or print in view?)"
        )
    uniformity = float(gain.min() / gain.max())
    if uniformity < MIN_UNIFORMITY:
        raise ValueError(
            f"image is too unevenly lit for a white reference (darkest/brightest {uniformity:.2f} < "
            f"{MIN_UNIFORMITY}); is the card flat under the whole lens?"
        )
    return ff


def _structure_fraction(gray: np.ndarray, ff: FlatField) -> float:
    """Share of 8x8-px patches deviating from the smooth lighting (noise averages out)."""
    h, w = gray.shape
    pw, ph = max(8, w // 8), max(8, h // 8)
    patches = cv2.resize(gray, (pw, ph), interpolation=cv2.INTER_AREA)
    flat = patches * ff.correction_map(ph, pw) / ff.mean_level
    return float(np.count_nonzero(np.abs(flat - 1.0) > STRUCTURE_DEVIATION)) / flat.size


def apply_flat_field(image: np.ndarray, flat_field: FlatField, *,
                     correction: np.ndarray | None = None) -> np.ndarray:
    """Divide out the lighting shape; the frame keeps its mean brightness.

    Returns float32 in [0, 1] (values pushed above 1 are clipped): 2-D grey for a grey
    input, (h, w, 3) for an RGB input (every channel gets the same correction).
    ``correction`` is ``flat_field.correction_map(h, w)`` when the caller keeps it per
    frame size; otherwise it is computed here (~2 ms).
    """
    if not isinstance(flat_field, FlatField):
        raise ValueError(f"flat_field must be a FlatField, got {type(flat_field).__name__}")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    colour = image.ndim == 3 and image.shape[2] in (3, 4)
    if colour:
        img = _as_rgb(image)
    else:
        img = as_gray_float32(image, "image")
    h, w = img.shape[:2]
    if correction is None:
        correction = flat_field.correction_map(h, w)
    elif not isinstance(correction, np.ndarray) or correction.shape != (h, w):
        raise ValueError(f"correction must be a float32 array of shape {(h, w)} from correction_map()")
    out = np.empty(img.shape, np.float32)
    if colour:
        scale = {np.dtype(np.uint8): 1 / 255.0, np.dtype(np.uint16): 1 / 65535.0}.get(img.dtype, 1.0)
        _apply_rgb(img, correction, np.float32(scale), out)
    else:
        _apply_gray(img, correction, out)
    return out


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an RGB(A) frame like ``as_gray_float32`` does; returns its first 3 channels."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE_PX or max(h, w) > MAX_SIDE_PX:
        raise ValueError(f"image must be between {MIN_SIDE_PX} and {MAX_SIDE_PX} px on each side, got {w}x{h}")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ValueError(f"image must be uint8, uint16, float32 or float64, got {image.dtype}")
    rgb = image[:, :, :3]
    if image.dtype.kind == "f":
        lo, hi = float(rgb.min()), float(rgb.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"image is float and must lie in [0, 1] without NaN, got range [{lo:.3g}, {hi:.3g}]")
        if image.dtype == np.float64:
            rgb = rgb.astype(np.float32)
    return np.ascontiguousarray(rgb)


def compare_lighting(reference: FlatField, image_of_card: np.ndarray, tolerance: float = 0.05) -> LightingDrift:
    """Compare a new white-card capture with the reference lighting.

    Unlike ``flat_field_from_reference`` a dark capture is not refused: a failing LED
    ring is exactly what this check is for.
    """
    if not isinstance(reference, FlatField):
        raise ValueError(f"reference must be a FlatField, got {type(reference).__name__}")
    tol = check_positive(tolerance, "tolerance", 0.0, 1.0)
    gray = as_gray_float32(image_of_card, "image_of_card")
    h, w = gray.shape
    sh, sw = reference.source_shape
    if abs((w / h) / (sw / sh) - 1.0) > MAX_ASPECT_MISMATCH:
        raise ValueError(f"image_of_card is {w}x{h}, the reference was {sw}x{sh}: not comparable")
    level = float(cv2.mean(gray)[0])
    ref = reference.mean_level
    change = level / ref - 1.0
    smooth = _smooth_map(gray)
    if smooth.shape != reference.gain.shape:
        smooth = cv2.resize(smooth, reference.gain.shape[::-1], interpolation=cv2.INTER_AREA)
    mean = float(smooth.mean())
    shape = float(np.max(np.abs(smooth / mean / reference.gain - 1.0))) if mean > 1e-6 else 1.0
    reasons = []
    if abs(change) > tol:
        direction = "below" if change < 0 else "above"
        remedy = ("check the LED ring and its connector" if change < 0
                  else "check the LED current setting and that no daylight reaches the card")
        reasons.append(
            f"lighting drift: card level {level:.2f} is {100 * abs(change):.1f} % {direction} the baseline "
            f"{ref:.2f} (tolerance {100 * tol:.0f} %); {remedy}"
        )
    if shape > tol:
        reasons.append(
            f"lighting shape changed: up to {100 * shape:.1f} % different from the reference pattern "
            f"(tolerance {100 * tol:.0f} %); check that every LED of the ring is lit and the lens is clean"
        )
    return LightingDrift(
        reference_level=ref,
        level=level,
        level_change=change,
        shape_change=shape,
        tolerance=tol,
        within_tolerance=not reasons,
        reasons=tuple(reasons),
    )


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _upsample_linear(cells, h, w):
    """Bilinear upsampling of a cell-centred map to h x w px, extrapolating linearly
    (not clamping) in the half cell between the outer cell centres and the frame edge."""
    gh, gw = cells.shape
    x_idx = np.empty(w, np.int64)
    x_t = np.empty(w, np.float32)
    for x in range(w):
        sx = (x + 0.5) * gw / w - 0.5
        i = min(max(int(np.floor(sx)), 0), gw - 2)
        x_idx[x] = i
        x_t[x] = sx - i
    rows = np.empty((gh, w), np.float32)
    for r in range(gh):
        for x in range(w):
            i = x_idx[x]
            rows[r, x] = cells[r, i] + x_t[x] * (cells[r, i + 1] - cells[r, i])
    out = np.empty((h, w), np.float32)
    for y in range(h):
        sy = (y + 0.5) * gh / h - 0.5
        j = min(max(int(np.floor(sy)), 0), gh - 2)
        t = np.float32(sy - j)
        r0 = rows[j]
        r1 = rows[j + 1]
        o = out[y]
        for x in range(w):
            o[x] = r0[x] + t * (r1[x] - r0[x])
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def _apply_gray(img, correction, out):
    h, w = img.shape
    for y in range(h):
        for x in range(w):
            out[y, x] = min(img[y, x] * correction[y, x], np.float32(1.0))


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=True)
def _apply_rgb(img, correction, scale, out):
    h, w = correction.shape
    for y in range(h):
        for x in range(w):
            f = correction[y, x] * scale
            for c in range(3):
                out[y, x, c] = min(np.float32(img[y, x, c]) * f, np.float32(1.0))
