"""Follow-up visits, station side: the baseline visit, comparison of a capture with it, the noise band.

- Baseline per (patient, zone): the visit the technician chose ("make baseline", stored
  in the settings table under ``baseline_key``), else the first accepted visit.
- ``compare_to_baseline`` runs inside ``Station.capture`` before the row is stored: it
  registers the new frame on the baseline image (``core.registration``), matches hairs one
  to one on the overlap (``core.hair_matching``) and lists what differs from the baseline
  visit's conditions (calibration, flat field, lighting, hair length, image quality).  The
  dict goes into ``record.extra["follow_up"]`` and into the MQTT payload (``follow_up``).
- Repeatability: the CV stored by the repeat captures (``station.repeat_captures``); the
  trend's noise band uses the latest one, or ``DEFAULT_REPEATABILITY_CV`` (5 %, flagged
  "not measured") when none is stored.
"""
from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import numpy as np

BASELINE_KEY_PREFIX = "followup.baseline/"
DEFAULT_REPEATABILITY_CV = 0.05  # conservative: repositioning by headband+tape gives CV 2.6-9.8 %
# of the mean thickness, until the repeat captures measure it: conservative, phantom repeat
# captures of one spot give 1.8-2.3 % (docs/status.md)
DEFAULT_THICKNESS_CV = 0.03
Z95 = 1.96

# Conditions that make a comparison with the baseline doubtful
UM_PER_PX_TOL = 0.01  # relative change of the scale
HAIR_LENGTH_TOL = 0.35  # relative change of the mean visible hair length (clipping, growth)
SHARPNESS_TOL = 0.25  # relative change of the focus measure
MEAN_LEVEL_TOL = 0.08  # absolute change of the mean grey level (0..1)
EXPOSURE_TOL = 0.05  # relative change of exposure time x analogue gain
LIGHTING_LEVEL_TOL = 0.05  # difference of the white-card level change of the two visits' lighting checks


# -- baseline ---------------------------------------------------------------------------------
def baseline_key(patient_id: str, zone: str) -> str:
    return f"{BASELINE_KEY_PREFIX}{patient_id}/{zone}"


def _accepted(storage, patient_id: str, zone: str) -> list:
    return storage.list_results(patient_id, zone, "accepted", 1000, oldest_first=True)


def chosen_baseline_id(storage, patient_id: str, zone: str) -> str | None:
    return storage.get_setting(baseline_key(patient_id, zone)) or None


def baseline_record(storage, patient_id: str, zone: str):
    """The technician's chosen baseline if it is still an accepted visit, else the first accepted one."""
    from station.storage import NotFound

    chosen = chosen_baseline_id(storage, patient_id, zone)
    if chosen:
        try:
            rec = storage.get_result(chosen)
            if rec.status == "accepted" and rec.patient_id == patient_id and rec.zone == zone:
                return rec
        except NotFound:
            pass
    accepted = storage.list_results(patient_id, zone, "accepted", 1, oldest_first=True)
    return accepted[0] if accepted else None


def set_baseline(storage, patient_id: str, zone: str, result_id: str):
    """Store the technician's baseline choice; KeyError if it is not an accepted visit of (patient, zone)."""
    from station.storage import NotFound

    try:
        rec = storage.get_result(result_id)
    except NotFound:
        raise KeyError(result_id) from None
    if rec.status != "accepted" or rec.patient_id != patient_id or rec.zone != zone:
        raise KeyError(result_id)
    storage.set_setting(baseline_key(patient_id, zone), rec.id)
    return rec


# -- repeatability ------------------------------------------------------------------------------
def noise_pct(cv: float) -> float:
    """95 % half-width of the change between two captures of an unchanged spot, %."""
    return Z95 * math.sqrt(2.0) * cv * 100.0


def _measured_cv(cal, key: str) -> float | None:
    """The CV ``cal.data[key]`` of a repeatability calibration when it is a fraction in
    [0, 1], floored at 0.5 % (never claim better); None without one."""
    v = None if cal is None else cal.data.get(key)
    return max(float(v), 0.005) if isinstance(v, (int, float)) and 0 <= v <= 1 else None


