"""Public entry points: ``analyze``, ``analyze_preview``, ``warm_up``, ``configure_threads``.

Threading: no numba ``parallel=True``.  On the 2-core station it made a full analysis
2.5x slower (100 -> 250 ms, benchmarks/bench_core.py), and its workqueue layer aborts on
concurrent parallel calls.  Instead, two steps of ``analyze`` run on a second plain thread
(``_beside.Beside``) with kernels that release the GIL: the image-quality report, and half
of the width fits.  That took a full frame from 48.7 to 40.7 ms here with results
identical to the one-thread run.  Analyses may run from any thread; the station still uses
one analysis thread.  OpenCV's own pool is set to 1 thread by ``configure_threads`` (the
station calls it; importing ``core`` changes no global state).

Every kernel is compiled with ``error_model="numpy"``: a division by zero gives inf or NaN
instead of raising, and the fuzz test checks that none reaches a result.  With Python's
error model, numba 0.61 (the Bookworm set) left loops holding a division unvectorised:
``ridge_response`` took 11.8 instead of 1.6 ms a level, and a full frame 56 instead of 46 ms.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import _shaft_kernels as _shafts
from . import _crossing_joins, _piece_joins, follicles, hairs, polarity
from ._beside import Beside
from ._validate import as_gray_float32, check_positive, check_um_per_px
from .image_quality import measure_prepared
from .result import AnalysisResult, Hair, PreviewResult, thickness_histogram
from .skin_mask import find_skin_mask

MAX_VELLUS_THRESHOLD_UM = 200.0
MAX_MIN_LENGTH_UM = 10000.0
PREVIEW_MIN_LENGTH_UM = 150.0
PREVIEW_DETECT_UM_PER_PX = 14.0
UNDER_SKIN_MAX_UM = 500.0
MIN_ASPECT = 2.5  # shaft length / width below which a ridge is a blob
MIN_STRAIGHTNESS = 0.7  # end-to-end distance / length; rims of round things curl


def analyze(image, um_per_px, *, vellus_threshold_um=40.0, min_visible_length_um=150.0, mask=None) -> AnalysisResult:
    """Count hairs and measure shaft thickness on one trichoscope image.

    Parameters
    ----------
    image : ndarray
        Grey (H, W) or colour (H, W, 3|4, RGB order) image, uint8 / uint16, or float in [0, 1].
    um_per_px : float
        Scale in micrometres per pixel (0.2-100; trichoscopes give about 2-8).
    vellus_threshold_um : float
        Hairs at most this thick (µm) are vellus, thicker ones terminal.
    min_visible_length_um : float
        A hair counts when at least this much of its shaft (µm) lies in the analysed area.
    mask : ndarray of bool, optional
        (H, W), True = analyse.  Combined with the automatic skin mask (banners, scale bars,
        text and clipped areas are always excluded).

    Returns
    -------
    AnalysisResult.  An otherwise valid image with nothing on it (e.g. uniform) gives zero
    hairs and None for the mean and median thickness; it is not an error.

    Raises
    ------
    ValueError naming the parameter when an input is unusable.
    """
    t0 = time.perf_counter()
    gray = as_gray_float32(image, "image", integer_luma=True)
    um = check_um_per_px(um_per_px)
    vellus = check_positive(vellus_threshold_um, "vellus_threshold_um", 0.0, MAX_VELLUS_THRESHOLD_UM)
    min_len = check_positive(min_visible_length_um, "min_visible_length_um", 0.0, MAX_MIN_LENGTH_UM)
    user_mask = _check_mask(mask, gray.shape)
    h, w = gray.shape

    skin = find_skin_mask(gray, user_mask)
    factor = hairs.detection_factor(um)
    det, valid = hairs.to_detection_grid(gray, skin, factor)
    # the quality kernels release the GIL: measured beside the hair pipeline
    quality = Beside(measure_prepared, gray, skin, det if factor == 2 else None)
    found: list[Hair] = []
    if valid.sum() > 64:
        contrast = hairs.relative_contrast(det, valid, um * factor)
        sets = polarity.trace(contrast, valid, um * factor, factor, min_len)  # dark and white hair: two
        widths = [hairs.measure_widths(gray, skin, lines, sets[1 - k] if len(sets) == 2 else None)
                  for k, lines in enumerate(sets)]
        found = _assemble(sets, widths, skin, valid, um, min_len)

    area_cm2 = float(skin.sum()) * (um * 1e-4) ** 2
    thick = np.array([hr.thickness_um for hr in found], float)
    n = len(found)
    units = follicles.unit_histogram([hr.unit for hr in found])
    return AnalysisResult(
        width=w, height=h, um_per_px=um, area_cm2=area_cm2, hair_count=n,
        density_per_cm2=n / area_cm2 if area_cm2 > 0 else 0.0,
        mean_thickness_um=float(thick.mean()) if n else None,
        median_thickness_um=float(np.median(thick)) if n else None,
        vellus_threshold_um=vellus,
        vellus_count=int(np.sum(thick <= vellus)), terminal_count=int(np.sum(thick > vellus)),
        cumulative_thickness_mm_per_cm2=float(thick.sum() / 1000.0 / area_cm2) if area_cm2 > 0 else 0.0,
        follicular_units=units, thickness_histogram=thickness_histogram(thick), hairs=tuple(found),
        quality=quality.result(), elapsed_ms=(time.perf_counter() - t0) * 1000.0, skin_mask=skin,
    )


def _assemble(sets, widths, skin, valid, um, min_len) -> list:
    """Hairs from measured lines (one ``hairs.Lines`` and its ``hairs.Widths`` per polarity):
    roots, trimming at the opening, count rule and units."""
    pts = np.concatenate([w.dense_pts for w in widths])
    starts = np.concatenate([[0], np.cumsum(np.concatenate([np.diff(w.dense_starts) for w in widths]))]).astype(np.int64)
    if len(starts) < 2:
        return []
    width_px = np.concatenate([np.asarray(w.width_px, dtype=np.float64) for w in widths])
    dark = np.concatenate([np.full(len(w.width_px), lines.dark) for lines, w in zip(sets, widths)])
    # a blob or the rim of one (follicle opening, flake) is not a shaft; nor is a line
    # where no cross-section looked like one (width NaN)
    arc, ok, seg = _shafts.shaft_candidates(pts, starts, width_px, MIN_ASPECT, MIN_STRAIGHTNESS)
    cand = np.nonzero(ok)[0]
    if cand.size == 0:
        return []
    thick_um = width_px[cand] * um
    root_xy = np.full((cand.size, 2), np.nan)
    root_end = np.full(cand.size, -1, np.int64)
    contrast, factor = sets[0].contrast, sets[0].factor  # one detection grid for both polarities
    for pol in {bool(d) for d in dark[cand]}:
        sel = dark[cand] == pol
        root_xy[sel], root_end[sel] = follicles.find_roots(pts, starts, thick_um[sel], contrast, factor, um, valid,
                                                           lines=cand[sel], dark=pol)
    # the shaft starts at the opening: what lies beyond is hair under the skin
    q, q_starts, q_seg = _shafts.orient_and_trim(pts, starts, seg, cand, root_xy, root_end)
    has_root = root_end >= 0
    drop = _shafts.under_skin_pieces(q, q_starts, has_root, root_xy, thick_um, arc[cand], um, UNDER_SKIN_MAX_UM)
    visible_um = _shafts.visible_lengths(q, q_starts, q_seg, skin) * um
    keep = np.nonzero(~drop & ~(visible_um < min_len))[0]
    if keep.size == 0:
        return []
    # one shaft trimmed at a crossing's false "root" on either side: join the pieces
    q, q_starts, q_seg, root_xy, has_root, thick_um, visible_um = _piece_joins.join_at_crossings(
        q, q_starts, q_seg, keep, has_root, root_xy, thick_um, visible_um, um)
    keep = np.arange(len(q_starts) - 1)
    units = follicles.group_units(root_xy, has_root, um, q, q_starts, keep, thick_um)
    mid = _shafts.midpoints(q, q_starts, q_seg, keep).tolist()  # x, y, end-to-end dx, dy
    q32 = q.astype(np.float32)
    qs, vis, thick = q_starts.tolist(), visible_um.tolist(), thick_um.tolist()
    roots = [tuple(r) if has else None for r, has in zip(root_xy.tolist(), has_root.tolist())]
    out = []
    for c, i in enumerate(keep.tolist()):
        x, y, dx, dy = mid[c]
        ang = math.degrees(math.atan2(-dy, dx)) % 180.0
        out.append(Hair(q32[qs[i]:qs[i + 1]].copy(), x, y, ang, vis[i], thick[i], roots[i], units[c]))
    return out


def _check_mask(mask, shape):
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"mask must be a numpy bool array, got {type(mask).__name__}")
    if mask.shape != shape:
        raise ValueError(f"mask must have the image's shape {shape}, got {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"mask must be a bool array, got {mask.dtype}")
    return mask


def analyze_preview(image, um_per_px) -> PreviewResult:
    """Fast live-view pass: centre lines (px of ``image``) and a hair count; no widths,
    roots, units or quality.

    Meant for a binned ~1014x760 frame (about 8 µm per px at the station's lens); lines are
    found on a ~14 µm grid, so the finest vellus hairs may be missed and the count can
    differ from ``analyze``'s (same 150 µm visible-length rule, no width checks, long pieces of
    a shaft broken at crossings are not joined).
    """
    t0 = time.perf_counter()
    gray = as_gray_float32(image, "image", integer_luma=True)
    um = check_um_per_px(um_per_px)
    factor = hairs.detection_factor(um, PREVIEW_DETECT_UM_PER_PX)
    det = hairs.downsample(gray, factor)
    valid = find_skin_mask(det)  # on the detection grid: a preview needs no finer mask
    out = []
    if valid.sum() > 64:
        contrast = hairs.relative_contrast(det, valid, um * factor)
        for lines in polarity.trace(contrast, valid, um * factor, factor, PREVIEW_MIN_LENGTH_UM,
                                    join_long_pieces=False):
            out += [p.astype(np.float32) for p, n in zip(lines.lines, lines.length_px)
                    if n * um >= PREVIEW_MIN_LENGTH_UM]
    h, w = gray.shape
    return PreviewResult(w, h, um, len(out), tuple(out), (time.perf_counter() - t0) * 1000.0)


def warm_up() -> float:
    """Compile (or load from the numba cache) and run every kernel once on a small synthetic
    image, so the first real capture pays no JIT. Returns the time taken in ms."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    img = np.full((160, 200), 0.7, np.float32)
    yy, xx = np.mgrid[0:160, 0:200]
    for k, (a, b) in enumerate(((0.3, 20.0), (-0.5, 120.0))):
        d = np.abs(yy - (a * xx + b)) / math.hypot(a, 1)
        img -= np.float32(0.5) * np.clip(1.0 - d / (3 + 2 * k), 0, 1).astype(np.float32)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    img = np.clip(img, 0, 1).astype(np.float32)
    analyze(img, 4.0)
    analyze((img * 255).astype(np.uint8), 4.0)
    analyze_preview(img, 8.0)
    _crossing_joins.exercise()  # these kernels run only when a frame has pieces to join
    _piece_joins.exercise()
    polarity.exercise()  # and this one only when a frame shows dark and white hair
    return (time.perf_counter() - t0) * 1000.0


def configure_threads(opencv_threads: int = 1) -> int:
    """Set OpenCV's thread pool for this process (default 1) and return the value set.

    The station calls this once at start-up and keeps 1, so that the camera, web and
    MQTT threads have a core while an analysis runs.  benchmarks/bench_core.py times both
    settings: with 2 OpenCV threads a full analysis was 45 -> 39 ms here, and the OpenCV
    baseline has been faster or slower from run to run (72 -> 52 ms, 73 -> 99 ms).
    """
    import cv2

    n = int(check_positive(opencv_threads, "opencv_threads", 0, 64))
    cv2.setNumThreads(n)
    return n
