"""The real Station (fake camera, real analysis core) publishing through OutboxPublisher."""
from __future__ import annotations

import cv2
import pytest

from station import config as cfgmod
from station import payload
from station.service import Station
from tests.mqtt_broker import ConsumerThread, broker, needs_mosquitto, wait_for  # noqa: F401

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]


def test_station_captures_arrive_with_a_valid_payload(broker, tmp_path):
    from tests.phantoms.generator import PhantomSpec, render_phantom

    images = tmp_path / "images"
    images.mkdir()
    for seed in (1, 2):
        img, _ = render_phantom(seed, PhantomSpec(width=640, height=480))
        cv2.imwrite(str(images / f"{seed}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cfg = cfgmod.from_dict({
        "station": {"id": "st-real", "state_dir": str(tmp_path / "state")},
        "camera": {"backend": "fake", "images": str(images), "main_size": [640, 480], "preview_size": [320, 240]},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5, "include_hairs": False},
    })
    with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
        station = Station(cfg)
        station.start(warm_up=False)
        try:
            accepted = [station.capture("P-0042", "crown", accept=True) for _ in range(2)]
            pending = station.capture("P-0042", "crown", accept=False)
            wait_for(lambda: consumer.sub.db.count() == 2, 20, "2 accepted captures")
            station.set_status(pending.id, "accepted")
            wait_for(lambda: consumer.sub.db.count() == 3, 20, "the capture accepted later")
            mqtt = station.status()["mqtt"]
            assert {"enabled", "connected", "broker", "waiting", "last_error", "last_delivered_at"} <= set(mqtt)
            assert mqtt["connected"] and mqtt["waiting"] == 0 and mqtt["last_error"] is None
        finally:
            station.stop()
        wait_for(lambda: consumer.sub.db.station_status().get("st-real") == "offline", 10, "offline on stop")
        assert consumer.sub.db.ids("st-real") == [r.id for r in accepted] + [pending.id]
        import json
        rows = consumer.sub.db._db.execute("SELECT payload FROM results ORDER BY rx").fetchall()
        for (text,) in rows:
            p = json.loads(text)
            assert payload.validation_errors(p) == [] and "hairs" not in p["analysis"]
            assert p["capture"]["exposure_us"] == 8000 and p["capture"]["colour_gains"] == [1.8, 1.6]


def test_a_broker_refusing_the_results_is_said_on_the_pages(tmp_path):
    """Connected, but the clinic's ACL refuses the results: every page warns and says what to change."""
    import html

    from station.web import create_app
    from tests.mqtt_broker import Broker, acl, fast_publisher, mqtt_config
    from tests.test_web_pages import login

    b = Broker(tmp_path / "broker", users={"station": "pw", "clinic": "pw"}, acl=acl("st-acl", allow=False))
    cfg = cfgmod.from_dict({
        "station": {"id": "st-acl", "state_dir": str(tmp_path / "state")},
        "camera": {"backend": "fake", "main_size": [1014, 760], "preview_size": [507, 380]},
        "mqtt": {"host": "127.0.0.1", "port": b.port, "keepalive_s": 5, "username": "station", "password": "pw"},
        "web": {"password": "pw-1234567", "api_token": "t" * 24},
    })
    with b:
        station = Station(cfg)
        station.publisher = fast_publisher(mqtt_config(b, username="station", password="pw"), "st-acl", station.storage)
        station.start(warm_up=False)
        try:
            client = create_app(cfg, station=station, test_config={"TESTING": True}).test_client()
            login(client, "pw-1234567")

            def text(url: str) -> str:
                return " ".join(html.unescape(client.get(url).get_data(as_text=True)).split())

            rec = station.capture("P-0042", "crown", accept=True)
            wait_for(lambda: station.status()["mqtt"]["refused"], 10, "the refusal in status")
            warning = "the clinic's MQTT broker 127.0.0.1:%d refuses this station's results (Not authorized)" % b.port
            page = text(f"/results/{rec.id}")
            assert warning in page and "publish to tricho/st-acl/#" in page
            assert "MQTT: the broker 127.0.0.1:%d refuses the results (Not authorized)" % b.port in page
            assert "the broker 127.0.0.1:%d refuses the results (Not authorized) · last delivery: none since start" \
                % b.port in text("/station")
            b.set_acl(acl("st-acl"))
            wait_for(lambda: station.status()["mqtt"]["waiting"] == 0, 15, "the result delivered after the ACL fix")
            assert station.status()["mqtt"]["refused"] == {}
            page = text("/station")
            assert "refuses" not in page and "connected to 127.0.0.1:%d (MQTT 5)" % b.port in page
        finally:
            station.stop()
