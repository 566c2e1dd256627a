"""Calibration steps the page and the API run: the scale (dot-grid card) and the flat field (white card).

- scale: capture the card → ``core.calibration.calibrate_grid`` → stored as a "scale"
  calibration, which ``Station.scale()`` uses for every later capture.
- flat field: capture a white card → ``core.flat_field.flat_field_from_reference`` →
  stored as "flat_field" (figures as JSON, the field itself as an .npy blob). A later
  white-card capture in "check" mode is compared with the stored reference
  (``compare_lighting``) and stored as "lighting_check", so drift of the LED ring shows.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import cv2
import numpy as np

from station.storage import Calibration

log = logging.getLogger(__name__)

MIN_PITCH_UM, MAX_PITCH_UM = 20.0, 10000.0


class CalibrationFailed(ValueError):
    """The card could not be used; the message says why and what to do."""


def _plain(value: Any) -> Any:
    """JSON-able scalars/lists/dicts only (numpy scalars converted, arrays summarised away)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not isinstance(v, np.ndarray)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _to_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return _plain({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, dict):
        return _plain(obj)
    return {"value": _plain(obj)}


def _thumbnail_jpeg(image: np.ndarray, width: int = 640) -> bytes:
    h, w = image.shape[:2]
    small = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


def calibration_json(cal: Calibration | None) -> dict[str, Any] | None:
    if cal is None:
        return None
    return {"id": cal.id, "kind": cal.kind, "created_at": cal.created_at, "data": cal.data}


def run_scale(station: Any, pitch_um: Any) -> Calibration:
    if isinstance(pitch_um, bool) or not isinstance(pitch_um, (int, float)) or not math.isfinite(pitch_um) \
            or not MIN_PITCH_UM <= pitch_um <= MAX_PITCH_UM:
        raise CalibrationFailed(f"pitch_um: the card's dot pitch in µm, a number from {MIN_PITCH_UM:g} to "
                                f"{MAX_PITCH_UM:g} (printed on the card, e.g. 500)")
    from core.calibration import CalibrationError, calibrate_grid

    image = station.capture_still().image
    try:
        result = calibrate_grid(image, float(pitch_um))
    except CalibrationError as exc:
        raise CalibrationFailed(f"the grid card was not usable: {exc}") from None
    data = _to_dict(result)
    data["pitch_um"] = float(pitch_um)
    data.setdefault("um_per_px", float(result.um_per_px))
    cal = station.storage.add_calibration("scale", data, _thumbnail_jpeg(image))
    log.info("scale calibration %s: %.4f µm/px", cal.id, data["um_per_px"])
    return cal


def _load_flat_field(cal: Calibration) -> Any:
    from core.flat_field import FlatField

    if not cal.blob:
        raise CalibrationFailed("the stored white-card reference has no data; store a new reference")
    try:
        return FlatField.from_bytes(cal.blob)
    except ValueError as exc:
        raise CalibrationFailed(f"the stored white-card reference is unreadable ({exc}); store a new reference") from None


def run_flat_field(station: Any, action: str = "reference") -> Calibration:
    """action "reference": store a new flat field; "check": compare a card capture with the stored one."""
    if action not in ("reference", "check"):
        raise CalibrationFailed("action: 'reference' (store a new white-card reference) or 'check' "
                                "(compare a white-card capture with the stored reference)")
    from core import flat_field as ff

    if action == "check":
        ref_cal = station.storage.latest_calibration("flat_field")
        if ref_cal is None:
            raise CalibrationFailed("no flat-field reference stored yet: capture the white card as a reference first")
        image = station.capture_still().image
        reference = _load_flat_field(ref_cal)
        try:
            cmp = ff.compare_lighting(reference, image, tolerance=station.config.quality.lighting_tolerance)
        except ValueError as exc:
            raise CalibrationFailed(f"the white card was not usable: {exc}") from None
        data = _to_dict(cmp)
        data["reference_id"] = ref_cal.id
        cal = station.storage.add_calibration("lighting_check", data, _thumbnail_jpeg(image))
        log.info("lighting check %s against %s: %s", cal.id, ref_cal.id, data)
        return cal
    image = station.capture_still().image
    try:
        field = ff.flat_field_from_reference(image)
    except ValueError as exc:
        raise CalibrationFailed(f"the white card was not usable: {exc}") from None
    data = _to_dict(field)
    data.pop("data_base64", None)  # the field itself is the blob
    blob = field.to_bytes()
    cal = station.storage.add_calibration("flat_field", data, blob)
    log.info("flat-field reference %s stored", cal.id)
    return cal


def overview(station: Any) -> dict[str, Any]:
    st = station.storage
    scale = st.latest_calibration("scale")
    return {
        "scale": calibration_json(scale),
        "scale_in_use": dataclasses.asdict(station.scale()),
        "flat_field": calibration_json(st.latest_calibration("flat_field")),
        "lighting_check": calibration_json(st.latest_calibration("lighting_check")),
        "history": [calibration_json(c) for c in st.list_calibrations(limit=20)],
    }