def repeatabilities(storage) -> tuple[dict[str, Any], float, bool]:
    """From one read of the latest repeatability calibration: the density CV the trend uses
    (``repeatability``'s dict) and the mean-thickness CV with whether it was measured
    (else ``DEFAULT_THICKNESS_CV``)."""
    cal = storage.latest_calibration("repeatability")
    cv_t = _measured_cv(cal, "cv_mean_thickness")
    thickness = (DEFAULT_THICKNESS_CV, False) if cv_t is None else (cv_t, True)
    cv = _measured_cv(cal, "cv")
    if cv is None:
        cv = DEFAULT_REPEATABILITY_CV
        return ({"cv": cv, "measured": False, "id": None, "created_at": None, "noise_pct": round(noise_pct(cv), 2),
                 "source": f"not measured: conservative default {100 * cv:.0f} %"}, *thickness)
    return ({"cv": cv, "measured": True, "id": cal.id, "created_at": cal.created_at,
             "repeats": cal.data.get("repeats"), "noise_pct": round(noise_pct(cv), 2),
             "source": f"measured {cal.created_at[:10]} ({cal.data.get('repeats')} repeat captures)"}, *thickness)


def repeatability(storage) -> dict[str, Any]:
    """The CV the trend uses: the latest measured one, else the documented default."""
    return repeatabilities(storage)[0]


def root_points(hairs) -> np.ndarray:
    """(n, 2) px of the hairs' roots where known: the registration's fallback points."""
    return np.array([h.root_px for h in hairs if h.root_px is not None], float).reshape(-1, 2)


# -- comparison of a capture with the baseline ---------------------------------------------------
def _rel(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return a / b - 1.0


def _mean_length(hairs: list) -> float | None:
    vals = [float(h.get("length_um") or 0.0) for h in hairs if isinstance(h, dict)]
    return float(np.mean(vals)) if vals else None


def conditions_differ(current, baseline) -> list[str]:
    """Plain sentences for each condition of ``current`` that differs from the ``baseline`` visit."""
    out = []
    cc, bc = current.calibration or {}, baseline.calibration or {}
    def cal_name(c: dict) -> str:
        return f"calibration of {str(c.get('created_at') or '?')[:10]}" if c.get("id") else "configured value"

    if cc.get("id") != bc.get("id") or current.scale_source != baseline.scale_source:
        out.append(f"another scale calibration than the baseline ({cal_name(cc)} vs {cal_name(bc)})")
    r = _rel(current.um_per_px, baseline.um_per_px)
    if r is not None and abs(r) > UM_PER_PX_TOL:
        out.append(f"scale differs by {100 * r:+.1f} % from the baseline ({current.um_per_px:.4f} vs {baseline.um_per_px:.4f} µm/px)")
    cff, bff = cc.get("flat_field") or {}, bc.get("flat_field") or {}
    if cff.get("id") != bff.get("id"):
        def ff_name(f: dict) -> str:
            return f"reference of {str(f.get('created_at') or '?')[:10]}" if f.get("id") else "none"

        out.append(f"another lighting (white-card) reference than the baseline ({ff_name(cff)} vs {ff_name(bff)})")
    clc, blc = cc.get("lighting_check") or {}, bc.get("lighting_check") or {}
    if clc.get("within_tolerance") is False:
        out.append("the last lighting check before this visit showed drift from the white-card reference")
    cl, bl = clc.get("level_change"), blc.get("level_change")
    if isinstance(cl, (int, float)) and isinstance(bl, (int, float)) and abs(cl - bl) > LIGHTING_LEVEL_TOL:
        out.append(f"lighting level moved {100 * (cl - bl):+.1f} % between the lighting checks of the two visits")
    ca, ba = current.analysis or {}, baseline.analysis or {}
    lc, lb = _mean_length(ca.get("hairs") or []), _mean_length(ba.get("hairs") or [])
    r = _rel(lc, lb)
    if r is not None and abs(r) > HAIR_LENGTH_TOL:
        out.append(f"mean visible hair length {lc / 1000:.2f} mm vs {lb / 1000:.2f} mm at baseline "
                   f"({100 * r:+.0f} %: clipped or grown); short-hair counts may not compare")
    cq, bq = ca.get("quality") or {}, ba.get("quality") or {}
    r = _rel(cq.get("sharpness"), bq.get("sharpness"))
    if r is not None and abs(r) > SHARPNESS_TOL:
        out.append(f"focus (sharpness) {cq['sharpness']:.2f} vs {bq['sharpness']:.2f} at baseline ({100 * r:+.0f} %)")
    ml, bml = cq.get("mean_level"), bq.get("mean_level")
    if isinstance(ml, (int, float)) and isinstance(bml, (int, float)) and abs(ml - bml) > MEAN_LEVEL_TOL:
        out.append(f"image brightness {100 * ml:.0f} % vs {100 * bml:.0f} % at baseline")
    cap, bcap = current.capture or {}, baseline.capture or {}
    try:
        r = _rel(float(cap["exposure_us"]) * float(cap["analogue_gain"]),
                 float(bcap["exposure_us"]) * float(bcap["analogue_gain"]))
    except (KeyError, TypeError, ValueError):
        r = None
    if r is not None and abs(r) > EXPOSURE_TOL:
        out.append(f"camera exposure x gain differs by {100 * r:+.0f} % from the baseline")
    if (current.quality or {}).get("passed") is False and (baseline.quality or {}).get("passed") is not False:
        out.append("this capture failed the quality gate; the baseline passed it")
    return out


HAIR_MATCH_FIELDS = ("success", "reason", "overlap_area_cm2", "baseline_count", "current_count", "kept", "lost", "new",
                     "count_change_pct", "baseline_density_per_cm2", "current_density_per_cm2", "density_change_pct",
                     "mean_thickness_change_um", "median_thickness_change_um", "mean_thickness_change_pct",
                     "median_thickness_change_pct", "mean_match_distance_um", "fragments", "unconfirmed")
REGISTRATION_FIELDS = ("success", "reason", "method", "dx_um", "dy_um", "offset_um", "rotation_deg", "scale",
                       "overlap_fraction", "matched_points", "match_quality", "residual_um", "on_target",
                       "max_offset_um", "max_rotation_deg", "matrix_px")


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_round(x) for x in v]
    if isinstance(v, np.generic):
        return _round(v.item())
    return v


