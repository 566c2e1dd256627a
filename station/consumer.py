"""Reference consumer for clinic integrators (``tricho subscribe``).

Subscribes to ``{prefix}/+/results`` (or ``$share/GROUP/{prefix}/+/results`` so several
workers split the load) and ``{prefix}/+/status``; validates each result against the
JSON Schema; stores it once in its own SQLite file (WAL; ``INSERT OR IGNORE`` on the
result ``id`` de-duplicates the at-least-once stream); acknowledges each message only
after its row is committed (paho ``manual_ack``), with a stable client id,
clean_start=False and a session expiry, so a consumer that restarts or loses the
network gets what the broker queued meanwhile.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import sqlite3
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from station.payload import decode_and_validate
from station.records import utc_now_iso

log = logging.getLogger(__name__)

DB_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    rx INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    station_id TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    hair_count INTEGER,
    density_per_cm2 REAL,
    topic TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_patient ON results (patient_id, zone, captured_at);
CREATE TABLE IF NOT EXISTS stations (
    station_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class ResultDB:
    """The consumer's own SQLite file: one row per result id, plus the last status of each station."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged to the broker => on disk
        self._db.executescript(DB_SCHEMA)

    def add(self, payload: dict[str, Any], topic: str) -> bool:
        """Store a validated result; False when its id was already stored (a duplicate)."""
        a = payload.get("analysis", {})
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO results (id, station_id, captured_at, patient_id, zone, hair_count,"
                " density_per_cm2, topic, received_at, payload) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (payload["id"], payload["station_id"], payload["captured_at"], payload["patient_id"],
                 payload["zone"], a.get("hair_count"), a.get("density_per_cm2"), topic, utc_now_iso(),
                 json.dumps(payload, separators=(",", ":"), ensure_ascii=False)))
            return cur.rowcount == 1

    def set_station_status(self, station_id: str, status: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO stations (station_id, status, updated_at) VALUES (?,?,?) ON CONFLICT(station_id)"
                " DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                (station_id, status, utc_now_iso()))

    def count(self, station_id: str | None = None) -> int:
        with self._lock:
            if station_id is None:
                return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM results WHERE station_id = ?", (station_id,)).fetchone()[0]

    def ids(self, station_id: str | None = None) -> list[str]:
        """Result ids in the order they were first received."""
        with self._lock:
            if station_id is None:
                rows = self._db.execute("SELECT id FROM results ORDER BY rx").fetchall()
            else:
                rows = self._db.execute("SELECT id FROM results WHERE station_id = ? ORDER BY rx", (station_id,)).fetchall()
        return [r[0] for r in rows]

    def station_status(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT station_id, status FROM stations").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


def result_line(payload: dict[str, Any], duplicate: bool = False) -> str:
    a = payload.get("analysis", {})
    density = a.get("density_per_cm2")
    d = f"{density:.1f}" if isinstance(density, (int, float)) else "?"
    line = (f"{payload['captured_at']} {payload['station_id']} {payload['patient_id']} {payload['zone']} "
            f"hairs={a.get('hair_count')} density={d}/cm² id={payload['id']}")
    return line + (" (duplicate)" if duplicate else "")


def default_client_id(db_path: str | os.PathLike, share: str | None) -> str:
    """Stable across restarts of the same consumer (host + database file + group), distinct between workers."""
    import hashlib

    key = f"{socket.gethostname()}|{Path(db_path).resolve()}|{share or ''}"
    return "tricho-sub-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class SubscriberConfig:
    host: str
    port: int = 1883
    db_path: str = "results.sqlite3"
    prefix: str = "tricho"
    share: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0

    @property
    def results_topic(self) -> str:
        t = f"{self.prefix}/+/results"
        return f"$share/{self.share}/{t}" if self.share else t

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/+/status"


class Subscriber:
    """Receives results into a ``ResultDB``; ``run()`` blocks until ``stop()``."""

    def __init__(self, config: SubscriberConfig, *, out: TextIO | None = None, err: TextIO | None = None,
                 on_result: Callable[[dict[str, Any], bool], None] | None = None) -> None:
        self.config = config
        self.db = ResultDB(config.db_path)
        self.client_id = config.client_id or default_client_id(config.db_path, config.share)
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.on_result = on_result
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.invalid = 0
        self.connected = False
        self.subscribed = threading.Event()
        self.last_error: str | None = None
        self._stop = threading.Event()

    def _say(self, stream: TextIO, line: str) -> None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self._stop.set()

    def _client(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False, manual_ack=True)
        if c.username:
            client.username_pw_set(c.username, c.password or None)
        if c.tls:
            client.tls_set(ca_certs=c.ca_file or None, certfile=c.cert_file or None, keyfile=c.key_file or None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        return client

    def run(self) -> None:
        c = self.config
        backoff = c.backoff_min_s
        try:
            while not self._stop.is_set():
                good = False
                try:
                    client = self._client()
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = int(c.session_expiry_s)
                    client.connect(c.host, c.port, c.keepalive_s, clean_start=False, properties=props)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    self._problem(f"cannot connect to {c.host}:{c.port}: {exc}")
                else:
                    while not self._stop.is_set():
                        rc = client.loop(timeout=0.1)
                        if self.connected:
                            good = True
                        if rc != mqtt.MQTT_ERR_SUCCESS:
                            if self.connected or good:
                                self._problem(f"connection lost: {mqtt.error_string(rc)}")
                            break
                    try:
                        client.disconnect()
                    except Exception:
                        pass
                    self.connected = False
                    self.subscribed.clear()
                if self._stop.is_set():
                    break
                if good:
                    backoff = c.backoff_min_s
                self._stop.wait(backoff * random.uniform(0.7, 1.0))
                backoff = min(backoff * 2, c.backoff_max_s)
        finally:
            self.db.close()

    def _problem(self, message: str) -> None:
        if message != self.last_error:
            self._say(self.err, f"subscribe: {message}")
        self.last_error = message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._problem(f"broker refused the connection: {reason_code}")
            client.disconnect()
            return
        self.connected = True
        self.last_error = None
        session = "resumed" if getattr(flags, "session_present", False) else "new"
        self._say(self.err, f"subscribe: connected to {self.config.host}:{self.config.port} as {self.client_id} "
                            f"({session} session); subscribing to {self.config.results_topic}")
        client.subscribe([(self.config.results_topic, SubscribeOptions(qos=1)),
                          (self.config.status_topic, SubscribeOptions(qos=1))])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            self._problem(f"subscription refused: {', '.join(bad)}")
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            if len(parts) >= 2 and parts[-1] == "status":
                status = msg.payload.decode("utf-8", "replace")[:100]
                self.db.set_station_status(parts[-2], status)
                self._say(self.out, f"{utc_now_iso()} {parts[-2]} status={status}")
            elif parts[-1] == "results":
                self._result(msg)
        except sqlite3.DatabaseError as exc:
            # Not acknowledged: the broker sends it again after the reconnect.
            self._problem(f"cannot store the message from {msg.topic}: {exc}; reconnecting")
            client.disconnect()
            return
        client.ack(msg.mid, msg.qos)

    def _result(self, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        payload, errors = decode_and_validate(msg.payload)
        if errors:
            self.invalid += 1
            self._say(self.err, f"invalid result on {msg.topic} (not stored): {'; '.join(errors[:3])}")
            return
        station = msg.topic.split("/")[-2]
        if payload["station_id"] != station:
            self.invalid += 1
            self._say(self.err, f"invalid result on {msg.topic} (not stored): station_id "
                                f"{payload['station_id']!r} does not match the topic")
            return
        new = self.db.add(payload, msg.topic)
        if new:
            self.stored += 1
        else:
            self.duplicates += 1
        self._say(self.out, result_line(payload, duplicate=not new))
        if self.on_result is not None:
            self.on_result(payload, not new)
