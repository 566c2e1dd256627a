"""The repeat-capture procedure that measures the station's repeatability.

N captures of one spot, the technician lifting and re-placing the lens between them; each
repeat is registered on the first and refused when it shows another spot.  The CVs of the
density, hair count and mean thickness (``core.trend.repeatability_from_repeats``) are
stored as a "repeatability" calibration, which ``station.followup`` turns into the noise
band of every later comparison and trend.  The repeats taken so far live in the settings
table (``PENDING_KEY``) and the first one's image in the state directory, so a restart
mid-procedure loses nothing.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from station.followup import repeatability, root_points

log = logging.getLogger(__name__)

REPEATS_DEFAULT = 5
REPEATS_MIN = 3
PENDING_KEY = "followup.repeatability.pending"
FIRST_REPEAT_IMAGE = "repeatability-first.jpg"  # in the state directory, while repeats are pending


def repeatability_status(storage, n_required: int = REPEATS_DEFAULT) -> dict[str, Any]:
    pending = json.loads(storage.get_setting(PENDING_KEY) or "[]")
    return {"repeats_done": len(pending), "repeats_required": n_required, "pending": _without_roots(pending),
            "in_use": repeatability(storage)}


def _without_roots(pending: list) -> list:
    """The repeats as reported: the first one's root points stay internal (registration fallback)."""
    return [{k: v for k, v in p.items() if k != "roots_px"} for p in pending]


def repeatability_step(station, action: str, n_required: int = REPEATS_DEFAULT) -> dict[str, Any]:
    """One step of the repeat-capture procedure.

    action "capture": capture and analyse one repeat (the technician lifts and re-places the
    lens before each); "finish": compute the CV of the repeats (at least ``REPEATS_MIN``) and
    store it as a "repeatability" calibration; "reset": drop the repeats taken so far.
    Returns the procedure's status (and ``stored`` after "finish").  ValueError on misuse.
    """
    from station.imageio import write_image_atomic
    from station.records import utc_now_iso

    storage = station.storage
    pending = json.loads(storage.get_setting(PENDING_KEY) or "[]")
    if action == "reset":
        storage.set_setting(PENDING_KEY, "[]")
        _first_repeat_path(storage).unlink(missing_ok=True)
        return repeatability_status(storage, n_required)
    if action == "capture":
        image = station.capture_still().image
        scale = station.scale()
        res = station.analyze(station.flat_field_correct(image), scale.um_per_px)
        roots = root_points(res.hairs)
        entry = {"hair_count": int(res.hair_count), "density_per_cm2": round(float(res.density_per_cm2), 3),
                 "mean_thickness_um": None if res.mean_thickness_um is None else round(float(res.mean_thickness_um), 3),
                 "at": utc_now_iso()}
        if pending:
            entry.update(_same_spot_as_first(storage, pending[0], image, roots, scale.um_per_px, len(pending) + 1))
        else:
            write_image_atomic(_first_repeat_path(storage), image, 95)
            entry["roots_px"] = roots.round(1).tolist()
        pending.append(entry)
        storage.set_setting(PENDING_KEY, json.dumps(pending))
        out = repeatability_status(storage, n_required)
        if len(pending) >= n_required:
            out.update(finish_repeatability(station, pending))
        return out
    if action == "finish":
        return {**repeatability_status(storage, n_required), **finish_repeatability(station, pending)}
    raise ValueError("action: 'capture' (one repeat), 'finish' (compute and store the CV) or 'reset'")


def _first_repeat_path(storage) -> Path:
    return storage.state_dir / FIRST_REPEAT_IMAGE


def _same_spot_as_first(storage, first: dict, image: np.ndarray, roots: np.ndarray, um_per_px: float,
                        number: int) -> dict[str, Any]:
    """Register a repeat on the first one: ValueError when it does not show the same spot (a
    repeat of another spot passes the difference between two spots off as the station's
    noise: CV 26 % from the demo's unrelated frames), else its offset and rotation from the
    first."""
    from core.registration import register_to_baseline
    from station.imageio import read_image

    try:
        first_image = read_image(_first_repeat_path(storage))
    except (OSError, ValueError):
        raise ValueError("the first repeat's image is missing: start the repeat captures over") from None
    reg = register_to_baseline(first_image, image, um_per_px, current_points=roots,
                               baseline_points=np.array(first.get("roots_px") or [], float).reshape(-1, 2))
    if not reg.success:
        raise ValueError(f"repeat {number} does not show the spot of repeat 1 ({reg.reason}): re-place the lens on "
                         f"that spot and capture repeat {number} again, or start over")
    return {"offset_um": round(reg.offset_um, 1), "rotation_deg": round(reg.rotation_deg, 2)}


def finish_repeatability(station, pending: list) -> dict[str, Any]:
    from core.trend import repeatability_from_repeats

    if len(pending) < REPEATS_MIN:
        raise ValueError(f"{len(pending)} repeat capture(s) taken; at least {REPEATS_MIN} are needed")
    dens = [float(p["density_per_cm2"]) for p in pending]
    counts = [float(p["hair_count"]) for p in pending]
    if min(dens) <= 0 or min(counts) <= 0:
        raise ValueError("a repeat capture found no hairs; capture a spot with hair")
    thick = [p["mean_thickness_um"] for p in pending if p.get("mean_thickness_um")]
    data = {"cv": float(repeatability_from_repeats(dens)), "cv_hair_count": float(repeatability_from_repeats(counts)),
            "cv_mean_thickness": float(repeatability_from_repeats(thick)) if len(thick) >= 2 else None,
            "repeats": len(pending), "values": _without_roots(pending),
            "scale_calibration_id": (station.scale().calibration or {}).get("id"),
            "method": "CV of the density over repeat captures of one spot, lens lifted and re-placed between them"}
    cal = station.storage.add_calibration("repeatability", data)
    station.storage.set_setting(PENDING_KEY, "[]")
    _first_repeat_path(station.storage).unlink(missing_ok=True)
    log.info("repeatability %s: CV %.2f %% over %d repeats", cal.id, 100 * data["cv"], len(pending))
    return {"stored": {"id": cal.id, "created_at": cal.created_at, **data}}
