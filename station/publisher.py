"""Publishes the SQLite outbox to the clinic's MQTT broker; no outage can lose a result.

The outbox (``Storage.outbox_*``) is the only queue that counts: a row is deleted only
after the broker acknowledged it with a PUBACK whose reason code is a success.  Paho's
in-memory queue is never relied on: at most ``max_inflight`` messages are handed to
paho at a time, in outbox order, and every connection is a fresh client with
clean_start=True, so after any reconnect the publisher restarts from the oldest row not
yet acknowledged (the same bytes, hence the same result ``id``: delivery is at least
once and consumers de-duplicate by ``id``).  After the broker refused a result (a
PUBACK failure such as an ACL refusal), one message at a time is sent until a result is
accepted: were a window in flight when the broker changes its mind (ACL reloaded), a
later result could be accepted before the refused one.  Results share one topic, so a
refusal of one is a refusal of all; an image's topic is its own and a broker may refuse
images only, so a refused image does not hold the others back.

One thread owns the connection and drives paho's ``loop()`` itself, so all callbacks
run in that thread.  Topics (prefix default ``tricho``):

* ``{prefix}/{station_id}/results``         QoS 1, not retained, one per accepted capture
* ``{prefix}/{station_id}/images/{id}``     QoS 1, the JPEG (only with publish_images)
* ``{prefix}/{station_id}/status``          retained: ``online`` on every connect,
  ``offline`` as the last will and on a clean stop
"""
from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.config import MqttConfig
from station.records import utc_now_iso
from station.storage import Storage, StorageError

log = logging.getLogger(__name__)

# CONNACK codes that mean the broker does not want these credentials (MQTT 5 / 3.1.1).
_AUTH_CODES = {0x86, 0x87, 0x8C, 4, 5}
_UNSUPPORTED_PROTOCOL = 0x84


def _code_value(rc: Any) -> int:
    return int(getattr(rc, "value", rc))


