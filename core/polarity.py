"""Which hairs to look for: darker than the skin, brighter, or both (a greying scalp).

The tracer follows ridges of one polarity at a time.  Most images show one kind of hair,
and tracing the other polarity there only finds the skin between shafts: the rim beside
a dark shaft and the gap between two shafts both look like bright ridges.  So the second
polarity is traced only where its ridges stand out from skin on both sides, and its
lines are kept only where they do so along most of their length.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from . import hairs
from ._polarity_kernels import on_skin_runs, ridge_pixel_counts

BRIGHT_HAIR_RATIO = 0.8  # bright ridge pixels over dark ones above which hairs are bright
POLARITY_CONTRAST = 0.1
# Ridge pixels "on skin" (ridge_pixel_counts) on the half-resolution detection grid: the
# sides 60 µm away stand out by 0.05 and are not beyond 0.1 of the other polarity, and the
# ridge still runs 150 µm on along it (the rim of a follicle opening beside a white shaft
# curves away).  The second polarity is traced when its pixels on skin are at least 5 % of
# the first's.  Measured on 30 development and 30 validation frames with one hair colour:
# 0-1.3 % (dark hair: crown, hairline, donor, dark skin, long, blur, JPEG), 0.4-3.2 %
# (grey and blond hair); with white hair among dark: 5 % white 3.9-7.5 %, 10 % white
# 5.4-11 %, 15-65 % white 12-120 %; the alt phantoms' mixed kind 21-34 %, its others 0.
SIDE_UM = 60.0
SIDE_STEP = 0.05
OTHER_MAX = 0.1
ALONG_UM = 150.0
MINOR_SHARE = 0.05
MINOR_MIN_AREA_MM2 = 0.06
# Traced lines of an image with both polarities (on_skin_runs, detection px): sides
# 1.5 px beyond the shaft's edge.  A line of the second polarity must stand out by 0.02 on
# both sides at half of its points; a line of the first must not have the other colour
# beside it at more than half (the dark rim along a white shaft).  Development greying
# frames (4, 15-55 % white): F1 0.683 -> 0.833; 4 more at 65 % white: 0.59 -> 0.79.
# A line that fails keeps its longest stretch that passes (gaps of up to 2 widths bridged:
# a crossing shaft) when that is long enough and stands out by 0.07 on average, as a shaft
# on its own would: on 4 development greying frames all 24 stretches on white hairs do
# (0.08-0.40) and 7 of 9 on dark ones, 2 of 56 on skin between dark shafts (0.02-0.12).
LINE_SIDE_GAP_PX = 1.5
LINE_SIDE_STEP = 0.02
LINE_OTHER_MAX = 0.15
LINE_MIN_FRACTION = 0.5
LINE_MAX_GAP_WIDTHS = 2.0
TRIM_MIN_STEP = 0.07


def hair_polarities(contrast: np.ndarray, valid: np.ndarray, um_per_det_px: float) -> tuple:
    """``(dark,)`` or ``(dark, not dark)``: True means hairs darker than the skin; the first
    is the polarity most ridges have, the second is traced too when enough of its ridges
    lie on skin.  ``contrast`` is ``hairs.relative_contrast`` on the detection grid
    (``um_per_det_px`` µm per px), ``valid`` its analysed area."""
    g = cv2.GaussianBlur(cv2.pyrDown(contrast), (0, 0), 1.0)
    um_g = 2.0 * um_per_det_px  # µm per px of g
    v = cv2.resize(valid.view(np.uint8), (g.shape[1], g.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    n_dark, n_bright, dark_on_skin, bright_on_skin = ridge_pixel_counts(
        g, v, 2.0, hairs.T_HIGH, POLARITY_CONTRAST, SIDE_UM / um_g, SIDE_STEP, OTHER_MAX, ALONG_UM / um_g).tolist()
    # the flanks of a bright shaft look like valleys to the Hessian but are not darker than
    # the skin: the contrast condition in the kernel keeps them out of the dark count
    dark = not n_bright > BRIGHT_HAIR_RATIO * n_dark
    major, minor = (dark_on_skin, bright_on_skin) if dark else (bright_on_skin, dark_on_skin)
    min_px = MINOR_MIN_AREA_MM2 * 1e6 / um_g**2
    if minor >= min_px and minor >= MINOR_SHARE * major:
        return dark, not dark
    return (dark,)


def trace(contrast: np.ndarray, valid: np.ndarray, um_per_det_px: float, factor: int, min_length_um: float,
          join_long_pieces: bool = True) -> list:
    """``hairs.trace_lines`` for each polarity of ``hair_polarities`` (one ``hairs.Lines``
    each, the first polarity first); with two, the skin between shafts is kept out
    (``keep_on_skin``)."""
    sets = [hairs.trace_lines(contrast, valid, dark, um_per_det_px, factor, min_length_um, join_long_pieces)
            for dark in hair_polarities(contrast, valid, um_per_det_px)]
    if len(sets) == 2:
        min_px = 0.8 * min_length_um * factor / um_per_det_px  # trace_lines' own margin
        sets = [keep_on_skin(lines, second=k == 1, min_length_px=min_px) for k, lines in enumerate(sets)]
    return sets


def keep_on_skin(lines: hairs.Lines, second: bool, min_length_px: float = 0.0) -> hairs.Lines:
    """``lines`` without the skin between shafts of the other polarity: for the ``second``
    polarity, lines must stand out from the skin on both sides; for the first, they must
    not run along a shaft of the other colour.  A line that does so over less than
    ``LINE_MIN_FRACTION`` of its points keeps only its longest stretch that does, when
    that is at least ``min_length_px`` (full-resolution px) long and stands out by
    ``TRIM_MIN_STEP``: a dark trace that runs on through a follicle opening along a white
    shaft's rim is cut there, not lost."""
    n = len(lines.lines)
    if n == 0:
        return lines
    f = lines.factor
    pts, starts = hairs.pack_lines(lines.lines)
    runs = on_skin_runs(((pts + 0.5) / f - 0.5).astype(np.float64), starts,  # full-res -> detection px
                        np.asarray(lines.width_est_px, np.float64) / f,
                        np.ascontiguousarray(lines.contrast, np.float32), not lines.dark, LINE_SIDE_GAP_PX,
                        LINE_SIDE_STEP if second else -np.inf, LINE_OTHER_MAX, LINE_MAX_GAP_WIDTHS)
    kept, keep, lengths = [], [], []
    for k, (frac, a, b, step) in enumerate(runs.tolist()):
        line, length = lines.lines[k], lines.length_px[k]
        if frac < LINE_MIN_FRACTION:
            if a < 0:
                continue
            line = line[int(a) - starts[k]:int(b) - starts[k]]
            length = np.hypot(*np.diff(line, axis=0).T).sum()
            if len(line) < 2 or length < min_length_px or step < TRIM_MIN_STEP:
                continue
        kept.append(line)
        keep.append(k)
        lengths.append(length)
    keep = np.array(keep, np.int64)
    return dataclasses.replace(lines, lines=kept, width_est_px=lines.width_est_px[keep],
                               length_px=np.array(lengths, np.float64))


def exercise() -> None:
    """Compile (or load) the line kernel, which runs only on images with both polarities."""
    pts = np.array([[2.0, 2.0], [6.0, 3.0], [10.0, 4.0]])
    on_skin_runs(pts, np.array([0, 3], np.int64), np.array([2.0]), np.zeros((12, 12), np.float32), True,
                 LINE_SIDE_GAP_PX, LINE_SIDE_STEP, LINE_OTHER_MAX, LINE_MAX_GAP_WIDTHS)
