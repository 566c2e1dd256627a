"""The technician's page: live preview + capture, result, history, station (calibration and status)."""
from __future__ import annotations

import logging
import time
from typing import Any

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session,
                   stream_with_context, url_for)

from station.camera import CameraError, CameraStalled
from station.config import ZONES
from station.records import InvalidInput, check_patient_id, check_zone
from station.storage import NotFound, StorageError
from station.web import get_station
from station.web import history as hist
from station.web import plots
from station.web.auth import logged_in, login_required

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)


def _preview():
    return current_app.extensions["tricho.preview"]


@bp.app_context_processor
def page_context() -> dict[str, Any]:
    ctx: dict[str, Any] = {"zones": ZONES, "nav": request.endpoint}
    if logged_in():
        try:
            station = get_station()
            st = station.status()
            warnings = list(st.get("warnings", []))
            check = station.storage.latest_calibration("lighting_check")
            ref = station.storage.latest_calibration("flat_field")
            if check is not None and ref is not None and check.data.get("reference_id") == ref.id \
                    and check.data.get("within_tolerance") is False:
                warnings.append(f"lighting drift at the last white-card check ({check.created_at[:10]}): "
                                f"{check.data.get('reason') or 'outside tolerance'}")
            ctx["station_warnings"] = warnings
            ctx["station_id"] = st.get("station_id")
        except Exception as exc:  # the page must still render when status fails
            ctx["station_warnings"] = [f"station status unavailable: {exc}"]
    return ctx


@bp.app_template_filter("mqtt_summary")
def mqtt_summary(mqtt: dict[str, Any]) -> str:
    """The link to the clinic's broker in a few words, from the publisher's status()."""
    if not mqtt.get("enabled", True):
        return "off (no broker configured)"
    broker = mqtt.get("broker", "?")
    refused = mqtt.get("refused") or {}
    if refused:
        return f"the broker {broker} refuses the " + " and the ".join(f"{k} ({v})" for k, v in refused.items())
    if mqtt.get("connected"):
        return f"connected to {broker}" + (f" ({mqtt['protocol']})" if mqtt.get("protocol") else "")
    error = mqtt.get("last_error")
    return f"not connected to {broker}" + (f": {error}" if error else "")


# -- live preview ---------------------------------------------------------------------------
@bp.get("/stream.mjpg")
@login_required
def stream():
    from station.web.stream import MIMETYPE

    resp = Response(stream_with_context(_preview().stream()), mimetype=MIMETYPE)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


@bp.get("/snapshot.jpg")
@login_required
def snapshot():
    jpeg = _preview().snapshot()
    if jpeg is None:
        abort(503, description="no preview frame from the camera")
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


# -- capture --------------------------------------------------------------------------------
def _capture_page(status: int = 200, error: str | None = None, error_field: str | None = None,
                  form: dict[str, str] | None = None):
    form = form or {}
    last_zone = form.get("zone", session.get("last_zone", ""))
    recent = get_station().storage.list_results(limit=6)
    return render_template(
        "capture.html", error=error, error_field=error_field,
        patient_id=form.get("patient_id", request.args.get("patient_id", session.get("last_patient", ""))),
        zone=request.args.get("zone", last_zone), note=form.get("note", ""), recent=recent,
    ), status


@bp.get("/")
@login_required
def capture():
    return _capture_page()


@bp.post("/capture")
@login_required
def do_capture():
    f = request.form
    zone = f.get("zone", "")
    if zone == "other":
        zone = f.get("zone_other", "")
    form = {"patient_id": f.get("patient_id", ""), "zone": zone, "note": f.get("note", "")}
    t0 = time.perf_counter()
    try:
        record = get_station().capture(form["patient_id"], zone, form["note"], None)
    except InvalidInput as exc:
        return _capture_page(400, str(exc), exc.field, form)
    except CameraStalled as exc:
        return _capture_page(503, f"The camera stopped delivering frames ({exc}). The station restarts it; "
                                  "try again in a minute.", None, form)
    except CameraError as exc:
        return _capture_page(503, f"Camera problem: {exc}", None, form)
    except StorageError as exc:
        return _capture_page(507, f"Could not store the capture: {exc}", None, form)
    session["last_patient"], session["last_zone"] = record.patient_id, record.zone
    log.info("page capture %s in %.0f ms", record.id, (time.perf_counter() - t0) * 1000)
    return redirect(url_for("pages.result", result_id=record.id))


