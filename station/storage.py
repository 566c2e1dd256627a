"""Local storage: one SQLite database (WAL) and the image files beside it.

A capture's files are written atomically first; its row, and its outbox message when it
is accepted, are then written in one transaction. A power cut leaves either nothing of
that capture or all of it (an orphaned image file at worst, never a row without image).
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from station.imageio import write_image_atomic
from station.records import STATUSES, ResultRecord, new_id, utc_now_iso

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    captured_at TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'discarded')),
    image_file TEXT NOT NULL,
    overlay_file TEXT,
    um_per_px REAL NOT NULL,
    scale_source TEXT NOT NULL CHECK (scale_source IN ('calibration', 'config')),
    calibration_json TEXT,
    capture_json TEXT NOT NULL,
    quality_json TEXT NOT NULL,
    analysis_json TEXT NOT NULL,
    extra_json TEXT NOT NULL DEFAULT '{}',
    published_at TEXT
);
CREATE INDEX IF NOT EXISTS results_by_patient_zone ON results (patient_id, zone, captured_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT,
    topic_suffix TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS calibrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data_json TEXT NOT NULL,
    blob BLOB
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StorageError(RuntimeError):
    """Storing failed (disk full, unwritable state dir, corrupt database); nothing half-written remains."""


class NotFound(KeyError):
    pass


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    result_id: str | None
    topic_suffix: str  # "results" or "images/<result_id>"
    payload: bytes
    attempts: int


@dataclass(frozen=True)
class Calibration:
    id: str
    kind: str  # "scale", "flat_field", ...
    created_at: str
    data: dict[str, Any]
    blob: bytes | None = None


def _storage_error(what: str, exc: BaseException) -> StorageError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in str(exc):
        return StorageError(f"{what}: the disk is full; free space in the state directory (nothing was stored)")
    return StorageError(f"{what}: {exc}")


class Storage:
    """Thread-safe access to the station's database and image files under ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        # absolute: the web app hands image paths to Flask's send_file, which reads a
        # relative one against the app package's folder, not the working directory
        self.state_dir = Path(state_dir).absolute()
        self.images_dir = self.state_dir / "images"
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create state directory {self.state_dir}: {exc.strerror}") from None
        self.db_path = self.state_dir / "tricho.sqlite3"
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed result survives a power cut
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(f"{self.db_path} was written by a newer tricho-station (schema {version})")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open database {self.db_path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                pass
            self._db.close()

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------
    def _transaction(self, what: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = work(self._db)
                except BaseException:
                    if self._db.in_transaction:  # SQLite already rolled back on SQLITE_FULL
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return out
            except (sqlite3.DatabaseError, OSError) as exc:
                raise _storage_error(what, exc) from exc

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- results ------------------------------------------------------------------------
    def image_path(self, relative: str) -> Path:
        return self.state_dir / relative

    def save_result(self, record: ResultRecord, image: np.ndarray, overlay: np.ndarray | None,
                    image_format: str = "jpg", jpeg_quality: int = 95,
                    outbox: list[tuple[str, bytes]] | None = None) -> ResultRecord:
        """Store a capture: image files first, then the row (and outbox messages) in one transaction.

        ``record.image_file``/``overlay_file`` are ignored and set here.
        """
        day = record.captured_at[:10]
        rel_dir = Path("images") / day
        image_rel = str(rel_dir / f"{record.id}.{image_format}")
        overlay_rel = str(rel_dir / f"{record.id}.overlay.jpg") if overlay is not None else None
        written: list[Path] = []
        try:
            (self.state_dir / rel_dir).mkdir(parents=True, exist_ok=True)
            write_image_atomic(self.state_dir / image_rel, image, jpeg_quality)
            written.append(self.state_dir / image_rel)
            if overlay is not None:
                write_image_atomic(self.state_dir / overlay_rel, overlay, 90)
                written.append(self.state_dir / overlay_rel)
        except OSError as exc:
            for p in written:
                p.unlink(missing_ok=True)
            raise _storage_error(f"saving the image of capture {record.id}", exc) from exc
        rec = ResultRecord(**{**record.to_dict(), "image_file": image_rel, "overlay_file": overlay_rel})

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO results (id, captured_at, patient_id, zone, note, status, image_file,"
                " overlay_file, um_per_px, scale_source, calibration_json, capture_json, quality_json,"
                " analysis_json, extra_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.id, rec.captured_at, rec.patient_id, rec.zone, rec.note, rec.status, rec.image_file,
                 rec.overlay_file, rec.um_per_px, rec.scale_source,
                 json.dumps(rec.calibration) if rec.calibration else None, json.dumps(rec.capture),
                 json.dumps(rec.quality), json.dumps(rec.analysis), json.dumps(rec.extra)),
            )
            self._enqueue(db, rec.id, outbox or [])

        try:
            self._transaction(f"saving capture {rec.id}", insert)
        except StorageError:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        return rec

    def set_status(self, result_id: str, status: str,
                   outbox: Callable[[ResultRecord], list[tuple[str, bytes]]] | None = None) -> ResultRecord:
        """Accept or discard a pending capture; accepting queues its messages in the same transaction."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")

        def update(db: sqlite3.Connection) -> ResultRecord:
            row = db.execute("SELECT * FROM results WHERE id = ?", (result_id,)).fetchone()
            if row is None:
                raise NotFound(result_id)
            current = ResultRecord.from_row(row)
            if current.status == status:
                return current
            if current.status != "pending":
                raise ValueError(f"capture {result_id} is already {current.status}")
            db.execute("UPDATE results SET status = ? WHERE id = ?", (status, result_id))
            updated = ResultRecord(**{**current.to_dict(), "status": status})
            if status == "accepted" and outbox is not None:
                self._enqueue(db, result_id, outbox(updated))
            return updated

        return self._transaction(f"updating capture {result_id}", update)

    def get_result(self, result_id: str) -> ResultRecord:
        rows = self._query("SELECT * FROM results WHERE id = ?", (result_id,))
        if not rows:
            raise NotFound(result_id)
        return ResultRecord.from_row(rows[0])

    def list_results(self, patient_id: str | None = None, zone: str | None = None,
                     status: str | None = None, limit: int = 100, oldest_first: bool = False) -> list[ResultRecord]:
        where, args = [], []
        for col, val in (("patient_id", patient_id), ("zone", zone), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY captured_at {'ASC' if oldest_first else 'DESC'}, seq {'ASC' if oldest_first else 'DESC'} LIMIT ?"
        return [ResultRecord.from_row(r) for r in self._query(sql, (*args, int(limit)))]

    def patients(self) -> list[tuple[str, str, int, str]]:
        """(patient_id, zone, number of accepted visits, last captured_at), newest first."""
        rows = self._query(
            "SELECT patient_id, zone, COUNT(*) AS n, MAX(captured_at) AS last FROM results"
            " WHERE status = 'accepted' GROUP BY patient_id, zone ORDER BY last DESC")
        return [(r["patient_id"], r["zone"], r["n"], r["last"]) for r in rows]

    # -- outbox -------------------------------------------------------------------------
    def _enqueue(self, db: sqlite3.Connection, result_id: str | None, messages: list[tuple[str, bytes]]) -> None:
        now = utc_now_iso()
        for topic_suffix, payload in messages:
            db.execute("INSERT INTO outbox (result_id, topic_suffix, payload, created_at) VALUES (?,?,?,?)",
                       (result_id, topic_suffix, payload, now))

    def outbox_peek(self, limit: int = 50) -> list[OutboxMessage]:
        rows = self._query("SELECT * FROM outbox ORDER BY seq LIMIT ?", (int(limit),))
        return [OutboxMessage(r["seq"], r["result_id"], r["topic_suffix"], bytes(r["payload"]), r["attempts"]) for r in rows]

    def outbox_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM outbox")[0][0]

    def outbox_mark_attempt(self, seq: int) -> None:
        self._transaction("outbox", lambda db: db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,)))

    def outbox_delivered(self, seq: int) -> None:
        """The broker acknowledged the message: drop it and stamp its result as published."""

        def done(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT result_id, topic_suffix FROM outbox WHERE seq = ?", (seq,)).fetchone()
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            if row is not None and row["result_id"] and row["topic_suffix"] == "results":
                db.execute("UPDATE results SET published_at = ? WHERE id = ? AND published_at IS NULL",
                           (utc_now_iso(), row["result_id"]))

        self._transaction("outbox", done)

    # -- calibrations and settings --------------------------------------------------------
    def add_calibration(self, kind: str, data: dict[str, Any], blob: bytes | None = None) -> Calibration:
        cal = Calibration(new_id(), kind, utc_now_iso(), data, blob)
        self._transaction("saving calibration", lambda db: db.execute(
            "INSERT INTO calibrations (id, kind, created_at, data_json, blob) VALUES (?,?,?,?,?)",
            (cal.id, cal.kind, cal.created_at, json.dumps(data), blob)))
        return cal

    def latest_calibration(self, kind: str) -> Calibration | None:
        rows = self._query("SELECT * FROM calibrations WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,))
        return self._calibration(rows[0]) if rows else None

    def list_calibrations(self, kind: str | None = None, limit: int = 50) -> list[Calibration]:
        if kind is None:
            rows = self._query("SELECT * FROM calibrations ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM calibrations WHERE kind = ? ORDER BY seq DESC LIMIT ?", (kind, limit))
        return [self._calibration(r) for r in rows]

    @staticmethod
    def _calibration(row: sqlite3.Row) -> Calibration:
        return Calibration(row["id"], row["kind"], row["created_at"], json.loads(row["data_json"]),
                           bytes(row["blob"]) if row["blob"] is not None else None)

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_setting(self, key: str, value: str) -> None:
        self._transaction("saving setting", lambda db: db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value)))

    def free_disk_bytes(self) -> int:
        st = os.statvfs(self.state_dir)
        return st.f_bavail * st.f_frsize

