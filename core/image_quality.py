"""Image quality gate for trichoscope frames: focus, exposure, glare, motion blur.

``measure_image_quality`` reduces a frame to a few normalised figures (~4-5 ms for
2028x1520 on one core); ``evaluate_quality`` compares them with ``QualityThresholds``
and says, in words a technician can act on, why a frame is not fit for counting.

Everything after one full-resolution pass runs on a half-resolution copy (2x2 box
mean): the figures are per-pixel averages or ratios, so they do not depend on the
frame size, and a blur of σ = 2 px at full resolution is still σ = 1 px there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from core._image_quality_kernels import (
    counts,
    counts_masked,
    gradient_moments,
    isotropic_sums,
    pool2_products,
    pool2_tensor,
    pooled_fine_tensor,
)
from core._validate import as_gray_float32

CLIP_LEVEL = 0.99  # a pixel at or above this (of full scale) is clipped
DARK_LEVEL = 0.02  # a pixel at or below this is crushed to black
GLARE_LEVEL = 0.95  # quarter-res level at or above this is a specular candidate
GLARE_MIN_WIDTH_QUARTER_PX = 5  # opening element (~20 px full res): hair shine is thinner
SHARPNESS_GAIN = 2.0  # maps the fine/coarse gradient-energy ratio (~0.4 when sharp) onto 0..1
MIN_CONTRAST = 0.01  # coarse-scale RMS gradient / mean level below which a frame is featureless
MOTION_WINDOW_EIGHTH_PX = 1.0  # Gaussian window of the coarse structure tensor (~8 px full res)
MOTION_MIN_STRUCTURE = 0.02  # coarse gradient (share of mean level per quarter-res px) worth judging
MOTION_MIN_SUPPORT = 0.005  # isotropic-place weight (share of the frame) needed for full confidence
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_BOX5 = np.ones((5, 5), np.uint8)


@dataclass(frozen=True)
class ImageQuality:
    """Quality figures of one frame; all fractions are of the analysed area (skin_mask).

    sharpness:        focus measure, 0 (featureless / very blurred) .. ~1 (pin sharp);
                      ratio of fine-scale to coarse-scale gradient energy, so it does not
                      depend on exposure level, contrast or frame size.
    clipped_fraction: fraction of pixels >= 0.99 of full scale (0..1).
    dark_fraction:    fraction of pixels <= 0.02 of full scale (0..1).
    glare_fraction:   fraction covered by near-saturated (>= 0.95) blobs at least ~20 px
                      wide (0..1);
                      thin bright streaks along hair shafts are not counted.
    motion_blur:      0 = fine detail is isotropic .. 1 = all fine detail lost along one
                      direction (1 - smallest/largest eigenvalue of the fine-scale gradient
                      tensor pooled over places without coarse direction): a linear
                      motion of ≥ 10 px reads ~0.45-0.6 on frames with skin texture, but
                      sharp frames of parallel hairs on smooth skin also read up to ~0.55.
    motion_angle_deg: axis of the strongest blur, 0..180° (0 = along image x, 90 = along
                      image y: clockwise on screen); only meaningful if motion_blur is high.
    usable_fraction:  fraction of the whole frame that is skin (skin_mask) and neither
                      clipped, glare nor black (0..1).
    mean_level:       mean grey level of the analysed area, 0..1 of full scale.
    """

    sharpness: float
    clipped_fraction: float
    dark_fraction: float
    glare_fraction: float
    motion_blur: float
    motion_angle_deg: float
    usable_fraction: float
    mean_level: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """Pass limits for ``evaluate_quality`` (defaults tuned on station-like phantoms).

    min_sharpness 0.44: on 52 phantoms of tests/phantoms (all hair and skin kinds, JPEG),
    optics blur σ ≤ 1.44 px scored 0.45-0.81 and σ = 2 px 0.33-0.44 (σ ≥ 2.5: 0.30-0.32);
    the margin is thin, so σ ≈ 1.5-2 px frames may go either way.
    max_motion_blur 0.5: linear motion of 15-25 px reads 0.55-0.63 on frames with skin
    texture, but defocused frames of long parallel hairs read up to ~0.53; it only picks
    the message for a frame already below min_sharpness (see evaluate_quality).
    max_clipped_fraction 2 %, max_glare_fraction 3 %: the share of skin a count may lose
    before hair density is biased by more than a few percent.  max_dark_fraction 5 %.
    glare_max_mean_level 0.7: saturation on a frame brighter than this overall is reported
    as overexposure, not glare (skin sits at ~0.3-0.65 at the station's exposure).
    min_usable_fraction 0.6: less skin than that and the density is too noisy.
    mean level 0.12-0.9: the fixed exposure puts skin at ~0.3-0.7 of full scale.
    """

    min_sharpness: float = 0.44
    max_clipped_fraction: float = 0.02
    max_dark_fraction: float = 0.05
    max_glare_fraction: float = 0.03
    glare_max_mean_level: float = 0.7
    max_motion_blur: float = 0.5
    min_usable_fraction: float = 0.6
    min_mean_level: float = 0.12
    max_mean_level: float = 0.9


@dataclass(frozen=True)
class QualityCheck:
    name: str
    value: float
    threshold: float
    passed: bool
    reason: str  # empty when passed

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "value": round(float(self.value), 4),
            "threshold": round(float(self.threshold), 4),
            "passed": bool(self.passed),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class QualityVerdict:
    passed: bool
    checks: tuple[QualityCheck, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """Technician-facing messages of the failed checks, most important first."""
        return tuple(c.reason for c in self.checks if not c.passed)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "checks": [c.to_dict() for c in self.checks],
        }


# ------------------------------------------------------------------ public API


def measure_image_quality(gray: np.ndarray, skin_mask: np.ndarray | None = None) -> ImageQuality:
    """Measure focus, exposure, glare and motion blur of one frame.

    Parameters
    ----------
    gray : ndarray
        Frame, float32 2-D in [0, 1] (used without a copy); RGB/uint8/uint16 are converted
        (colour with OpenCV's integer luma, as the analysis core does).
    skin_mask : ndarray of bool, optional
        Same height and width as ``gray``; True where skin is usable for analysis
        (e.g. not the lens rim).  None means the whole frame.
    """
    g = as_gray_float32(gray, "gray", integer_luma=True)
    if skin_mask is not None:
        if not isinstance(skin_mask, np.ndarray):
            raise ValueError(f"skin_mask must be a numpy bool array, got {type(skin_mask).__name__}")
        if skin_mask.shape != g.shape:
            raise ValueError(f"skin_mask must have the shape of gray {g.shape}, got {skin_mask.shape}")
    return measure_prepared(g, skin_mask)


def measure_prepared(g: np.ndarray, skin_mask: np.ndarray | None = None, half: np.ndarray | None = None
                     ) -> ImageQuality:
    """``measure_image_quality`` of a frame its caller has already checked and converted
    (float32 2-D in [0, 1], ``skin_mask`` bool of its shape or None), as ``core.analyze``
    has.  ``half``: ``cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA)`` when
    the caller has it already (the detection grid often is exactly that)."""
    h, w = g.shape
    clip, dark_level = np.float32(CLIP_LEVEL), np.float32(DARK_LEVEL)
    if skin_mask is None:
        stats = counts(g, clip, dark_level)
    else:
        mask = np.ascontiguousarray(skin_mask, dtype=np.bool_).view(np.uint8)
        *stats, mask_sub = counts_masked(g, mask, clip, dark_level)
    n_mask, n_clip, n_dark, level_sum, checker_sum, n_blocks = stats
    if n_mask == 0:
        return ImageQuality(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    clipped = n_clip / n_mask
    dark = n_dark / n_mask
    mean_level = level_sum / n_mask
    noise = math.sqrt(math.pi / 2.0) * checker_sum / max(n_blocks, 1)  # full-res sigma

    if half is None or half.shape != (h // 2, w // 2) or half.dtype != np.float32:
        half = cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    quarter = cv2.pyrDown(half)
    eighth = cv2.pyrDown(quarter)
    if skin_mask is None:
        half_mask = np.ones(half.shape, np.uint8)
        quarter_mask = np.ones(quarter.shape, np.uint8)
        eighth_mask = np.ones(eighth.shape, np.uint8)
    else:
        # The edge between skin and what is masked out (lens rim, a burnt-in banner) is
        # often the sharpest thing in the frame: keep every gradient and every pyramid
        # filter footprint (5 px per level) clear of it.
        half_mask = cv2.erode(mask_sub, _CROSS)  # mask_sub: mask[::2, ::2] cut to (h // 2, w // 2)
        quarter_mask = cv2.erode(np.ascontiguousarray(half_mask[::2, ::2]), _BOX5)
        eighth_mask = cv2.erode(np.ascontiguousarray(quarter_mask[::2, ::2]), _BOX5)

    glare = _glare_fraction(quarter, quarter_mask)
    usable = max(0.0, n_mask / (h * w) * (1.0 - max(clipped, glare) - dark))
    sharpness = _sharpness(half, half_mask, eighth, eighth_mask, noise)
    motion, angle = _motion_blur(half, quarter, quarter_mask, noise)
    return ImageQuality(
        sharpness=sharpness,
        clipped_fraction=clipped,
        dark_fraction=dark,
        glare_fraction=glare,
        motion_blur=motion,
        motion_angle_deg=angle,
        usable_fraction=usable,
        mean_level=mean_level,
    )


def _glare_fraction(quarter: np.ndarray, quarter_mask: np.ndarray) -> float:
    """Share of skin covered by near-saturated blobs too wide to be hair shine."""
    bright = (quarter >= GLARE_LEVEL).view(np.uint8) & quarter_mask
    k = GLARE_MIN_WIDTH_QUARTER_PX
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    blobs = cv2.morphologyEx(bright, cv2.MORPH_OPEN, element)
    return cv2.countNonZero(blobs) / max(cv2.countNonZero(quarter_mask), 1)


def _sharpness(half, half_mask, eighth, eighth_mask, noise) -> float:
    """Fine-vs-coarse gradient energy ratio.

    Content (hair density, contrast, orientation) scales both scales alike and cancels in
    the ratio; defocus removes fine-scale energy.  Sensor noise adds isotropic fine
    energy, which is subtracted so a noisy blurred frame does not look sharp.
    """
    fine = gradient_moments(half, half_mask)
    coarse = gradient_moments(eighth, eighth_mask)
    if fine[3] < 16 or coarse[3] < 16:
        return 0.0
    # white noise of full-res sigma n: the 2x2 mean has n/2; forward differences sharing
    # the centre pixel give n²/2 per axis and n²/4 on the cross term
    noise_energy = 0.5 * noise * noise
    jf = np.array([fine[0] / fine[3] - noise_energy, fine[1] / fine[3] - noise_energy,
                   fine[2] / fine[3] - 0.5 * noise_energy])
    jc = np.array([coarse[0], coarse[1], coarse[2]]) / coarse[3]
    tc = jc[0] + jc[1]
    mean = float(eighth.mean())
    if tc <= 1e-12 or mean <= 1e-6:
        return 0.0
    # A frame with almost no structure (blank, lens off the skin) has nothing to focus on;
    # its fine/coarse ratio is pure noise, so it is scored as not sharp.
    contrast = math.sqrt(tc) / mean
    structure = min(1.0, max(0.0, (contrast - MIN_CONTRAST) / MIN_CONTRAST))
    ratio = max(0.0, jf[0] + jf[1]) / tc
    return float(min(1.0, SHARPNESS_GAIN * ratio) * structure)


def _motion_blur(half: np.ndarray, quarter: np.ndarray, quarter_mask: np.ndarray,
                 noise: float) -> tuple[float, float]:
    """Anisotropy of fine detail where the coarse structure is isotropic.

    Hairs make a frame directional at every scale, so the fine-scale tensor is pooled
    only over places whose coarse structure has no direction (follicle openings, pores,
    hair tips): there, sharp detail is isotropic and a linear motion blur removes it
    along one direction.  Returns (1 - λmin/λmax, direction of the blur in degrees).
    """
    fine = pooled_fine_tensor(half, np.float32(0.25 * noise * noise))
    h4, w4 = fine.shape[1:]
    q = cv2.GaussianBlur(quarter[:h4, :w4], (7, 7), 1.5)
    qx = cv2.Sobel(q, cv2.CV_32F, 1, 0, ksize=3)
    qy = cv2.Sobel(q, cv2.CV_32F, 0, 1, ksize=3)
    # Both tensors are pooled once more (2x2) and the coarse one smoothed over ~8 px full
    # res; working on eighth-res maps keeps this step well under a millisecond.
    fine8 = pool2_tensor(fine)
    h8, w8 = fine8.shape[:2]
    coarse = cv2.GaussianBlur(pool2_products(qx, qy, h8, w8), (5, 5), MOTION_WINDOW_EIGHTH_PX)
    mask8 = np.ascontiguousarray(quarter_mask[: 2 * h8: 2, : 2 * w8: 2])
    # Sobel gain 8: structure must exceed ~2 % of the mean level per quarter-res pixel
    min_trace = (8 * MOTION_MIN_STRUCTURE * float(q.mean())) ** 2
    sxx, syy, sxy, total = isotropic_sums(fine8, coarse, mask8, min_trace)
    if total <= 0:
        return 0.0, 0.0
    lam, vec = np.linalg.eigh(np.array([[sxx, sxy], [sxy, syy]]))
    if lam[1] <= 0:
        return 0.0, 0.0
    # too few isotropic places to judge: damp the figure instead of guessing
    support = min(1.0, total / (MOTION_MIN_SUPPORT * mask8.size))
    motion = (1.0 - max(lam[0], 0.0) / lam[1]) * support
    angle = math.degrees(math.atan2(vec[1, 0], vec[0, 0])) % 180.0
    return float(motion), float(angle)


def evaluate_quality(quality: ImageQuality, thresholds: QualityThresholds = QualityThresholds()) -> QualityVerdict:
    """Compare ``quality`` with ``thresholds``; each failed check carries a remedy."""
    if not isinstance(quality, ImageQuality):
        raise ValueError(f"quality must be an ImageQuality, got {type(quality).__name__}")
    if not isinstance(thresholds, QualityThresholds):
        raise ValueError(f"thresholds must be a QualityThresholds, got {type(thresholds).__name__}")
    q, t = quality, thresholds
    motion = q.motion_blur > t.max_motion_blur and q.sharpness < t.min_sharpness
    # Saturated blobs on normally exposed skin are glare (remedy: polariser); on a frame
    # that is bright overall they are overexposure (remedy: exposure).  Never both.
    bright = q.mean_level >= t.glare_max_mean_level
    glare = q.glare_fraction > t.max_glare_fraction and not bright
    overexposed = q.clipped_fraction > t.max_clipped_fraction and (
        bright or q.glare_fraction < 0.5 * q.clipped_fraction)
    exposure_failed = (overexposed or glare or q.dark_fraction > t.max_dark_fraction
                       or not t.min_mean_level <= q.mean_level <= t.max_mean_level)
    # usable_fraction also shrinks with clipping and glare: blame the skin only otherwise
    no_skin = q.usable_fraction < t.min_usable_fraction and not exposure_failed
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    checks = [
        _check("clipping", q.clipped_fraction, t.max_clipped_fraction, not overexposed,
               f"overexposed: {pct(q.clipped_fraction)} of pixels clipped > {pct(t.max_clipped_fraction)}; "
               "lower the exposure time or LED current"),
        _check("dark", q.dark_fraction, t.max_dark_fraction, q.dark_fraction <= t.max_dark_fraction,
               f"underexposed: {pct(q.dark_fraction)} of pixels black > {pct(t.max_dark_fraction)}; "
               "check the LED ring is on, raise the exposure time"),
        _check("brightness_low", q.mean_level, t.min_mean_level, q.mean_level >= t.min_mean_level,
               f"too dark: mean level {q.mean_level:.2f} < {t.min_mean_level:.2f}; "
               "check the LED ring and its connector, raise the exposure time"),
        _check("brightness_high", q.mean_level, t.max_mean_level, q.mean_level <= t.max_mean_level,
               f"too bright: mean level {q.mean_level:.2f} > {t.max_mean_level:.2f}; "
               "lower the exposure time or LED current"),
        _check("glare", q.glare_fraction, t.max_glare_fraction, not glare,
               f"glare: {pct(q.glare_fraction)} of the skin is specular highlight > {pct(t.max_glare_fraction)}; "
               "use the polariser / dab oily skin dry"),
        # An unsharp frame fails exactly one of focus / motion: motion when the lost detail
        # is directional.  A sharp frame is never failed for motion, because strongly
        # oriented hair fields read up to ~0.55 on motion_blur without any blur.
        _check("focus", q.sharpness, t.min_sharpness, q.sharpness >= t.min_sharpness or motion,
               f"out of focus: sharpness {q.sharpness:.2f} < {t.min_sharpness:.2f}; "
               "press the lens flat to the skin and refocus"),
        _check("motion", q.motion_blur, t.max_motion_blur, not motion,
               f"motion blur: directional blur {q.motion_blur:.2f} > {t.max_motion_blur:.2f} (along "
               f"{q.motion_angle_deg:.0f}°) and sharpness {q.sharpness:.2f} < {t.min_sharpness:.2f}; "
               "hold the trichoscope still during capture"),
        _check("skin", q.usable_fraction, t.min_usable_fraction, not no_skin,
               f"too little skin visible: {pct(q.usable_fraction)} usable < {pct(t.min_usable_fraction)}; "
               "place the lens flat on the scalp, part the hair"),
    ]
    return QualityVerdict(passed=all(c.passed for c in checks), checks=tuple(checks))


def _check(name: str, value: float, threshold: float, passed: bool, reason: str) -> QualityCheck:
    return QualityCheck(name, float(value), float(threshold), bool(passed), "" if passed else reason)
