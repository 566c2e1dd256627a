"""Root ends and follicular units.

A shaft leaves the skin through a follicle opening: a dark (often blue-grey) dot wider
than the shaft.  The root end of a hair is the end where such a dot surrounds the centre
line; hairs whose roots lie in the same opening form one follicular unit.
"""
from __future__ import annotations

import numpy as np

from ._follicle_kernels import ring_dark_fraction

OPENING_SEARCH_UM = 300.0  # the opening may sit this far in from a traced end (blue-grey shaft under the skin)
OPENING_MIN_RADIUS_UM = 35.0
OPENING_DARK = 0.12  # relative contrast below skin that counts as "dark"
OPENING_MIN_SCORE = 0.75  # fraction of a ring around the point that must be dark
SAME_OPENING_UM = 130.0
_RING = 16


def find_root(line_px: np.ndarray, thickness_um: float, contrast: np.ndarray, factor: int,
              um_per_px: float, valid: np.ndarray):
    """Root point (x, y) in full-res px and which end (0 = first point, 1 = last), or None.

    ``contrast`` is the detection-grid relative contrast (``factor`` full-res px per
    detection px); ``valid`` its analysed-area mask.  Ends at the edge of the analysed
    area are not roots: the shaft simply leaves the field of view there.
    """
    det_um = um_per_px * factor
    det = (line_px + 0.5) / factor - 0.5
    seg = np.hypot(*np.diff(det, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    total = arc[-1]
    if total <= 0:
        return None
    radius = max(OPENING_MIN_RADIUS_UM, 0.7 * thickness_um) / det_um
    reach = OPENING_SEARCH_UM / det_um
    h, w = valid.shape
    best = (0.0, None, None)
    for end in (0, 1):
        tip = det[0] if end == 0 else det[-1]
        tx, ty = int(round(tip[0])), int(round(tip[1]))
        edge = 2 + int(radius)
        if not (edge <= tx < w - edge and edge <= ty < h - edge) or not valid[ty, tx]:
            continue
        ax = arc if end == 0 else total - arc
        sel = np.nonzero(ax <= min(reach, 0.45 * total))[0]
        if sel.size == 0:
            continue
        sel = sel[:: max(1, sel.size // 12)]
        order = np.argsort(ax[sel])  # from the tip inwards
        pts = det[sel[order]]
        score = ring_dark_fraction(contrast, pts, radius, _RING, -OPENING_DARK)
        # the opening nearest the tip: further in, a sibling shaft from the same opening
        # or a crossing can darken the ring as well
        ok = np.nonzero(score >= OPENING_MIN_SCORE)[0]
        if ok.size:
            k = int(ok[0])
            if score[k] > best[0]:
                best = (float(score[k]), (pts[k] + 0.5) * factor - 0.5, end)
    if best[1] is None:
        return None
    return (float(best[1][0]), float(best[1][1])), best[2]


def group_units(roots_px: list, um_per_px: float) -> list:
    """Unit index per hair (None without a visible root): roots closer than SAME_OPENING_UM
    share an opening (single linkage)."""
    idx = [i for i, r in enumerate(roots_px) if r is not None]
    parent = {i: i for i in idx}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    lim = SAME_OPENING_UM / um_per_px
    pts = np.array([roots_px[i] for i in idx]) if idx else np.zeros((0, 2))
    for a in range(len(idx)):
        d = np.hypot(*(pts[a + 1:] - pts[a]).T)
        for b in np.nonzero(d <= lim)[0]:
            ra, rb = find(idx[a]), find(idx[a + 1 + b])
            if ra != rb:
                parent[ra] = rb
    labels: dict = {}
    out: list = [None] * len(roots_px)
    for i in idx:
        out[i] = labels.setdefault(find(i), len(labels))
    return out


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
