"""Annotated picture of an analysis: centre lines by thickness class, units, masked area."""
from __future__ import annotations

import cv2
import numpy as np

from ._validate import as_gray_float32

VELLUS_RGB = (255, 220, 0)
TERMINAL_RGB = (255, 40, 160)
UNIT_RGB = (0, 230, 255)
MASK_RGB = np.array([40, 40, 120], np.float32)


def _as_rgb_uint8(image) -> np.ndarray:
    as_gray_float32(image, "image")  # same checks (and messages) as analyze
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    # Always a new array: the overlay must never draw on the caller's frame (the stored original).
    return np.array(img[:, :, :3], dtype=np.uint8, order="C", copy=True)


def draw_overlay(image, result) -> np.ndarray:
    """RGB uint8 image, same size as ``image``: shafts drawn along their centre lines in
    yellow (vellus, <= result.vellus_threshold_um) or magenta (terminal), follicular
    units ringed in cyan with their hair count, non-skin area shaded, and a legend."""
    out = _as_rgb_uint8(image)
    h, w = out.shape[:2]
    if (result.width, result.height) != (w, h):
        raise ValueError(f"image is {w}x{h} but result is for {result.width}x{result.height}")
    scale = max(1.0, max(h, w) / 1000.0)
    lw = max(1, int(round(1.5 * scale)))
    if result.skin_mask is not None and not result.skin_mask.all():
        shade = ~result.skin_mask
        out[shade] = (0.45 * out[shade] + 0.55 * MASK_RGB).astype(np.uint8)
    for hair in result.hairs:
        colour = VELLUS_RGB if hair.thickness_um <= result.vellus_threshold_um else TERMINAL_RGB
        pts = np.round(hair.centerline_px * 8).astype(np.int32)  # 3 fractional bits
        cv2.polylines(out, [pts], False, colour, lw, cv2.LINE_AA, shift=3)
    units: dict = {}  # unit -> (roots, hairs); a sibling traced only up to where it left the
    for hair in result.hairs:  # other shaft is in the unit without a root of its own
        if hair.unit is not None:
            roots, hairs = units.setdefault(hair.unit, ([], []))
            hairs.append(hair)
            if hair.root_px is not None:
                roots.append(hair.root_px)
    r = int(round(max(6.0, 60.0 / result.um_per_px)))
    for roots, hairs in units.values():
        c = np.mean(roots, axis=0)
        centre = (int(round(c[0])), int(round(c[1])))
        cv2.circle(out, centre, r, UNIT_RGB, lw, cv2.LINE_AA)
        cv2.putText(out, str(len(hairs)), (centre[0] + r, centre[1] - r), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * scale, UNIT_RGB, lw, cv2.LINE_AA)
    _legend(out, result, scale, lw)
    return out


def _legend(out: np.ndarray, result, scale: float, lw: int) -> None:
    fs = 0.5 * scale
    row = int(22 * scale)
    thr = result.vellus_threshold_um
    items = [
        (VELLUS_RGB, f"vellus <= {thr:g} um: {result.vellus_count}"),
        (TERMINAL_RGB, f"terminal > {thr:g} um: {result.terminal_count}"),
        (UNIT_RGB, "follicular unit (hairs)"),
    ]
    mean = result.mean_thickness_um
    head = f"{result.hair_count} hairs, {result.density_per_cm2:.0f}/cm2, mean " + (
        f"{mean:.1f} um" if mean is not None else "-")
    width = int(max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)[0][0] for t in [head] + [i[1] for i in items])
                + 50 * scale)
    x0, y0 = int(8 * scale), int(8 * scale)
    box = out[y0:y0 + row * 4 + int(8 * scale), x0:x0 + width]
    box[:] = (box * 0.35).astype(np.uint8)
    cv2.putText(out, head, (x0 + int(6 * scale), y0 + row - int(5 * scale)), cv2.FONT_HERSHEY_SIMPLEX, fs,
                (255, 255, 255), max(1, lw // 2), cv2.LINE_AA)
    for k, (colour, text) in enumerate(items):
        y = y0 + row * (k + 2) - int(6 * scale)
        cv2.line(out, (x0 + int(6 * scale), y - int(5 * scale)), (x0 + int(34 * scale), y - int(5 * scale)), colour,
                 lw + 1, cv2.LINE_AA)
        cv2.putText(out, text, (x0 + int(42 * scale), y), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255),
                    max(1, lw // 2), cv2.LINE_AA)
