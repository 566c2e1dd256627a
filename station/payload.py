"""The result message clinic servers receive (schema ``tricho.result/1``).

Built once, when a capture is accepted, and stored in the outbox as bytes: every retry
sends the same bytes, so consumers can de-duplicate by ``id``.
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from station.records import ResultRecord

RESULT_SCHEMA = "tricho.result/1"


def software_version() -> str:
    try:
        return version("tricho-station")
    except PackageNotFoundError:
        return "0+unknown"


def build_result_payload(record: ResultRecord, station_id: str, *, include_hairs: bool = True) -> dict[str, Any]:
    analysis = dict(record.analysis)
    if not include_hairs:
        analysis.pop("hairs", None)
    calibration = {
        "source": record.scale_source,
        "um_per_px": record.um_per_px,
        "id": (record.calibration or {}).get("id"),
        "created_at": (record.calibration or {}).get("created_at"),
    }
    return {
        "schema": RESULT_SCHEMA,
        "id": record.id,
        "station_id": station_id,
        "software_version": software_version(),
        "captured_at": record.captured_at,
        "patient_id": record.patient_id,
        "zone": record.zone,
        "note": record.note,
        "calibration": calibration,
        "capture": record.capture,
        "quality": record.quality,
        "analysis": analysis,
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def outbox_messages(record: ResultRecord, station_id: str, *, include_hairs: bool = True,
                    image_jpeg: bytes | None = None) -> list[tuple[str, bytes]]:
    """The (topic suffix, payload) pairs to queue for an accepted capture, in publishing order."""
    messages = [("results", encode(build_result_payload(record, station_id, include_hairs=include_hairs)))]
    if image_jpeg is not None:
        messages.append((f"images/{record.id}", image_jpeg))
    return messages
