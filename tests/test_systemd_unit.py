"""The systemd unit (systemd-analyze verify, required settings), install.sh --dry-run, and the
notify protocol the unit relies on, spoken by the station to a real datagram socket."""
from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from station.sdnotify import Notifier

ROOT = Path(__file__).parents[1]
UNIT = ROOT / "systemd" / "tricho-station.service"
INSTALL = ROOT / "systemd" / "install.sh"
UNIT_EXEC = "/opt/tricho/venv/bin/tricho"


def unit_settings() -> dict[str, list[str]]:
    """Every key of the unit with all its values (DeviceAllow= etc. repeat)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    # The one complaint we avoid rather than ignore: verify checks that ExecStart's binary
    # exists, and /opt/tricho/venv/bin/tricho only exists on an installed Pi. The test copy
    # points ExecStart at this venv's tricho (or python) instead; nothing else is changed.
    exe = Path(sys.executable).parent / "tricho"
    if not exe.exists():
        exe = Path(sys.executable)
    text = UNIT.read_text()
    assert UNIT_EXEC in text
    copy = tmp_path / "tricho-station.service"
    copy.write_text(text.replace(UNIT_EXEC, str(exe)))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # Untouched, the only complaint is the missing binary.
    raw = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in raw.stderr.splitlines() if ln.strip()]
    assert all(f"Command {UNIT_EXEC} is not executable" in ln for ln in lines), lines


def test_unit_settings():
    s = unit_settings()
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30s"
    assert int(one["TimeoutStartSec"]) >= 300, "the first numba compile needs minutes on a Pi 4"
    assert one["Restart"] == "on-failure"
    assert int(one["StartLimitBurst"]) >= 3 and int(one["StartLimitIntervalSec"]) > 0
    assert one["User"] == "tricho" and set(one["SupplementaryGroups"].split()) == {"video", "gpio"}
    assert one["StateDirectory"] == "tricho"
    assert "tricho" in one["CacheDirectory"].split()
    assert "NUMBA_CACHE_DIR=%C/tricho/numba" in s["Environment"]
    assert one["ConfigurationDirectory"] == "tricho"
    assert one["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip"} <= allowed
    assert one["ProtectSystem"] == "strict" and one["PrivateTmp"] == "yes" and one["NoNewPrivileges"] == "yes"
    assert "PrivateDevices" not in s, "PrivateDevices would hide the camera"
    assert "MemoryDenyWriteExecute" not in s, "numba's JIT needs writable+executable memory"
    assert "--config /etc/tricho/station.toml" in one["ExecStart"]


def test_install_dry_run_changes_nothing():
    before = Path("/etc/systemd/system/tricho-station.service").exists()
    result = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"+ install -m 0644 {UNIT} /etc/systemd/system/tricho-station.service" in out
    assert "+ systemctl daemon-reload" in out
    assert "+ systemctl enable --now tricho-station.service" in out
    assert "usermod --append --groups video,gpio tricho" in out
    assert ("+ useradd --system" in out) != ("# user tricho exists" in out)
    if not Path("/etc/tricho/station.toml").exists():
        assert "station/example.toml /etc/tricho/station.toml" in out
    else:
        assert "exists: kept" in out
    assert Path("/etc/systemd/system/tricho-station.service").exists() == before, "dry run wrote the unit"

    other = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-start", "--venv", "/srv/v"],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    assert "ExecStart overridden" in other.stdout and "enable --now" not in other.stdout
    assert "+ systemctl enable tricho-station.service" in other.stdout

    bad = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may install for real")
def test_install_refuses_without_root():
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "run as root" in result.stderr


def test_notify_protocol_as_systemd_sees_it(tmp_path):
    """What a Type=notify, NotifyAccess=main service manager reads: one datagram per call,
    from this process, READY then WATCHDOG pings then STOPPING."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # like systemd: who sent it
    sock.settimeout(1)
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval_s == 15
    n.ready("ready in 2.0 s")
    n.watchdog()
    n.stopping()
    msgs = []
    for _ in range(3):
        data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[:4], sys.byteorder)
        assert pid == os.getpid(), "NotifyAccess=main only accepts the main PID"
        msgs.append(data.decode())
    assert msgs == ["READY=1\nSTATUS=ready in 2.0 s", "WATCHDOG=1", "STOPPING=1"]
    n.close()
    sock.close()


def test_unit_parses_as_ini():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
    assert parser["Install"]["WantedBy"] == "multi-user.target"
