"""A full disk: a clear StorageError, no corruption, and everything stored still gets delivered."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from station.storage import Storage, StorageError
from tests.mqtt_broker import ConsumerThread, add_result, broker, fast_publisher, mqtt_config, needs_mosquitto, wait_for  # noqa: F401

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8M"):
    """A tiny tmpfs when we may mount one (root), else None (the test then caps SQLite's page count)."""
    path.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not os.environ.get("TRICHO_TEST_NO_MOUNT"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, timeout=30).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def test_full_disk_clear_error_no_corruption_then_delivered(broker, tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk) as mounted:
        state = disk / "state"
        storage = Storage(state)
        ballast = disk / "ballast"
        if mounted:
            ballast.write_bytes(b"\1" * 7_000_000)  # what the operator deletes to free space
        else:
            pages = storage._db.execute("PRAGMA page_count").fetchone()[0]
            storage._db.execute(f"PRAGMA max_page_count = {pages + 60}")
        saved = []
        error = None
        for i in range(5000):
            try:
                saved.append(add_result(storage, "st-full", i, hairs=40).id)
            except StorageError as exc:
                error = str(exc)
                break
        assert error is not None, "the disk never filled"
        assert "disk is full" in error and "nothing was stored" in error
        # a second attempt fails the same clear way and leaves nothing half-written
        with pytest.raises(StorageError, match="disk is full"):
            add_result(storage, "st-full", 99999, hairs=40)
        db = sqlite3.connect(state / "tricho.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [r[0] for r in db.execute("SELECT id FROM results ORDER BY seq")]
        outbox = [r[0] for r in db.execute("SELECT result_id FROM outbox ORDER BY seq")]
        images = [r[0] for r in db.execute("SELECT image_file FROM results")]
        db.close()
        assert rows == saved and outbox == saved, "each stored result has exactly its outbox row"
        assert all((state / f).exists() for f in images)
        assert len(saved) > 5
        # the station keeps answering status while full
        assert storage.outbox_count() == len(saved)
        # publishing goes on while the disk is full (removing delivered rows may fail: retried, not resent)
        with ConsumerThread(broker.port, tmp_path / "c.sqlite3") as consumer:
            pub = fast_publisher(mqtt_config(broker), "st-full", storage)
            pub.start()
            wait_for(lambda: consumer.sub.db.count() == len(saved), 20, f"{len(saved)} results")
            stuck = storage.outbox_count()
            # space is freed: the delivered rows leave the outbox without being sent again
            if mounted:
                ballast.unlink()
            else:
                storage._db.execute("PRAGMA max_page_count = 1073741823")
            wait_for(lambda: storage.outbox_count() == 0, 10, "an empty outbox")
            pub.stop()
            assert consumer.sub.db.ids("st-full") == saved
            assert consumer.sub.duplicates == 0
        print(f"\nfull disk ({'tmpfs 8 MB with 7 MB ballast' if mounted else 'SQLite max_page_count'}): {len(saved)} results stored, "
              f"then: {error!r}; integrity ok; {len(saved)}/{len(saved)} delivered while full ({stuck} rows could not be removed until space was freed, 0 resent)")
        storage.close()
