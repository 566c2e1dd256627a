"""``tricho subscribe``: the reference consumer, run as a real process and in-process."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from station import payload
from station.storage import Storage
from tests.mqtt_broker import (ConsumerThread, add_result, broker, fast_publisher, mqtt_config,  # noqa: F401
                               needs_mosquitto, synthetic_record, wait_for)

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parent.parent


def test_help_has_an_example():
    out = subprocess.run([sys.executable, "-m", "station.cli", "subscribe", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "example:" in out.stdout and "--share" in out.stdout and "tricho subscribe --host" in out.stdout


def _subscribe(port: int, db: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "station.cli", "subscribe", "--host", "127.0.0.1", "--port", str(port),
         "--db", str(db), "--client-id", "clinic-cli", *extra],
        cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    c = sqlite3.connect(db, timeout=10)
    try:
        return c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def _raw_publish(port: int, topic: str, data: bytes) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    c.publish(topic, data, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_subscribe_process_killed_and_restarted_misses_nothing(broker, tmp_path):
    db, log = tmp_path / "clinic.sqlite3", tmp_path / "subscribe.log"
    storage = Storage(tmp_path / "st")
    sub = _subscribe(broker.port, db, log)
    procs = [sub]
    pub = fast_publisher(mqtt_config(broker), "st-s", storage)
    try:
        wait_for(lambda: "subscribing to" in log.read_text(errors="replace") if log.exists() else False, 30, "the subscriber")
        pub.start()
        for i in range(40):
            add_result(storage, "st-s", i)
            pub.wake()
            if i == 20:
                sub.send_signal(signal.SIGKILL)  # un-acked messages stay queued in its broker session
                sub.wait(10)
            time.sleep(0.005)
        wait_for(lambda: storage.outbox_count() == 0, 15, "the station's outbox delivered")
        assert _count(db) <= 40
        sub = _subscribe(broker.port, db, log)  # same client id: the broker hands over what it queued
        procs.append(sub)
        wait_for(lambda: _count(db) == 40, 30, "40 results in the consumer's database")
        # a duplicate (same bytes, same id) and an invalid payload
        first = storage.list_results(oldest_first=True, limit=1)[0]
        _raw_publish(broker.port, "tricho/st-s/results", payload.outbox_messages(first, "st-s")[0][1])
        _raw_publish(broker.port, "tricho/st-s/results", b'{"schema": "tricho.result/1", "id": "x"}')
        wait_for(lambda: "invalid result" in log.read_text(errors="replace"), 15, "the invalid line")
        wait_for(lambda: "(duplicate)" in log.read_text(errors="replace"), 15, "the duplicate line")
        sub.send_signal(signal.SIGTERM)
        assert sub.wait(15) == 0
        text = log.read_text(errors="replace")
        assert _count(db) == 40
        c = sqlite3.connect(db)
        ids = [r[0] for r in c.execute("SELECT id FROM results ORDER BY rx")]
        assert json.loads(c.execute("SELECT payload FROM results LIMIT 1").fetchone()[0])["schema"] == "tricho.result/1.1"
        c.close()
        assert ids == [r.id for r in storage.list_results(oldest_first=True, limit=100)]
        line = next(ln for ln in text.splitlines() if first.id in ln and "(duplicate)" not in ln)
        assert f"{first.captured_at} st-s P-0001 crown hairs=10 density=2040.8/cm² id={first.id}" == line
        assert "invalid result on tricho/st-s/results (not stored)" in text
        assert "st-s status=online" in text
    finally:
        pub.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        storage.close()


def test_shared_subscription_splits_the_load(broker, tmp_path):
    storage = Storage(tmp_path / "st")
    db = tmp_path / "clinic.sqlite3"  # two workers of the same clinic, one database
    with ConsumerThread(broker.port, db, share="clinic", client_id="w1") as w1, \
            ConsumerThread(broker.port, db, share="clinic", client_id="w2") as w2:
        assert w1.sub.config.results_topic == "$share/clinic/tricho/+/results"
        pub = fast_publisher(mqtt_config(broker), "st-sh", storage)
        pub.start()
        for i in range(60):
            add_result(storage, "st-sh", i)
            pub.wake()
        wait_for(lambda: w1.sub.db.count() == 60, 20, "60 results across both workers")
        pub.stop()
        assert w1.sub.stored > 0 and w2.sub.stored > 0
        assert w1.sub.stored + w2.sub.stored == 60 and w1.sub.duplicates + w2.sub.duplicates == 0
    storage.close()


def test_consumer_rejects_station_mismatch(broker, tmp_path):
    rec = synthetic_record(1)
    data = payload.outbox_messages(rec, "st-real")[0][1]
    with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as c:
        _raw_publish(broker.port, "tricho/st-fake/results", data)
        wait_for(lambda: c.sub.invalid == 1, 10, "the rejected message")
        assert c.sub.db.count() == 0 and "does not match the topic" in c.err.getvalue()
