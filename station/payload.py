"""The result message clinic servers receive (schema ``tricho.result/1.1``, major version 1).

Built once, when a capture is accepted, and stored in the outbox as bytes: every retry
sends the same bytes, so consumers can de-duplicate by ``id``.  The JSON Schema that
describes it ships as ``station/schemas/result.schema.json`` (draft 2020-12); see
docs/mqtt.md for the field table and an example.
"""
from __future__ import annotations

import functools
import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from station.records import ResultRecord

RESULT_SCHEMA = "tricho.result/1.1"  # 1.1 added the optional follow_up object (issue 8)
SCHEMA_MAJOR = "tricho.result/1"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "result.schema.json"


def software_version() -> str:
    try:
        return version("tricho-station")
    except PackageNotFoundError:
        return "0+unknown"


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats (e.g. a median over no hairs) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _finite(value.item())
    return value


def build_result_payload(record: ResultRecord, station_id: str, *, include_hairs: bool = True) -> dict[str, Any]:
    analysis = dict(record.analysis)
    if not include_hairs:
        analysis.pop("hairs", None)
    # The stored calibration block: the scale fit (id, created_at, um_per_px_x/y, rotation,
    # distortion, residual, dots) plus the flat-field reference and last lighting check.
    calibration = {**(record.calibration or {}), "source": record.scale_source, "um_per_px": record.um_per_px}
    calibration.setdefault("id", None)
    calibration.setdefault("created_at", None)
    return _finite({
        "schema": RESULT_SCHEMA,
        "id": record.id,
        "station_id": station_id,
        "software_version": software_version(),
        "captured_at": record.captured_at,
        "patient_id": record.patient_id,
        "zone": record.zone,
        "note": record.note,
        "calibration": calibration,
        "capture": dict(record.capture),
        "quality": dict(record.quality),
        "analysis": analysis,
        **_follow_up(record),
    })


def _follow_up(record: ResultRecord) -> dict[str, Any]:
    """{"follow_up": ...} when the capture was compared with a baseline visit, else {} (field absent)."""
    fu = (record.extra or {}).get("follow_up")
    return {"follow_up": dict(fu)} if isinstance(fu, dict) else {}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def outbox_messages(record: ResultRecord, station_id: str, *, include_hairs: bool = True,
                    image_jpeg: bytes | None = None) -> list[tuple[str, bytes]]:
    """The (topic suffix, payload) pairs to queue for an accepted capture, in publishing order."""
    messages = [("results", encode(build_result_payload(record, station_id, include_hairs=include_hairs)))]
    if image_jpeg is not None:
        messages.append((f"images/{record.id}", image_jpeg))
    return messages


# -- validation (tests, tricho subscribe) ---------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validation_errors(payload: Any) -> list[str]:
    """Messages for everything wrong with a decoded payload ("" path = the top level); [] when valid."""
    errors = sorted(_validator().iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]


def decode_and_validate(raw: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse and check a received result message: (payload, []) or (None|payload, errors)."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"not UTF-8 JSON: {exc}"]
    errors = validation_errors(payload)
    return (payload if not errors else None), errors
