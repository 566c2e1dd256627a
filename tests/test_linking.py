"""Traced fragments are joined across a gap only where the gap is as dark as a shaft."""
from __future__ import annotations

import numpy as np

from core import _linking
from core.hairs import END_FIT_WIDTHS, END_SKIP_WIDTHS, WIDTH_PER_SIGMA

W = 10.0  # shaft width, detection px


def _darken(img, p0, p1, width, value=-0.4):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    d = np.array(p1, float) - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))
    np.minimum(img, np.where(dist <= width / 2, value, 0.0), out=img)


def _fragments(*lines):
    frags = [np.linspace(p0, p1, int(np.hypot(*np.subtract(p1, p0))) + 1) for p0, p1 in lines]
    starts = np.concatenate([[0], np.cumsum([len(f) for f in frags])]).astype(np.int64)
    return np.concatenate(frags), starts


def _chains(crossing: bool, dark: bool = True):
    """Two collinear fragments at y = 60 with a 24 px gap (x 168-192); the shafts are drawn
    on the contrast image, and with ``crossing`` a second hair covers the gap."""
    con = np.zeros((120, 360), np.float32)
    _darken(con, (20, 60), (168, 60), W)
    _darken(con, (192, 60), (340, 60), W)
    if crossing:
        _darken(con, (120, 0), (240, 120), W)
    pts, starts = _fragments(((20, 60), (168, 60)), ((192, 60), (340, 60)))
    scale = np.full(len(pts), W / WIDTH_PER_SIGMA)
    widths, pos, tan = _linking.fragment_ends(pts, starts, scale, WIDTH_PER_SIGMA, END_SKIP_WIDTHS, END_FIT_WIDTHS)
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


def test_a_straight_continuation_wins_over_a_nearer_end_that_turns():
    # A ends at x = 100; B starts 4.5 px on, turned 18 deg (another hair at a shallow
    # crossing); C carries on straight 20 px further, across a crossing that keeps the gap dark
    con = np.zeros((120, 240), np.float32)
    b1 = (104 + 80 * np.cos(np.radians(18)), 62 + 80 * np.sin(np.radians(18)))
    _darken(con, (20, 60), (200, 60), W)
    _darken(con, (104, 62), b1, W)
    pts, starts = _fragments(((20, 60), (100, 60)), ((104, 62), b1), ((120, 60), (200, 60)))
    scale = np.full(len(pts), W / WIDTH_PER_SIGMA)
    widths, pos, tan = _linking.fragment_ends(pts, starts, scale, WIDTH_PER_SIGMA, END_SKIP_WIDTHS, END_FIT_WIDTHS)
    ref = _linking.end_contrast(pts, starts, widths, con, -1.0)

    def chain_of_a(**kw):
        idx, _, cst = _linking.link_fragments(pos, tan, widths, 40.0, con, -1.0, ref, **kw)
        for c in range(len(cst) - 1):
            if 0 in idx[cst[c]:cst[c + 1]]:
                return sorted(idx[cst[c]:cst[c + 1]].tolist())

    assert chain_of_a() == [0, 2]
    # with the turn weighing as little as it used to (0.06 of a gap), the nearer end won
    assert chain_of_a(turn_weight=1 - np.cos(np.radians(20))) == [0, 1]


def test_end_tangent_skips_the_last_width_bent_towards_a_crossing():
    bend = (100 + 8 * np.cos(np.radians(30)), 60 + 8 * np.sin(np.radians(30)))
    pts, _ = _fragments(((0, 60), (100, 60)), ((100, 60), bend))
    pts = np.delete(pts, 101, axis=0)  # (100, 60) is in both pieces
    starts = np.array([0, len(pts)], np.int64)
    scale = np.full(len(pts), W / WIDTH_PER_SIGMA)

    def end_angle_deg(*args):
        _, pos, tan = _linking.fragment_ends(pts, starts, scale, WIDTH_PER_SIGMA, *args)
        np.testing.assert_allclose(pos[1], pts[-1])  # the end itself is still the tip
        return np.degrees(np.arctan2(tan[1, 1], tan[1, 0]))

    assert abs(end_angle_deg(END_SKIP_WIDTHS, END_FIT_WIDTHS)) < 1.0
    assert end_angle_deg(0.0, 2.0) > 5.0
