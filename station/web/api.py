"""JSON API under /api/ for kiosk scripts, foot pedals and the page itself.

Every route needs ``Authorization: Bearer <api_token>``, or the page's login session; a
session-authenticated call that changes state (POST) also needs the ``X-CSRF-Token``
header (the page's fetch() calls send it). See docs/web-api.md.
"""
from __future__ import annotations

import hmac
import logging
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, current_app, g, jsonify, request

from station.camera import CameraError, CameraStalled
from station.records import InvalidInput, ResultRecord
from station.storage import NotFound, StorageError
from station.web import get_station

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")


def _token_ok() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = current_app.config["API_TOKEN"]
    return scheme.lower() == "bearer" and bool(token) and hmac.compare_digest(token.strip(), expected)


# Other blueprints (the page's session login) may add checks that also grant API access.
extra_auth_checks: list[Callable[[], bool]] = []


def require_auth(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        if not (_token_ok() or any(check() for check in extra_auth_checks)):
            if g.get("csrf_failed"):
                return error(403, "missing or wrong X-CSRF-Token header (session-authenticated calls that "
                                  "change state need it; bearer-token calls do not)")
            resp = jsonify(error="authentication required: send 'Authorization: Bearer <api_token>'")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="tricho"'
            return resp, 401
        return view(*args, **kwargs)

    return wrapped


def record_json(record: ResultRecord) -> dict[str, Any]:
    out = record.to_dict()
    out["links"] = {
        "self": f"/api/captures/{record.id}",
        "image": f"/api/captures/{record.id}/image",
        "overlay": f"/api/captures/{record.id}/overlay" if record.overlay_file else None,
    }
    return out


def error(status: int, message: str, **extra: Any):
    return jsonify(error=message, **extra), status


def hardware_error(exc: Exception):
    """The answer when the camera or the storage failed: 503 for the camera, 507 for the disk."""
    if isinstance(exc, CameraStalled):
        return error(503, f"camera stalled: {exc}")
    if isinstance(exc, CameraError):
        return error(503, f"camera: {exc}")
    return error(507, str(exc))


def optional_json_object() -> dict[str, Any] | None:
    """The request's JSON object, {} for an empty body, None when the body is not an object."""
    body = request.get_json(silent=True)
    if body is None:
        return {}
    return body if isinstance(body, dict) else None


@bp.post("/captures")
@require_auth
def create_capture():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object such as {\"patient_id\": \"P-0042\", \"zone\": \"crown\"}")
    unknown = sorted(set(body) - {"patient_id", "zone", "note", "accept"})
    if unknown:
        return error(400, f"unknown field {unknown[0]!r}; allowed: patient_id, zone, note, accept", field=unknown[0])
    accept = body.get("accept")
    if accept is not None and not isinstance(accept, bool):
        return error(400, "accept: must be true, false or absent (absent: accept when the quality gate passes)", field="accept")
    try:
        record = get_station().capture(body.get("patient_id"), body.get("zone"), body.get("note") or "", accept)
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)
    except (CameraError, StorageError) as exc:
        return hardware_error(exc)
    return jsonify(record_json(record)), 201, {"Location": f"/api/captures/{record.id}"}


@bp.get("/captures/<result_id>")
@require_auth
def get_capture(result_id: str):
    try:
        return jsonify(record_json(get_station().storage.get_result(result_id)))
    except NotFound:
        return error(404, f"no capture with id {result_id!r}")


@bp.post("/captures/<result_id>/<any(accept, discard):action>")
@require_auth
def decide_capture(result_id: str, action: str):
    try:
        record = get_station().set_status(result_id, "accepted" if action == "accept" else "discarded")
    except NotFound:
        return error(404, f"no capture with id {result_id!r}")
    except ValueError as exc:
        return error(409, str(exc))
    except StorageError as exc:
        return error(507, str(exc))
    return jsonify(record_json(record))


@bp.get("/captures")
@require_auth
def list_captures():
    args = request.args
    try:
        limit = min(max(int(args.get("limit", 100)), 1), 1000)
    except ValueError:
        return error(400, "limit: must be an integer from 1 to 1000", field="limit")
    records = get_station().storage.list_results(args.get("patient_id"), args.get("zone"), args.get("status"), limit)
    return jsonify(captures=[record_json(r) for r in records])


@bp.get("/captures/<result_id>/<any(image, overlay):kind>")
@require_auth
def capture_image(result_id: str, kind: str):
    from flask import send_file

    station = get_station()
    try:
        record = station.storage.get_result(result_id)
    except NotFound:
        return error(404, f"no capture with id {result_id!r}")
    rel = record.image_file if kind == "image" else record.overlay_file
    if not rel:
        return error(404, f"capture {result_id} has no {kind}")
    return send_file(station.storage.image_path(rel), max_age=3600)


@bp.get("/status")
@require_auth
def status():
    return jsonify(get_station().status())


@bp.get("/live")
@require_auth
def live():
    """Live preview figures: viewers, fps, live hair count and quality (focus, exposure)."""
    return jsonify(current_app.extensions["tricho.preview"].live())


@bp.post("/live/target")
@require_auth
def live_target():
    """Name the patient and zone being prepared: the live view then guides back to its baseline spot.

    Body {"patient_id": "P-0042", "zone": "crown"}; {} or nulls clear the target.
    """
    from station.records import check_patient_id, check_zone

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, 'body must be a JSON object such as {"patient_id": "P-0042", "zone": "crown"} ({} clears)')
    unknown = sorted(set(body) - {"patient_id", "zone"})
    if unknown:
        return error(400, f"unknown field {unknown[0]!r}; allowed: patient_id, zone", field=unknown[0])
    preview = current_app.extensions["tricho.preview"]
    if not body.get("patient_id") and not body.get("zone"):
        preview.set_target(None, None)
        return jsonify(guidance={})
    try:
        patient_id, zone = check_patient_id(body.get("patient_id")), check_zone(body.get("zone"))
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)
    return jsonify(guidance=preview.set_target(patient_id, zone))


