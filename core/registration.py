"""Re-find the spot of a baseline capture: register a live or new frame against it.

The pattern of follicle openings and the skin texture around them is a fingerprint of a
scalp spot (TrichoLAB's follicle map, Kasprzak 2019); not re-finding the same spot is the
main error in a change of hair count (Bokhari 2022: 7-12 % with re-found areas, < 1 % hair
to hair).  ``register_to_baseline`` finds the similarity transform (shift, rotation, scale
≈ 1) that takes the current frame onto the baseline frame from ORB features of a
flattened, hair-suppressed working copy of both images (~512 px wide; ratio test, RANSAC
on the matches, least squares on the inliers).  When the features do not agree (hairs
re-combed or grown over most of the frame), the pattern of follicle openings detected in
both images, or hair roots given by the analysis, is matched instead (geometric hashing
of point pairs).  (Root points from the analysis are not used to refine a feature
transform: on phantoms they moved it from 1-3 µm to 6-16 µm off.)

Conventions: ``matrix_px`` is a 2x3 affine taking a pixel (x, y) of the current frame
(x right, y down, full resolution of the current image) to baseline pixels.  The offset
``dx_um, dy_um`` is where the centre of the current frame lies relative to the centre of
the baseline frame, in the baseline frame, in µm; ``rotation_deg`` is the rotation of
the current frame relative to the baseline (positive = image x axis turned towards +y,
i.e. clockwise on screen).  Failure (too few features, no consistent transform, a scale
far from 1) is a result with ``success=False`` and a ``reason``, never an exception.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from core._validate import as_gray_float32, check_positive, check_um_per_px
from core._registration_features import FeatureSet, detect_features, match_features
from core._registration_points import match_point_patterns

WORK_WIDTH_PX = 512  # images are registered at about this width (working resolution)
MIN_INLIERS = 12  # fewer RANSAC inliers than this: no consistent transform
MIN_INLIER_RATIO = 0.12  # inliers / ratio-test matches below this: no consistent transform
MAX_SCALE_DEVIATION = 0.08  # |scale - 1| above this: not the same optics, refuse
RANSAC_THRESHOLD_WORK_PX = 3.0
MIN_POINT_INLIERS = 8  # follicle-opening fallback: at least this many openings must coincide
MIN_POINT_FRACTION = 0.15  # ... and this share of the smaller set (unrelated spots: <= 5 of 12-58 seen)
POINT_TOL_UM = 30.0  # an opening coincides when within this distance after the transform


@dataclass(frozen=True)
class Registration:
    """Pose of the current frame relative to the baseline frame.

    success:           False when the frames could not be registered; see ``reason``.
    reason:            "" on success, else a sentence saying why it failed.
    dx_um, dy_um:      centre of the current frame minus centre of the baseline frame,
                       in baseline image axes (x right, y down), µm.
    offset_um:         hypot(dx_um, dy_um), µm.
    rotation_deg:      rotation of the current frame relative to the baseline, degrees,
                       (-180, 180], positive turns image x towards image y.
    scale:             current-to-baseline magnification ratio (≈ 1 with the same optics).
    overlap_fraction:  share of the baseline frame also seen in the current frame (0..1).
    matched_points:    number of feature matches consistent with the transform (inliers).
    match_quality:     inliers / candidate matches after the ratio test (0..1).
    residual_um:       RMS distance of the inliers from the fitted transform, µm.
    on_target:         success and offset_um <= max_offset_um and |rotation_deg| <= max_rotation_deg.
    max_offset_um, max_rotation_deg: the on-target thresholds used.
    matrix_px:         2x3 affine (nested tuples) current px -> baseline px; identity on failure.
    method:            "features" (ORB on the hair-suppressed skin) or "openings" (point pattern
                       of follicle openings / given root points); "" on failure.
    """

    success: bool
    reason: str
    dx_um: float
    dy_um: float
    offset_um: float
    rotation_deg: float
    scale: float
    overlap_fraction: float
    matched_points: int
    match_quality: float
    residual_um: float
    on_target: bool
    max_offset_um: float
    max_rotation_deg: float
    matrix_px: tuple = field(default=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
    method: str = ""

    @property
    def matrix(self) -> np.ndarray:
        """``matrix_px`` as a (2, 3) float64 array (current px -> baseline px)."""
        return np.array(self.matrix_px, dtype=np.float64)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matrix_px"] = [list(r) for r in self.matrix_px]
        return d


def _failure(reason: str, max_offset_um: float, max_rotation_deg: float, matched: int = 0,
             quality: float = 0.0) -> Registration:
    return Registration(False, reason, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, int(matched), float(quality), 0.0,
                        False, max_offset_um, max_rotation_deg)


def _fit_features(src: np.ndarray, dst: np.ndarray):
    """RANSAC similarity on feature matches: (2x3 working px or None, inliers, candidates, RMS px)."""
    n_cand = len(src)
    if n_cand < MIN_INLIERS:
        return None, 0, n_cand, 0.0
    m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD_WORK_PX,
                                         maxIters=3000, confidence=0.999, refineIters=20)
    n_in = int(inl.sum()) if inl is not None else 0
    if m is None or n_in < MIN_INLIERS or n_in < MIN_INLIER_RATIO * n_cand:
        return None, n_in, n_cand, 0.0
    sel = inl.ravel().astype(bool)
    d = src[sel] @ m[:, :2].T + m[:, 2] - dst[sel]
    return m, n_in, n_cand, float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))))


def _overlap_fraction(m: np.ndarray, cur_size: tuple, base_size: tuple) -> float:
    """Area of (current frame mapped into the baseline) ∩ baseline frame / baseline area."""
    cw, ch = cur_size
    bw, bh = base_size
    corners = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64)
    poly = (corners @ m[:, :2].T + m[:, 2]).astype(np.float32)
    base = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]], np.float32)
    area, _ = cv2.intersectConvexConvex(poly, base)
    return float(min(1.0, max(0.0, area / (bw * bh))))


def _as_points(points: object, name: str) -> np.ndarray | None:
    if points is None:
        return None
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of (x, y) pixel positions") from None
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be an (N, 2) array of finite (x, y) pixel positions, got shape {arr.shape}")
    return arr


class PreviewRegistrar:
    """Registers a stream of frames against one baseline whose features are computed once.

    ``PreviewRegistrar(baseline, um_per_px)`` prepares the baseline (its working copy and
    ORB features); ``register(frame, um_per_px=None)`` then costs only the current frame's
    features, the matching and RANSAC.  Frames may come at another resolution than the
    baseline (the preview stream is usually half the still size): pass their own scale.
    """

    def __init__(self, baseline: np.ndarray, um_per_px: float, *, baseline_points=None,
                 max_offset_um: float = 200.0, max_rotation_deg: float = 3.0,
                 work_width_px: int = WORK_WIDTH_PX, n_features: int = 2000, n_frame_features: int = 1000):
        gray = as_gray_float32(baseline, "baseline")
        self.um_per_px = check_um_per_px(um_per_px, "um_per_px")
        self.max_offset_um = check_positive(max_offset_um, "max_offset_um")
        self.max_rotation_deg = check_positive(max_rotation_deg, "max_rotation_deg", hi=180.0)
        self.work_width_px = int(check_positive(work_width_px, "work_width_px", lo=63, hi=8192))
        self.n_features = int(check_positive(n_features, "n_features", lo=49, hi=100000))
        self.n_frame_features = int(check_positive(n_frame_features, "n_frame_features", lo=49, hi=100000))
        self.baseline_points = _as_points(baseline_points, "baseline_points")
        h, w = gray.shape
        self.size_px = (w, h)
        # working scale in µm per working px; never upsample
        self.work_um_per_px = self.um_per_px * max(1.0, w / self.work_width_px)
        self._features: FeatureSet = detect_features(gray, self.um_per_px / self.work_um_per_px,
                                                     self.n_features, self.um_per_px)

    def register(self, current: np.ndarray, um_per_px: float | None = None, *, current_points=None) -> Registration:
        """Register ``current`` (any size, scale ``um_per_px``, default the baseline's)."""
        gray = as_gray_float32(current, "current")
        cur_umpp = self.um_per_px if um_per_px is None else check_um_per_px(um_per_px, "um_per_px")
        cur_points = _as_points(current_points, "current_points")
        h, w = gray.shape
        fc = cur_umpp / self.work_um_per_px  # current px -> working px
        fb = self.um_per_px / self.work_um_per_px  # baseline px -> working px
        feats = detect_features(gray, fc, self.n_frame_features, cur_umpp)
        lim_off, lim_rot = self.max_offset_um, self.max_rotation_deg
        if len(self._features) < MIN_INLIERS:
            return _failure(f"too few features in the baseline image ({len(self._features)}); "
                            "blank, blurred or featureless frame", lim_off, lim_rot)
        if len(feats) < MIN_INLIERS:
            return _failure(f"too few features in the current image ({len(feats)}); "
                            "blank, blurred or featureless frame", lim_off, lim_rot)
        src, dst = match_features(feats, self._features)
        m_work, n_in, n_cand, resid_work = _fit_features(src, dst)
        method = "features"
        if m_work is None:
            # fall back on the pattern of follicle openings / hair roots (hairs moved or grew)
            b_pts, a_pts = feats.openings, self._features.openings
            if cur_points is not None and self.baseline_points is not None:
                b_pts, a_pts = cur_points * fc, self.baseline_points * fb
            m_pts, pairs = match_point_patterns(a_pts, b_pts, POINT_TOL_UM / self.work_um_per_px,
                                                math.hypot(*self._features.size), MAX_SCALE_DEVIATION)
            need = max(MIN_POINT_INLIERS, int(math.ceil(MIN_POINT_FRACTION * min(len(a_pts), len(b_pts)))))
            if m_pts is None or len(pairs) < need:
                n_feat = f"{n_in} of {n_cand} feature matches agree"
                n_pt = f"{len(pairs)} of {min(len(a_pts), len(b_pts))} follicle openings"
                return _failure(f"no consistent transform: {n_feat}, {n_pt}; the frames do not show "
                                "the same spot", lim_off, lim_rot, n_in, n_in / max(n_cand, 1))
            m_work, method = m_pts, "openings"
            n_in, n_cand = len(pairs), min(len(a_pts), len(b_pts))
            d = b_pts[pairs[:, 1]] @ m_pts[:, :2].T + m_pts[:, 2] - a_pts[pairs[:, 0]]
            resid_work = float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))))
        ratio = n_in / max(n_cand, 1)
        # working px -> full px: baseline = m_work applied to current px * fc, then / fb
        # (pixel centres: x_work = (x + 0.5) * f - 0.5 for a resize by f)
        m = np.empty((2, 3))
        m[:, :2] = m_work[:, :2] * (fc / fb)
        m[:, 2] = (m_work[:, :2] @ np.full(2, 0.5 * fc - 0.5) + m_work[:, 2] + 0.5) / fb - 0.5
        scale = float(math.hypot(m[0, 0], m[1, 0])) * (self.um_per_px / cur_umpp)
        if abs(scale - 1.0) > MAX_SCALE_DEVIATION:
            return _failure(f"no consistent transform: scale {scale:.3f} is far from 1 "
                            "(same optics expected)", lim_off, lim_rot, n_in, ratio)
        residual_um = resid_work * self.work_um_per_px
        centre_c = np.array([w / 2.0, h / 2.0])
        centre_b = np.array([self.size_px[0] / 2.0, self.size_px[1] / 2.0])
        off_px = m[:, :2] @ centre_c + m[:, 2] - centre_b
        dx_um, dy_um = float(off_px[0] * self.um_per_px), float(off_px[1] * self.um_per_px)
        rot = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        offset = math.hypot(dx_um, dy_um)
        overlap = _overlap_fraction(m, (w, h), self.size_px)
        on_target = offset <= lim_off and abs(rot) <= lim_rot
        return Registration(True, "", dx_um, dy_um, offset, rot, scale, overlap, n_in, float(ratio),
                            residual_um, bool(on_target), lim_off, lim_rot,
                            tuple(tuple(float(v) for v in r) for r in m), method)


