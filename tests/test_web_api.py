"""The JSON API by bearer token: captures, history (+CSV), calibration, status, live, snapshot."""
from __future__ import annotations

import csv
import io

import cv2
import numpy as np
import pytest

from tests.conftest import bearer, build_app, make_config

H = bearer()


def post_capture(client, patient="P-0042", zone="crown", **extra):
    resp = client.post("/api/captures", json={"patient_id": patient, "zone": zone, **extra}, headers=H)
    assert resp.status_code == 201, resp.json
    return resp.json


def test_token_required_everywhere(client):
    for path in ("/api/status", "/api/captures", "/api/history?patient_id=P-1&zone=crown", "/api/history.csv?patient_id=P-1&zone=crown",
                 "/api/calibration", "/api/live", "/api/snapshot.jpg", "/api/patients"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=bearer("nope")).status_code == 401, path
    for path in ("/api/captures", "/api/calibration/scale", "/api/calibration/flat-field"):
        assert client.post(path, json={}).status_code == 401, path


def test_capture_decide_and_history_by_token(client):
    first = post_capture(client)                     # frame a: sharp, accepted
    second = post_capture(client)                    # frame b: sharp, accepted
    third = post_capture(client)                     # frame c: blurred, left pending
    assert (first["status"], second["status"], third["status"]) == ("accepted", "accepted", "pending")
    assert third["quality"]["passed"] is False and "out of focus" in third["quality"]["reasons"][0]
    resp = client.get("/api/history", query_string={"patient_id": "P-0042", "zone": "crown"}, headers=H)
    h = resp.json
    assert resp.status_code == 200 and h["baseline_id"] == first["id"] and h["accepted_visits"] == 2
    assert [v["id"] for v in h["visits"]] == [first["id"], second["id"]]
    v0, v1 = h["visits"]
    assert v0["is_baseline"] and v0["change"]["density_per_cm2"] == 0
    d0, d1 = v0["density_per_cm2"], v1["density_per_cm2"]
    assert v1["change"]["density_per_cm2"] == pytest.approx(d1 - d0, abs=1e-3)
    assert v1["change"]["density_pct"] == pytest.approx(100 * (d1 - d0) / d0, abs=0.06)
    # accept the pending one; pick the second visit as baseline; include every capture
    assert client.post(f"/api/captures/{third['id']}/accept", headers=H).json["status"] == "accepted"
    h = client.get("/api/history", query_string={"patient_id": "P-0042", "zone": "crown", "baseline": second["id"],
                                                 "all": "1"}, headers=H).json
    assert h["baseline_id"] == second["id"] and len(h["visits"]) == 3
    assert h["visits"][1]["change"]["mean_thickness_um"] == 0
    # CSV: one row per visit, same figures
    resp = client.get("/api/history.csv", query_string={"patient_id": "P-0042", "zone": "crown"}, headers=H)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"] and "P-0042" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.data.decode())))
    assert [r["id"] for r in rows] == [first["id"], second["id"], third["id"]]
    assert rows[0]["is_baseline"] == "true" and float(rows[1]["density_per_cm2"]) == pytest.approx(d1)
    # other patients / zones stay apart
    assert client.get("/api/history", query_string={"patient_id": "P-0042", "zone": "donor"}, headers=H).json["visits"] == []
    pats = client.get("/api/patients", headers=H).json["patients"]
    assert pats == [{"patient_id": "P-0042", "zone": "crown", "accepted_visits": 3,
                     "last_captured_at": third["captured_at"]}]


def test_history_rejects_bad_input(client):
    assert client.get("/api/history", headers=H).status_code == 400
    resp = client.get("/api/history", query_string={"patient_id": "<x>", "zone": "crown"}, headers=H)
    assert resp.status_code == 400 and resp.json["field"] == "patient_id"
    resp = client.get("/api/history", query_string={"patient_id": "P-1", "zone": "crown", "baseline": "nope"}, headers=H)
    assert resp.status_code == 400 and resp.json["field"] == "baseline"