def compare_to_baseline(station, record, image: np.ndarray, analysis_result) -> dict[str, Any] | None:
    """Register ``image`` (the raw frame of ``record``) on the baseline visit and match hairs.

    Returns None when the patient and zone have no accepted visit yet (this is the baseline),
    else {"baseline_id", "baseline_captured_at", "registration", "hair_match",
    "conditions_differ", "repeatability_cv", "noise_pct", "verdict", "elapsed_ms"}.
    """
    from core._validate import as_gray_float32
    from core.hair_matching import hairs_from_dicts, match_hairs
    from core.registration import register_to_baseline
    from core.skin_mask import find_skin_mask
    from station.imageio import read_image

    t0 = time.perf_counter()
    storage = station.storage
    base = baseline_record(storage, record.patient_id, record.zone)
    if base is None or base.id == record.id:
        return None
    out: dict[str, Any] = {"baseline_id": base.id, "baseline_captured_at": base.captured_at,
                           "conditions_differ": conditions_differ(record, base)}
    base_img = read_image(storage.image_path(base.image_file))
    base_hairs = hairs_from_dicts((base.analysis or {}).get("hairs") or [])
    cur_hairs = list(analysis_result.hairs)

    reg = register_to_baseline(base_img, image, base.um_per_px, current_um_per_px=record.um_per_px,
                               baseline_points=root_points(base_hairs), current_points=root_points(cur_hairs))
    rd = reg.to_dict()
    out["registration"] = {k: _round(rd.get(k)) for k in REGISTRATION_FIELDS}
    bh, bw = base_img.shape[:2]
    h, w = image.shape[:2]
    if reg.success:
        base_mask = find_skin_mask(as_gray_float32(base_img, "baseline"))
        cur_mask = getattr(analysis_result, "skin_mask", None)
        if cur_mask is not None and cur_mask.shape != (h, w):
            cur_mask = None
        hm = match_hairs(base_hairs, cur_hairs, reg, image_size_px=(bw, bh), current_size_px=(w, h),
                         um_per_px=base.um_per_px, baseline_mask=base_mask, current_mask=cur_mask,
                         baseline_image=base_img, current_image=image).to_dict()
        out["hair_match"] = {k: _round(hm.get(k)) for k in HAIR_MATCH_FIELDS}
    else:
        out["hair_match"] = {"success": False, "reason": f"registration failed: {reg.reason}"}
    rep, cv_t, out["thickness_repeatability_measured"] = repeatabilities(storage)
    noise = noise_pct(rep["cv"])
    out["repeatability_cv"], out["repeatability_measured"] = round(rep["cv"], 5), rep["measured"]
    out["noise_pct"] = round(noise, 2)
    t_noise = noise_pct(cv_t)
    out["thickness_noise_pct"] = round(t_noise, 2)
    t_change = out["hair_match"].get("mean_thickness_change_pct")
    if isinstance(t_change, (int, float)):
        within = "within measurement noise" if abs(t_change) <= t_noise else "beyond noise"
        out["thickness_verdict"] = f"kept hairs' thickness {t_change:+.1f} %: {within} (±{t_noise:.1f} %)"
    change = out["hair_match"].get("density_change_pct")
    if isinstance(change, (int, float)):
        if abs(change) <= noise:
            out["verdict"] = f"matched change {change:+.1f} %: within measurement noise (±{noise:.1f} %)"
        else:
            word = "increase" if change > 0 else "decrease"
            out["verdict"] = f"{word} of {abs(change):.1f} % on the overlap, beyond noise (±{noise:.1f} %)"
    elif not reg.success:
        out["verdict"] = "not the same spot as the baseline: no hair-by-hair comparison"
    else:
        out["verdict"] = "no hair-by-hair comparison: " + str(out["hair_match"].get("reason") or "no hairs in the overlap")
    out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return out


