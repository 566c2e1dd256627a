"""What an analysis returns: frozen dataclasses with a JSON-ready ``to_dict``."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

THICKNESS_BIN_UM = 10.0
THICKNESS_MAX_UM = 150.0  # last bin collects everything thicker


@dataclasses.dataclass(frozen=True)
class Hair:
    """One hair shaft. Pixel coordinates: x right, y down, origin at the top-left pixel centre."""

    centerline_px: np.ndarray  # (N, 2) x, y px, from the root end when the root is visible
    x: float  # midpoint along the shaft, px
    y: float
    angle_deg: float  # shaft direction in [0, 180), counter-clockwise from the +x axis as seen on screen
    length_um: float  # visible length inside the analysed area
    thickness_um: float  # shaft diameter: median of many cross-section fits
    root_px: tuple[float, float] | None  # centre of the follicle opening, when visible
    unit: int | None  # follicular unit index (hairs sharing an opening); None without one

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": round(self.x, 2),
            "y": round(self.y, 2),
            "angle_deg": round(self.angle_deg, 2),
            "length_um": round(self.length_um, 1),
            "thickness_um": round(self.thickness_um, 2),
            "root_x": None if self.root_px is None else round(self.root_px[0], 2),
            "root_y": None if self.root_px is None else round(self.root_px[1], 2),
        }


@dataclasses.dataclass(frozen=True)
class ThicknessHistogram:
    edges_um: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, list]:
        return {"edges_um": list(self.edges_um), "counts": list(self.counts)}


@dataclasses.dataclass(frozen=True)
class AnalysisResult:
    """Everything measured on one image. Means are None (JSON null) when no hair was found."""

    width: int  # px
    height: int  # px
    um_per_px: float
    area_cm2: float  # analysed skin area
    hair_count: int
    density_per_cm2: float
    mean_thickness_um: float | None
    median_thickness_um: float | None
    vellus_threshold_um: float
    vellus_count: int  # thickness <= vellus_threshold_um
    terminal_count: int
    cumulative_thickness_mm_per_cm2: float  # sum of shaft diameters (mm) per cm² of analysed area
    follicular_units: dict  # {"1", "2", "3", "4+"} -> number of units with that many hairs
    thickness_histogram: ThicknessHistogram
    hairs: tuple[Hair, ...]
    quality: Any  # core.image_quality.ImageQuality
    elapsed_ms: float  # analysis time, image decoding excluded
    skin_mask: np.ndarray = dataclasses.field(repr=False, compare=False, default=None)  # bool, True = analysed

    def to_dict(self, include_hairs: bool = True) -> dict[str, Any]:
        out = {
            "width": int(self.width),
            "height": int(self.height),
            "um_per_px": float(self.um_per_px),
            "area_cm2": round(float(self.area_cm2), 6),
            "hair_count": int(self.hair_count),
            "density_per_cm2": round(float(self.density_per_cm2), 2),
            "mean_thickness_um": _maybe(self.mean_thickness_um),
            "median_thickness_um": _maybe(self.median_thickness_um),
            "vellus_threshold_um": float(self.vellus_threshold_um),
            "vellus_count": int(self.vellus_count),
            "terminal_count": int(self.terminal_count),
            "cumulative_thickness_mm_per_cm2": round(float(self.cumulative_thickness_mm_per_cm2), 4),
            "follicular_units": {k: int(v) for k, v in self.follicular_units.items()},
            "thickness_histogram": self.thickness_histogram.to_dict(),
            "hairs": [h.to_dict() for h in self.hairs] if include_hairs else [],
            "quality": self.quality.to_dict() if self.quality is not None else None,
            "elapsed_ms": round(float(self.elapsed_ms), 2),
        }
        return out


@dataclasses.dataclass(frozen=True)
class PreviewResult:
    """Live-view result: centre lines (px of the preview frame) and the hair count."""

    width: int
    height: int
    um_per_px: float
    hair_count: int
    centerlines_px: tuple  # of (N, 2) x, y arrays
    elapsed_ms: float


def _maybe(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), 2)


def thickness_histogram(thickness_um: np.ndarray) -> ThicknessHistogram:
    edges = np.arange(0.0, THICKNESS_MAX_UM + THICKNESS_BIN_UM / 2, THICKNESS_BIN_UM)
    clipped = np.clip(thickness_um, 0.0, THICKNESS_MAX_UM - 1e-6)
    counts, _ = np.histogram(clipped, bins=edges)
    return ThicknessHistogram(tuple(float(e) for e in edges), tuple(int(c) for c in counts))
