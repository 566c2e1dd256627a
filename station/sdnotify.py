"""systemd's notify protocol (sd_notify(3)) in plain Python: no libsystemd, no dependency.

The service manager passes a datagram socket in ``NOTIFY_SOCKET`` (a path, or an abstract
socket written with a leading '@') and, when ``WatchdogSec=`` is set, the watchdog period
in ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``). Each message is one datagram of
newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.

The station sends READY=1 only when the camera runs and the numba kernels are warm, pings
the watchdog from the frame loop (so a stalled camera stops the pings and systemd restarts
the service), and sends STOPPING=1 on SIGTERM.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | bytes:
    """The address to sendto() for a NOTIFY_SOCKET value: '@name' is Linux's abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_usec(environ: Mapping[str, str] | None = None, pid: int | None = None) -> int | None:
    """The watchdog period in µs if systemd asked *this* process to ping (sd_watchdog_enabled)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    wd_pid = env.get("WATCHDOG_PID")
    if wd_pid:
        try:
            if int(wd_pid) != (os.getpid() if pid is None else pid):
                return None  # meant for another process (e.g. our parent)
        except ValueError:
            return None
    return usec


class Notifier:
    """Sends sd_notify messages; a no-op when ``NOTIFY_SOCKET`` is unset.

    Errors while sending are logged, never raised: a notify failure must not take the
    station down (systemd then times out or kills it, which is the right outcome anyway).
    """

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec
        self._clock = clock
        self._sock: socket.socket | None = None
        # Re-entrant: the SIGTERM handler sends STOPPING=1 from the main thread, which may be
        # interrupted while it is itself inside notify().
        self._lock = threading.RLock()
        self._last_ping: float | None = None
        self.sent: list[str] = []  # every message sent, for tests and the log

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog period, as sd_watchdog_enabled(3) recommends."""
        return None if not self.watchdog_usec else self.watchdog_usec / 2e6

    def notify(self, *fields: str, **values: Any) -> bool:
        """Send one datagram: notify("READY=1", STATUS="warm") -> b"READY=1\\nSTATUS=warm"."""
        lines = list(fields) + [f"{k}={v}" for k, v in values.items()]
        message = "\n".join(line.replace("\n", " ") if line.startswith("STATUS=") else line for line in lines)
        if not self.enabled or not message:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), socket_address(self.address))
            except OSError as exc:
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                return False
            self.sent.append(message)
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """Ping now (unconditionally)."""
        with self._lock:
            self._last_ping = self._clock()
        return self.notify("WATCHDOG=1")

    def watchdog_due(self) -> bool:
        interval = self.watchdog_interval_s
        if interval is None or not self.enabled:
            return False
        last = self._last_ping
        return last is None or self._clock() - last >= interval

    def maybe_watchdog(self, *_args: object) -> bool:
        """Ping if half the watchdog period has passed since the last ping.

        Meant as a frame listener: ``station.frame_listeners.append(notifier.maybe_watchdog)``,
        so the pings stop the moment frames stop arriving.
        """
        if not self.watchdog_due():
            return False
        return self.watchdog()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