# -- trend for the history page -----------------------------------------------------------------------
def _days(a: str, b: str) -> float:
    pa = datetime.fromisoformat(a.replace("Z", "+00:00"))
    pb = datetime.fromisoformat(b.replace("Z", "+00:00"))
    return (pa - pb).total_seconds() / 86400.0


def matched_change(follow_up: Any, baseline_id: str | None) -> float | None:
    """The hair-to-hair density change of a visit, if it was compared with ``baseline_id``."""
    if not isinstance(follow_up, dict) or not baseline_id or follow_up.get("baseline_id") != baseline_id:
        return None
    if "hair_match" not in follow_up:  # a history row's summary (station.web.history)
        v = follow_up.get("density_change_pct")
        return float(v) if isinstance(v, (int, float)) else None
    hm = follow_up.get("hair_match") or {}
    v = hm.get("density_change_pct")
    return float(v) if hm.get("success") and isinstance(v, (int, float)) else None


def trend(rep: dict[str, Any], visits: list[dict], baseline_id: str | None) -> dict[str, Any] | None:
    """The honest trend over accepted visits from the baseline on (``core.trend.follow_up_trend``),
    its noise band from ``rep`` (``repeatability``'s dict).

    ``visits`` are history rows (``station.web.history.visit_json``) with ``follow_up``.
    Visits before the baseline are not part of the trend.
    """
    from core.trend import follow_up_trend

    acc = [v for v in visits if v.get("status") == "accepted" and isinstance(v.get("density_per_cm2"), (int, float))]
    idx = next((k for k, v in enumerate(acc) if v["id"] == baseline_id), None)
    if idx is None:
        return None
    acc = acc[idx:]
    if acc[0]["density_per_cm2"] <= 0:
        return {"error": "the baseline visit has no hairs: no relative change", "repeatability": rep}
    rows = [{"days_since_baseline": _days(v["captured_at"], acc[0]["captured_at"]),
             "density_per_cm2": v["density_per_cm2"], "mean_thickness_um": v.get("mean_thickness_um"),
             "matched_change_pct": None if k == 0 else matched_change(v.get("follow_up"), baseline_id)}
            for k, v in enumerate(acc)]
    try:
        t = follow_up_trend(rows, rep["cv"]).to_dict()
    except ValueError as exc:  # e.g. visits stored with clocks out of order
        return {"error": f"no trend: {exc}", "repeatability": rep}
    for row, v in zip(t["visits"], acc):
        row["id"], row["captured_at"] = v["id"], v["captured_at"]
    t["repeatability"] = rep
    return t
