"""Traced fragments are joined across a gap only where the gap is as dark as a shaft."""
from __future__ import annotations

import numpy as np

from core import _linking
from core.hairs import WIDTH_PER_SIGMA

W = 10.0  # shaft width, detection px


def _darken(img, p0, p1, width, value=-0.4):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    d = np.array(p1, float) - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))
    np.minimum(img, np.where(dist <= width / 2, value, 0.0), out=img)


def _chains(crossing: bool, dark: bool = True):
    """Two collinear fragments at y = 60 with a 24 px gap (x 168-192); the shafts are drawn
    on the contrast image, and with ``crossing`` a second hair covers the gap."""
    con = np.zeros((120, 360), np.float32)
    _darken(con, (20, 60), (168, 60), W)
    _darken(con, (192, 60), (340, 60), W)
    if crossing:
        _darken(con, (120, 0), (240, 120), W)
    frags = [np.linspace((20, 60), (168, 60), 149), np.linspace((192, 60), (340, 60), 149)]
    pts = np.concatenate(frags)
    starts = np.array([0, 149, 298], np.int64)
    scale = np.full(len(pts), W / WIDTH_PER_SIGMA)
    widths, pos, tan = _linking.fragment_ends(pts, starts, scale, WIDTH_PER_SIGMA)
    sign = -1.0 if dark else 1.0
    con = con if dark else -con
    ref = _linking.end_contrast(pts, starts, widths, con, sign)
    _, _, cst = _linking.link_fragments(pos, tan, widths, 40.0, con, sign, ref)
    return len(cst) - 1


def test_fragments_either_side_of_a_crossing_are_joined():
    assert _chains(crossing=True) == 1


def test_a_skin_gap_between_one_hair_and_the_next_is_left_open():
    # e.g. a clipped hair's tip in line with the start of another hair further on
    assert _chains(crossing=False) == 2


def test_bright_hairs_use_the_other_polarity():
    assert _chains(crossing=True, dark=False) == 1
    assert _chains(crossing=False, dark=False) == 2


def test_end_contrast_reads_each_end_of_each_fragment():
    con = np.zeros((20, 60), np.float32)
    con[10, :30] = -0.2
    con[10, 30:] = -0.6
    pts = np.stack([np.arange(60.0), np.full(60, 10.0)], axis=1)
    ref = _linking.end_contrast(pts, np.array([0, 60], np.int64), np.array([3.0]), con, -1.0)
    np.testing.assert_allclose(ref, [0.2, 0.6], rtol=1e-6)