def test_csv_neutralises_formulas_in_notes(client):
    post_capture(client, note="=HYPERLINK(\"http://x\")")
    text = client.get("/api/history.csv", query_string={"patient_id": "P-0042", "zone": "crown"}, headers=H).data.decode()
    row = list(csv.DictReader(io.StringIO(text)))[0]
    assert row["note"].startswith("'=")


def test_status_live_and_snapshot(client, app):
    st = client.get("/api/status", headers=H).json
    assert st["station_id"] == "test-station" and st["warnings"] and "calibrat" in st["warnings"][0]
    live = client.get("/api/live", headers=H).json
    assert live["viewers"] == 0 and live["streaming"] is False
    snap = client.get("/api/snapshot.jpg", headers=H)
    assert snap.status_code == 200 and snap.mimetype == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(snap.data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (760, 1014, 3)
    assert app.extensions["tricho.preview"].encoding is False  # a snapshot does not start the encoder


# -- calibration -----------------------------------------------------------------------------
@pytest.fixture
def card_client(tmp_path, cards_dir):
    from station.service import Station

    cfg = make_config(tmp_path / "state", cards_dir)
    station = Station(cfg)
    station.start()
    app = build_app(cfg, station)
    yield app.test_client(), station
    app.extensions["tricho.preview"].close()
    station.stop()


def test_calibration_scale_flat_field_and_lighting_check(card_client):
    client, station = card_client
    assert client.get("/api/calibration", headers=H).json["scale"] is None
    for bad in ({}, {"pitch_um": "500"}, {"pitch_um": -1}, {"pitch_um": True}):
        resp = client.post("/api/calibration/scale", json=bad, headers=H)
        assert resp.status_code in (400, 422), bad
    assert station.storage.list_calibrations() == []
    resp = client.post("/api/calibration/scale", json={"pitch_um": 500}, headers=H)
    assert resp.status_code == 201, resp.json
    cal = resp.json
    assert cal["kind"] == "scale" and cal["data"]["um_per_px"] == pytest.approx(3.7, rel=0.01)
    assert station.scale().source == "calibration" and station.scale().um_per_px == pytest.approx(3.7, rel=0.01)
    assert client.get("/api/status", headers=H).json["warnings"] == []
    # flat field: reference from the white card, then a check on the dimmer one shows the drift
    resp = client.post("/api/calibration/flat-field", json={"action": "check"}, headers=H)
    assert resp.status_code == 422 and "reference" in resp.json["error"]  # none stored yet (no capture used)
    resp = client.post("/api/calibration/flat-field", json={"action": "reference"}, headers=H)
    assert resp.status_code == 201, resp.json
    assert 0.6 < resp.json["data"]["mean_level"] < 0.9 and "data_base64" not in resp.json["data"]
    resp = client.post("/api/calibration/flat-field", json={"action": "check"}, headers=H)
    assert resp.status_code == 201, resp.json
    drift = resp.json["data"]
    assert drift["level_change"] == pytest.approx(-0.12, abs=0.01) and drift["within_tolerance"] is False
    over = client.get("/api/calibration", headers=H).json
    assert over["scale"]["id"] == cal["id"] and over["lighting_check"]["data"]["reference_id"] == over["flat_field"]["id"]
    assert [c["kind"] for c in over["history"]] == ["lighting_check", "flat_field", "scale"]
    # a non-card frame is refused with the reason (the next frame is the grid card again: use the white one)
    client.post("/api/calibration/flat-field", json={"action": "check"}, headers=H)  # consumes the card frame
    resp = client.post("/api/calibration/scale", json={"pitch_um": 500}, headers=H)  # white card: no dots
    assert resp.status_code == 422 and "grid card" in resp.json["error"]
    assert station.scale().calibration["id"] == cal["id"]
