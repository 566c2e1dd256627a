"""``tricho station``: run the capture station (camera, analysis, storage, MQTT, web page).

Under systemd (``Type=notify``, see systemd/tricho-station.service) it tells the service
manager how it is doing through ``station.sdnotify``:

- ``STATUS=`` lines while starting, when ready, when the camera stalls and when stopping;
- ``READY=1`` only after ``Station.start()`` (numba kernels compiled and warm, camera running)
  and after the web server's socket is bound;
- ``WATCHDOG=1`` from the frame loop (a frame listener, at half of ``WATCHDOG_USEC``): when the
  camera stalls the frame loop ends, the pings stop and systemd restarts the service;
- ``STOPPING=1`` on SIGTERM/SIGINT, then the web server stops, the station stops (camera closed,
  light off, storage flushed) and the process exits 0.

SIGTERM: the handler raises an exception in the main thread, which is inside ``server.run()``
(or still starting: a cold numba warm-up takes minutes on a Pi 4); that unwinds at once and
the shutdown in ``_serve``'s ``finally`` runs in order. Calling ``server.close()`` from the
handler, as before, only ended ``server.run()`` by accident: waitress's loop keeps running
while its trigger pipe is in the socket map, and only the EBADF from polling the closed
listening socket made it return (which a reused file descriptor would not raise); it also
stopped waitress's threads before the station, and did nothing for a SIGTERM during start-up.
waitress's event loop wraps each socket callback in a bare ``except:`` that logs and closes
the channel, so a signal landing inside one is swallowed (seen once in ~20 test runs: the
process never stopped). Until the main thread reaches the cleanup, the signal is therefore
delivered again every ``REDELIVER_S``; one of them lands outside a callback.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from station import config as cfgmod

log = logging.getLogger("tricho.station")

STALL_POLL_S = 1.0
REDELIVER_S = 0.5


class _Terminate(BaseException):
    """Raised from the signal handler to leave ``server.run()``; not an Exception on purpose,
    so no ``except Exception`` in the web stack swallows it, and not SystemExit, which waitress
    catches itself and answers with a thread-pool shutdown before the station has stopped."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "station",
        help="run the station service (web page, capture, MQTT)",
        description="Run the station: open the camera, warm up the analysis, serve the technician's "
                    "page and the JSON API, and publish accepted results over MQTT. Under systemd it "
                    "speaks the notify protocol (READY, STATUS, WATCHDOG, STOPPING).",
        epilog="examples:\n"
               "  tricho station --demo                       # fake camera, bundled samples, ./state\n"
               "  tricho station --config /etc/tricho/station.toml\n"
               "  TRICHO_CAMERA=fake tricho station --config my.toml   # any config, fake camera",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", default=os.environ.get("TRICHO_CONFIG"),
                   help="TOML config file (default: $TRICHO_CONFIG, else built-in defaults)")
    p.add_argument("--demo", action="store_true",
                   help="fake camera replaying the bundled sample images (overrides [camera] backend/images)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> cfgmod.Config:
    cfg = cfgmod.load(args.config) if args.config else cfgmod.Config()
    if args.demo:
        cfg = cfg.replace(camera={"backend": "fake", "images": ""})
    return cfg


class _Shutdown:
    """What the signal handler and the stall monitor share with the main thread."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        # True while the main thread may be unwound by a signal: during the start (numba warm-up
        # can take minutes on a cold cache) and inside server.run(); False during the cleanup.
        self.interruptible = False
        self.exit_code = 0
        self.reason = ""


def _signal_handler(shutdown: _Shutdown, notifier):
    """The SIGTERM/SIGINT handler: note the request, tell systemd, and unwind the main
    thread while it may be (raising ``_Terminate``), re-delivering the signal every
    REDELIVER_S until the main thread has left the interruptible part."""
    main_ident = threading.main_thread().ident

    def redeliver(signum: int) -> None:
        while True:
            time.sleep(REDELIVER_S)
            if not shutdown.interruptible:
                return
            signal.pthread_kill(main_ident, signum)

    def on_signal(signum: int, _frame: object) -> None:
        first = not shutdown.requested.is_set()
        shutdown.requested.set()
        if first:
            name = signal.Signals(signum).name
            shutdown.reason = shutdown.reason or f"{name} received"
            log.info("%s: stopping", name)
            notifier.stopping(f"stopping ({shutdown.reason})")
            threading.Thread(target=redeliver, args=(signum,), name="signal-redelivery", daemon=True).start()
        if shutdown.interruptible:
            raise _Terminate()

    return on_signal


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args)
    except cfgmod.ConfigError as exc:
        print(f"station: {exc}", file=sys.stderr)
        return 2

    from station.sdnotify import Notifier

    notifier = Notifier.from_env()
    shutdown = _Shutdown()
    on_signal = _signal_handler(shutdown, notifier)
    # Installed before the slow start so a SIGTERM during warm-up also ends in an orderly stop.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return _serve(cfg, notifier, shutdown)
    except _Terminate:  # a signal in the instant between leaving server.run() and the cleanup
        return shutdown.exit_code
    finally:
        notifier.close()


def _serve(cfg: cfgmod.Config, notifier, shutdown: _Shutdown) -> int:
    from waitress.server import create_server

    from station.camera import CameraError
    from station.lighting import LightingError, make_lighting
    from station.service import Station
    from station.web import create_app

    t0 = time.monotonic()
    notifier.status(f"starting: opening the {cfg.camera_backend} camera and compiling the analysis kernels")
    try:
        lighting = make_lighting(cfg.lighting, exposure_us=cfg.camera.exposure_us)
    except LightingError as exc:
        print(f"station: {exc}", file=sys.stderr)
        notifier.status(f"failed: {exc}")
        return 2
    station = None
    server = None
    try:
        station = Station(cfg, lighting=lighting)
        # The watchdog is pinged from the frame loop only: no frames, no pings.
        station.frame_listeners.append(notifier.maybe_watchdog)
        shutdown.interruptible = True
        if shutdown.requested.is_set():
            return shutdown.exit_code
        try:
            station.start()
        except CameraError as exc:
            log.error("camera failed to start: %s", exc)
            notifier.status(f"failed: camera: {exc}")
            return 1
        if shutdown.requested.is_set():
            return shutdown.exit_code
        try:
            app = create_app(cfg, station=station)
            # A small output buffer makes waitress skip MJPEG frames for a slow Wi-Fi viewer
            # instead of queueing seconds of lag (the default high watermark is 16 MB).
            server = create_server(app, host=cfg.web.host, port=cfg.web.port, threads=32, channel_timeout=30,
                                   outbuf_high_watermark=2 * 1024 * 1024)
        except Exception as exc:
            notifier.status(f"failed: web server: {exc}")
            raise
        startup_s = time.monotonic() - t0
        log.info("station %s: page on http://%s:%d/ (camera: %s, state: %s), ready in %.1f s",
                 cfg.station.id, cfg.web.host, cfg.web.port, cfg.camera_backend, cfg.state_path.resolve(),
                 startup_s)
        log.info("API token in %s", (cfg.state_path / "api_token").resolve() if not cfg.web.api_token else "[web] api_token")
        notifier.ready(f"ready in {startup_s:.1f} s: camera {cfg.camera_backend} running, "
                       f"page on http://{cfg.web.host}:{cfg.web.port}/")
        if notifier.watchdog_interval_s:
            log.info("watchdog: pinging every %.1f s from the frame loop", notifier.watchdog_interval_s)
        _start_stall_monitor(station, notifier, shutdown)
        try:
            if not shutdown.requested.is_set():
                server.run()
        except _Terminate:
            pass
        return shutdown.exit_code
    except _Terminate:  # SIGTERM while starting
        return shutdown.exit_code
    finally:
        shutdown.interruptible = False
        t_stop = time.monotonic()
        if server is not None:
            server.close()  # stop accepting connections
        if station is not None:
            try:
                # Camera closed, light off, publisher stopped, storage flushed and closed; the
                # MJPEG streams end because the preview stops.
                station.stop()
            except Exception:
                log.exception("error while stopping the station")
                shutdown.exit_code = shutdown.exit_code or 1
        if server is not None:
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
        lighting.close()
        log.info("stopped in %.2f s", time.monotonic() - t_stop)


def _start_stall_monitor(station, notifier, shutdown: _Shutdown) -> None:
    """Report a stalled camera in the status line; the watchdog (if any) does the restart.

    The frame loop ends on a stall, so WATCHDOG=1 pings stop and systemd restarts the service
    after WatchdogSec. Without a watchdog (run by hand, or WatchdogSec unset) nothing would
    restart it, so then the process stops itself with exit code 1 (Restart=on-failure).
    """
    main_thread = threading.main_thread()

    def watch() -> None:
        while not shutdown.requested.wait(STALL_POLL_S):
            if station.preview_healthy:
                continue
            error = getattr(station, "_frame_error", None) or "preview stopped"
            log.error("camera stalled: %s", error)
            if notifier.watchdog_interval_s:
                notifier.status(f"camera stalled: {error}; watchdog pings stopped, waiting for systemd to restart")
                return
            notifier.status(f"camera stalled: {error}; exiting for a restart")
            shutdown.exit_code = 1
            shutdown.reason = "camera stalled"
            signal.pthread_kill(main_thread.ident, signal.SIGTERM)
            return

    threading.Thread(target=watch, name="stall-monitor", daemon=True).start()