# -- result ---------------------------------------------------------------------------------
def _get_record(result_id: str):
    try:
        return get_station().storage.get_result(result_id)
    except NotFound:
        abort(404)


@bp.get("/results/<result_id>")
@login_required
def result(result_id: str):
    record = _get_record(result_id)
    a = record.analysis or {}
    h = a.get("thickness_histogram") or {}
    histogram = plots.histogram_svg(h.get("edges_um") or [], h.get("counts") or [],
                                    title="Shaft thickness", x_label="thickness (µm)", y_label="hairs",
                                    marker=a.get("vellus_threshold_um"), marker_label="vellus limit")
    station = get_station()
    fu = (record.extra or {}).get("follow_up")
    return render_template("result.html", r=record, a=a, histogram=histogram, fup=fu if isinstance(fu, dict) else None,
                           outbox_waiting=station.storage.outbox_count(),
                           mqtt=(station.status().get("mqtt") or {}))


@bp.post("/results/<result_id>/<any(accept, discard, retake):action>")
@login_required
def decide(result_id: str, action: str):
    record = _get_record(result_id)
    try:
        if action == "accept":
            get_station().set_status(result_id, "accepted")
            flash("Accepted.")
        else:
            if record.status == "pending":
                get_station().set_status(result_id, "discarded")
            elif action == "discard" and record.status == "accepted":
                raise ValueError("this capture is already accepted (and queued for the clinic server); "
                                 "it can no longer be discarded here")
            if action == "retake":
                return redirect(url_for("pages.capture", patient_id=record.patient_id, zone=record.zone))
            flash("Discarded.")
    except ValueError as exc:
        flash(str(exc), "error")
    except StorageError as exc:
        flash(f"Could not store the decision: {exc}", "error")
    return redirect(url_for("pages.result", result_id=result_id))


# -- history --------------------------------------------------------------------------------
@bp.get("/history")
@login_required
def history():
    args = request.args
    patient_raw, zone_raw = args.get("patient_id", "").strip(), args.get("zone", "").strip()
    patients = get_station().storage.patients()
    if not patient_raw or not zone_raw:
        if patient_raw:
            patients = [p for p in patients if p[0] == patient_raw]
        return render_template("history_index.html", patients=patients, patient_id=patient_raw)
    try:
        patient_id, zone = check_patient_id(patient_raw), check_zone(zone_raw)
        data = hist.history(get_station().storage, patient_id, zone, baseline_id=args.get("baseline") or None,
                            include_all=args.get("all") == "1")
    except InvalidInput as exc:
        return render_template("history_index.html", patients=patients, patient_id=patient_raw,
                               error=str(exc)), 400
    except KeyError:
        return render_template("history_index.html", patients=patients, patient_id=patient_raw,
                               error="That baseline is not an accepted visit of this patient and zone."), 400
    accepted = [v for v in data["visits"] if v["status"] == "accepted"]
    base = next((v for v in accepted if v["is_baseline"]), None)
    density_plot = plots.timeseries_svg([(v["captured_at"], v["density_per_cm2"]) for v in accepted],
                                        title="Density", y_label="hairs / cm²",
                                        baseline=base and base["density_per_cm2"])
    thickness_plot = plots.timeseries_svg([(v["captured_at"], v["mean_thickness_um"]) for v in accepted],
                                          title="Mean thickness", y_label="µm",
                                          baseline=base and base["mean_thickness_um"])
    trend_plot = plots.trend_svg(data.get("trend"), title="Change from baseline (density)")
    other_zones = [z for p, z, _n, _l in patients if p == patient_id and z != zone]
    return render_template("history.html", h=data, density_plot=density_plot, thickness_plot=thickness_plot,
                           trend_plot=trend_plot, other_zones=other_zones, show_all=args.get("all") == "1")


@bp.post("/history/baseline")
@login_required
def set_baseline():
    """Store the technician's baseline choice for a patient and zone ("make baseline")."""
    from station import followup

    f = request.form
    try:
        patient_id, zone = check_patient_id(f.get("patient_id")), check_zone(f.get("zone"))
        rec = followup.set_baseline(get_station().storage, patient_id, zone, f.get("baseline_id", ""))
        flash(f"Baseline set to the visit of {rec.captured_at[:10]}; later captures are compared with it.")
    except InvalidInput as exc:
        abort(400, description=str(exc))
    except KeyError:
        abort(400, description="That baseline is not an accepted visit of this patient and zone.")
    except StorageError as exc:
        flash(f"Could not store the baseline: {exc}", "error")
    return redirect(url_for("pages.history", patient_id=patient_id, zone=zone,
                            all="1" if f.get("all") == "1" else None))


