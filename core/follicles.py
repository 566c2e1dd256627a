"""Root ends and follicular units.

A shaft leaves the skin through a follicle opening: a dark (often blue-grey) dot wider
than the shaft.  The root end of a hair is the end where such a dot surrounds the centre
line; hairs whose roots lie in the same opening form one follicular unit.
"""
from __future__ import annotations

import math

import numpy as np

from . import _follicle_kernels as _kernels

OPENING_SEARCH_UM = 300.0  # the opening may sit this far in from a traced end (blue-grey shaft under the skin)
OPENING_MIN_RADIUS_UM = 35.0
OPENING_DARK = 0.12  # relative contrast below skin that counts as "dark"
OPENING_MIN_SCORE = 0.75  # fraction of a ring around the point that must be dark
# hairs brighter than the skin (grey, blond) cross the ring around their opening as bright
# arcs that are not dark: ring samples this much brighter than the skin are left out
BRIGHT_SHAFT_CONTRAST = 0.03
SAME_OPENING_UM = 130.0
# hairs of one opening run together for a while: a sibling's root traced up to this far
# along another rooted hair joins its unit (600 chosen on development phantoms)
SIBLING_REACH_UM = 600.0
SIBLING_MIN_NEAR_UM = 60.0
# a hair without a root whose end lies on a rooted hair's first SIBLING_REACH_UM and
# leaves it within this angle is that hair's sibling (its trace stopped where the two run
# together); with the bright-shaft ring, development unit-histogram errors: crown 62 -> 38 %,
# donor 91 -> 72 %, grey 57 -> 31 %, blond 60 -> 48 % (20 and 45 degrees: within 3 points)
SIBLING_MAX_DEG = 35.0
_RING = 16
_RING_POINTS = 12  # about this many points scored per end


def find_roots(pts: np.ndarray, starts: np.ndarray, thickness_um: np.ndarray, contrast: np.ndarray,
               factor: int, um_per_px: float, valid: np.ndarray, lines: np.ndarray | None = None,
               dark: bool = True):
    """Root ends of every line ``pts[starts[i]:starts[i + 1]]`` (full-res px, each >= 2
    points), or of lines ``lines[c]`` only: roots (n, 2) full-res px (NaN without one) and
    which end (n,): 0 first point, 1 last, -1 no root; ``thickness_um[c]`` belongs to the
    c-th line done.  ``contrast`` is the detection-grid relative contrast (``factor``
    full-res px per detection px) and ``valid`` its analysed area: ends at its edge are
    not roots, the shaft simply leaves the field of view there.  See
    ``_follicle_kernels.find_roots`` for the test; ``dark`` False (hairs brighter than the
    skin) leaves bright shafts crossing the ring out of it."""
    sel = np.arange(len(starts) - 1, dtype=np.int64) if lines is None else np.asarray(lines, dtype=np.int64)
    return _kernels.find_roots(pts, np.ascontiguousarray(starts, dtype=np.int64), sel,
                               np.ascontiguousarray(thickness_um, dtype=np.float64),
                               np.ascontiguousarray(contrast, dtype=np.float32), int(factor), float(um_per_px),
                               np.ascontiguousarray(valid, dtype=np.bool_), OPENING_MIN_RADIUS_UM,
                               OPENING_SEARCH_UM, -OPENING_DARK, np.inf if dark else BRIGHT_SHAFT_CONTRAST,
                               OPENING_MIN_SCORE, _RING, _RING_POINTS)


def group_units(roots_xy: np.ndarray, has_root: np.ndarray, um_per_px: float, lines: np.ndarray,
                starts: np.ndarray, keep: np.ndarray, thickness_um: np.ndarray) -> list:
    """Unit index per hair (None when it has none): roots ``roots_xy`` (n, 2) full-res px
    where ``has_root``; roots closer than SAME_OPENING_UM share an opening (single
    linkage), and so does a root lying on the first SIBLING_REACH_UM of another rooted hair
    (hair c's centre line is ``lines[starts[keep[c]]:starts[keep[c] + 1]]``, root end
    first; ``thickness_um[c]`` its shaft); a hair without a root joins the unit of a rooted
    hair it runs out of (within SIBLING_MAX_DEG of it, an end on its first
    SIBLING_REACH_UM)."""
    labels = _kernels.unit_labels(np.ascontiguousarray(roots_xy, dtype=np.float64),
                                  np.ascontiguousarray(has_root, dtype=np.bool_), SAME_OPENING_UM / um_per_px,
                                  np.ascontiguousarray(lines, dtype=np.float64), np.ascontiguousarray(starts, np.int64),
                                  np.ascontiguousarray(keep, np.int64),
                                  np.ascontiguousarray(thickness_um, np.float64) / um_per_px,
                                  SIBLING_MIN_NEAR_UM / um_per_px, SIBLING_REACH_UM / um_per_px,
                                  math.cos(math.radians(SIBLING_MAX_DEG)))
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
