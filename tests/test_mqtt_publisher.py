"""OutboxPublisher against a real Mosquitto: outages, restarts, flaps, credentials, TLS, load."""
from __future__ import annotations

import json
import random
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from station import payload
from station.storage import Storage
from tests.mqtt_broker import (Broker, ConsumerThread, FlakyProxy, acl, add_result, broker,  # noqa: F401
                               fast_publisher, mqtt_config, needs_mosquitto, persistent_broker, wait_for)

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


def stored_ids(storage: Storage) -> list[str]:
    return [r.id for r in storage.list_results(limit=100000, oldest_first=True)]


def assert_exactly_once_in_order(consumer: ConsumerThread, storage: Storage, station_id: str) -> None:
    expected = stored_ids(storage)
    got = consumer.sub.db.ids(station_id)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected), f"missing {len(set(expected) - set(got))}"
    assert got == expected, "order not kept"


class RawCollector:
    """A plain paho subscriber that records (topic, payload, retain) of everything it receives."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_results_status_and_schema(broker, tmp_path):
    storage = Storage(tmp_path / "st")
    status = RawCollector(broker.port, "tricho/+/status")
    with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
        pub = fast_publisher(mqtt_config(broker), "st-a", storage)
        pub.start()
        for i in range(30):
            add_result(storage, "st-a", i)
            pub.wake()
        wait_for(lambda: consumer.sub.db.count() == 30, 15, "30 results")
        wait_for(lambda: storage.outbox_count() == 0, 5, "an empty outbox")
        st = pub.status()
        assert st["enabled"] and st["connected"] and st["waiting"] == 0 and st["last_error"] is None
        assert st["broker"] == f"127.0.0.1:{broker.port}" and st["last_delivered_at"]
        assert_exactly_once_in_order(consumer, storage, "st-a")
        # every received payload validates; published_at is stamped once delivered
        for row in consumer.sub.db._db.execute("SELECT payload FROM results"):
            assert payload.validation_errors(json.loads(row[0])) == []
        assert all(r.published_at for r in storage.list_results(limit=100))
        assert "hairs=" in consumer.out.getvalue() and "density=" in consumer.out.getvalue()
        pub.stop()
        wait_for(lambda: consumer.sub.db.station_status().get("st-a") == "offline", 5, "offline status")
    assert [(t, p) for t, p, _ in status.messages] == [("tricho/st-a/status", b"online"), ("tricho/st-a/status", b"offline")]
    status.close()
    # retained: a late subscriber sees the last status at once
    late = RawCollector(broker.port, "tricho/st-a/status")
    wait_for(lambda: late.messages, 5, "the retained status")
    assert late.messages[0] == ("tricho/st-a/status", b"offline", True)
    late.close()
    storage.close()


def test_images_topic_when_enabled(broker, tmp_path):
    storage = Storage(tmp_path / "st")
    images = RawCollector(broker.port, "tricho/st-i/images/#")
    pub = fast_publisher(mqtt_config(broker, publish_images=True), "st-i", storage)
    pub.start()
    recs = [add_result(storage, "st-i", i, image_jpeg=b"\xff\xd8jpeg%d" % i) for i in range(3)]
    pub.wake()
    wait_for(lambda: len(images.messages) == 3, 10, "3 images")
    assert [t for t, _, _ in images.messages] == [f"tricho/st-i/images/{r.id}" for r in recs]
    assert images.messages[1][1] == b"\xff\xd8jpeg1" and not images.messages[0][2]
    pub.stop()
    images.close()
    storage.close()


def test_broker_down_then_back_everything_arrives(persistent_broker, tmp_path):
    b = persistent_broker
    storage = Storage(tmp_path / "st")
    # The clinic consumer has a persistent session (clean_start=False, session expiry) on the broker.
    with ConsumerThread(b.port, tmp_path / "c.sqlite3", client_id="clinic-1") as consumer:
        b.stop()  # the broker goes down (for "hours"); captures go on
        pub = fast_publisher(mqtt_config(b), "st-d", storage)
        pub.start()
        try:
            for i in range(40):
                add_result(storage, "st-d", i)
                pub.wake()
            wait_for(lambda: pub.status()["last_error"], 5, "an error in status")
            time.sleep(1.0)  # several failed reconnects
            st = pub.status()
            assert st["connected"] is False and st["waiting"] == 40 and "cannot connect" in st["last_error"]
            assert st["last_delivered_at"] is None
            b.start()
            wait_for(lambda: consumer.sub.db.count() == 40, 20, "40 results after the outage")
            wait_for(lambda: pub.status()["waiting"] == 0, 5, "an empty outbox")
            assert pub.status()["connected"] and pub.status()["last_error"] is None
            assert_exactly_once_in_order(consumer, storage, "st-d")
        finally:
            pub.stop()
    storage.close()


def test_broker_restarted_three_times_during_200_captures(persistent_broker, tmp_path):
    b = persistent_broker
    storage = Storage(tmp_path / "st")
    n, restarts = 200, 3
    with ConsumerThread(b.port, tmp_path / "c.sqlite3", client_id="clinic-r") as consumer:
        pub = fast_publisher(mqtt_config(b), "st-r", storage)
        pub.start()
        restart_at = [k * n // (restarts + 1) + random.randint(-10, 10) for k in range(1, restarts + 1)]
        for i in range(n):
            add_result(storage, "st-r", i)
            pub.wake()
            if i in restart_at:
                b.restart(down_s=random.uniform(0.05, 0.4))
            time.sleep(0.003)
        wait_for(lambda: consumer.sub.db.count() == n, 30, f"{n} results")
        wait_for(lambda: storage.outbox_count() == 0, 10, "an empty outbox")
        pub.stop()
        assert_exactly_once_in_order(consumer, storage, "st-r")
        print(f"\nbroker restarted {restarts}x during {n} captures: {consumer.sub.db.count()}/{n} received, "
              f"{consumer.sub.duplicates} duplicates removed, order kept; publisher connects={pub.connects}")
        assert pub.connects >= 2
    storage.close()


def test_network_flapping(broker, tmp_path):
    proxy = FlakyProxy(broker.port)
    storage = Storage(tmp_path / "st")
    n, cuts = 200, 0
    try:
        with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
            pub = fast_publisher(mqtt_config(proxy.port), "st-f", storage)
            pub.start()
            for i in range(n):
                add_result(storage, "st-f", i)
                pub.wake()
                if i % 25 == 10:
                    cuts += 1
                    proxy.cut()
                time.sleep(0.003)
            wait_for(lambda: consumer.sub.db.count() == n, 30, f"{n} results")
            wait_for(lambda: storage.outbox_count() == 0, 10, "an empty outbox")
            pub.stop()
            assert_exactly_once_in_order(consumer, storage, "st-f")
            print(f"\nnetwork cut {cuts}x during {n} captures: {n}/{n} received, "
                  f"{consumer.sub.duplicates} duplicates removed, order kept; connects={pub.connects}")
            assert pub.connects >= 3
    finally:
        proxy.close()
        storage.close()


def test_mqtt311_fallback(broker, tmp_path):
    proxy = FlakyProxy(broker.port, mqtt311_only=True)
    storage = Storage(tmp_path / "st")
    try:
        with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
            pub = fast_publisher(mqtt_config(proxy.port), "st-3", storage)
            pub.start()
            for i in range(10):
                add_result(storage, "st-3", i)
            pub.wake()
            wait_for(lambda: consumer.sub.db.count() == 10, 15, "10 results over MQTT 3.1.1")
            assert proxy.rejected_v5 >= 1
            assert pub.status()["protocol"] == "MQTT 3.1.1"
            wait_for(lambda: storage.outbox_count() == 0, 5, "an empty outbox")
            pub.stop()
            assert_exactly_once_in_order(consumer, storage, "st-3")
    finally:
        proxy.close()
        storage.close()


def test_rejected_credentials_keep_the_results(tmp_path):
    b = Broker(tmp_path / "broker", users={"station": "right", "clinic": "clinicpw"})
    storage = Storage(tmp_path / "st")
    with b:
        with ConsumerThread(b.port, tmp_path / "c.sqlite3", username="clinic", password="clinicpw") as consumer:
            bad = fast_publisher(mqtt_config(b, username="station", password="wrong"), "st-c", storage)
            bad.start()
            for i in range(5):
                add_result(storage, "st-c", i)
            bad.wake()
            wait_for(lambda: "not authorised" in (bad.status()["last_error"] or ""), 10, "'not authorised' in status")
            time.sleep(0.5)
            st = bad.status()
            assert st["connected"] is False and st["waiting"] == 5
            bad.stop()
            assert storage.outbox_count() == 5 and consumer.sub.db.count() == 0
            good = fast_publisher(mqtt_config(b, username="station", password="right"), "st-c", storage)
            good.start()
            wait_for(lambda: consumer.sub.db.count() == 5, 10, "5 results with the right password")
            good.stop()
            assert_exactly_once_in_order(consumer, storage, "st-c")
    storage.close()


def test_puback_failure_reason_code_keeps_the_row(tmp_path):
    """MQTT 5: a PUBACK with 0x87 (not authorized by the ACL) must not delete the outbox row, nor let a later one overtake it."""
    b = Broker(tmp_path / "broker", users={"station": "pw", "clinic": "pw"}, acl=acl("st-acl", allow=False))
    storage = Storage(tmp_path / "st")
    with b:
        with ConsumerThread(b.port, tmp_path / "c.sqlite3", username="clinic", password="pw") as consumer:
            pub = fast_publisher(mqtt_config(b, username="station", password="pw"), "st-acl", storage)
            pub.start()
            for i in range(4):
                add_result(storage, "st-acl", i)
            pub.wake()
            wait_for(lambda: "rejected" in (pub.status()["last_error"] or ""), 10, "a PUBACK failure in status")
            assert "Not authorized" in pub.status()["last_error"]
            assert pub.status()["refused"] == {"results": "Not authorized"}
            # While refused, only the oldest row is retried: were later rows in flight when the
            # clinic fixes its ACL, one of them could be accepted before the refused oldest.
            wait_for(lambda: storage.outbox_peek(limit=1)[0].attempts >= 3, 10, "the oldest row retried")
            assert all(m.attempts <= 1 for m in storage.outbox_peek(limit=10)[1:])
            assert storage.outbox_count() == 4 and consumer.sub.db.count() == 0
            assert all(r.published_at is None for r in storage.list_results())
            b.set_acl(acl("st-acl"))  # the clinic fixes its ACL; the station retries by itself
            wait_for(lambda: consumer.sub.db.count() == 4, 15, "4 results after the ACL fix")
            wait_for(lambda: storage.outbox_count() == 0, 5, "an empty outbox")
            assert pub.status()["refused"] == {}
            pub.stop()
            assert_exactly_once_in_order(consumer, storage, "st-acl")
    storage.close()


def test_refused_images_do_not_hold_results_back(tmp_path):
    """A clinic whose ACL takes results but not images still gets every result, in order; images stay queued."""
    acl = ("user station\ntopic write tricho/st-img/status\ntopic write tricho/st-img/results\n\n"
           "user clinic\ntopic read tricho/#\n")
    b = Broker(tmp_path / "broker", users={"station": "pw", "clinic": "pw"}, acl=acl)
    storage = Storage(tmp_path / "st")
    with b:
        with ConsumerThread(b.port, tmp_path / "c.sqlite3", username="clinic", password="pw") as consumer:
            pub = fast_publisher(mqtt_config(b, username="station", password="pw", publish_images=True),
                                 "st-img", storage)
            pub.start()
            add_result(storage, "st-img", 0, image_jpeg=b"\xff\xd8jpeg0")
            pub.wake()
            wait_for(lambda: "rejected" in (pub.status()["last_error"] or ""), 10, "the first image refused")
            for i in range(1, 6):  # captured while the oldest row is a refused image
                add_result(storage, "st-img", i, image_jpeg=b"\xff\xd8jpeg%d" % i)
                pub.wake()
            wait_for(lambda: consumer.sub.db.count() == 6, 20, "6 results past the refused images")
            pub.stop()
            assert_exactly_once_in_order(consumer, storage, "st-img")
            left = storage.outbox_peek(limit=20)
            assert len(left) == 6 and all(m.topic_suffix.startswith("images/") for m in left)
            assert pub.status()["refused"] == {"images": "Not authorized"}
    storage.close()


def test_load_ten_stations_burst(broker, tmp_path):
    stations, per_station = 10, 100
    storages = [Storage(tmp_path / f"st{k}") for k in range(stations)]
    pubs = [fast_publisher(mqtt_config(broker), f"load-{k}", storages[k]) for k in range(stations)]
    with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
        for p in pubs:
            p.start()
        wait_for(lambda: all(p.connected for p in pubs), 10, "10 connected stations")
        t0 = time.perf_counter()

        def capture(k: int) -> None:
            for i in range(per_station):
                add_result(storages[k], f"load-{k}", i, hairs=40)
                pubs[k].wake()

        threads = [threading.Thread(target=capture, args=(k,)) for k in range(stations)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        t_stored = time.perf_counter() - t0
        size = len(payload.outbox_messages(storages[0].list_results(limit=1)[0], "load-0")[0][1])
        total = stations * per_station
        wait_for(lambda: consumer.sub.db.count() == total, 60, f"{total} results", interval=0.1)
        elapsed = time.perf_counter() - t0
        for p in pubs:
            p.stop()
        for k in range(stations):
            assert storages[k].outbox_count() == 0
            assert_exactly_once_in_order(consumer, storages[k], f"load-{k}")
        print(f"\nload: {stations} stations x {per_station} results = {total} messages "
              f"(~{size / 1000:.1f} kB each) stored in {t_stored:.1f} s, "
              f"all received in {elapsed:.1f} s ({total / elapsed:.0f} msg/s), duplicates {consumer.sub.duplicates}")
    for s in storages:
        s.close()
