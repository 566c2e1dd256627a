"""The station's web app: ``create_app(config)`` factory with blueprints (Flask tutorial style).

Blueprints: ``auth`` (login/logout), ``pages`` (the technician's page: preview, capture,
result, history, station), ``api`` (JSON under /api/, see docs/web-api.md).
"""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, render_template, request

from station.config import Config
from station.secrets import stored_secret
from station.service import Station

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(config: Config | None = None, *, station: Station | None = None,
               start: bool = True, test_config: dict[str, Any] | None = None,
               button_pin_factory: Any = None) -> Flask:
    """Build the app around a Station (made from ``config`` and started, unless given).

    ``button_pin_factory``: a gpiozero pin factory for the capture button (tests pass a MockFactory).
    """
    config = config or Config()
    if station is None:
        station = Station(config)
        if start:
            station.start()
    app = Flask(__name__)
    state = config.state_path
    from station.web import auth

    app.config.update(
        SECRET_KEY=stored_secret(state, "session_key"),
        API_TOKEN=stored_secret(state, "api_token", config.web.api_token),
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_NAME="tricho_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        LOGIN_RATE_LIMIT=5,
        LOGIN_RATE_WINDOW_S=60.0,
        PREVIEW_JPEG_QUALITY=75,
        LIVE_ANALYSIS_HZ=2.0,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config.get("TRICHO_PASSWORD_HASH"):
        app.config["TRICHO_PASSWORD_HASH"] = auth.password_hash(config.web.password, state)
    # Changing the password logs every session out.
    app.config["TRICHO_SESSION_EPOCH"] = hashlib.sha256(app.config["TRICHO_PASSWORD_HASH"].encode()).hexdigest()[:16]
    app.extensions["tricho.station"] = station
    app.extensions["tricho.config"] = config
    app.extensions["tricho.login_limiter"] = auth.RateLimiter(app.config["LOGIN_RATE_LIMIT"],
                                                              app.config["LOGIN_RATE_WINDOW_S"])
    from station.web.stream import PreviewBroadcaster

    preview = PreviewBroadcaster(station, jpeg_quality=app.config["PREVIEW_JPEG_QUALITY"],
                                 analysis_hz=app.config["LIVE_ANALYSIS_HZ"])
    app.extensions["tricho.preview"] = preview
    app.extensions["tricho.button"] = _capture_button(config, preview, button_pin_factory)

    from station.web import api, pages

    if auth.api_session_ok not in api.extra_auth_checks:
        api.extra_auth_checks.append(auth.api_session_ok)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.before_request(auth.check_form_csrf)
    app.jinja_env.globals["csrf_token"] = auth.csrf_token

    @app.after_request
    def security_headers(resp):
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            h.setdefault("Cache-Control", "no-store")
        return resp

    def _error(status: int, message: str):
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return jsonify(error=message), status
        return render_template("error.html", status=status, message=message), status

    @app.errorhandler(400)
    def bad_request(exc):
        return _error(400, getattr(exc, "description", None) or "bad request")

    @app.errorhandler(404)
    def not_found(_exc):
        return _error(404, "not found")

    @app.errorhandler(405)
    def bad_method(_exc):
        return _error(405, "method not allowed")

    @app.errorhandler(413)
    def too_large(_exc):
        return _error(413, "request body too large")

    return app


def _capture_button(config: Config, preview: Any, pin_factory: Any) -> Any:
    """A gpiozero Button on ``[web] capture_button_pin`` that makes the open page capture; None if unset."""
    pin = config.web.capture_button_pin
    if pin < 0:
        return None
    try:
        from gpiozero import Button

        if pin_factory is None and config.lighting.pin_factory:
            import os

            os.environ.setdefault("GPIOZERO_PIN_FACTORY", config.lighting.pin_factory)
        button = Button(pin, pull_up=True, bounce_time=0.05, pin_factory=pin_factory)
    except Exception as exc:  # no GPIO here (a laptop) or the pin is busy: the page still works
        log.error("capture button on GPIO %d not available: %s", pin, exc)
        return None
    button.when_pressed = lambda *_: preview.press_button()
    log.info("capture button on GPIO %d", pin)
    return button


def get_station() -> Station:
    from flask import current_app

    return current_app.extensions["tricho.station"]
