"""The sd_notify client against real datagram sockets, and the watchdog riding on the frame loop."""
from __future__ import annotations

import os
import socket
import time
import uuid

import cv2
import numpy as np
import pytest

from station.sdnotify import Notifier, socket_address, watchdog_usec


def receive_all(sock: socket.socket, wait_s: float = 0.0) -> list[str]:
    out = []
    deadline = time.monotonic() + wait_s
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()) if wait_s else 0.001)
        try:
            out.append(sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            if time.monotonic() >= deadline:
                return out


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    yield sock, str(path)
    sock.close()


def test_messages_arrive_as_datagrams(notify_socket):
    sock, path = notify_socket
    with Notifier(path) as n:
        assert n.enabled
        assert n.ready("warm in 3 s")
        assert n.status("two\nlines")
        assert n.watchdog()
        assert n.stopping()
    assert receive_all(sock, 0.2) == ["READY=1\nSTATUS=warm in 3 s", "STATUS=two lines", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_namespace_socket():
    name = f"tricho-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        assert socket_address("@" + name) == b"\0" + name.encode()
        with Notifier.from_env({"NOTIFY_SOCKET": "@" + name}) as n:
            assert n.ready()
        assert receive_all(sock, 0.2) == ["READY=1"]
    finally:
        sock.close()


def test_no_socket_is_a_no_op():
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.maybe_watchdog() is False
    assert n.sent == []


def test_send_errors_are_logged_not_raised(tmp_path, caplog):
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.ready() is False
    assert "sd_notify" in caplog.text


def test_watchdog_environment():
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_usec({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_usec({}) is None
    n = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"})
    assert n.watchdog_interval_s == 15.0


def test_watchdog_pings_are_rate_limited_to_half_the_period(notify_socket):
    sock, path = notify_socket
    now = [100.0]
    n = Notifier(path, watchdog_usec=2_000_000, clock=lambda: now[0])
    pings = 0
    for _ in range(50):  # 50 frames at 20 fps = 2.5 s
        pings += n.maybe_watchdog(object())
        now[0] += 0.05
    assert pings == 3  # at 0, 1.0 and 2.0 s
    assert receive_all(sock, 0.2) == ["WATCHDOG=1"] * 3
    assert Notifier(path).maybe_watchdog() is False  # no WATCHDOG_USEC: never pings


def test_stalled_camera_stops_the_watchdog_pings(notify_socket, tmp_path):
    """The watchdog rides on the frame loop: a stall ends the loop, so the pings stop."""
    from station.camera import FakeCamera
    from station.config import Config
    from station.service import Station

    sock, path = notify_socket
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((240, 320, 3), 90, np.uint8))
    cfg = Config().replace(station={"state_dir": str(tmp_path / "state")},
                           camera={"backend": "fake", "images": str(images), "main_size": [320, 240],
                                   "preview_size": [160, 120], "capture_timeout_s": 0.2, "preview_fps": 50.0})
    station = Station(cfg)
    assert isinstance(station.camera, FakeCamera)
    notifier = Notifier(path, watchdog_usec=200_000)  # ping every 0.1 s
    station.frame_listeners.append(notifier.maybe_watchdog)
    station.start(warm_up=False)
    try:
        pings = receive_all(sock, 0.6)
        assert pings.count("WATCHDOG=1") >= 4, pings
        station.camera.stalled = True
        deadline = time.monotonic() + 3
        while station.preview_healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not station.preview_healthy
        assert "0.2 s" in station.status()["camera"]["error"]
        receive_all(sock)  # drop anything sent before the loop ended
        assert receive_all(sock, 0.6) == [], "no watchdog pings after the stall"
    finally:
        station.stop()
        notifier.close()
