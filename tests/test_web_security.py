"""Login, session cookie, CSRF, rate limit, escaping and security headers."""
from __future__ import annotations

import os
import re
import stat

from werkzeug.security import check_password_hash

from station.web import create_app
from tests.conftest import PASSWORD, bearer, csrf_from, login, make_config

XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_pages_need_login(client):
    for path in ("/", "/history", "/station", "/results/x", "/stream.mjpg", "/snapshot.jpg", "/history.csv"):
        resp = client.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path
    assert client.get("/api/status").status_code == 401
    assert client.post("/capture", data={"patient_id": "P-1", "zone": "crown"}).status_code == 400  # no CSRF first


def test_wrong_password_is_refused(client):
    resp = login(client, "not the password")
    assert resp.status_code == 401
    assert b"Wrong password." in resp.data
    assert client.get("/").status_code == 302  # still logged out
    with client.session_transaction() as sess:
        assert "user" not in sess


def test_right_password_sets_a_strict_httponly_cookie(client):
    resp = login(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/").status_code == 200


def test_login_needs_csrf_token(client):
    client.get("/login")
    resp = client.post("/login", data={"password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302


def test_form_posts_need_the_csrf_token(auth_client, station):
    form = {"patient_id": "P-1", "zone": "crown"}
    assert auth_client.post("/capture", data=form).status_code == 400
    assert auth_client.post("/capture", data={**form, "csrf_token": "forged"}).status_code == 400
    assert station.storage.list_results() == []
    assert auth_client.post("/logout").status_code == 400  # logout too (no logout-CSRF)
    assert auth_client.get("/").status_code == 200


def test_session_api_calls_need_the_csrf_header_token_calls_do_not(auth_client, page_csrf, client):
    body = {"patient_id": "P-7", "zone": "donor"}
    assert auth_client.get("/api/status").status_code == 200  # reading: session is enough
    resp = auth_client.post("/api/captures", json=body)
    assert resp.status_code == 403 and "X-CSRF-Token" in resp.json["error"]
    resp = auth_client.post("/api/captures", json=body, headers={"X-CSRF-Token": "wrong"})
    assert resp.status_code == 403
    resp = auth_client.post("/api/captures", json=body, headers={"X-CSRF-Token": page_csrf})
    assert resp.status_code == 201
    fresh = client.application.test_client()  # no session at all: the bearer token alone
    assert fresh.post("/api/captures", json=body, headers=bearer()).status_code == 201
    assert fresh.post("/api/captures", json=body, headers=bearer("wrong-token")).status_code == 401


def test_xss_in_note_is_stored_verbatim_and_shown_escaped(auth_client, page_csrf, station):
    resp = auth_client.post("/capture", data={"csrf_token": page_csrf, "patient_id": "P-0042", "zone": "crown",
                                              "note": XSS})
    assert resp.status_code == 302
    rid = resp.headers["Location"].rsplit("/", 1)[1]
    assert station.storage.get_result(rid).note == XSS
    for page in (auth_client.get(f"/results/{rid}").data.decode(), auth_client.get("/").data.decode()):
        assert "<img src=x" not in page and "<script>alert" not in page
    page = auth_client.get(f"/results/{rid}").data.decode()
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert auth_client.get(f"/api/captures/{rid}").json["note"] == XSS  # JSON keeps the text as it is


def test_markup_in_patient_id_and_zone_is_rejected_and_echoed_escaped(auth_client, page_csrf, station):
    resp = auth_client.post("/capture", data={"csrf_token": page_csrf, "patient_id": XSS, "zone": "crown"})
    assert resp.status_code == 400
    assert b"<script>alert" not in resp.data and b"patient_id" in resp.data
    resp = auth_client.post("/capture", data={"csrf_token": page_csrf, "patient_id": "P-1", "zone": "other",
                                              "zone_other": "<b>crown</b>"})
    assert resp.status_code == 400 and b"<b>crown</b>" not in resp.data
    assert station.storage.list_results() == []
    resp = auth_client.get("/history", query_string={"patient_id": XSS, "zone": "crown"})
    assert resp.status_code == 400 and b"<script>alert" not in resp.data


def test_login_rate_limit_per_client_address(client):
    token = csrf_from(client.get("/login").data)
    for _ in range(5):
        assert client.post("/login", data={"password": "guess", "csrf_token": token}).status_code == 401
    resp = client.post("/login", data={"password": PASSWORD, "csrf_token": token})  # even the right one
    assert resp.status_code == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    other = client.application.test_client()
    token2 = csrf_from(other.get("/login", environ_base={"REMOTE_ADDR": "10.0.0.9"}).data)
    resp = other.post("/login", data={"password": PASSWORD, "csrf_token": token2}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert resp.status_code == 302


def test_security_headers_and_no_inline_script(auth_client, page_csrf):
    auth_client.post("/capture", data={"csrf_token": page_csrf, "patient_id": "P-1", "zone": "crown"})
    rid = auth_client.get("/api/captures").json["captures"][0]["id"]
    anonymous = auth_client.application.test_client()
    for path in ("/login", "/", f"/results/{rid}", "/history", "/history?patient_id=P-1&zone=crown", "/station"):
        resp = (anonymous if path == "/login" else auth_client).get(path)
        assert resp.status_code == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        html = resp.data.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline script on {path}"
        assert not re.search(r"\son[a-z]+\s*=", html), f"inline event handler on {path}"
        assert not re.search(r"\sstyle\s*=", html), f"style attribute on {path} (blocked by the CSP)"
    assert auth_client.get("/api/status").headers["X-Content-Type-Options"] == "nosniff"


def test_next_parameter_cannot_redirect_off_site(client):
    token = csrf_from(client.get("/login").data)
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = client.post("/login", data={"password": PASSWORD, "csrf_token": token, "next": evil})
        assert resp.status_code == 302 and resp.headers["Location"] == "/", evil
        client.post("/logout", data={"csrf_token": csrf_from(client.get("/").data)})
        token = csrf_from(client.get("/login").data)


def test_plain_password_is_hashed_and_not_kept(app):
    h = app.config["TRICHO_PASSWORD_HASH"]
    assert h.startswith(("scrypt:", "pbkdf2:")) and check_password_hash(h, PASSWORD)
    assert PASSWORD not in repr({k: v for k, v in app.config.items()})


def test_hashed_password_from_config_is_used_as_is(tmp_path, frames_dir, station):
    from werkzeug.security import generate_password_hash

    h = generate_password_hash("from-a-hash", method="pbkdf2:sha256:1000")
    app = create_app(make_config(tmp_path / "s2", frames_dir, web={"password": h}), station=station)
    assert app.config["TRICHO_PASSWORD_HASH"] == h
    c = app.test_client()
    assert login(c, "from-a-hash").status_code == 302


def test_empty_password_is_generated_stored_hashed_and_written_once(tmp_path, frames_dir, station, caplog):
    cfg = make_config(tmp_path / "s3", frames_dir, web={"password": ""})
    with caplog.at_level("WARNING"):
        app = create_app(cfg, station=station)
    plain_file, hash_file = tmp_path / "s3" / "web_password", tmp_path / "s3" / "web_password.hash"
    assert stat.S_IMODE(os.stat(plain_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(hash_file).st_mode) == 0o600
    plain = plain_file.read_text().strip()
    assert len(plain) >= 12 and str(plain_file.resolve()) in caplog.text and plain not in caplog.text
    assert check_password_hash(hash_file.read_text().strip(), plain)
    assert login(app.test_client(), plain).status_code == 302
    # a restart keeps the same password; deleting the plain file does not change it
    plain_file.unlink()
    app2 = create_app(cfg, station=station)
    assert login(app2.test_client(), plain).status_code == 302


def test_logout_ends_the_session(auth_client, page_csrf):
    resp = auth_client.post("/logout", data={"csrf_token": page_csrf})
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    assert auth_client.get("/").status_code == 302
    assert auth_client.get("/api/status").status_code == 401