@bp.get("/history.csv")
@login_required
def history_csv():
    try:
        patient_id = check_patient_id(request.args.get("patient_id"))
        zone = check_zone(request.args.get("zone"))
        data = hist.history(get_station().storage, patient_id, zone, baseline_id=request.args.get("baseline") or None,
                            include_all=request.args.get("all") == "1")
    except (InvalidInput, KeyError) as exc:
        abort(400, description=str(exc))
    return Response(hist.history_csv(data), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{hist.csv_filename(patient_id, zone)}"'})


# -- station: calibration and status --------------------------------------------------------
@bp.get("/station")
@login_required
def station_page():
    from station import repeat_captures
    from station.web import calib

    station = get_station()
    return render_template("station.html", st=station.status(), cal=calib.overview(station),
                           preview=_preview().live(), rep=repeat_captures.repeatability_status(station.storage))


# The procedure's messages are shown in its card: the page returns scrolled to the card, where
# a banner at the top would be out of view and a refused repeat would look like nothing happened
REPEAT_OK, REPEAT_ERROR = "repeatability", "repeatability-error"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


@bp.post("/station/repeatability/<any('capture', 'finish', 'reset'):action>")
@login_required
def repeatability(action: str):
    """The repeat-capture procedure: N captures of one spot, lens lifted and re-placed between them."""
    from station import followup, repeat_captures

    try:
        out = repeat_captures.repeatability_step(get_station(), action)
        if "stored" in out:
            d = out["stored"]
            flash(f"Repeatability stored: CV {100 * d['cv']:.1f} % of the density over {d['repeats']} repeat captures "
                  f"(noise band ±{followup.noise_pct(d['cv']):.1f} % for a change).", REPEAT_OK)
        elif action == "capture":
            flash(f"Repeat {out['repeats_done']} of {out['repeats_required']} captured. Lift the lens, re-place it "
                  "on the same spot, then capture the next repeat.", REPEAT_OK)
        elif action == "reset":
            flash("Repeat captures discarded.", REPEAT_OK)
    except ValueError as exc:
        flash(_sentence(str(exc)), REPEAT_ERROR)
    except CameraError as exc:
        flash(f"Camera problem: {exc}", REPEAT_ERROR)
    except StorageError as exc:
        flash(f"Could not store the repeatability: {exc}", REPEAT_ERROR)
    return redirect(url_for("pages.station_page") + "#repeatability")


@bp.post("/station/calibrate/<any('scale', 'flat-field', 'lighting-check'):step>")
@login_required
def calibrate(step: str):
    from station.web import calib

    station = get_station()
    try:
        if step == "scale":
            raw = request.form.get("pitch_um", "")
            try:
                pitch = float(raw)
            except ValueError:
                raise calib.CalibrationFailed("Enter the card's dot pitch in µm (printed on the card, e.g. 500).") from None
            cal = calib.run_scale(station, pitch)
            flash(f"Scale calibrated: {cal.data.get('um_per_px', 0):.4f} µm per pixel "
                  f"({cal.data.get('dots', '?')} dots, residual {cal.data.get('residual_px', 0):.2f} px).")
        elif step == "flat-field":
            calib.run_flat_field(station, "reference")
            flash("White-card reference stored.")
        else:
            cal = calib.run_flat_field(station, "check")
            d = cal.data
            if d.get("within_tolerance"):
                flash(f"Lighting within tolerance of the reference (card level {100 * d.get('level_change', 0):+.1f} %).")
            else:
                flash(d.get("reason") or "Lighting has drifted from the reference.", "error")
    except calib.CalibrationFailed as exc:
        flash(str(exc), "error")
    except ImportError as exc:
        flash(f"Calibration code not available on this station: {exc}", "error")
    except CameraError as exc:
        flash(f"Camera problem: {exc}", "error")
    except StorageError as exc:
        flash(f"Could not store the calibration: {exc}", "error")
    return redirect(url_for("pages.station_page"))
