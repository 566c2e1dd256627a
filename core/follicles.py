"""Root ends and follicular units.

A shaft leaves the skin through a follicle opening: a dark (often blue-grey) dot wider
than the shaft.  The root end of a hair is the end where such a dot surrounds the centre
line; hairs whose roots lie in the same opening form one follicular unit.
"""
from __future__ import annotations

import numpy as np

from . import _follicle_kernels as _kernels

OPENING_SEARCH_UM = 300.0  # the opening may sit this far in from a traced end (blue-grey shaft under the skin)
OPENING_MIN_RADIUS_UM = 35.0
OPENING_DARK = 0.12  # relative contrast below skin that counts as "dark"
OPENING_MIN_SCORE = 0.75  # fraction of a ring around the point that must be dark
SAME_OPENING_UM = 130.0
# hairs of one opening run together for a while: a sibling's root traced up to this far
# along another rooted hair joins its unit (600 chosen on development phantoms)
SIBLING_REACH_UM = 600.0
SIBLING_MIN_NEAR_UM = 60.0
_RING = 16
_RING_POINTS = 12  # about this many points scored per end


def find_root(line_px: np.ndarray, thickness_um: float, contrast: np.ndarray, factor: int,
              um_per_px: float, valid: np.ndarray):
    """Root point (x, y) in full-res px and which end (0 = first point, 1 = last), or None.

    ``contrast`` is the detection-grid relative contrast (``factor`` full-res px per
    detection px); ``valid`` its analysed-area mask.  Ends at the edge of the analysed
    area are not roots: the shaft simply leaves the field of view there.
    """
    line = np.ascontiguousarray(line_px, dtype=np.float64)
    if line.ndim != 2 or line.shape[1] != 2 or len(line) < 2:
        raise ValueError(f"line_px must be an (N >= 2, 2) array of x, y px, got shape {line.shape}")
    xy, end = find_roots(line, np.array([0, len(line)], np.int64), np.array([float(thickness_um)]),
                         contrast, factor, um_per_px, valid)
    if end[0] < 0:
        return None
    return (float(xy[0, 0]), float(xy[0, 1])), int(end[0])


def find_roots(pts: np.ndarray, starts: np.ndarray, thickness_um: np.ndarray, contrast: np.ndarray,
               factor: int, um_per_px: float, valid: np.ndarray, lines: np.ndarray | None = None):
    """``find_root`` of every line ``pts[starts[i]:starts[i + 1]]`` (each >= 2 points), or
    of lines ``lines[c]`` only, in one pass: roots (n, 2) full-res px (NaN without one) and
    ends (n,), -1 without a root; ``thickness_um[c]`` belongs to the c-th line done."""
    sel = np.arange(len(starts) - 1, dtype=np.int64) if lines is None else np.asarray(lines, dtype=np.int64)
    return _kernels.find_roots(pts, np.ascontiguousarray(starts, dtype=np.int64), sel,
                               np.ascontiguousarray(thickness_um, dtype=np.float64),
                               np.ascontiguousarray(contrast, dtype=np.float32), int(factor), float(um_per_px),
                               np.ascontiguousarray(valid, dtype=np.bool_), OPENING_MIN_RADIUS_UM,
                               OPENING_SEARCH_UM, -OPENING_DARK, OPENING_MIN_SCORE, _RING, _RING_POINTS)


def group_units(roots_px: list, um_per_px: float, lines_px: list | None = None,
                thickness_um=None) -> list:
    """Unit index per hair (None without a visible root): roots closer than SAME_OPENING_UM
    share an opening (single linkage).  With ``lines_px`` (each hair's centre line, root
    end first) and ``thickness_um``, a root lying on the first SIBLING_REACH_UM of another
    rooted hair joins that hair's unit too."""
    n = len(roots_px)
    xy = np.zeros((n, 2))
    has = np.zeros(n, np.bool_)
    for i, r in enumerate(roots_px):
        if r is not None:
            xy[i] = r
            has[i] = True
    if lines_px is None:
        return group_root_array(xy, has, um_per_px)
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines_px])
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in lines_px]) if n else np.zeros((0, 2))
    return group_root_array(xy, has, um_per_px, pts, starts, np.arange(n), np.asarray(thickness_um, np.float64))


def group_root_array(roots_xy: np.ndarray, has_root: np.ndarray, um_per_px: float, lines=None, starts=None,
                     keep=None, thickness_um=None) -> list:
    """``group_units`` of roots given as an (n, 2) array and a mask of which exist; hair c's
    line, when given, is ``lines[starts[keep[c]]:starts[keep[c] + 1]]`` (root end first)."""
    n = len(has_root)
    if lines is None:
        lines, starts, keep, thick, reach = np.zeros((0, 2)), np.zeros(1, np.int64), np.zeros(n, np.int64), \
            np.zeros(n), 0.0
    else:
        thick, reach = np.asarray(thickness_um, np.float64) / um_per_px, SIBLING_REACH_UM / um_per_px
    labels = _kernels.unit_labels(np.ascontiguousarray(roots_xy, dtype=np.float64),
                                  np.ascontiguousarray(has_root, dtype=np.bool_), SAME_OPENING_UM / um_per_px,
                                  np.ascontiguousarray(lines, dtype=np.float64), np.ascontiguousarray(starts, np.int64),
                                  np.ascontiguousarray(keep, np.int64), np.ascontiguousarray(thick),
                                  SIBLING_MIN_NEAR_UM / um_per_px, float(reach))
    return [v if v >= 0 else None for v in labels.tolist()]


def unit_histogram(units: list) -> dict:
    """Counts of 1-, 2-, 3- and 4+-hair units."""
    sizes: dict = {}
    for u in units:
        if u is not None:
            sizes[u] = sizes.get(u, 0) + 1
    out = {"1": 0, "2": 0, "3": 0, "4+": 0}
    for s in sizes.values():
        out["4+" if s >= 4 else str(s)] += 1
    return out
