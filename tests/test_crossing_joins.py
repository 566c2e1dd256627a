"""Pieces of one shaft broken where another hair crosses it are joined; nothing else is."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np

from core._crossing_joins import join_across_crossings

UM = 7.0  # µm per detection px
W = 10.0  # shaft width, detection px (70 µm)


def _bar(img, p0, p1, width):
    """Darken a straight shaft from p0 to p1 (x, y) in a relative-contrast image."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    d = np.array(p1, float) - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))
    np.minimum(img, np.where(dist <= width / 2, -0.4, 0.0), out=img)


def _line(p0, p1):
    n = int(np.hypot(*(np.subtract(p1, p0)))) + 1
    return np.linspace(p0, p1, n)


def _pack(lines):
    starts = np.zeros(len(lines) + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    return np.concatenate(lines).astype(np.float64), starts


def _scene(crossing: bool, first_piece_px: float = 150.0, offset_px: float = 0.0):
    """One horizontal shaft at y = 100 traced as two pieces with a 40 px (280 µm) gap around
    x = 200; optionally a second shaft crossing the gap at 15 degrees, traced whole."""
    con = np.zeros((200, 420), np.float32)
    _bar(con, (200 - 40 - first_piece_px, 100), (400, 100), W)
    lines = [_line((200 - 20 - first_piece_px, 100), (180, 100)), _line((220, 100 + offset_px), (390, 100 + offset_px))]
    if crossing:
        a, b = (20, 100 - 180 * np.tan(np.radians(15))), (380, 100 + 180 * np.tan(np.radians(15)))
        _bar(con, a, b, W)
        lines.append(_line(a, b))
    pts, starts = _pack(lines)
    return pts, starts, np.full(len(lines), W), con


def test_pieces_either_side_of_a_crossing_are_joined():
    pts, starts, widths, con = _scene(crossing=True)
    out, out_starts, out_w = join_across_crossings(pts, starts, widths, con, True, UM)
    assert len(out_starts) - 1 == 2
    lengths = sorted(np.ptp(out[out_starts[i]:out_starts[i + 1], 0]) for i in range(2))
    # the horizontal shaft now runs from x = 30 to 390 in one line (ends cut back a width each side of the gap)
    assert lengths[1] > 330
    np.testing.assert_allclose(out_w, W)


def test_a_gap_no_other_hair_crosses_is_left_open():
    # e.g. a follicle opening between the shafts of two hairs: dark, in line, but not a crossing
    pts, starts, widths, con = _scene(crossing=False)
    out, out_starts, _ = join_across_crossings(pts, starts, widths, con, True, UM)
    assert len(out_starts) - 1 == 2


def test_short_pieces_and_side_by_side_shafts_are_left_apart():
    short = _scene(crossing=True, first_piece_px=60.0)  # 420 µm: a stub near an opening
    beside = _scene(crossing=True, offset_px=12.0)  # the second piece runs beside the first
    for pts, starts, widths, con in (short, beside):
        _, out_starts, _ = join_across_crossings(pts, starts, widths, con, True, UM)
        assert len(out_starts) - 1 == 3


def test_bright_hairs_use_the_other_polarity():
    pts, starts, widths, con = _scene(crossing=True)
    _, out_starts, _ = join_across_crossings(pts, starts, widths, -con, False, UM)
    assert len(out_starts) - 1 == 2
    _, out_starts, _ = join_across_crossings(pts, starts, widths, con, False, UM)
    assert len(out_starts) - 1 == 3


def test_warm_up_compiles_the_join_kernels():
    # they run only when a frame has pieces to join: without this a technician's first such
    # capture would pay the JIT (seconds)
    # the kernels called from Python (the others are compiled into them)
    code = ("import core, core._crossing_joins as c; core.warm_up(); print(sorted(k for k in ('_end_stretches', "
            "'_candidate_joins', '_body_count', '_gaps_covered', '_chains', '_concatenate') if not getattr(c, k).signatures))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
