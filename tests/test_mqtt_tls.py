"""TLS with a CA made by the test (openssl CLI): server certificate check and client certificates."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from station.storage import Storage
from tests.mqtt_broker import OPENSSL, Broker, ConsumerThread, add_result, fast_publisher, mqtt_config, needs_mosquitto, wait_for

pytestmark = [needs_mosquitto, pytest.mark.timeout(90),
              pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")]


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1, a client certificate and an unrelated CA."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", f"/CN=tricho test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
             f"/CN={'localhost' if name == 'server' else 'station-01'}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    return {k: d / f"{k}" for k in ("ca.pem", "other-ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture
def tls_broker(tmp_path):
    pki = make_pki(tmp_path / "pki")
    b = Broker(tmp_path / "broker", tls={"cafile": str(pki["ca.pem"]), "certfile": str(pki["server.pem"]),
                                         "keyfile": str(pki["server.key"]), "require_certificate": "true"})
    b.start()
    try:
        yield b, pki
    finally:
        b.stop()


def test_tls_with_client_certificate(tls_broker, tmp_path):
    b, pki = tls_broker
    storage = Storage(tmp_path / "st")
    tls = {"tls": True, "ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]), "key_file": str(pki["client.key"])}
    with ConsumerThread(b.port, tmp_path / "c.sqlite3", **tls) as consumer:
        # a station that does not trust the broker's CA refuses to send anything
        wrong = fast_publisher(mqtt_config(b, **{**tls, "ca_file": str(pki["other-ca.pem"])}), "st-t", storage)
        wrong.start()
        add_result(storage, "st-t", 0)
        wait_for(lambda: "certificate verify failed" in (wrong.status()["last_error"] or ""), 10, "a TLS error in status")
        wrong.stop()
        # no client certificate: the broker (require_certificate) refuses the handshake
        nocert = fast_publisher(mqtt_config(b, tls=True, ca_file=str(pki["ca.pem"])), "st-t", storage)
        nocert.start()
        wait_for(lambda: "client certificate" in (nocert.status()["last_error"] or ""), 10, "an error without a client certificate")
        assert not nocert.status()["connected"]
        nocert.stop()
        assert storage.outbox_count() == 1 and consumer.sub.db.count() == 0
        pub = fast_publisher(mqtt_config(b, **tls), "st-t", storage)
        pub.start()
        for i in range(1, 10):
            add_result(storage, "st-t", i)
        pub.wake()
        wait_for(lambda: consumer.sub.db.count() == 10, 15, "10 results over TLS")
        pub.stop()
        assert consumer.sub.db.ids("st-t") == [r.id for r in storage.list_results(oldest_first=True)]
    storage.close()
