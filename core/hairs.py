"""Finding hair centre lines and measuring shaft widths.

Pipeline: grey image -> detection grid (~7 µm per px, so the cost does not grow with the
sensor) -> relative contrast against a smooth skin background -> multi-scale Hessian
ridges -> non-maximum suppression -> tracing -> joining across crossings (short gaps in
``_linking``, long pieces of one shaft in ``_crossing_joins``) -> widths by profile fits on
the full-resolution image.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import cv2
import numpy as np

from . import _duplicate_traces, _linking
from ._beside import Beside
from ._crossing_joins import join_across_crossings
from ._ridge_kernels import merge_level, non_max_suppress, relative_to_background, ridge_response, trace_ridges
from ._width_kernels import blocks_on_shaft, draw_lines, measure_blocks, resample_lines, robust_widths

DETECT_UM_PER_PX = 7.0
MIN_WIDTH_UM = 10.0
MAX_WIDTH_UM = 130.0
BACKGROUND_UM = 400.0  # median tiles of the skin background
BACKGROUND_CELL_UM = 32.0  # pre-averaging before the median
# thresholds on the scale-normalised ridge response of the relative-contrast image
T_HIGH = 0.05
T_LOW = 0.025
# hairs brighter than the skin (blond, grey): the skin is already pale, so their relative
# contrast is smaller for the same shaft; the ridge thresholds are lower for them (0.018:
# development blond/grey frames F1 0.855 -> 0.861 against 0.022, 0.016 and 0.015 lower)
T_HIGH_BRIGHT = 0.018
T_LOW_BRIGHT = 0.012
RIDGE_MIN_CONTRAST = 0.03
KINK_DEG = 15.0
BACKGROUND_OUTLIER = 0.06
# 2*sqrt(3)*sigma / sqrt(2): bar width whose response peaks at scale sigma (gamma = 2)
WIDTH_PER_SIGMA = 2.45
# end tangents for joining fragments: fitted over 3 widths from 1 width in (the last width
# of a trace stopped by a crossing bends towards the other hair); with the turn-weighted
# join cost, development F1 0.817 -> 0.824 and validation clear-image F1 0.828 -> 0.835
END_SKIP_WIDTHS = 1.0
END_FIT_WIDTHS = 3.0
MAX_BLOCKS = 8  # per hair; each block averages ~6 µm x factor of shaft
PROFILE_SAMPLES = 31
# shafts brighter than the skin: a quarter of them read > 20 µm thin (their specular streak
# taken for the shaft); the bar fit is repeated with the streak opened away (an element of
# 0.6 ridge widths + 2 px) and, when that bar is 1.4 times wider, without the samples the
# opening lowered.  Development blond and grey frames: width MAE 16.7 -> 8.8 and 15.1 ->
# 6.8 µm (0.4 and 0.8 widths, and gains 1.2 and 1.7, were worse on one or both)
STREAK_OPEN_WIDTHS = 0.6
STREAK_MIN_GAIN = 1.4


@dataclasses.dataclass
class Lines:
    """Traced centre lines in full-resolution px, before measurement."""

    lines: list  # of (N, 2) float arrays, x, y px
    width_est_px: np.ndarray  # rough width per line from the winning ridge scale (px)
    dark: bool  # hairs darker than skin
    contrast: np.ndarray  # relative contrast image on the detection grid
    factor: int  # full-res px per detection px
    length_px: np.ndarray  # arc length of every line, full-resolution px


def detection_factor(um_per_px: float, detect_um_per_px: float = DETECT_UM_PER_PX) -> int:
    """Full-resolution px per detection px, so detection runs at about ``detect_um_per_px``."""
    return max(1, int(round(detect_um_per_px / um_per_px)))


def to_detection_grid(gray: np.ndarray, mask: np.ndarray, factor: int):
    """``gray`` and ``mask`` averaged down by ``factor`` (a detection pixel is valid when at
    least half of it is)."""
    if factor == 1:
        return gray, mask
    det = downsample(gray, factor)
    m = cv2.resize(mask.view(np.uint8), det.shape[::-1], interpolation=cv2.INTER_AREA) > 0
    return det, m


def downsample(gray: np.ndarray, factor: int) -> np.ndarray:
    """Area-average ``gray`` by ``factor`` (at least 8 px a side)."""
    if factor == 1:
        return gray
    h, w = gray.shape
    return cv2.resize(gray, (max(8, w // factor), max(8, h // factor)), interpolation=cv2.INTER_AREA)


def relative_contrast(det: np.ndarray, valid: np.ndarray, um_per_det_px: float) -> np.ndarray:
    """(image / smooth skin background) - 1, zero outside ``valid``; removes vignetting.

    The background is the median of ~0.4 mm tiles (a mean would be pulled towards the
    hair colour where hairs are dense), smoothed and interpolated back.
    """
    h, w = det.shape
    q = max(1, int(round(BACKGROUND_CELL_UM / um_per_det_px)))
    small = cv2.resize(det, (max(1, w // q), max(1, h // q)), interpolation=cv2.INTER_AREA)
    vs = cv2.resize(valid.astype(np.float32), small.shape[::-1], interpolation=cv2.INTER_AREA) > 0.99
    t = max(1, int(round(BACKGROUND_UM / (um_per_det_px * q))))
    ty, tx = max(1, small.shape[0] // t), max(1, small.shape[1] // t)
    crop = np.where(vs, small, np.nan)[: ty * t, : tx * t] if small.shape[0] >= t and small.shape[1] >= t else None
    def skin_level():
        return float(np.median(small[vs])) if vs.any() else float(det.mean())

    if crop is None:
        bg_small = np.full((1, 1), skin_level(), np.float32)
    else:
        tiles = crop.reshape(ty, t, tx, t).transpose(0, 2, 1, 3).reshape(ty, tx, t * t)
        cnt = np.sum(np.isfinite(tiles), axis=2)
        srt = np.sort(tiles, axis=2)  # NaN (masked) sort last
        med = np.take_along_axis(srt, np.maximum(cnt // 2, 0)[..., None], axis=2)[..., 0]
        full = cnt >= t * t // 4
        # tiles with too little skin take the typical skin level: the median of the others
        fill = float(np.median(med[full])) if full.any() else skin_level()
        bg_small = np.where(full, med, fill).astype(np.float32)
        if min(bg_small.shape) > 1:
            bg_small = cv2.GaussianBlur(bg_small, (0, 0), 0.8)
    bg = cv2.resize(bg_small, (w, h), interpolation=cv2.INTER_LINEAR)
    return relative_to_background(np.ascontiguousarray(det, np.float32), bg, np.ascontiguousarray(valid))


def ridge_maps(contrast: np.ndarray, dark: bool, um_per_det_px: float):
    """Strongest ridge response over scales: response, normal (nx, ny), scale sigma (det px)."""
    max_sigma = MAX_WIDTH_UM / um_per_det_px / WIDTH_PER_SIGMA
    level = contrast
    r = nx = ny = scale = None
    var_acc = 0.0  # blur variance accumulated by pyrDown, in fine px^2
    lvl = 0
    while True:
        step = 2**lvl
        sigma_eff = math.sqrt(var_acc + step * step)
        g = cv2.GaussianBlur(level, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)
        rl, nxl, nyl = ridge_response(g, sigma_eff / step, dark)
        if r is None:
            r, nx, ny = rl, nxl, nyl
            scale = np.full(r.shape, sigma_eff, np.float32)
        else:
            r_up = _pyr_up_to(rl, lvl, r.shape)
            merge_level(r_up, nxl, nyl, float(step), sigma_eff, r, nx, ny, scale)
        if sigma_eff * 1.6 > max_sigma or min(level.shape) < 24:
            break
        var_acc += step * step  # pyrDown's 5-tap kernel has unit variance at its input scale
        level = cv2.pyrDown(level)
        lvl += 1
    return r, nx, ny, scale


def _pyr_up_to(img: np.ndarray, levels: int, shape) -> np.ndarray:
    """Smooth x2**levels upsampling that keeps pyrDown's sample positions (coarse i -> fine
    i * 2**levels); a bilinear one would put every ridge maximum on a coarse row."""
    sizes = [shape]
    for _ in range(levels - 1):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    out = img
    for hh, ww in reversed(sizes):
        out = cv2.pyrUp(out, dstsize=(ww, hh))
    return out


def trace_lines(contrast, valid, dark, um_per_det_px, factor, min_length_um=0.0, join_long_pieces=True) -> Lines:
    """Centre lines (full-res px) of the ridges in ``contrast``; lines shorter than
    ``min_length_um`` (with a margin: the exact visible length is decided later) are dropped.
    ``join_long_pieces=False`` skips ``_crossing_joins`` (1.3-1.8 ms; the preview's budget is 8 ms)."""
    r, nx, ny, scale = ridge_maps(contrast, dark, um_per_det_px)
    erode = cv2.erode(valid.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
    # a ridge must also be darker (brighter) than the skin: the flanks of a bright flake
    # (dark opening) look like valleys (crests) to the Hessian but are skin-coloured
    sign = -1.0 if dark else 1.0
    erode &= sign * contrast > RIDGE_MIN_CONTRAST
    t_high, t_low = (T_HIGH, T_LOW) if dark else (T_HIGH_BRIGHT, T_LOW_BRIGHT)
    flag, off = non_max_suppress(r, nx, ny, np.float32(t_low), erode)
    max_cross = int(1.5 * MAX_WIDTH_UM / um_per_det_px) + 4
    pts, sc, _, starts = trace_ridges(r, nx, ny, flag, off, scale, np.float32(t_high), 2, max_cross)
    pts = pts.astype(np.float64)
    sc = sc.astype(np.float64)
    widths = _linking.fragment_ends(pts, starts, sc, WIDTH_PER_SIGMA, END_SKIP_WIDTHS, END_FIT_WIDTHS)[0]
    starts = _linking.split_at_kinks(pts, starts, widths, KINK_DEG)
    widths, end_pos, end_tan = _linking.fragment_ends(pts, starts, sc, WIDTH_PER_SIGMA, END_SKIP_WIDTHS,
                                                      END_FIT_WIDTHS)
    max_gap = 2.2 * MAX_WIDTH_UM / um_per_det_px + 2
    seg = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    frag_len = cum[starts[1:] - 1] - cum[starts[:-1]]
    # crumbs left at crossings would take the one free end a shaft needs to join its
    # other half: keep them out of the joining
    crumb = np.repeat(frag_len < np.maximum(3.0, 0.5 * widths), 2)
    link_pos = end_pos.copy()
    link_pos[crumb] = 1e9 + np.arange(int(crumb.sum()))[:, None] * 1e4
    end_ref = _linking.end_contrast(pts, starts, widths, contrast, sign)
    idx, rev, cst = _linking.link_fragments(link_pos, end_tan, widths, max_gap, contrast, sign, end_ref)
    min_det = 0.8 * min_length_um / um_per_det_px
    lp, ls, wl = _linking.join_chains(pts, starts, frag_len, widths, end_pos, idx, rev, cst, min_det, 2)
    if join_long_pieces:
        lp, ls, wl = join_across_crossings(lp, ls, wl, contrast, dark, um_per_det_px)
    keep = _duplicate_traces.drop_duplicates(lp, ls, wl)
    lengths = _duplicate_traces.packed_lengths(lp, ls)
    keep = keep[lengths[keep] >= min_det]
    full = (lp + 0.5) * factor - 0.5
    lines = [full[ls[i]:ls[i + 1]] for i in keep]
    return Lines(lines, wl[keep] * factor, dark, contrast, factor, lengths[keep] * factor)


def pack_lines(lines: list):
    """Polylines packed as (points (N, 2), starts (n + 1,) int64): line i is
    ``points[starts[i]:starts[i + 1]]``."""
    starts = np.zeros(len(lines) + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    return np.concatenate(lines), starts


@dataclasses.dataclass
class Widths:
    width_px: np.ndarray  # per line, median of block fits (NaN when no block fitted)
    blocks: np.ndarray  # raw block fits, see _width_kernels.measure_blocks
    # centre lines resampled at 1 px, packed: line i is dense_pts[dense_starts[i]:dense_starts[i + 1]]
    dense_pts: np.ndarray
    dense_starts: np.ndarray


def measure_widths(gray: np.ndarray, skin: np.ndarray, lines: Lines, others: Lines | None = None) -> Widths:
    """Shaft diameter (px) of every line: median over many averaged cross-section fits.
    Cross-sections avoid the other lines, and ``others`` (shafts of the other polarity)."""
    n = len(lines.lines)
    if n == 0:
        return Widths(np.zeros(0), np.zeros((0, 9)), np.zeros((0, 2)), np.zeros(1, np.int64))
    # the other polarity's lines are packed after this set's, so they are labelled n + 1, ...
    drawn, drawn_starts = pack_lines(list(lines.lines) + (list(others.lines) if others is not None else []))
    pts, starts = drawn[:drawn_starts[n]], drawn_starts[:n + 1]
    dense, dstarts = resample_lines(pts, starts, 1.0)
    w_est = np.maximum(lines.width_est_px, 2.0)
    block = max(4, int(round(6.0 * lines.factor)))
    labels = np.zeros(lines.contrast.shape, np.int32)
    f = lines.factor
    grid = np.round((drawn + 0.5) / f - 0.5).astype(np.int32)  # the lines' points on the detection grid
    draw_lines(labels, grid, drawn_starts)
    avoid = np.ones(n, np.bool_)
    fit = functools.partial(_fit_in_two, gray, skin, labels, float(f), dense, dstarts, w_est, block, lines.dark)
    blocks = fit(avoid, avoid)
    got = np.zeros(n, bool)
    got[blocks[np.isfinite(blocks[:, 1]), 0].astype(int)] = True
    if not got.all():
        # no clean cross-section anywhere (a shaft running beside another): take them anyway
        blocks = np.vstack([blocks, fit(np.zeros(n, np.bool_), ~got)])
    width = np.full(n, np.nan)
    ok = np.isfinite(blocks[:, 1])
    # lines where no profile could be taken (all too close to the mask edge) keep the
    # ridge-scale estimate; lines whose fits all failed stay NaN (not shafts)
    tried = np.zeros(n, bool)
    tried[blocks[ok, 0].astype(int)] = True
    width[~tried] = w_est[~tried]
    if ok.any():
        b = blocks[ok]
        # keep fits that stayed on the traced shaft, fit it well and did not run to a bound
        good = blocks_on_shaft(b) & (b[:, 4] < 5.9) & (b[:, 1] > 0.31)
        b = b[good]
        diam = b[:, 1] / cylinder_bar_ratio(b, lines.dark)
        idx = b[:, 0].astype(np.int64)
        order = np.argsort(idx, kind="stable")
        # median of each line's block widths, or their lower quartile when they disagree by over 10 %: where
        # two shafts run together (near a shared opening, at a crossing) a block reads the pair, so
        # errors are one-sided (too wide)
        robust_widths(idx[order], diam[order], width)
    return Widths(width, blocks, dense, dstarts)


def _fit_in_two(gray, skin, labels, label_step, dense, dstarts, w_est, block, dark, avoid, active):
    """measure_blocks on the ``active`` lines, the second half of them on another thread
    (the kernel releases the GIL); rows come out in line order, as from one call."""
    pts_per_line = np.diff(dstarts) * active
    split = int(np.searchsorted(np.cumsum(pts_per_line), 0.5 * pts_per_line.sum()))
    first, second = active.copy(), active.copy()
    first[split:] = False
    second[:split] = False

    def run(act):
        return measure_blocks(gray, skin, labels, label_step, avoid, act, dense, dstarts, w_est, block, MAX_BLOCKS,
                              PROFILE_SAMPLES, dark, STREAK_OPEN_WIDTHS, STREAK_MIN_GAIN)

    if not (first.any() and second.any()):
        return run(active)
    later = Beside(run, second)
    return np.vstack([run(first), later.result()])


# Width of the best-fitting blurred bar / true diameter, for a Beer-Lambert cylinder
# (opacity 1 - exp(-k * chord / diameter)) blurred by a Gaussian of sigma s; computed with
# fit_bar on exact profiles.  Rows: k; columns: diameter / s.  A bar reads a cylinder
# 5-17 % thin, more so the paler the shaft, hardly dependent on width or blur.
_RATIO_K = np.array([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
_RATIO_LOG2_DS = np.log2([2.0, 4.0, 8.0, 16.0, 32.0])
_RATIO = np.array([
    [0.836, 0.832, 0.830, 0.840, 0.852],
    [0.848, 0.844, 0.843, 0.854, 0.867],
    [0.870, 0.867, 0.867, 0.878, 0.893],
    [0.888, 0.887, 0.887, 0.898, 0.916],
    [0.905, 0.904, 0.905, 0.914, 0.931],
    [0.931, 0.931, 0.932, 0.939, 0.946],
    [0.949, 0.950, 0.951, 0.956, 0.958],
])


def cylinder_bar_ratio(blocks: np.ndarray, dark: bool) -> np.ndarray:
    """Expected bar-width / diameter for each block fit, from its shaft opacity.

    Opacity comes from the contrast against the skin beside the shaft: a dark shaft lets
    1 - |a|/skin of the light through at its centre; a bright one is taken as white
    (the brightest it could be), which gives the lowest opacity consistent with it.
    """
    a = np.abs(blocks[:, 3])
    skin = np.clip(blocks[:, 8], 1e-3, 1.0)
    through = 1.0 - a / skin if dark else 1.0 - a / np.maximum(1.0 - skin, 1e-3)
    k = -np.log(np.clip(through, math.exp(-_RATIO_K[-1]), math.exp(-_RATIO_K[0])))
    ds = np.log2(np.clip(blocks[:, 1] / 0.9 / np.maximum(blocks[:, 4], 0.35), 2.0, 32.0))
    return _interp2(k, ds)


def _interp2(k: np.ndarray, ds: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(_RATIO_K, k) - 1, 0, len(_RATIO_K) - 2)
    j = np.clip(np.searchsorted(_RATIO_LOG2_DS, ds) - 1, 0, len(_RATIO_LOG2_DS) - 2)
    tk = np.clip((k - _RATIO_K[i]) / (_RATIO_K[i + 1] - _RATIO_K[i]), 0, 1)
    td = np.clip((ds - _RATIO_LOG2_DS[j]) / (_RATIO_LOG2_DS[j + 1] - _RATIO_LOG2_DS[j]), 0, 1)
    top = _RATIO[i, j] * (1 - td) + _RATIO[i, j + 1] * td
    bot = _RATIO[i + 1, j] * (1 - td) + _RATIO[i + 1, j + 1] * td
    return top * (1 - tk) + bot * tk