@bp.get("/live/guidance")
@require_auth
def live_guidance():
    """Only the guidance (cheap; the page polls it ~5 times a second while a target is set)."""
    return jsonify(guidance=current_app.extensions["tricho.preview"].guidance())


# -- history --------------------------------------------------------------------------------
def _history_args():
    from station.records import check_patient_id, check_zone

    args = request.args
    patient_id = check_patient_id(args.get("patient_id"))
    zone = check_zone(args.get("zone"))
    include_all = args.get("all", "").lower() in ("1", "true", "yes")
    return patient_id, zone, args.get("baseline") or None, include_all


def _history_data():
    from station.web import history as hist

    patient_id, zone, baseline, include_all = _history_args()
    try:
        return hist.history(get_station().storage, patient_id, zone, baseline_id=baseline, include_all=include_all)
    except KeyError:
        raise InvalidInput("baseline", f"{baseline!r} is not an accepted visit of {patient_id} / {zone}") from None


@bp.get("/history")
@require_auth
def history():
    try:
        return jsonify(_history_data())
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)


@bp.post("/history/baseline")
@require_auth
def set_history_baseline():
    """Choose the baseline visit of a patient and zone: {"patient_id", "zone", "baseline_id"}."""
    from station import followup
    from station.records import check_patient_id, check_zone

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, 'body must be a JSON object {"patient_id", "zone", "baseline_id"}')
    try:
        patient_id, zone = check_patient_id(body.get("patient_id")), check_zone(body.get("zone"))
        followup.set_baseline(get_station().storage, patient_id, zone, str(body.get("baseline_id") or ""))
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)
    except KeyError:
        return error(400, "baseline_id: not an accepted visit of this patient and zone", field="baseline_id")
    except StorageError as exc:
        return error(507, str(exc))
    from station.web import history as hist

    return jsonify(hist.history(get_station().storage, patient_id, zone))


@bp.get("/history.csv")
@require_auth
def history_csv():
    from station.web import history as hist

    try:
        data = _history_data()
    except InvalidInput as exc:
        return error(400, str(exc), field=exc.field)
    return Response(hist.history_csv(data), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{hist.csv_filename(data["patient_id"], data["zone"])}"'})


@bp.get("/patients")
@require_auth
def patients():
    rows = get_station().storage.patients()
    return jsonify(patients=[{"patient_id": p, "zone": z, "accepted_visits": n, "last_captured_at": last}
                             for p, z, n, last in rows])


# -- calibration ----------------------------------------------------------------------------
@bp.get("/calibration")
@require_auth
def calibration():
    from station.web import calib

    return jsonify(calib.overview(get_station()))


def _run_calibration(run):
    from station.web import calib

    try:
        cal = run()
    except calib.CalibrationFailed as exc:
        return error(422, str(exc))
    except ImportError as exc:
        return error(501, f"calibration code not available: {exc}")
    except (CameraError, StorageError) as exc:
        return hardware_error(exc)
    return jsonify(calib.calibration_json(cal)), 201


@bp.post("/calibration/scale")
@require_auth
def calibrate_scale():
    from station.web import calib

    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "pitch_um" not in body:
        return error(400, 'body must be a JSON object such as {"pitch_um": 500} (the card\'s dot pitch in µm)',
                     field="pitch_um")
    return _run_calibration(lambda: calib.run_scale(get_station(), body["pitch_um"]))


@bp.post("/calibration/flat-field")
@require_auth
def calibrate_flat_field():
    from station.web import calib

    body = optional_json_object()
    if body is None:
        return error(400, 'body must be a JSON object such as {"action": "reference"} or {"action": "check"}')
    return _run_calibration(lambda: calib.run_flat_field(get_station(), body.get("action", "reference")))


@bp.get("/calibration/repeatability")
@require_auth
def repeatability_status():
    from station import repeat_captures

    return jsonify(repeat_captures.repeatability_status(get_station().storage))


@bp.post("/calibration/repeatability")
@require_auth
def repeatability_step():
    """One step of the repeat-capture procedure: {"action": "capture" | "finish" | "reset"}."""
    from station import repeat_captures

    body = optional_json_object()
    if body is None:
        return error(400, 'body must be a JSON object such as {"action": "capture"}')
    try:
        out = repeat_captures.repeatability_step(get_station(), body.get("action", "capture"))
    except ValueError as exc:
        return error(422, str(exc))
    except (CameraError, StorageError) as exc:
        return hardware_error(exc)
    return jsonify(out), (201 if "stored" in out else 200)


# -- live preview for kiosk scripts (same shared encoder as the page) -----------------------
@bp.get("/stream.mjpg")
@require_auth
def stream_mjpg():
    from flask import stream_with_context

    from station.web.stream import MIMETYPE

    preview = current_app.extensions["tricho.preview"]
    return Response(stream_with_context(preview.stream()), mimetype=MIMETYPE, headers={"Cache-Control": "no-store"})


@bp.get("/snapshot.jpg")
@require_auth
def snapshot_jpg():
    jpeg = current_app.extensions["tricho.preview"].snapshot()
    if jpeg is None:
        return error(503, "no preview frame from the camera")
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})
