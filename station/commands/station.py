"""``tricho station``: run the capture station (camera, analysis, storage, MQTT, web page)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from station import config as cfgmod

log = logging.getLogger("tricho.station")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "station",
        help="run the station service (web page, capture, MQTT)",
        description="Run the station: open the camera, warm up the analysis, serve the technician's "
                    "page and the JSON API, and publish accepted results over MQTT.",
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


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args)
    except cfgmod.ConfigError as exc:
        print(f"station: {exc}", file=sys.stderr)
        return 2
    from waitress.server import create_server

    from station.service import Station
    from station.web import create_app

    station = Station(cfg)
    station.start()
    app = create_app(cfg, station=station)
    server = create_server(app, host=cfg.web.host, port=cfg.web.port, threads=32, channel_timeout=30)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        server.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("station %s: page on http://%s:%d/ (camera: %s, state: %s)", cfg.station.id, cfg.web.host,
             cfg.web.port, cfg.camera_backend, cfg.state_path.resolve())
    log.info("API token in %s", (cfg.state_path / "api_token").resolve() if not cfg.web.api_token else "[web] api_token")
    try:
        server.run()
    except OSError:
        if not stop.is_set():
            raise
    finally:
        station.stop()
    return 0
