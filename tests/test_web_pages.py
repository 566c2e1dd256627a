"""The technician's page through the Flask test client: login, capture, result, history, station."""
from __future__ import annotations


from pathlib import Path

from tests.conftest import _start_station, build_app, csrf_from, login, make_config


def capture(client, csrf, patient="P-0042", zone="crown", note="", **extra):
    return client.post("/capture", data={"csrf_token": csrf, "patient_id": patient, "zone": zone, "note": note, **extra})


def test_login_capture_result_flow(auth_client, page_csrf, station):
    page = auth_client.get("/")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'src="/stream.mjpg"' in html and "Capture" in html
    resp = capture(auth_client, page_csrf, note="first visit")
    assert resp.status_code == 302, resp.data[:400]
    result_url = resp.headers["Location"]
    assert result_url.startswith("/results/")
    rid = result_url.rsplit("/", 1)[1]
    page = auth_client.get(result_url).data.decode()
    assert "P-0042" in page and "crown" in page and "first visit" in page
    assert f"/api/captures/{rid}/overlay" in page
    assert "<svg" in page and "Shaft thickness" in page
    assert "Accepted" in page  # frame a is sharp: the gate passes
    assert "waiting in outbox" in page
    img = auth_client.get(f"/api/captures/{rid}/overlay")
    assert img.status_code == 200 and img.data[:2] == b"\xff\xd8"


def rid_of(resp) -> str:
    assert resp.status_code == 302, resp.data[:400]
    return resp.headers["Location"].rsplit("/", 1)[1]


def test_failed_gate_then_retake_or_accept(auth_client, page_csrf, station):
    capture(auth_client, page_csrf)                      # a: sharp
    capture(auth_client, page_csrf)                      # b: sharp
    rid = rid_of(capture(auth_client, page_csrf))        # c: blurred -> pending
    page = auth_client.get(f"/results/{rid}").data.decode()
    assert "Quality check failed" in page and "out of focus" in page
    assert "Retake" in page and "Accept anyway" in page
    resp = auth_client.post(f"/results/{rid}/retake", data={"csrf_token": page_csrf})
    assert resp.status_code == 302 and "patient_id=P-0042" in resp.headers["Location"] and "zone=crown" in resp.headers["Location"]
    assert station.storage.get_result(rid).status == "discarded"
    form = auth_client.get(resp.headers["Location"]).data.decode()
    assert 'value="P-0042"' in form and 'value="crown" checked' in form
    rid2 = rid_of(capture(auth_client, page_csrf))       # a again: sharp, accepted
    assert station.storage.get_result(rid2).status == "accepted"
    rid3 = rid_of(capture(auth_client, page_csrf))       # b
    rid4 = rid_of(capture(auth_client, page_csrf))       # c: blurred again -> accept anyway
    auth_client.post(f"/results/{rid4}/accept", data={"csrf_token": page_csrf})
    assert station.storage.get_result(rid4).status == "accepted"
    assert "quality gate overridden" in auth_client.get(f"/results/{rid4}").data.decode()
    # an accepted capture cannot be discarded from the page
    resp = auth_client.post(f"/results/{rid3}/discard", data={"csrf_token": page_csrf}, follow_redirects=True)
    assert "already accepted" in resp.data.decode() and station.storage.get_result(rid3).status == "accepted"


def test_capture_form_errors_keep_the_input(auth_client, page_csrf, station):
    resp = capture(auth_client, page_csrf, patient="", note="keep me")
    assert resp.status_code == 400
    html = resp.data.decode()
    assert "patient_id: required" in html and "keep me" in html
    resp = capture(auth_client, page_csrf, zone="other", zone_other="left parietal")
    rid = rid_of(resp)
    assert station.storage.get_result(rid).zone == "left parietal"


def test_history_page_plots_table_and_csv(auth_client, page_csrf):
    ids = [rid_of(capture(auth_client, page_csrf)) for _ in range(2)]
    index = auth_client.get("/history").data.decode()
    assert "P-0042" in index and "/history?patient_id=P-0042&amp;zone=crown" in index
    page = auth_client.get("/history?patient_id=P-0042&zone=crown").data.decode()
    # density, thickness and (issue 8) the change-from-baseline trend with its noise band
    assert page.count("<svg") == 3 and "Density" in page and "Mean thickness" in page and 'id="trend-plot"' in page
    assert page.count('class="baseline accepted"') == 1 and "make baseline" in page
    assert all(f"/results/{i}" in page for i in ids)
    resp = auth_client.get("/history.csv?patient_id=P-0042&zone=crown")
    assert resp.status_code == 200 and resp.mimetype == "text/csv" and resp.data.decode().count("\r\n") == 3
    assert auth_client.get("/history?patient_id=P-0042&zone=crown&baseline=bogus").status_code == 400


def test_station_page_shows_status_and_warning(auth_client):
    page = auth_client.get("/station").data.decode()
    for text in ("Calibration", "Status", "fake", "MQTT", "Outbox", "Disk free", "software", "no scale calibration stored"):
        assert text in page, text
    assert 'action="/station/calibrate/scale"' in page


def test_calibration_form_reports_a_failure_in_words(auth_client, page_csrf, station):
    resp = auth_client.post("/station/calibrate/scale", data={"csrf_token": page_csrf, "pitch_um": "abc"},
                            follow_redirects=True)
    assert "dot pitch" in resp.data.decode()
    resp = auth_client.post("/station/calibrate/scale", data={"csrf_token": page_csrf, "pitch_um": "500"},
                            follow_redirects=True)  # the camera shows scalp, not a grid card
    assert "grid card was not usable" in resp.data.decode()
    assert station.storage.list_calibrations() == []


def test_hardware_capture_button_reaches_the_page(tmp_path, frames_dir, station):
    from gpiozero.pins.mock import MockFactory

    from tests.conftest import make_config
    from station.web import create_app

    factory = MockFactory()
    cfg = make_config(tmp_path / "hb", frames_dir, web={"capture_button_pin": 17})
    app = create_app(cfg, station=station, button_pin_factory=factory, test_config={"TESTING": True})
    try:
        button = app.extensions["tricho.button"]
        assert button is not None
        c = app.test_client()
        login(c)
        assert c.get("/api/live").json["button_presses"] == 0
        pin = factory.pin(17)
        pin.drive_low()
        pin.drive_high()
        assert c.get("/api/live").json["button_presses"] == 1
    finally:
        app.extensions["tricho.preview"].close()
        if app.extensions["tricho.button"] is not None:
            app.extensions["tricho.button"].close()


def test_images_are_served_when_the_state_directory_is_relative(tmp_path, frames_dir, monkeypatch):
    # the README's demo keeps its state in "./state"; Flask's send_file reads a relative path
    # against the web package's folder, not the working directory, so every image was a 500
    monkeypatch.chdir(tmp_path)
    config = make_config(Path("state"), frames_dir)
    station = _start_station(config)
    app = build_app(config, station)
    try:
        client = app.test_client()
        login(client)
        rid = rid_of(capture(client, csrf_from(client.get("/").data)))
        for kind in ("overlay", "image"):
            img = client.get(f"/api/captures/{rid}/{kind}")
            assert img.status_code == 200 and img.data[:2] == b"\xff\xd8", (kind, img.status_code)
    finally:
        app.extensions["tricho.preview"].close()
        station.stop()
