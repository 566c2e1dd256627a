"""JSON API under /api/ for kiosk scripts, foot pedals and the page itself.

Every route needs ``Authorization: Bearer <api_token>``.
"""
from __future__ import annotations

import hmac
import logging
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, current_app, jsonify, request

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
    except CameraStalled as exc:
        return error(503, f"camera stalled: {exc}")
    except CameraError as exc:
        return error(503, f"camera: {exc}")
    except StorageError as exc:
        return error(507, str(exc))
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
