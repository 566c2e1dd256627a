"""A real Mosquitto for the MQTT tests, a TCP proxy that can cut connections, and helpers.

Import the fixtures into a test module with ``from tests.mqtt_broker import broker, ...``.
Everything binds to 127.0.0.1 and every wait has a timeout.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl")

needs_mosquitto = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto not installed (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Broker:
    """One mosquitto process on a fixed loopback port; stop/start/restart keep the port."""

    def __init__(self, workdir: Path, *, port: int | None = None, persistence: bool = False,
                 users: dict[str, str] | None = None, acl: str | None = None, tls: dict[str, str] | None = None) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.persistence = persistence
        self.users = users
        self.acl = acl
        self.tls = tls
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.write_config()

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 20",
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.users is not None:
            pw = self.dir / "passwords"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True,
                               capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            (self.dir / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.dir / 'acl'}")
        if self.tls:
            lines += [f"cafile {self.tls['cafile']}", f"certfile {self.tls['certfile']}",
                      f"keyfile {self.tls['keyfile']}",
                      f"require_certificate {'true' if self.tls.get('require_certificate') else 'false'}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def set_acl(self, acl: str) -> None:
        """Rewrite the ACL file and make the running broker reload it (SIGHUP)."""
        self.acl = acl
        (self.dir / "acl").write_text(acl)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        deadline = time.monotonic() + timeout
        while True:  # the port may linger for a moment after a restart
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True)
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None or time.monotonic() > deadline:
                break
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}: {err}\n{self.read_log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FlakyProxy:
    """A TCP proxy in front of the broker: ``cut()`` drops every open connection (a network flap);
    ``mqtt311_only=True`` answers an MQTT 5 CONNECT like a 3.1.1-only broker (CONNACK rc 1, close)."""

    def __init__(self, upstream_port: int, *, mqtt311_only: bool = False) -> None:
        self.upstream_port = upstream_port
        self.mqtt311_only = mqtt311_only
        self.rejected_v5 = 0
        self.accepted = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        first = b""
        try:
            client.settimeout(5)
            if self.mqtt311_only:
                while len(first) < 12:
                    chunk = client.recv(64)
                    if not chunk:
                        raise OSError("closed")
                    first += chunk
                # fixed header (1 byte + varint length), then 00 04 'MQTT' and the protocol level
                i = 1
                while first[i] & 0x80:
                    i += 1
                level = first[i + 1 + 6]
                if level == 5:
                    self.rejected_v5 += 1
                    client.sendall(b"\x20\x02\x00\x01")
                    client.close()
                    return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        client.settimeout(None)
        upstream.settimeout(None)
        self.accepted += 1
        with self._lock:
            self._socks.update((client, upstream))
        if first:
            upstream.sendall(first)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._socks.discard(src)
                self._socks.discard(dst)

    def cut(self) -> int:
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(socks) // 2

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()
        self._thread.join(2)


# -- synthetic captures ----------------------------------------------------------------------
def synthetic_analysis(i: int, hairs: int = 3) -> dict[str, Any]:
    return {
        "width": 64, "height": 48, "um_per_px": 4.0, "area_cm2": 0.0049, "hair_count": 10 + i % 7,
        "density_per_cm2": 2040.8 + i, "mean_thickness_um": 55.5, "median_thickness_um": None if i % 5 == 0 else 54.0,
        "vellus_threshold_um": 40.0, "vellus_count": 2, "terminal_count": 8 + i % 7,
        "cumulative_thickness_mm_per_cm2": 1.23, "follicular_units": {"1": 3, "2": 2, "3": 1, "4+": 0},
        "hairs": [{"x": 1.0 * k, "y": 2.0, "angle_deg": 30.0, "length_um": 400.0, "thickness_um": 50.0 + k,
                   "contrast": 0.4} for k in range(hairs)],
        "quality": {"sharpness": 0.8}, "elapsed_ms": 12.5,
    }


def synthetic_record(i: int, patient: str = "P-0001", *, hairs: int = 3):
    from station.records import ResultRecord, new_id, utc_now_iso

    return ResultRecord(
        id=new_id(), captured_at=utc_now_iso(), patient_id=patient, zone="crown", note=f"n{i}",
        status="accepted", image_file="", overlay_file=None, um_per_px=4.0, scale_source="config",
        calibration=None,
        capture={"exposure_us": 8000, "analogue_gain": 1.0, "colour_gains": [1.8, 1.6], "lens_position": None,
                 "sensor_timestamp_ns": 123456789 + i, "width": 64, "height": 48},
        quality={"passed": True, "reasons": [], "checks": []},
        analysis=synthetic_analysis(i, hairs),
    )


_IMAGE = np.full((48, 64, 3), 128, np.uint8)


def add_result(storage, station_id: str, i: int, *, include_hairs: bool = True, image_jpeg: bytes | None = None,
               hairs: int = 3):
    """Store one accepted synthetic capture with its outbox message(s), like Station.capture does."""
    from station import payload

    rec = synthetic_record(i, hairs=hairs)
    msgs = payload.outbox_messages(rec, station_id, include_hairs=include_hairs, image_jpeg=image_jpeg)
    return storage.save_result(rec, _IMAGE, None, "png", 95, msgs)


def acl(station_id: str, *, allow: bool = True) -> str:
    """A Mosquitto ACL for users "station" and "clinic": the clinic reads tricho/#; the station
    may write everything under tricho/<station_id>/, or (``allow`` False) only its status."""
    station = f"topic readwrite tricho/{station_id}/#" if allow else f"topic write tricho/{station_id}/status"
    return f"user station\n{station}\n\nuser clinic\ntopic read tricho/#\n"


def mqtt_config(broker_or_port, **kw):
    from station.config import MqttConfig

    port = broker_or_port if isinstance(broker_or_port, int) else broker_or_port.port
    return MqttConfig(**{"host": "127.0.0.1", "port": port, "keepalive_s": 5, **kw})


def fast_publisher(cfg, station_id: str, storage, **kw):
    from station.publisher import OutboxPublisher

    opts = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "poll_s": 0.2, "connect_timeout_s": 3.0, **kw}
    return OutboxPublisher(cfg, station_id, storage, **opts)


class ConsumerThread:
    """The reference consumer (station.consumer.Subscriber) running in a thread, for counting."""

    def __init__(self, port: int, db_path: Path, **kw: Any) -> None:
        import io

        from station.consumer import Subscriber, SubscriberConfig

        self.out = io.StringIO()
        self.err = io.StringIO()
        opts = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "client_id": f"test-consumer-{uuid.uuid4().hex[:8]}", **kw}
        self.sub = Subscriber(SubscriberConfig(host="127.0.0.1", port=port, db_path=str(db_path), **opts),
                              out=self.out, err=self.err)
        self.thread = threading.Thread(target=self.sub.run, daemon=True)

    def __enter__(self) -> "ConsumerThread":
        self.thread.start()
        wait_for(self.sub.subscribed.is_set, 10, "the consumer's subscription")
        return self

    def stop(self) -> None:
        self.sub.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path):
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto not installed")
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def persistent_broker(tmp_path):
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto not installed")
    b = Broker(tmp_path / "broker", persistence=True)
    b.start()
    try:
        yield b
    finally:
        b.stop()


# -- a station process for the SIGKILL tests: python -m tests.mqtt_broker STATE_DIR PORT STATION_ID TOTAL --------
def _station_main(argv: list[str]) -> int:
    import random as _random
    import sys

    from station.storage import Storage

    state_dir, port, station_id, total = argv[0], int(argv[1]), argv[2], int(argv[3])
    storage = Storage(state_dir)
    pub = fast_publisher(mqtt_config(port), station_id, storage)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    pub.start()
    print("ready", flush=True)
    i = len(storage.list_results(limit=1_000_000))
    while i < total and not stop.is_set():
        add_result(storage, station_id, i)
        pub.wake()
        i += 1
        time.sleep(_random.uniform(0, 0.004))
    print("all stored", flush=True)
    stop.wait(120)
    pub.stop()
    storage.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_station_main(sys.argv[1:]))
