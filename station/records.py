"""What the station stores about a capture, and the checks on user-typed fields."""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from station.config import ZONES

PATIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FREE_ZONE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,39}$")
MAX_NOTE_CHARS = 2000
STATUSES = ("pending", "accepted", "discarded")


class InvalidInput(ValueError):
    """A field typed by a person (patient id, zone, note) is not acceptable."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def check_patient_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("patient_id", "required: a pseudonymous ID such as P-0042 (no names)")
    value = value.strip()
    if not PATIENT_ID_RE.match(value):
        raise InvalidInput("patient_id", f"{value[:80]!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (a pseudonymous ID, no names)")
    return value


def check_zone(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("zone", f"required: one of {', '.join(ZONES)} or a short free text")
    value = value.strip()
    if value.lower() in ZONES:
        return value.lower()
    if not FREE_ZONE_RE.match(value):
        raise InvalidInput("zone", f"{value[:80]!r} must be one of {', '.join(ZONES)} or 1-40 letters, digits, spaces, '_' or '-'")
    return value


def check_note(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("note", "must be text")
    if len(value) > MAX_NOTE_CHARS:
        raise InvalidInput("note", f"is {len(value)} characters; at most {MAX_NOTE_CHARS}")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidInput("note", "contains control characters")
    return value.strip()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ResultRecord:
    """One capture and its analysis as stored in SQLite (JSON columns decoded)."""

    id: str
    captured_at: str
    patient_id: str
    zone: str
    note: str
    status: str
    image_file: str  # relative to the state dir
    overlay_file: str | None
    um_per_px: float
    scale_source: str  # "calibration" or "config"
    calibration: dict[str, Any] | None
    capture: dict[str, Any]
    quality: dict[str, Any]
    analysis: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # room for later issues (registration, follow-up)
    published_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> "ResultRecord":
        return cls(
            id=row["id"], captured_at=row["captured_at"], patient_id=row["patient_id"],
            zone=row["zone"], note=row["note"], status=row["status"], image_file=row["image_file"],
            overlay_file=row["overlay_file"], um_per_px=row["um_per_px"], scale_source=row["scale_source"],
            calibration=json.loads(row["calibration_json"]) if row["calibration_json"] else None,
            capture=json.loads(row["capture_json"]), quality=json.loads(row["quality_json"]),
            analysis=json.loads(row["analysis_json"]), extra=json.loads(row["extra_json"] or "{}"),
            published_at=row["published_at"],
        )
