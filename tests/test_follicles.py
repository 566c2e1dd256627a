"""core.follicles: root ends at follicle openings and follicular units."""
import math

import numpy as np
import pytest

from core import follicles

UM = 4.0


def _line(x0, y0, deg, length_px, step=1.0):
    a = math.radians(deg)
    t = np.arange(0.0, length_px + 1e-9, step)
    return np.stack([x0 + t * math.cos(a), y0 + t * math.sin(a)], axis=1)


def _packed(lines):
    starts = np.zeros(len(lines) + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines])
    return np.concatenate(lines), starts


def _opening_with_two_shafts(shaft_contrast):
    """Relative contrast on the detection grid: a dark opening (radius 16 px at (80, 100))
    with two 20 px shafts leaving it at +-12 degrees; their centre lines, root first."""
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    contrast = np.zeros((h, w), np.float32)
    contrast[np.hypot(xx - 80, yy - 100) <= 16] = -0.3
    lines = [_line(80, 100, deg, 180) for deg in (-12.0, 12.0)]
    for p in lines:
        (x0, y0), (x1, y1) = p[0], p[-1]
        d = np.abs((y1 - y0) * xx - (x1 - x0) * yy + x1 * y0 - y1 * x0) / math.hypot(x1 - x0, y1 - y0)
        contrast[(d <= 10) & ((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0) >= 0)] = shaft_contrast
    pts, starts = _packed(lines)
    return contrast, pts, starts


@pytest.mark.parametrize("dark", [True, False])
def test_an_opening_is_found_with_shafts_of_either_polarity_leaving_it(dark):
    # bright shafts cross the ring around the opening as bright arcs, which must not count
    # against it
    contrast, pts, starts = _opening_with_two_shafts(-0.35 if dark else 0.25)
    xy, end = follicles.find_roots(pts, starts, np.full(2, 70.0), contrast, 1, UM, np.ones(contrast.shape, bool),
                                   dark=dark)
    assert list(end) == [0, 0]
    assert np.all(np.hypot(xy[:, 0] - 80, xy[:, 1] - 100) <= 16)


def test_bright_shafts_read_as_skin_take_the_ring_below_the_opening_test():
    # the bright scene read as if hairs were dark (the ring test before it knew polarity)
    contrast, pts, starts = _opening_with_two_shafts(0.25)
    _, end = follicles.find_roots(pts, starts, np.full(2, 70.0), contrast, 1, UM, np.ones(contrast.shape, bool),
                                  dark=True)
    assert list(end) == [-1, -1]


@pytest.mark.parametrize("deg, start_px, same", [
    (15.0, 40.0, True),  # leaves the rooted shaft at a sibling's angle, on its first 600 µm
    (-20.0, 100.0, True),
    (60.0, 40.0, False),  # crosses it
    (15.0, 200.0, False),  # meets it 800 µm from the opening: another hair
])
def test_a_sibling_traced_from_where_it_leaves_the_shared_shaft_joins_the_unit(deg, start_px, same):
    rooted = _line(100, 300, 0.0, 400)  # root first
    x0 = 100 + start_px
    sibling = _line(x0, 303, deg, 250)  # no root: its trace starts on the rooted shaft
    alone = _line(100, 100, 90.0, 200)  # a rooted hair far away
    pts, starts = _packed([rooted, sibling, alone])
    roots = np.array([[100.0, 300.0], [np.nan, np.nan], [100.0, 100.0]])
    has = np.array([True, False, True])
    units = follicles.group_units(roots, has, UM, pts, starts, np.arange(3), np.full(3, 70.0))
    assert units[0] is not None and units[2] is not None and units[0] != units[2]
    assert (units[1] == units[0]) if same else (units[1] is None)
    assert follicles.unit_histogram(units) == ({"1": 1, "2": 1, "3": 0, "4+": 0} if same
                                               else {"1": 2, "2": 0, "3": 0, "4+": 0})
