"""The JSON API with the real Flask app, a real Station, real SQLite and the fake camera."""
from __future__ import annotations

import json
import uuid

import cv2
import numpy as np
import pytest

from station.config import Config
from station.service import Station
from station.storage import StorageError
from station.web import create_app

TOKEN = "test-token-123"


def scalp_image(seed: int, size=(1014, 760)) -> np.ndarray:
    """Skin-coloured background with dark curved shafts (enough for the pipeline to run)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (200, 160, 140)
    noise = rng.normal(0, 4, (h, w, 1))
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    for _ in range(12):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, np.pi)
        pts = np.array([[x0 + t * np.cos(angle) + 8 * np.sin(t / 40), y0 + t * np.sin(angle)]
                        for t in np.linspace(0, 220, 30)], np.int32)
        cv2.polylines(img, [pts], False, (60, 40, 30), thickness=int(rng.integers(5, 14)), lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for i in range(3):
        cv2.imwrite(str(folder / f"frame_{i}.png"), cv2.cvtColor(scalp_image(i), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def api_config(tmp_path, images_dir):
    return Config().replace(
        station={"state_dir": str(tmp_path / "state"), "id": "test-station"},
        camera={"backend": "fake", "images": str(images_dir), "main_size": [1014, 760], "preview_size": [507, 380]},
        web={"api_token": TOKEN},
    )


@pytest.fixture
def api_station(api_config):
    station = Station(api_config)
    station.start()
    yield station
    station.stop()


@pytest.fixture
def api(api_config, api_station):
    app = create_app(api_config, station=api_station, test_config={"TESTING": True})
    return app.test_client()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_capture(api, body, headers=AUTH):
    return api.post("/api/captures", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def test_capture_analyse_store_and_read_back(api, api_station):
    resp = post_capture(api, {"patient_id": "P-0042", "zone": "crown", "note": "baseline", "accept": True})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    uuid.UUID(body["id"])
    assert resp.headers["Location"] == f"/api/captures/{body['id']}"
    assert body["patient_id"] == "P-0042" and body["zone"] == "crown" and body["status"] == "accepted"
    assert body["scale_source"] == "config" and body["um_per_px"] == 4.0
    assert body["capture"]["exposure_us"] == 8000 and body["capture"]["width"] == 1014
    assert body["analysis"]["hair_count"] >= 1
    assert "passed" in body["quality"]
    again = api.get(f"/api/captures/{body['id']}", headers=AUTH)
    assert again.status_code == 200 and again.get_json() == body
    image = api.get(body["links"]["image"], headers=AUTH)
    assert image.status_code == 200 and image.data[:2] == b"\xff\xd8"
    overlay = api.get(body["links"]["overlay"], headers=AUTH)
    assert overlay.status_code == 200
    # accepted → exactly one result message queued for MQTT (MQTT off: it waits)
    assert api_station.storage.outbox_count() == 1


def test_pending_then_accept_or_discard(api, api_station):
    pending = post_capture(api, {"patient_id": "P-1", "zone": "donor", "accept": False}).get_json()
    assert pending["status"] == "pending" and api_station.storage.outbox_count() == 0
    accepted = api.post(f"/api/captures/{pending['id']}/accept", headers=AUTH)
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "accepted"
    assert api_station.storage.outbox_count() == 1
    conflict = api.post(f"/api/captures/{pending['id']}/discard", headers=AUTH)
    assert conflict.status_code == 409
    assert api.post("/api/captures/nope/accept", headers=AUTH).status_code == 404


def test_free_text_zone_and_listing(api):
    post_capture(api, {"patient_id": "P-2", "zone": "left temple 2", "accept": True})
    listed = api.get("/api/captures?patient_id=P-2", headers=AUTH).get_json()["captures"]
    assert [c["zone"] for c in listed] == ["left temple 2"]
    assert api.get("/api/captures?limit=x", headers=AUTH).status_code == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                                     {"Authorization": "Bearer"}])
def test_token_required(api, headers):
    resp = post_capture(api, {"patient_id": "P-1", "zone": "crown"}, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.get("/api/status", headers=headers).status_code == 401


@pytest.mark.parametrize("body, field, text", [
    ({"zone": "crown"}, "patient_id", "required"),
    ({"patient_id": "Jane Doe", "zone": "crown"}, "patient_id", "pseudonymous"),
    ({"patient_id": "<script>", "zone": "crown"}, "patient_id", "must be"),
    ({"patient_id": "P-1"}, "zone", "required"),
    ({"patient_id": "P-1", "zone": "crown; DROP TABLE"}, "zone", "must be one of"),
    ({"patient_id": "P-1", "zone": "crown", "note": "x" * 3000}, "note", "at most 2000"),
    ({"patient_id": "P-1", "zone": "crown", "accept": "yes"}, "accept", "true, false"),
    ({"patient_id": "P-1", "zone": "crown", "colour": 1}, "colour", "unknown field"),
])
def test_bad_input_is_400_with_reason_and_stores_nothing(api, api_station, body, field, text):
    resp = post_capture(api, body)
    assert resp.status_code == 400
    err = resp.get_json()
    assert err["field"] == field and text in err["error"]
    assert api_station.storage.list_results() == []
    assert api_station.camera.calls.count("capture") == 0


def test_non_json_body(api):
    resp = api.post("/api/captures", data="patient_id=P-1", headers=AUTH)
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]


def test_storage_failure_halfway_loses_nothing(api, api_station, monkeypatch):
    first = post_capture(api, {"patient_id": "P-1", "zone": "crown", "accept": True}).get_json()
    real = api_station.storage._transaction

    def failing(what, work):
        raise StorageError(f"{what}: the disk is full; free space in the state directory (nothing was stored)")

    monkeypatch.setattr(api_station.storage, "_transaction", failing)
    resp = post_capture(api, {"patient_id": "P-1", "zone": "crown", "accept": True})
    assert resp.status_code == 507 and "disk is full" in resp.get_json()["error"]
    monkeypatch.setattr(api_station.storage, "_transaction", real)
    assert [r.id for r in api_station.storage.list_results()] == [first["id"]]
    assert api_station.storage.outbox_count() == 1
    images = list((api_station.storage.state_dir / "images").rglob("*.jpg"))
    assert len(images) == 2, "only the first capture's image and overlay remain"


def test_stalled_camera_is_503(api, api_station):
    api_station.camera.timeout_s = 0.2
    api_station.camera.stalled = True
    resp = post_capture(api, {"patient_id": "P-1", "zone": "crown"})
    assert resp.status_code == 503 and "stalled" in resp.get_json()["error"]
    assert api_station.storage.list_results() == []


def test_status(api, api_station):
    status = api.get("/api/status", headers=AUTH).get_json()
    assert status["station_id"] == "test-station"
    assert status["camera"]["backend"] == "fake" and status["camera"]["running"]
    assert status["scale"] == {"um_per_px": 4.0, "source": "config", "calibration_id": None, "age_days": None}
    assert any("no scale calibration" in w for w in status["warnings"])
    assert status["outbox"]["waiting"] == 0 and status["mqtt"]["enabled"] is False


def test_calibration_is_used_and_recorded(api, api_station):
    cal = api_station.storage.add_calibration("scale", {"um_per_px": 3.5, "residual_px": 0.1})
    body = post_capture(api, {"patient_id": "P-1", "zone": "crown", "accept": True}).get_json()
    assert body["um_per_px"] == 3.5 and body["scale_source"] == "calibration"
    assert body["calibration"]["id"] == cal.id
    status = api.get("/api/status", headers=AUTH).get_json()
    assert status["scale"]["source"] == "calibration" and not any("calibration" in w for w in status["warnings"])


def test_generated_token_persists(tmp_path, images_dir):
    cfg = Config().replace(station={"state_dir": str(tmp_path / "s")},
                           camera={"backend": "fake", "images": str(images_dir), "main_size": [1014, 760],
                                   "preview_size": [507, 380]})
    station = Station(cfg)
    app1 = create_app(cfg, station=station, start=False)
    app2 = create_app(cfg, station=station, start=False)
    token = app1.config["API_TOKEN"]
    assert len(token) >= 24 and token == app2.config["API_TOKEN"]
    assert (tmp_path / "s" / "api_token").stat().st_mode & 0o777 == 0o600
    station.storage.close()


def test_overlay_never_draws_on_the_frame():
    import core

    frame = scalp_image(5)
    before = frame.copy()
    overlay = core.draw_overlay(frame, core.analyze(frame, 4.0))
    assert np.array_equal(frame, before) and not np.array_equal(overlay, frame)


def test_quality_gate_thresholds_come_from_the_config(tmp_path, images_dir):
    cfg = Config().replace(
        station={"state_dir": str(tmp_path / "s")}, web={"api_token": TOKEN}, quality={"min_sharpness": 0.99},
        camera={"backend": "fake", "images": str(images_dir), "main_size": [1014, 760], "preview_size": [507, 380]})
    station = Station(cfg)
    station.start()
    try:
        record = station.capture("P-1", "crown")
    finally:
        station.stop()
    assert record.status == "pending", "a failed gate keeps the capture for the technician to retake or accept"
    assert record.quality["passed"] is False
    assert any("out of focus" in r and "0.99" in r for r in record.quality["reasons"])


def test_flat_field_and_lighting_check_are_applied_and_recorded(api, api_station):
    from core.flat_field import compare_lighting, flat_field_from_reference

    yy, xx = np.mgrid[0:760, 0:1014]
    r2 = ((xx - 507) / 507) ** 2 + ((yy - 380) / 380) ** 2
    card = np.clip(0.8 * (1 - 0.25 * r2), 0, 1).astype(np.float32)
    field = flat_field_from_reference(card)
    ref = api_station.storage.add_calibration("flat_field", {"mean_level": field.mean_level}, field.to_bytes())
    drift = compare_lighting(field, card * 0.9)
    api_station.storage.add_calibration("lighting_check", {"reference_id": ref.id, "within_tolerance": drift.within_tolerance,
                                                           "level_change": drift.level_change})
    body = post_capture(api, {"patient_id": "P-1", "zone": "crown", "accept": True}).get_json()
    assert body["calibration"]["flat_field"]["id"] == ref.id
    assert body["calibration"]["lighting_check"]["within_tolerance"] is False
    corrected = api_station.flat_field_correct(scalp_image(0))
    assert corrected.dtype == np.float32 and corrected.shape == (760, 1014, 3)
    [msg] = api_station.storage.outbox_peek()
    assert json.loads(msg.payload)["calibration"]["flat_field"]["id"] == ref.id


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_publish_images_queues_the_jpeg_on_both_accept_paths(tmp_path, images_dir, image_format):
    cfg = Config().replace(
        station={"state_dir": str(tmp_path / "s"), "image_format": image_format}, mqtt={"publish_images": True},
        camera={"backend": "fake", "images": str(images_dir), "main_size": [1014, 760], "preview_size": [507, 380]})
    station = Station(cfg)
    station.start()
    try:
        auto = station.capture("P-1", "crown", accept=True)
        pending = station.capture("P-1", "crown", accept=False)
        station.set_status(pending.id, "accepted")
        messages = station.storage.outbox_peek()
    finally:
        station.stop()
    topics = [m.topic_suffix for m in messages]
    assert topics == ["results", f"images/{auto.id}", "results", f"images/{pending.id}"]
    for m in messages[1::2]:
        assert m.payload[:2] == b"\xff\xd8", "image messages are JPEG whatever the stored format"
        assert cv2.imdecode(np.frombuffer(m.payload, np.uint8), cv2.IMREAD_COLOR).shape == (760, 1014, 3)
