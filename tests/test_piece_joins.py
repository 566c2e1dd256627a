"""Kept hairs in two pieces either side of a crossing are joined, whether a gap or an
overlap lies between the pieces; other end-to-end pairs (a tip in front of the next
opening, two rooted hairs facing each other, two hairs of different widths) are not."""
from __future__ import annotations

import numpy as np
import pytest

from core import _piece_joins, analysis

UM = 2.0  # µm per px
NAN2 = [np.nan, np.nan]


def _line(p0, p1, n=200):
    return np.linspace(p0, p1, n)


def _join(lines, rooted, roots, thick_um=40.0):
    starts = np.zeros(len(lines) + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    pts = np.concatenate(lines)
    n = len(lines)
    lengths = np.array([np.hypot(*np.diff(p, axis=0).T).sum() * UM for p in lines])
    seg = np.zeros(len(pts))
    seg[:-1] = np.hypot(*np.diff(pts, axis=0).T)
    out = _piece_joins.join_at_crossings(pts, starts, seg, np.arange(n), np.array(rooted), np.array(roots, float),
                                         np.broadcast_to(np.asarray(thick_um, float), (n,)).copy(), lengths, UM)
    q, q_starts, seg, root_xy, has_root, thick, vis = out
    return [q[q_starts[i]:q_starts[i + 1]] for i in range(len(q_starts) - 1)], root_xy, has_root, vis


def _pieces(gap_px=30.0, rooted_at_crossing=True):
    """A shaft along y = 100 from x 0 to 600, broken at x 300 by a gap of ``gap_px``; each
    piece runs from the crossing outwards (root end first when it has one)."""
    h = gap_px / 2
    left = _line((300 - h, 100), (0, 100))
    right = _line((300 + h, 100), (600, 100))
    rooted = [rooted_at_crossing, rooted_at_crossing]
    roots = [[300 - h, 100], [300 + h, 100]] if rooted_at_crossing else [NAN2, NAN2]
    return left, right, rooted, roots


def test_a_shaft_broken_at_a_crossing_is_one_hair_without_the_false_roots():
    left, right, rooted, roots = _pieces()
    crossing = _line((250, 0), (350, 200))
    lines, root_xy, has_root, vis = _join([left, right, crossing], rooted + [False], roots + [NAN2])
    assert len(lines) == 2
    joined = max(lines, key=len)
    assert np.ptp(joined[:, 0]) == pytest.approx(600, abs=1)
    assert not has_root[[len(p) for p in lines].index(len(joined))]
    assert vis.max() == pytest.approx(2 * 285 * UM, rel=0.01)  # the gap is not visible shaft


def test_the_root_at_a_far_end_is_kept_and_comes_first():
    left, right, _, _ = _pieces(rooted_at_crossing=False)
    crossing = _line((250, 0), (350, 200))
    far_root = right[-1].copy()  # the right piece is rooted at x = 600, its last point
    right = right[::-1]  # root end first
    lines, root_xy, has_root, _ = _join([left, right, crossing], [False, True, False],
                                        [NAN2, far_root, NAN2])
    k = int(np.argmax([len(p) for p in lines]))
    assert len(lines) == 2 and has_root[k]
    np.testing.assert_allclose(root_xy[k], far_root)
    np.testing.assert_allclose(lines[k][0], far_root)


def test_pieces_are_not_joined_without_a_crossing():
    """A clipped tip in line with the next hair's opening: nothing crosses the gap."""
    left, right, rooted, roots = _pieces()
    beside = _line((0, 300), (600, 300))  # another hair, far away
    lines, _, _, _ = _join([left, right, beside], rooted + [False], roots + [NAN2])
    assert len(lines) == 3


def test_a_parallel_neighbour_is_not_a_crossing():
    left, right, rooted, roots = _pieces()
    sibling = _line((200, 112), (400, 116))  # runs along the gap, 5 degrees off
    lines, _, _, _ = _join([left, right, sibling], rooted + [False], roots + [NAN2])
    assert len(lines) == 3


def test_two_hairs_rooted_at_their_far_ends_stay_two():
    left, right, _, _ = _pieces(rooted_at_crossing=False)
    left, right = left[::-1], right[::-1]  # each starts at its far end, where its root is
    crossing = _line((250, 0), (350, 200))
    lines, _, has_root, _ = _join([left, right, crossing], [True, True, False],
                                  [left[0], right[0], NAN2])
    assert len(lines) == 3 and has_root.sum() == 2


@pytest.mark.parametrize("gap_px, turn_deg, n_out", [(30.0, 0.0, 2), (200.0, 0.0, 3), (30.0, 35.0, 3)])
def test_gap_and_turn_limits(gap_px, turn_deg, n_out):
    """GAP_UM is 300 µm (150 px here) and TURN_DEG 20."""
    left, right, rooted, roots = _pieces(gap_px)
    t = np.radians(turn_deg)
    s = right[0]
    right = s + (right - s) @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    crossing = _line((300, 0), (300, 200))
    lines, _, _, _ = _join([left, right, crossing], rooted + [False], roots + [NAN2])
    assert len(lines) == n_out


def test_warm_up_runs_the_kernels():
    assert _piece_joins.exercise() == 4
    assert analysis.warm_up() > 0


def test_every_loop_over_points_is_compiled():
    """The per-point loops run over every kept hair of a frame (~50 000 points): in plain
    Python the packing of the kept lines alone took 27 ms a frame, so they must stay numba
    kernels."""
    for name in ("orient_and_trim", "_segments", "_end_direction", "_crossed", "_facing_pairs", "_orient_chains",
                 "_concatenate", "_chains"):
        assert hasattr(getattr(_piece_joins, name), "py_func"), name


def _overlapping(overlap_px=60.0):
    """A shaft along y = 100 from x 0 to 600 in two pieces that overlap by ``overlap_px``
    around x 300 (the tracer ran on along the crossing hair), each running from the
    crossing outwards with its root (false, at the crossing) first; points 1 px apart."""
    h = overlap_px / 2
    left = _line((300 + h, 100), (0, 100), int(300 + h) + 1)
    right = _line((300 - h, 100), (600, 100), int(300 + h) + 1)
    return left, right, [True, True], [[300 + h, 100], [300 - h, 100]]


def test_pieces_overlapping_at_a_crossing_are_one_hair():
    left, right, rooted, roots = _overlapping()
    crossing = _line((250, 0), (350, 200), 224)
    lines, root_xy, has_root, vis = _join([left, right, crossing], rooted + [False], roots + [NAN2])
    assert len(lines) == 2
    k = int(np.argmax([len(p) for p in lines]))
    joined = lines[k]
    assert np.ptp(joined[:, 0]) == pytest.approx(600, abs=1)
    assert np.all(np.diff(joined[:, 0]) > 0) or np.all(np.diff(joined[:, 0]) < 0)  # cut where the overlap starts
    assert not has_root[k]
    assert vis[k] == pytest.approx(600 * UM, rel=0.03)  # the overlap is counted once


@pytest.mark.parametrize("case", ["widths differ", "nothing crosses"])
def test_overlapping_pieces_stay_two_hairs(case):
    """Two hairs of different widths running through one crossing (siblings, neighbours),
    or an overlap with no crossing hair at it."""
    left, right, rooted, roots = _overlapping()
    if case == "widths differ":
        third, thick = _line((250, 0), (350, 200), 224), [40.0, 60.0, 40.0]
    else:
        third, thick = _line((0, 300), (600, 300), 601), 40.0
    lines, _, _, _ = _join([left, right, third], rooted + [False], roots + [NAN2], thick_um=thick)
    assert len(lines) == 3
