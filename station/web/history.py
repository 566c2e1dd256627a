"""A patient's visits for one zone, with the change from the baseline visit, the trend, and CSV export.

The baseline is the visit the technician chose ("make baseline", stored per patient and zone
by ``station.followup.set_baseline``), else the first accepted visit; a ``baseline_id``
argument (the page's ``?baseline=``) overrides both for one view.  Each visit carries its
hair-to-hair comparison (``follow_up``) when it was compared with this baseline at capture,
and the history carries the trend with its noise band (``station.followup.trend``).
"""
from __future__ import annotations

import csv
import io
from typing import Any

from station import followup
from station.records import ResultRecord
from station.storage import Storage

FIGURES = ("hair_count", "density_per_cm2", "mean_thickness_um", "median_thickness_um", "vellus_count",
           "terminal_count", "cumulative_thickness_mm_per_cm2")
CSV_COLUMNS = ("id", "captured_at", "patient_id", "zone", "status", "is_baseline", *FIGURES,
               "density_change_per_cm2", "density_change_pct", "mean_thickness_change_um",
               "mean_thickness_change_pct", "matched_change_pct", "change_verdict", "fu_1", "fu_2", "fu_3", "fu_4plus", "um_per_px", "scale_source",
               "calibration_id", "quality_passed", "published_at", "note")
MAX_VISITS = 1000


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _change(value: float | None, base: float | None) -> tuple[float | None, float | None]:
    if value is None or base is None:
        return None, None
    delta = value - base
    return round(delta, 3), (round(100.0 * delta / base, 1) if base else None)


def visit_json(record: ResultRecord, baseline: ResultRecord | None) -> dict[str, Any]:
    a = record.analysis or {}
    b = (baseline.analysis or {}) if baseline else {}
    fu = a.get("follicular_units") or {}
    d, dp = _change(_num(a.get("density_per_cm2")), _num(b.get("density_per_cm2")) if baseline else None)
    t, tp = _change(_num(a.get("mean_thickness_um")), _num(b.get("mean_thickness_um")) if baseline else None)
    return {
        "id": record.id,
        "captured_at": record.captured_at,
        "status": record.status,
        "is_baseline": baseline is not None and record.id == baseline.id,
        **{k: a.get(k) for k in FIGURES},
        "follicular_units": {k: fu.get(k) for k in ("1", "2", "3", "4+")},
        "change": {"density_per_cm2": d, "density_pct": dp, "mean_thickness_um": t, "mean_thickness_pct": tp},
        "um_per_px": record.um_per_px,
        "scale_source": record.scale_source,
        "calibration_id": (record.calibration or {}).get("id"),
        "quality_passed": (record.quality or {}).get("passed"),
        "published_at": record.published_at,
        "note": record.note,
        "links": {"self": f"/api/captures/{record.id}", "page": f"/results/{record.id}"},
        "follow_up": _follow_up_summary((record.extra or {}).get("follow_up"), baseline.id if baseline else None),
    }


def _follow_up_summary(fu: Any, baseline_id: str | None) -> dict[str, Any] | None:
    """The visit's comparison at capture: registration, kept/lost/new, matched change (None if none)."""
    if not isinstance(fu, dict):
        return None
    if "error" in fu:
        return {"error": fu["error"], "same_baseline": False}
    reg, hm = fu.get("registration") or {}, fu.get("hair_match") or {}
    return {
        "baseline_id": fu.get("baseline_id"),
        "same_baseline": bool(baseline_id) and fu.get("baseline_id") == baseline_id,
        "registered": bool(reg.get("success")),
        "offset_um": reg.get("offset_um"), "rotation_deg": reg.get("rotation_deg"),
        "overlap_fraction": reg.get("overlap_fraction"), "registration_reason": reg.get("reason") or "",
        "kept": hm.get("kept"), "lost": hm.get("lost"), "new": hm.get("new"),
        "density_change_pct": hm.get("density_change_pct") if hm.get("success") else None,
        "mean_thickness_change_um": hm.get("mean_thickness_change_um") if hm.get("success") else None,
        "conditions_differ": list(fu.get("conditions_differ") or []),
    }


def history(storage: Storage, patient_id: str, zone: str, *, baseline_id: str | None = None,
            include_all: bool = False) -> dict[str, Any]:
    """Visits oldest first. The baseline is the first accepted visit unless ``baseline_id`` names another.

    Only accepted visits count unless ``include_all`` (pending and discarded ones are then
    listed too, but never serve as the baseline). Raises KeyError if ``baseline_id`` is not
    an accepted visit of this patient and zone.
    """
    records = storage.list_results(patient_id, zone, None if include_all else "accepted", MAX_VISITS, oldest_first=True)
    accepted = [r for r in records if r.status == "accepted"]
    baseline = accepted[0] if accepted else None
    chosen = None if baseline_id else followup.chosen_baseline_id(storage, patient_id, zone)
    if chosen and any(r.id == chosen for r in accepted):
        baseline = next(r for r in accepted if r.id == chosen)
    if baseline_id:
        chosen = [r for r in accepted if r.id == baseline_id]
        if not chosen:
            raise KeyError(baseline_id)
        baseline = chosen[0]
    visits = [visit_json(r, baseline) for r in records]
    rep, thickness_cv, _ = followup.repeatabilities(storage)
    trend = followup.trend(rep, visits, baseline.id) if baseline else None
    by_id = {row["id"]: row for row in (trend or {}).get("visits", [])}
    for v in visits:
        row = by_id.get(v["id"])
        v["trend"] = None if row is None else {k: row[k] for k in ("change_pct", "source", "noise_pct", "beyond_noise",
                                                                    "verdict", "days_since_baseline")}
    return {
        "patient_id": patient_id,
        "zone": zone,
        "baseline_id": baseline.id if baseline else None,
        "baseline_captured_at": baseline.captured_at if baseline else None,
        "visits": visits,
        "accepted_visits": len(accepted),
        "baseline_chosen": bool(baseline and chosen == baseline.id and not baseline_id),
        "trend": trend,
        "repeatability": rep,
        # the band of a change of mean thickness between two captures of an unchanged spot
        "thickness_noise_pct": round(followup.noise_pct(thickness_cv), 2),
    }


def _cell(v: Any) -> Any:
    """CSV cell; text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def history_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for v in data["visits"]:
        ch, fu = v["change"], v["follicular_units"]
        row = {
            **v, "patient_id": data["patient_id"], "zone": data["zone"],
            "density_change_per_cm2": ch["density_per_cm2"], "density_change_pct": ch["density_pct"],
            "mean_thickness_change_um": ch["mean_thickness_um"], "mean_thickness_change_pct": ch["mean_thickness_pct"],
            "matched_change_pct": (v.get("follow_up") or {}).get("density_change_pct")
            if (v.get("follow_up") or {}).get("same_baseline") else None,
            "change_verdict": (v.get("trend") or {}).get("verdict"),
            "fu_1": fu.get("1"), "fu_2": fu.get("2"), "fu_3": fu.get("3"), "fu_4plus": fu.get("4+"),
        }
        w.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def csv_filename(patient_id: str, zone: str) -> str:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)  # noqa: E731
    return f"tricho-history-{safe(patient_id)}-{safe(zone)}.csv"
