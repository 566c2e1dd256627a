"""``tricho station`` as systemd runs it: a real process, a real NOTIFY_SOCKET, SIGTERM.

Starts the station (fake camera) with a temporary state dir and a free port, waits for
READY=1 on a datagram socket bound as NOTIFY_SOCKET, checks that WATCHDOG=1 pings arrive at
half of WATCHDOG_USEC and that the web socket is bound, then sends SIGTERM and expects
STOPPING=1 and exit status 0 within a few seconds.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import core
from station.config import SAMPLES_DIR

pytestmark = pytest.mark.skipif(not hasattr(core, "warm_up") or not hasattr(core, "analyze"),
                                reason="core.warm_up/core.analyze not there yet (the station warms them before READY)")

READY_TIMEOUT_S = 240  # first numba compile on a cold cache; seconds with a warm one
WATCHDOG_USEC = 1_000_000  # -> a ping every 0.5 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_samples() -> bool:
    return SAMPLES_DIR.is_dir() and any(p.suffix in (".png", ".jpg") for p in SAMPLES_DIR.iterdir())


def start_station(tmp_path: Path, notify_path: str, extra_env: dict | None = None):
    port = free_port()
    camera = ""
    if not has_samples():  # --demo replays the bundled samples; without them, a folder of our own
        images = tmp_path / "images"
        images.mkdir()
        cv2.imwrite(str(images / "a.png"), np.full((760, 1014, 3), 120, np.uint8))
        camera = f'[camera]\nbackend = "fake"\nimages = "{images}"\n'
    conf = tmp_path / "station.toml"
    conf.write_text(f'[station]\nstate_dir = "{tmp_path / "state"}"\n{camera}'
                    f'[web]\nhost = "127.0.0.1"\nport = {port}\n')
    env = {k: v for k, v in os.environ.items() if k not in ("TRICHO_CAMERA", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(WATCHDOG_USEC), PYTHONUNBUFFERED="1")
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "station.cli", "station", "--config", str(conf)]
    if has_samples():
        cmd.append("--demo")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=Path(__file__).parents[1])
    return proc, port


def read_messages(sock: socket.socket, until: float, stop_on: str | None = None,
                  proc: subprocess.Popen | None = None) -> list[tuple[float, str]]:
    """Datagrams until ``until`` (monotonic), the ``stop_on`` line, or the process exiting."""
    got = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, min(0.25, until - time.monotonic())))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            if proc is not None and proc.poll() is not None:
                break
            continue
        got.append((time.monotonic(), msg))
        if stop_on and stop_on in msg.split("\n"):
            break
    return got


def test_ready_watchdog_and_sigterm(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    sock.bind(notify_path)
    proc, port = start_station(tmp_path, notify_path)
    try:
        t0 = time.monotonic()
        before_ready = read_messages(sock, t0 + READY_TIMEOUT_S, stop_on="READY=1", proc=proc)
        assert before_ready and "READY=1" in before_ready[-1][1].split("\n"), \
            f"no READY=1; messages {before_ready}; output:\n{_output(proc)}"
        ready_s = before_ready[-1][0] - t0
        assert any(m.startswith("STATUS=starting") for _, m in before_ready)
        assert "STATUS=ready" in before_ready[-1][1]
        # READY only after the web socket is bound: it accepts connections right away.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass

        pings = [t for t, m in read_messages(sock, time.monotonic() + 2.6) if m == "WATCHDOG=1"]
        assert len(pings) >= 4, f"expected a ping every 0.5 s, got {len(pings)}"
        gaps = np.diff(pings)
        assert gaps.max() < 0.9 and gaps.min() > 0.3, gaps

        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        after = read_messages(sock, t_term + 10, stop_on="STOPPING=1")
        assert any("STOPPING=1" in m.split("\n") for _, m in after), after
        code = proc.wait(timeout=10)
        exit_s = time.monotonic() - t_term
        out = _output(proc)
        assert code == 0, out
        assert exit_s < 5, f"SIGTERM to exit took {exit_s:.1f} s"
        assert "Traceback" not in out, out
        print(f"READY after {ready_s:.1f} s; watchdog gaps {gaps.mean():.2f} s; SIGTERM to exit {exit_s:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_sigint_during_serving_also_exits_cleanly(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    sock.bind(notify_path)
    proc, _port = start_station(tmp_path, notify_path, {"WATCHDOG_USEC": "0"})
    try:
        msgs = read_messages(sock, time.monotonic() + READY_TIMEOUT_S, stop_on="READY=1", proc=proc)
        assert msgs and "READY=1" in msgs[-1][1], _output(proc)
        time.sleep(0.5)
        assert not any(m == "WATCHDOG=1" for _, m in read_messages(sock, time.monotonic() + 0.3)), \
            "no watchdog pings without WATCHDOG_USEC"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, _output(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def _output(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return "(still running)"
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


def test_stall_monitor_reports_and_exits_without_a_watchdog(monkeypatch):
    """In-process: with a watchdog the monitor only reports (systemd restarts us); without one
    it stops the process itself with exit code 1 so Restart=on-failure restarts it."""
    import threading
    from types import SimpleNamespace

    from station.commands import station as cmd

    monkeypatch.setattr(cmd, "STALL_POLL_S", 0.02)
    sick = SimpleNamespace(preview_healthy=False, _frame_error="no frame from the camera within 5 s")

    class Recorder:
        def __init__(self, interval):
            self.watchdog_interval_s = interval
            self.lines = []

        def status(self, text):
            self.lines.append(text)

    with_wd = Recorder(15.0)
    shutdown = cmd._Shutdown()
    cmd._start_stall_monitor(sick, with_wd, shutdown)
    deadline = time.monotonic() + 2
    while not with_wd.lines and time.monotonic() < deadline:
        time.sleep(0.01)
    assert with_wd.lines and "camera stalled" in with_wd.lines[0] and "systemd" in with_wd.lines[0]
    assert shutdown.exit_code == 0

    got = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: got.set())
    try:
        no_wd = Recorder(None)
        shutdown = cmd._Shutdown()
        cmd._start_stall_monitor(sick, no_wd, shutdown)
        deadline = time.monotonic() + 2
        while not got.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in the main thread, between these sleeps
        assert got.is_set(), "SIGTERM sent to the main thread"
        assert shutdown.exit_code == 1 and shutdown.reason == "camera stalled"
        assert "exiting for a restart" in no_wd.lines[0]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_swallowed_sigterm_is_delivered_again_until_the_main_thread_unwinds():
    """waitress's event loop runs each socket callback under a bare ``except:`` that logs and
    closes the channel: a SIGTERM landing there is swallowed. The handler re-delivers it until
    the main thread leaves the interruptible part, so the station still stops."""
    from station.commands import station as cmd

    class Recorder:
        lines: list = []

        def stopping(self, text):
            self.lines.append(text)

    shutdown = cmd._Shutdown()
    handler = cmd._signal_handler(shutdown, Recorder())
    previous = signal.signal(signal.SIGTERM, handler)
    swallowed = 0
    t0 = time.monotonic()
    try:
        shutdown.interruptible = True
        with pytest.raises(cmd._Terminate):
            while time.monotonic() - t0 < 5:
                try:
                    if swallowed == 0 and time.monotonic() - t0 > 0.1 and not shutdown.requested.is_set():
                        os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.01)
                except cmd._Terminate:  # what waitress's bare except does with the first one
                    swallowed += 1
                    if swallowed > 1:
                        raise
        elapsed = time.monotonic() - t0
    finally:
        shutdown.interruptible = False
        signal.signal(signal.SIGTERM, previous)
    assert swallowed == 2 and shutdown.requested.is_set()
    assert elapsed < 0.1 + 3 * cmd.REDELIVER_S
    assert Recorder.lines == ["stopping (SIGTERM received)"]  # systemd is told once
