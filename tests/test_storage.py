"""Storage: results with their files, the outbox in the same transaction, crashes and full disks."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from station import storage as storage_mod
from station.records import ResultRecord, new_id, utc_now_iso
from station.storage import NotFound, Storage, StorageError

IMAGE = np.zeros((48, 64, 3), np.uint8)


def record(status="accepted", patient="P-1", zone="crown", **kw) -> ResultRecord:
    base = dict(id=new_id(), captured_at=utc_now_iso(), patient_id=patient, zone=zone, note="n",
                status=status, image_file="", overlay_file=None, um_per_px=4.0, scale_source="config",
                calibration=None, capture={"exposure_us": 8000}, quality={"passed": True},
                analysis={"hair_count": 3})
    base.update(kw)
    return ResultRecord(**base)


@pytest.fixture
def store(tmp_path):
    with Storage(tmp_path / "state") as s:
        yield s


def test_save_and_read_back(store):
    rec = store.save_result(record(), IMAGE, IMAGE, outbox=[("results", b"{}")])
    got = store.get_result(rec.id)
    assert got == rec
    assert store.image_path(got.image_file).is_file() and store.image_path(got.overlay_file).is_file()
    assert got.image_file.endswith(".jpg")
    assert store.outbox_count() == 1
    with pytest.raises(NotFound):
        store.get_result("nope")


def test_wal_mode_and_full_sync(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_list_filters_and_orders(store):
    a = store.save_result(record(patient="P-1", zone="crown"), IMAGE, None)
    b = store.save_result(record(patient="P-1", zone="donor"), IMAGE, None)
    c = store.save_result(record(patient="P-2", zone="crown", status="pending"), IMAGE, None)
    assert [r.id for r in store.list_results()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list_results(patient_id="P-1", oldest_first=True)] == [a.id, b.id]
    assert [r.id for r in store.list_results(status="pending")] == [c.id]
    assert {(p, z) for p, z, *_ in store.patients()} == {("P-1", "crown"), ("P-1", "donor")}


def test_accept_queues_outbox_in_same_transaction(store):
    rec = store.save_result(record(status="pending"), IMAGE, None)
    assert store.outbox_count() == 0
    accepted = store.set_status(rec.id, "accepted", outbox=lambda r: [("results", r.id.encode())])
    assert accepted.status == "accepted"
    [msg] = store.outbox_peek()
    assert msg.payload == rec.id.encode() and msg.result_id == rec.id
    store.set_status(rec.id, "accepted", outbox=lambda r: [("results", b"again")])  # idempotent
    assert store.outbox_count() == 1
    with pytest.raises(ValueError, match="already accepted"):
        store.set_status(rec.id, "discarded")
    store.outbox_delivered(msg.seq)
    assert store.outbox_count() == 0 and store.get_result(rec.id).published_at is not None


def test_outbox_failure_rolls_back_the_status(store):
    rec = store.save_result(record(status="pending"), IMAGE, None)

    def broken(_r):
        raise RuntimeError("payload failed")

    with pytest.raises(RuntimeError):
        store.set_status(rec.id, "accepted", outbox=broken)
    assert store.get_result(rec.id).status == "pending"


def test_full_disk_while_writing_image_stores_nothing(store, monkeypatch):
    calls = []

    def full(path, image, quality=92):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        Path(path).write_bytes(b"x")

    monkeypatch.setattr(storage_mod, "write_image_atomic", full)
    with pytest.raises(StorageError, match="disk is full"):
        store.save_result(record(), IMAGE, IMAGE, outbox=[("results", b"{}")])
    assert store.list_results() == [] and store.outbox_count() == 0
    assert not calls[0].exists()


def test_full_database_keeps_what_was_stored(store):
    kept = store.save_result(record(), IMAGE, None, outbox=[("results", b"{}")])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageError, match="disk is full"):
        store.save_result(record(analysis={"big": "x" * 200_000}), IMAGE, None, outbox=[("results", b"y" * 200_000)])
    assert [r.id for r in store.list_results()] == [kept.id] and store.outbox_count() == 1
    files = list((store.state_dir / "images").rglob("*.jpg"))
    assert len(files) == 1, "the failed capture's image file must be removed"
    assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unwritable_state_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create state directory"):
        Storage(blocker / "state")


def test_corrupt_database_is_a_clear_error(tmp_path):
    (tmp_path / "tricho.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open database"):
        Storage(tmp_path)


def test_calibrations_and_settings(store):
    assert store.latest_calibration("scale") is None
    store.add_calibration("scale", {"um_per_px": 4.1})
    second = store.add_calibration("scale", {"um_per_px": 4.2}, blob=b"\x00\x01")
    assert store.latest_calibration("scale") == second and second.blob == b"\x00\x01"
    assert len(store.list_calibrations("scale")) == 2
    store.set_setting("k", "v1")
    store.set_setting("k", "v2")
    assert store.get_setting("k") == "v2" and store.get_setting("missing", "d") == "d"


WRITER = r"""
import sys, numpy as np
from station.storage import Storage
from station.records import ResultRecord, new_id, utc_now_iso
s = Storage(sys.argv[1])
img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
print("ready", flush=True)
while True:
    r = ResultRecord(id=new_id(), captured_at=utc_now_iso(), patient_id="P-1", zone="crown", note="",
                     status="accepted", image_file="", overlay_file=None, um_per_px=4.0, scale_source="config",
                     calibration=None, capture={}, quality={}, analysis={"hair_count": 1})
    s.save_result(r, img, img, outbox=[("results", r.id.encode())])
"""


def test_sigkill_mid_write_loses_nothing_committed(tmp_path):
    """Power cut stand-in: SIGKILL a writer at random moments; every committed row is whole."""
    state = tmp_path / "state"
    rng = np.random.default_rng(1)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(state)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with Storage(state) as s:
        assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        results = s.list_results(limit=100000)
        assert results, "the writer never committed anything"
        for r in results:
            assert s.image_path(r.image_file).stat().st_size > 0
            assert s.image_path(r.overlay_file).stat().st_size > 0
        queued = {m.result_id for m in s.outbox_peek(limit=100000)}
        assert queued == {r.id for r in results}, "each committed result has exactly its outbox message"
    leftovers = list(state.rglob(".*.tmp"))
    assert len(leftovers) <= 5, "at most one half-written temp file per kill"
