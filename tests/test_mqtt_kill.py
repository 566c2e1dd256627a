"""A station process killed with SIGKILL at random points (mid-capture, mid-publish) loses nothing."""
from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.storage import Storage
from tests.mqtt_broker import ConsumerThread, broker, needs_mosquitto, wait_for  # noqa: F401

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parent.parent


def _start(state: Path, port: int, station_id: str, total: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.mqtt_broker", str(state), str(port), station_id, str(total)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 30
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            break
    if line.strip() != b"ready":
        proc.kill()
        raise AssertionError(f"station process did not start: {line!r} {proc.stderr.read().decode()[-2000:]}")
    return proc


def _db_stats(state: Path) -> tuple[list[str], int, str]:
    db = sqlite3.connect(state / "tricho.sqlite3", timeout=30)
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM results ORDER BY seq")]
        waiting = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return ids, waiting, integrity


def test_station_sigkilled_at_random_points(broker, tmp_path):
    state = tmp_path / "state"
    total, kills = 300, 4
    procs = []
    try:
        with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
            for k in range(kills):
                proc = _start(state, broker.port, "st-k", total)
                procs.append(proc)
                time.sleep(random.uniform(0.15, 0.6))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                # the broker publishes the last will at once: the socket died without DISCONNECT
                wait_for(lambda: consumer.sub.db.station_status().get("st-k") == "offline", 10, "the last will")
                ids, waiting, integrity = _db_stats(state)
                assert integrity == "ok"
            proc = _start(state, broker.port, "st-k", total)
            procs.append(proc)
            wait_for(lambda: consumer.sub.db.count() >= total, 60, f"{total} results", interval=0.1)
            wait_for(lambda: _db_stats(state)[1] == 0, 10, "an empty outbox")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            wait_for(lambda: consumer.sub.db.station_status().get("st-k") == "offline", 10, "offline on clean stop")
            ids, waiting, integrity = _db_stats(state)
            assert integrity == "ok" and waiting == 0 and len(ids) == total
            got = consumer.sub.db.ids("st-k")
            assert got == ids, "every stored result exactly once, in order"
            print(f"\nstation SIGKILLed {kills}x while storing/publishing {total} results: {len(got)}/{total} received, "
                  f"{consumer.sub.duplicates} duplicates removed, order kept")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            for f in (p.stdout, p.stderr):
                f.close()
    with Storage(state) as s:  # and the real Storage opens the database again
        assert all(r.published_at for r in s.list_results(limit=1000))
