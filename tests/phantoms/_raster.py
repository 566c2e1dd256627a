"""Numba rasteriser for phantom hair shafts: Beer-Lambert cylinders along polylines."""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True)
def draw_tubes(canvas, points, starts, diam_px, absorb, colour, specular):
    """Composite tubes (hair shafts) over ``canvas`` (H, W, 3 float32), in order.

    Tube i follows ``points[starts[i]:starts[i+1]]`` (x, y px). Its cross-section is a
    cylinder of diameter ``diam_px[i]``: opacity 1 - exp(-absorb * chord / diameter), so
    thick, dark shafts saturate and thin or pale ones stay translucent.
    """
    h, w = canvas.shape[0], canvas.shape[1]
    for i in range(starts.shape[0] - 1):
        a, b = starts[i], starts[i + 1]
        if b - a < 2:
            continue
        r = 0.5 * diam_px[i]
        pad = r + 2.0
        x0 = max(0, int(math.floor(points[a:b, 0].min() - pad)))
        x1 = min(w - 1, int(math.ceil(points[a:b, 0].max() + pad)))
        y0 = max(0, int(math.floor(points[a:b, 1].min() - pad)))
        y1 = min(h - 1, int(math.ceil(points[a:b, 1].max() + pad)))
        if x1 < x0 or y1 < y0:
            continue
        dist = np.full((y1 - y0 + 1, x1 - x0 + 1), 1e9, dtype=np.float32)
        for s in range(a, b - 1):
            ax, ay = points[s, 0], points[s, 1]
            bx, by = points[s + 1, 0], points[s + 1, 1]
            dx, dy = bx - ax, by - ay
            ll = dx * dx + dy * dy
            sx0 = max(x0, int(math.floor(min(ax, bx) - pad)))
            sx1 = min(x1, int(math.ceil(max(ax, bx) + pad)))
            sy0 = max(y0, int(math.floor(min(ay, by) - pad)))
            sy1 = min(y1, int(math.ceil(max(ay, by) + pad)))
            for y in range(sy0, sy1 + 1):
                for x in range(sx0, sx1 + 1):
                    t = 0.0
                    if ll > 0:
                        t = ((x - ax) * dx + (y - ay) * dy) / ll
                        t = min(1.0, max(0.0, t))
                    px = ax + t * dx - x
                    py = ay + t * dy - y
                    d = math.sqrt(px * px + py * py)
                    if d < dist[y - y0, x - x0]:
                        dist[y - y0, x - x0] = d
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                d = dist[y - y0, x - x0]
                if d >= r:
                    continue
                chord = math.sqrt(1.0 - (d / r) ** 2)
                alpha = 1.0 - math.exp(-absorb[i] * chord)
                spec = specular[i] * math.exp(-((d / (0.12 * r + 0.6)) ** 2))
                for c in range(3):
                    v = canvas[y, x, c] * (1.0 - alpha) + colour[i, c] * alpha + spec
                    canvas[y, x, c] = v
