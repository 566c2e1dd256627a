"""The station's web app: ``create_app(config)`` factory with blueprints (Flask tutorial style)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify

from station.config import Config
from station.secrets import stored_secret
from station.service import Station

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, *, station: Station | None = None,
               start: bool = True, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app around a Station (made from ``config`` and started, unless given)."""
    config = config or Config()
    if station is None:
        station = Station(config)
        if start:
            station.start()
    app = Flask(__name__)
    state = config.state_path
    app.config.update(
        SECRET_KEY=stored_secret(state, "session_key"),
        API_TOKEN=stored_secret(state, "api_token", config.web.api_token),
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["tricho.station"] = station

    from station.web import api

    app.register_blueprint(api.bp)

    @app.errorhandler(404)
    def not_found(_exc):
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def bad_method(_exc):
        return jsonify(error="method not allowed"), 405

    @app.errorhandler(413)
    def too_large(_exc):
        return jsonify(error="request body too large"), 413

    return app


def get_station() -> Station:
    from flask import current_app

    return current_app.extensions["tricho.station"]