class OutboxPublisher:
    """Sends the outbox of ``storage`` to the broker of ``config``; ``start``/``wake``/``stop``/``status``.

    ``max_inflight``: messages handed to paho before their PUBACKs (the only ones a crash
    can duplicate).  ``backoff_min_s``/``backoff_max_s``: reconnect delay, doubled after
    each failed attempt, with jitter.  ``poll_s``: how often the outbox is looked at
    without a ``wake()`` (rows written by another process, retries).
    """

    def __init__(self, config: MqttConfig, station_id: str, storage: Storage, *,
                 max_inflight: int = 16, backoff_min_s: float = 1.0, backoff_max_s: float = 60.0,
                 poll_s: float = 1.0, connect_timeout_s: float = 5.0, client_id: str | None = None) -> None:
        if not config.host:
            raise ValueError("OutboxPublisher needs [mqtt] host")
        self.config = config
        self.station_id = station_id
        self.storage = storage
        self.max_inflight = max(1, int(max_inflight))
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = max(backoff_min_s, backoff_max_s)
        self.poll_s = poll_s
        self.connect_timeout_s = connect_timeout_s
        self.client_id = client_id or f"tricho-station-{station_id}"
        base = f"{config.topic_prefix}/{station_id}"
        self.status_topic = f"{base}/status"
        self._base = base
        self.protocol = mqtt.MQTTv5
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # State below is written by the publisher thread only; status() reads it.
        self.connected = False
        self.last_error: str | None = None
        self.last_delivered_at: str | None = None
        self.delivered = 0  # PUBACKed messages since start (results and images)
        self.connects = 0
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox seq, "results" or "images")
        self._last_sent = 0  # highest seq handed to paho on this connection
        self._status_mid: int | None = None
        self._status_acked = False
        self._connack_refused = False
        self._retry = False  # a PUBACK failed: reconnect and resend from the oldest row
        # "results"/"images" -> reason, while the broker refuses that kind; while results are
        # refused, one message is in flight at a time
        self.refused: dict[str, str] = {}
        self._fill_needed = False
        self._fallback = False
        # Acknowledged by the broker but not yet removed (disk full): not resent, deletion retried.
        self._undeleted: list[int] = []

    # -- public API ---------------------------------------------------------------------
    @property
    def broker(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def topic(self, suffix: str) -> str:
        return f"{self._base}/{suffix}"

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows are in the outbox: send them now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (when connected), disconnect and end the thread. Unacknowledged rows stay queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT publisher did not stop within %.1f s", timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        try:
            waiting: int | None = self.storage.outbox_count()
        except Exception as exc:  # closed or broken database: status must still answer
            waiting = None
            log.debug("outbox count failed: %s", exc)
        return {
            "enabled": True,
            "connected": self.connected,
            "broker": self.broker,
            "waiting": waiting,
            "last_error": self.last_error,
            "last_delivered_at": self.last_delivered_at,
            "in_flight": len(self._inflight),
            "refused": dict(self.refused),
            "topics": f"{self._base}/#",
            "protocol": "MQTT 5" if self.protocol == mqtt.MQTTv5 else "MQTT 3.1.1",
        }

    # -- the connection thread ------------------------------------------------------------
    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("MQTT %s: %s", self.broker, message)
        self.last_error = message

    def _run(self) -> None:
        backoff = self.backoff_min_s
        while not self._stop.is_set():
            healthy = False
            try:
                healthy = self._session()
            except Exception as exc:  # never let the thread die: results would silently wait forever
                log.exception("MQTT publisher error")
                self._error(f"internal error: {exc!r}")
            finally:
                self.connected = False
            if self._stop.is_set():
                break
            if self._fallback:
                self._fallback = False
                continue  # retry at once with MQTT 3.1.1
            if healthy:
                backoff = self.backoff_min_s
            delay = backoff * random.uniform(0.7, 1.0)
            backoff = min(backoff * 2, self.backoff_max_s)
            # A new result (or stop) ends the wait early: after an outage the next capture
            # reconnects at once instead of up to backoff_max_s later.
            self._wake.clear()
            self._wake.wait(delay)

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=self.protocol, reconnect_on_failure=False)
        client.max_inflight_messages_set(self.max_inflight + 2)  # + status messages: never queue in paho
        client.max_queued_messages_set(0)
        client.connect_timeout = self.connect_timeout_s
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                           keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _session(self) -> bool:
        """One connection, until it drops, fails or stop() is called. True when it went well."""
        self._inflight.clear()
        self._last_sent = 0
        self._status_mid = None
        self._status_acked = False
        self._connack_refused = self._retry = False
        try:
            client = self._make_client()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._error(f"TLS setup failed: {exc}")
            return False
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            kwargs = {"clean_start": True, "properties": Properties(PacketTypes.CONNECT)}
        try:
            client.connect(self.config.host, self.config.port, self.config.keepalive_s, **kwargs)
        except ssl.SSLError as exc:
            self._error(f"TLS handshake with {self.broker} failed: {exc}")
            return False
        except (OSError, ValueError) as exc:
            self._error(f"cannot connect to {self.broker}: {exc}")
            return False
        healthy = False
        deadline = time.monotonic() + self.connect_timeout_s
        last_poll = 0.0
        try:
            while not self._stop.is_set():
                rc = client.loop(timeout=0.05)
                if self._connack_refused or self._retry:
                    break
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    if self.connected or healthy:
                        self._error(f"connection lost: {mqtt.error_string(rc)}")
                    elif self.config.tls:
                        self._error(f"{self.broker} closed the connection before accepting it: does it require "
                                    "a client certificate (cert_file/key_file), or refuse this one?")
                    else:
                        self._error(f"{self.broker} closed the connection before accepting it: "
                                    "does that port expect TLS (tls = true)?")
                    break
                if not self.connected:
                    if time.monotonic() > deadline:
                        self._error(f"no CONNACK from {self.broker} within {self.connect_timeout_s:g} s")
                        break
                    continue
                healthy = True
                now = time.monotonic()
                if self._wake.is_set() or self._fill_needed or now - last_poll >= self.poll_s:
                    self._wake.clear()
                    self._fill_needed = False
                    last_poll = now
                    self._retry_deletes()
                    self._fill(client)
                    if self._retry:
                        break
            if self._stop.is_set() and self.connected:
                self._go_offline(client)
        finally:
            self.connected = False
            try:
                client.disconnect()
            except Exception:
                pass
            try:
                sock = client.socket()
                if sock is not None:
                    sock.close()
            except Exception:
                pass
        return healthy and not self._retry

    def _fill(self, client: mqtt.Client) -> None:
        """Hand the next outbox rows to paho, in seq order, up to ``max_inflight`` unacknowledged."""
        room = (1 if "results" in self.refused else self.max_inflight) - len(self._inflight)
        if room <= 0 or len(self._undeleted) >= 256:
            return  # window full, or the disk is full: wait until delivered rows can be removed
        try:
            rows = self.storage.outbox_peek(limit=len(self._inflight) + len(self._undeleted) + room + 8)
        except StorageError as exc:
            self._error(f"cannot read the outbox: {exc}")
            return
        props = None
        for msg in rows:
            if room <= 0:
                break
            if msg.seq <= self._last_sent or msg.seq in self._undeleted:
                continue  # in flight, or acknowledged but not yet removed (disk full)
            if self.protocol == mqtt.MQTTv5:
                props = Properties(PacketTypes.PUBLISH)
                if msg.topic_suffix == "results":
                    props.ContentType = "application/json"
                    props.PayloadFormatIndicator = 1
                else:
                    props.ContentType = "image/jpeg"
            info = client.publish(self.topic(msg.topic_suffix), msg.payload, qos=1, retain=False, properties=props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS,):
                self._error(f"publishing outbox message {msg.seq} failed: {mqtt.error_string(info.rc)}")
                self._retry = True
                return
            self._inflight[info.mid] = (msg.seq, "results" if msg.topic_suffix == "results" else "images")
            self._last_sent = msg.seq
            room -= 1
            try:
                self.storage.outbox_mark_attempt(msg.seq)
            except StorageError as exc:
                log.debug("cannot count the attempt of outbox message %d: %s", msg.seq, exc)

    def _go_offline(self, client: mqtt.Client) -> None:
        info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
        self._status_mid, self._status_acked = info.mid, False
        deadline = time.monotonic() + 2.0
        while not self._status_acked and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break

    # -- paho callbacks (publisher thread) ---------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        code = _code_value(reason_code)
        if code != 0:
            self._connack_refused = True
            if code == _UNSUPPORTED_PROTOCOL and self.protocol == mqtt.MQTTv5:
                log.info("MQTT %s does not speak MQTT 5: falling back to 3.1.1", self.broker)
                self.protocol = mqtt.MQTTv311
                self._fallback = True
                return
            if code in _AUTH_CODES:
                self._error(f"broker refused the connection: not authorised ({reason_code}); "
                            "check [mqtt] username/password; results stay queued")
            else:
                self._error(f"broker refused the connection: {reason_code}")
            return
        self.connected = True
        self.connects += 1
        self.last_error = None
        log.info("MQTT connected to %s (%s)", self.broker, "MQTT 5" if self.protocol == mqtt.MQTTv5 else "MQTT 3.1.1")
        info = client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._status_mid = info.mid
        self._fill_needed = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected and not self._stop.is_set():
            self._error(f"disconnected: {reason_code}")
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if mid == self._status_mid:
            self._status_acked = True
            return
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return
        seq, kind = sent
        if getattr(reason_code, "is_failure", False):
            self.refused[kind] = str(reason_code)
            # e.g. 0x87 Not authorized (broker ACL): keep the row, reconnect later, resend from the oldest.
            self._error(f"broker rejected outbox message {seq} ({reason_code}); kept in the outbox, retrying later")
            self._retry = True
            return
        self.refused.pop(kind, None)
        self._delivered(seq)
        self._fill_needed = True

    def _delivered(self, seq: int) -> bool:
        try:
            self.storage.outbox_delivered(seq)
        except StorageError as exc:
            # Delivered but not removed: deletion is retried at each poll; if the station stops
            # first, the message is sent again after the restart (a duplicate, never a loss).
            if seq not in self._undeleted:
                self._undeleted.append(seq)
            self._error(f"message {seq} delivered but the outbox could not be updated: {exc}")
            return False
        self.delivered += 1
        self.last_delivered_at = utc_now_iso()
        return True

    def _retry_deletes(self) -> None:
        while self._undeleted:
            seq = self._undeleted[0]
            self._undeleted.pop(0)
            if not self._delivered(seq):
                return
