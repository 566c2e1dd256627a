"""The config loader: defaults, every error path, the shipped example, the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from station import config as cfgmod
from station.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return cfgmod.load(path)


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_text(tmp_path, "")
    assert cfg == Config()
    assert cfg.web.host == "127.0.0.1"
    assert cfg.mqtt.host == "" and cfg.mqtt.topic_prefix == "tricho"


def test_values_are_typed_and_frozen(tmp_path):
    cfg = load_text(tmp_path, """
[station]
id = "clinic-a_2"
[camera]
backend = "fake"
exposure_us = 12000
analogue_gain = 2
colour_gains = [2, 1.5]
main_size = [1014, 760]
preview_size = [507, 380]
[lighting]
backend = "gpio"
pin = 12
brightness = 0.5
[mqtt]
host = "broker.local"
port = 8883
tls = true
username = "st"
password = "pw"
[web]
host = "0.0.0.0"
port = 9000
api_token = "t"
""")
    assert cfg.station.id == "clinic-a_2"
    assert cfg.camera.analogue_gain == 2.0 and isinstance(cfg.camera.analogue_gain, float)
    assert cfg.camera.colour_gains == (2.0, 1.5)
    assert cfg.camera.main_size == (1014, 760)
    assert cfg.lighting.pin == 12 and cfg.mqtt.tls is True and cfg.web.port == 9000
    with pytest.raises(AttributeError):
        cfg.camera.exposure_us = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, expected", [
    ("[camera]\nexposur_us = 100", "[camera] exposur_us is not a known key; allowed keys: backend"),
    ("[kamera]\n", "[kamera] is not a known section"),
    ("[camera]\nexposure_us = -5", "[camera] exposure_us = -5: must be an integer from 100 to 1000000"),
    ("[camera]\nexposure_us = 8000.5", "[camera] exposure_us = 8000.5: must be an integer"),
    ("[camera]\nexposure_us = \"8000\"", "[camera] exposure_us = '8000': must be an integer"),
    ("[camera]\nbackend = \"usb\"", "[camera] backend = 'usb': must be one of 'picamera2', 'fake'"),
    ("[camera]\ncolour_gains = [1.5]", "[camera] colour_gains = [1.5]: must be a list of 2 numbers"),
    ("[camera]\ncolour_gains = [1.5, \"x\"]", "colour_gains = [1.5, 'x']: must be a list of 2 numbers"),
    ("[camera]\num_per_px = 0", "[camera] um_per_px = 0: must be a number from 0.2 to 100"),
    ("[camera]\npreview_size = [4000, 3000]", "[camera] preview_size = [4000, 3000]: must not exceed main_size"),
    ("[lighting]\nbrightness = 1.5", "[lighting] brightness = 1.5: must be a number from 0 to 1"),
    ("[mqtt]\ntls = \"yes\"", "[mqtt] tls = 'yes': must be true or false"),
    ("[mqtt]\nport = 70000", "[mqtt] port = 70000: must be an integer from 1 to 65535"),
    ("[mqtt]\ntopic_prefix = \"a/#\"", "[mqtt] topic_prefix = 'a/#': no wildcards"),
    ("[station]\nid = \"a b\"", "[station] id = 'a b': must be letters, digits"),
    ("camera = 3", "[camera] must be a table of keys"),
    ("[camera\n", "not valid TOML"),
])
def test_bad_values_name_key_value_and_what_is_allowed(tmp_path, text, expected):
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, text)
    assert expected in str(exc.value)
    assert str(tmp_path / "station.toml") in str(exc.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        cfgmod.load(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        cfgmod.load(bad)


def test_env_selects_fake_camera(monkeypatch):
    cfg = Config()
    assert cfg.camera_backend == "picamera2"
    monkeypatch.setenv("TRICHO_CAMERA", "fake")
    assert cfg.camera_backend == "fake"


def test_state_dir_follows_systemd(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tricho")
    assert Config().state_path == Path("/var/lib/tricho")
    assert Config().replace(station={"state_dir": "/x"}).state_path == Path("/x")


def test_replace_validates():
    with pytest.raises(ConfigError, match="exposure_us"):
        Config().replace(camera={"exposure_us": 1})


def test_shipped_example_is_current_and_valid():
    shipped = ROOT / "station" / "example.toml"
    assert shipped.read_text(encoding="utf-8").strip() == cfgmod.annotated_toml().strip(), \
        "station/example.toml is stale: regenerate with python -c 'from station.config import annotated_toml; print(annotated_toml())'"
    assert cfgmod.load(shipped) == Config()


def test_every_key_round_trips_through_toml(tmp_path):
    cfg = Config().replace(mqtt={"host": "h", "password": "secret"}, camera={"images": "/tmp/x"})
    path = tmp_path / "rt.toml"
    path.write_text(cfgmod.to_toml(cfg, mask_secrets=False), encoding="utf-8")
    assert cfgmod.load(path) == cfg
    assert "secret" not in cfgmod.to_toml(cfg)


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[mqtt]\nhost = \"b\"\npassword = \"hunter2\"\n")
    out = subprocess.run([sys.executable, "-m", "station.cli", "check-config", str(good)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'host = "b"' in out.stdout and "hunter2" not in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[web]\nprot = 1\n")
    out = subprocess.run([sys.executable, "-m", "station.cli", "check-config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "[web] prot is not a known key" in out.stderr
