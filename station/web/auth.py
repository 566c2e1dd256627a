"""Technician login (session cookie), CSRF tokens, and the login rate limit.

- The password is only ever kept as a werkzeug hash. A plain password from the config is
  hashed at startup; an empty one is generated once: its hash goes to
  ``state_dir/web_password.hash`` and the plain text to ``state_dir/web_password`` (mode
  600), whose path is logged so the administrator can read it (and then delete it).
- Every form POST carries the session's CSRF token in a hidden field ``csrf_token``; the
  page's fetch() calls send it as ``X-CSRF-Token``. API calls authenticated by the session
  need the header for anything but GET/HEAD; calls with the bearer token do not.
- Failed logins are limited per client address (default 5 a minute): 429 + Retry-After.
"""
from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections import deque
from functools import wraps
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

HASH_PREFIXES = ("scrypt:", "pbkdf2:")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PASSWORD_FILE = "web_password"
HASH_FILE = "web_password.hash"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)


def password_hash(configured: str, state_dir: Path) -> str:
    """The werkzeug hash to check logins against (see the module docstring)."""
    if configured:
        if configured.startswith(HASH_PREFIXES) and configured.count("$") >= 2:
            return configured
        return generate_password_hash(configured)
    hash_path = Path(state_dir) / HASH_FILE
    try:
        stored = hash_path.read_text(encoding="utf-8").strip()
        if stored:
            plain_path = Path(state_dir) / PASSWORD_FILE
            if plain_path.exists():
                log.warning("web password: the generated password is still in %s; note it and delete the file",
                            plain_path.resolve())
            return stored
    except FileNotFoundError:
        pass
    plain = secrets.token_urlsafe(12)
    hashed = generate_password_hash(plain)
    _write_private(hash_path, hashed)
    plain_path = Path(state_dir) / PASSWORD_FILE
    _write_private(plain_path, plain)
    del plain
    log.warning("web password: none configured; generated one and wrote it to %s (mode 600). "
                "Read it, then delete the file, or set [web] password.", plain_path.resolve())
    return hashed


class RateLimiter:
    """At most ``limit`` failures per ``window_s`` per key (a sliding window, thread-safe)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._hits.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic()
        with self._lock:
            q = self._prune(key, now)
            if len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.window_s - now + 0.999))

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._prune(key, now).append(now)
            if len(self._hits) > 10000:  # forget idle clients
                for k in [k for k, v in self._hits.items() if not v]:
                    del self._hits[k]

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


# -- session and CSRF ----------------------------------------------------------------------
def logged_in() -> bool:
    return bool(session.get("user")) and session.get("epoch") == current_app.config["TRICHO_SESSION_EPOCH"]


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid(sent: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected) and bool(sent) and hmac.compare_digest(str(sent), expected)


def check_form_csrf() -> None:
    """before_request for the page (not /api/): every state-changing request needs the token."""
    if request.method in SAFE_METHODS or request.blueprint == "api" or request.endpoint == "static":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not csrf_valid(sent):
        log.warning("CSRF check failed: %s %s from %s", request.method, request.path, request.remote_addr)
        abort(400, description="The form has expired or did not come from this station's page. "
                               "Reload the page and try again.")


def api_session_ok() -> bool:
    """Session auth for /api/: logged in, and the X-CSRF-Token header on state-changing calls."""
    if not logged_in():
        return False
    if request.method in SAFE_METHODS:
        return True
    if csrf_valid(request.headers.get("X-CSRF-Token")):
        return True
    g.csrf_failed = True
    return False


def login_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        if not logged_in():
            nxt = request.full_path if request.method == "GET" else url_for("pages.capture")
            return redirect(url_for("auth.login", next=nxt.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("pages.capture")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.capture")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if logged_in():
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", next=request.args.get("next", ""))
    limiter: RateLimiter = current_app.extensions["tricho.login_limiter"]
    client = request.remote_addr or "?"
    wait = limiter.retry_after(client)
    if wait:
        log.warning("login rate limit hit by %s", client)
        body = render_template("login.html", next=request.form.get("next", ""),
                               error=f"Too many wrong passwords. Wait {wait} s, then try again.")
        return body, 429, {"Retry-After": str(wait)}
    password = request.form.get("password", "")
    if not check_password_hash(current_app.config["TRICHO_PASSWORD_HASH"], password):
        limiter.hit(client)
        log.warning("wrong web password from %s", client)
        return render_template("login.html", next=request.form.get("next", ""),
                               error="Wrong password."), 401
    limiter.reset(client)
    nxt = _safe_next(request.form.get("next"))
    session.clear()
    session.permanent = True
    session["user"] = "technician"
    session["epoch"] = current_app.config["TRICHO_SESSION_EPOCH"]
    csrf_token()  # a fresh token for the new session
    return redirect(nxt)


@bp.post("/logout")
def logout():
    session.clear()
    flash("Logged out.")
    return redirect(url_for("auth.login"))
