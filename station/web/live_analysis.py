"""What the live preview shows beside the picture: the hair count and image quality of a
preview frame, and the technician's guidance back to the baseline spot.

``PreviewBroadcaster`` (``station.web.stream``) calls these from its threads.
"""
from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

import core

OVERLAY_BGR = (40, 220, 60)


def _quality_figures(image: np.ndarray) -> dict[str, Any]:
    from core.image_quality import evaluate_quality, measure_image_quality

    q = measure_image_quality(image)
    verdict = evaluate_quality(q)
    return {"quality": q.to_dict(), "passed": bool(verdict.passed), "reasons": list(verdict.reasons)}


def default_live_analysis(station: Any, image: np.ndarray, um_per_px: float) -> dict[str, Any]:
    """Count hairs on a preview frame (``core.analyze_preview``) and measure its quality.

    Returns hair_count, density_per_cm2, quality figures, the gate's verdict and ``draw``:
    a callable drawing the detected centre lines onto a BGR frame of the same size.
    """
    lock = getattr(station, "_analysis_lock", None)  # numba's workqueue: one analysis at a time
    if lock is not None and not lock.acquire(timeout=0.05):
        return {"skipped": "capture in progress"}
    try:
        result = core.analyze_preview(image, um_per_px)
    finally:
        if lock is not None:
            lock.release()
    out: dict[str, Any] = {"hair_count": int(result.hair_count), "preview_ms": round(float(result.elapsed_ms), 1)}
    area_cm2 = result.width * result.height * (float(result.um_per_px) * 1e-4) ** 2
    if area_cm2 > 0:
        out["density_per_cm2"] = round(result.hair_count / area_cm2, 1)
    out.update(_quality_figures(image))
    out["draw"] = _drawer(getattr(result, "centerlines_px", ()) or ())
    return out


def _drawer(lines: Any) -> Callable[[np.ndarray], None] | None:
    """A function drawing the centre lines ((N, 2) x, y arrays) on a BGR frame."""
    polylines = []
    for p in lines:
        pts = np.asarray(p, dtype=np.float32).reshape(-1, 2)
        if len(pts) >= 2 and np.all(np.isfinite(pts)):
            polylines.append(np.round(pts).astype(np.int32).reshape(-1, 1, 2))
    if not polylines:
        return None

    def draw(frame: np.ndarray) -> None:
        cv2.polylines(frame, polylines, False, OVERLAY_BGR, 1, cv2.LINE_AA)

    return draw


def guidance_from_registration(reg: Any) -> dict[str, Any]:
    """Turn a ``Registration`` of the live frame into instructions for the technician.

    ``move_x_mm, move_y_mm``: which way to move the field of view, in the axes of the live
    image on screen (x right, y down), to bring its centre onto the baseline centre; ``turn_deg``:
    how far to turn it (positive = clockwise on screen).  Whether the lens moves the same or
    the opposite way as the field of view depends on the optics (check once on the station).
    """
    if not reg.success:
        return {"state": "not_found", "on_target": False, "success": False, "reason": reg.reason,
                "message": "Move slowly around the area of the baseline photo."}
    m = np.array(reg.matrix_px, dtype=np.float64)
    lin = m[:, :2] / max(float(np.hypot(m[0, 0], m[1, 0])), 1e-9)
    # the offset is in baseline axes; the correction, seen in the live image, is -R^T d
    move = -(lin.T @ np.array([reg.dx_um, reg.dy_um])) / 1000.0
    state = "on_target" if reg.on_target else "adjust"
    parts = []
    if reg.offset_um > reg.max_offset_um:
        horiz = f"{abs(move[0]):.2f} mm {'right' if move[0] > 0 else 'left'}"
        vert = f"{abs(move[1]):.2f} mm {'down' if move[1] > 0 else 'up'}"
        parts.append(f"move {horiz}, {vert}")
    if abs(reg.rotation_deg) > reg.max_rotation_deg:
        parts.append(f"turn {abs(reg.rotation_deg):.1f}° {'counter-clockwise' if reg.rotation_deg > 0 else 'clockwise'}")
    return {"state": state, "success": True, "on_target": bool(reg.on_target),
            "dx_um": round(reg.dx_um, 1), "dy_um": round(reg.dy_um, 1), "offset_mm": round(reg.offset_um / 1000.0, 3),
            "rotation_deg": round(reg.rotation_deg, 2), "turn_deg": round(-reg.rotation_deg, 2),
            "move_x_mm": round(float(move[0]), 3), "move_y_mm": round(float(move[1]), 3),
            "overlap_pct": round(100.0 * reg.overlap_fraction, 1), "match_quality": round(reg.match_quality, 3),
            "max_offset_mm": round(reg.max_offset_um / 1000.0, 3), "max_rotation_deg": reg.max_rotation_deg,
            "message": "ON TARGET: same spot as the baseline" if reg.on_target else "; ".join(parts) or "adjust"}
