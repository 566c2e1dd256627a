"""Scoring an analysis against phantom truth: per-hair matching, count and width errors."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

MATCH_FRACTION = 0.6  # of a detected centre line lying on the true shaft
MAX_ANGLE_DEG = 20.0


@dataclasses.dataclass
class ImageScore:
    tp: int
    fp: int
    fn: int
    true_count: int  # counted, unambiguous + ambiguous truth hairs that were found
    detected_count: int
    truth_density: float
    detected_density: float
    width_pairs: list  # (true diameter µm, measured µm)
    true_mean_um: float
    detected_mean_um: float | None
    true_units: dict  # follicular units {"1", "2", "3", "4+"} with their root in the analysed area
    detected_units: dict

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 1.0 if d == 0 else 2 * self.tp / d


def _seg_distance(p: np.ndarray, q: np.ndarray):
    """Distance of points p to polyline q, and the direction of the nearest segment."""
    a = q[:-1][None]
    ab = (q[1:] - q[:-1])[None]
    ll = np.maximum((ab**2).sum(-1), 1e-12)
    t = np.clip(((p[:, None] - a) * ab).sum(-1) / ll, 0, 1)
    d = np.sqrt(((p[:, None] - (a + t[..., None] * ab)) ** 2).sum(-1))
    k = d.argmin(1)
    seg = ab[0][k]
    seg = seg / np.maximum(np.hypot(seg[:, 0], seg[:, 1]), 1e-9)[:, None]
    return d[np.arange(len(p)), k], seg


def _local_dirs(p: np.ndarray) -> np.ndarray:
    g = np.gradient(p, axis=0) if len(p) > 1 else np.array([[1.0, 0.0]])
    return g / np.maximum(np.hypot(g[:, 0], g[:, 1]), 1e-9)[:, None]


def score_image(result, truth) -> ImageScore:
    um = truth.um_per_px
    det = [h for h in result.hairs]
    th = truth.hairs
    boxes = [(q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()) for q in (h.centerline_px for h in th)]
    cands = []
    for i, hd in enumerate(det):
        p = hd.centerline_px.astype(float)
        if len(p) > 200:
            p = p[:: len(p) // 200 + 1]
        pb = (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
        dirs = _local_dirs(p)
        for j, ht in enumerate(th):
            tol = max(3.0, 0.5 * ht.diameter_um / um + 2.0)
            b = boxes[j]
            if pb[0] > b[2] + tol or b[0] > pb[2] + tol or pb[1] > b[3] + tol or b[1] > pb[3] + tol:
                continue
            d, seg = _seg_distance(p, ht.centerline_px)
            on = d <= tol
            frac = on.mean()
            if frac < MATCH_FRACTION:
                continue
            cosang = np.abs((dirs[on] * seg[on]).sum(1)).mean()
            if cosang < math.cos(math.radians(MAX_ANGLE_DEG)):
                continue
            cands.append((frac, i, j))
    cands.sort(reverse=True)
    det_match, tru_match = {}, {}
    for frac, i, j in cands:
        if i in det_match or j in tru_match:
            continue
        det_match[i] = j
        tru_match[j] = i
    tp = fp = fn = 0
    pairs = []
    for i in range(len(det)):
        j = det_match.get(i)
        if j is None:
            # a second detection lying on an already matched hair is a double count: FP
            fp += 1
        elif th[j].ambiguous:
            continue
        elif th[j].counted:
            tp += 1
            pairs.append((th[j].diameter_um, det[i].thickness_um))
        else:
            fp += 1
    for j, ht in enumerate(th):
        if ht.counted and not ht.ambiguous and j not in tru_match:
            fn += 1
    counted = [h for h in th if h.counted]
    true_mean = float(np.mean([h.diameter_um for h in counted])) if counted else float("nan")
    return ImageScore(tp, fp, fn, len(counted), result.hair_count, len(counted) / truth.area_cm2,
                      result.density_per_cm2, pairs, true_mean, result.mean_thickness_um,
                      dict(truth.follicular_units), dict(result.follicular_units))


UNIT_KEYS = ("1", "2", "3", "4+")


def unit_figures(scores) -> tuple[float, float, float]:
    """Follicular units pooled over ``scores``: histogram error (sum of |found - true| over
    the 1/2/3/4+ bins, divided by the true number of units), true and found hairs per unit."""
    t = np.array([sum(s.true_units[k] for s in scores) for k in UNIT_KEYS], float)
    d = np.array([sum(s.detected_units[k] for s in scores) for k in UNIT_KEYS], float)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    per = lambda h: float(h @ w / h.sum()) if h.sum() else float("nan")  # noqa: E731
    return float(np.abs(d - t).sum() / max(t.sum(), 1.0)), per(t), per(d)
