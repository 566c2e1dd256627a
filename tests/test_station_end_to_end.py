"""The whole station as a technician and a clinic server see it: the real `tricho station`
process (fake camera, real analysis, SQLite, waitress) publishing to a real Mosquitto,
captures made over HTTP, the station SIGKILLed mid-capture and the broker restarted.
Every accepted capture must reach the reference consumer exactly once, in order."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from station.storage import Storage
from tests.mqtt_broker import ConsumerThread, broker, free_port, needs_mosquitto, wait_for  # noqa: F401
from tests.test_api import scalp_image

pytestmark = [needs_mosquitto, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e2e-token"


class StationProcess:
    def __init__(self, config: Path, web_port: int, log: Path) -> None:
        self.config, self.web_port, self.log = config, web_port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "StationProcess":
        self.logfile = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "station.cli", "station", "--config", str(self.config)],
                                     cwd=ROOT, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        wait_for(lambda: self.request("GET", "/api/status")[0] == 200 or self.proc.poll() is not None, 90,
                 "the station's web API", interval=0.2)
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return self

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, {}

    def capture(self, i: int) -> tuple[int, dict]:
        return self.request("POST", "/api/captures", {"patient_id": f"P-{i % 3:04d}", "zone": "crown", "accept": True})

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.logfile.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.logfile.close()
        return code


def test_station_process_survives_kills_and_broker_restarts(broker, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), cv2.cvtColor(scalp_image(i), cv2.COLOR_RGB2BGR))
    web_port = free_port()
    config = tmp_path / "station.toml"
    config.write_text(f"""
[station]
id = "e2e"
state_dir = "{tmp_path / 'state'}"
[camera]
backend = "fake"
images = "{frames}"
main_size = [1014, 760]
preview_size = [507, 380]
[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
[web]
port = {web_port}
api_token = "{TOKEN}"
""")
    station = StationProcess(config, web_port, tmp_path / "station.log")
    rng = random.Random(7)
    created: list[str] = []
    with ConsumerThread(broker.port, tmp_path / "clinic.sqlite3") as clinic:
        station.start()
        for round_ in range(3):
            for i in range(4):
                status, body = station.capture(len(created))
                assert status == 201, body
                created.append(body["id"])
            # SIGKILL while a capture request is in flight: it is either stored whole or not at all
            t = threading.Thread(target=station.capture, args=(len(created),))
            t.start()
            time.sleep(rng.uniform(0.0, 0.3))
            station.kill()
            t.join(35)
            station.start()
        # broker down: captures go on and wait in the outbox
        broker.stop()
        for i in range(3):
            status, body = station.capture(len(created))
            assert status == 201
            created.append(body["id"])
        waiting = station.request("GET", "/api/status")[1]["outbox"]["waiting"]
        assert waiting >= 3
        broker.start()
        with Storage(tmp_path / "state") as s:
            stored = [r.id for r in s.list_results(limit=1000, oldest_first=True)]
        assert set(created) <= set(stored), "every capture answered 201 is stored"
        try:
            wait_for(lambda: clinic.sub.db.count("e2e") >= len(stored), 150, f"{len(stored)} results at the clinic",
                     interval=0.2)
        except AssertionError:
            status = station.request("GET", "/api/status")[1]
            raise AssertionError(f"clinic has {clinic.sub.db.count('e2e')}/{len(stored)}; station status "
                                 f"{status.get('mqtt')} outbox {status.get('outbox')}; consumer errors "
                                 f"{clinic.err.getvalue()[-1500:]}; station log {station.log.read_text()[-3000:]}")
        assert clinic.sub.db.ids("e2e") == stored, "every stored result exactly once, in stored order"
        wait_for(lambda: station.request("GET", "/api/status")[1]["outbox"]["waiting"] == 0, 30, "an empty outbox")
        assert station.terminate() == 0
        wait_for(lambda: clinic.sub.db.station_status().get("e2e") == "offline", 10, "offline status on stop")
    print(f"\n{len(stored)} captures over HTTP, station SIGKILLed 3x mid-capture, broker down for 3 captures: "
          f"{len(stored)}/{len(stored)} at the clinic, {clinic.sub.duplicates} duplicates removed, order kept")