def register_to_baseline(baseline: np.ndarray, current: np.ndarray, um_per_px: float, *,
                         baseline_points=None, current_points=None, current_um_per_px: float | None = None,
                         max_offset_um: float = 200.0, max_rotation_deg: float = 3.0,
                         work_width_px: int = WORK_WIDTH_PX) -> Registration:
    """Register ``current`` against ``baseline`` (same spot, another capture).

    baseline, current: grey or RGB images (uint8, uint16 or float in [0, 1]).
    um_per_px:         scale of the baseline (and of the current frame unless
                       ``current_um_per_px`` is given), µm per pixel.
    baseline_points, current_points: optional (N, 2) hair-root / follicle-opening positions
                       in px of each image (from the analysis); when both are given they
                       replace the detected openings in the fallback when features disagree.
    max_offset_um, max_rotation_deg: on-target thresholds (default 0.2 mm and 3 degrees).
    Returns a ``Registration``; failures are reported in it, not raised.
    """
    reg = PreviewRegistrar(baseline, um_per_px, baseline_points=baseline_points,
                           max_offset_um=max_offset_um, max_rotation_deg=max_rotation_deg,
                           work_width_px=work_width_px, n_features=2000, n_frame_features=2000)
    return reg.register(current, current_um_per_px, current_points=current_points)
