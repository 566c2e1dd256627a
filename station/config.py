"""The station's TOML config, loaded into frozen dataclasses.

Every key has a default; unknown keys and bad values are rejected with a message that
names the section, the key, the value and what is allowed (like Frigate's extra="forbid").
"""
from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

ZONES = ("hairline", "temples", "mid-scalp", "crown", "donor")
CAMERA_BACKENDS = ("picamera2", "fake")
LIGHTING_BACKENDS = ("gpio", "none")
SECRET_KEYS = {"password", "api_token"}
# Selects the camera backend regardless of the config file (like GPIOZERO_PIN_FACTORY).
CAMERA_ENV = "TRICHO_CAMERA"
SAMPLES_DIR = Path(__file__).parent / "samples"


class ConfigError(ValueError):
    """The config file is unreadable, or a key or value in it is wrong."""


def _opt(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
         hi: float | None = None, length: int | None = None) -> Any:
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "length": length}
    if isinstance(default, (list, dict)):
        raise TypeError("mutable default")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class StationConfig:
    id: str = _opt("station-01", "Station name, used in MQTT topics and results")
    state_dir: str = _opt("", "Database, images and outbox; empty: $STATE_DIRECTORY (systemd) or ./state")
    image_format: str = _opt("jpg", "Format of stored captures", choices=("jpg", "png"))
    jpeg_quality: int = _opt(95, "JPEG quality of stored captures", lo=50, hi=100)


@dataclass(frozen=True)
class CameraConfig:
    backend: str = _opt("picamera2", "Camera backend (env TRICHO_CAMERA overrides)", choices=CAMERA_BACKENDS)
    images: str = _opt("", "fake backend: folder of images replayed in name order, looping; empty: bundled samples")
    exposure_us: int = _opt(8000, "Fixed exposure time in µs", lo=100, hi=1_000_000)
    analogue_gain: float = _opt(1.0, "Fixed analogue gain", lo=1.0, hi=16.0)
    colour_gains: tuple[float, float] = _opt((1.8, 1.6), "Fixed white balance (red, blue) gains", lo=0.0, hi=32.0, length=2)
    lens_position: float = _opt(-1.0, "Fixed focus in dioptres on autofocus modules; -1: no focus control", lo=-1.0, hi=32.0)
    noise_reduction_mode: str = _opt("fast", "libcamera noise reduction", choices=("off", "fast", "high_quality"))
    main_size: tuple[int, int] = _opt((2028, 1520), "Full-resolution capture size (width, height) in px", lo=64, hi=10000, length=2)
    preview_size: tuple[int, int] = _opt((1014, 760), "Preview (lores) size in px, same field of view as main", lo=64, hi=10000, length=2)
    preview_fps: float = _opt(20.0, "Preview frame rate", lo=1.0, hi=120.0)
    tuning_file: str = _opt("", "Optional libcamera tuning file passed to Picamera2(tuning=...)")
    capture_timeout_s: float = _opt(5.0, "Longest wait for a frame before the camera counts as stalled", lo=0.1, hi=120.0)
    um_per_px: float = _opt(4.0, "Scale in µm per px of the main stream, used while no calibration is stored", lo=0.2, hi=100.0)


@dataclass(frozen=True)
class LightingConfig:
    backend: str = _opt("none", "LED ring driver", choices=LIGHTING_BACKENDS)
    pin: int = _opt(18, "GPIO (BCM) pin of the LED ring", lo=0, hi=27)
    brightness: float = _opt(0.8, "Fixed LED brightness, 0-1 (PWM duty cycle)", lo=0.0, hi=1.0)
    pwm_frequency_hz: int = _opt(2000, "PWM frequency; >= 1000 Hz avoids rolling-shutter banding", lo=0, hi=100_000)
    pwm: bool = _opt(True, "false: plain on/off pin for a constant-current driver")
    pin_factory: str = _opt("", "gpiozero pin factory (lgpio on a Pi 5); empty: gpiozero's default", choices=("", "lgpio", "rpigpio", "pigpio", "native", "mock"))


@dataclass(frozen=True)
class AnalysisConfig:
    vellus_threshold_um: float = _opt(40.0, "Shafts at most this thick count as vellus (TrichoScan: 40 µm)", lo=5.0, hi=200.0)
    min_visible_length_um: float = _opt(150.0, "A hair counts when at least this much shaft is visible", lo=10.0, hi=5000.0)
    calibration_max_age_days: int = _opt(90, "A scale calibration older than this is flagged", lo=1, hi=3650)


@dataclass(frozen=True)
class QualityConfig:
    """The capture quality gate (core.image_quality.QualityThresholds); a failed check keeps a capture pending."""

    min_sharpness: float = _opt(0.44, "Focus: lowest normalised sharpness (0-1)", lo=0.0, hi=1.0)
    max_clipped_fraction: float = _opt(0.02, "Exposure: largest fraction of skin pixels clipped white", lo=0.0, hi=1.0)
    max_dark_fraction: float = _opt(0.05, "Exposure: largest fraction of skin pixels near black", lo=0.0, hi=1.0)
    max_glare_fraction: float = _opt(0.03, "Largest fraction of skin covered by specular glare", lo=0.0, hi=1.0)
    glare_max_mean_level: float = _opt(0.7, "Saturation on a frame brighter than this counts as overexposure, not glare", lo=0.0, hi=1.0)
    max_motion_blur: float = _opt(0.5, "Largest directional blur (0 none - 1 strong)", lo=0.0, hi=1.0)
    min_usable_fraction: float = _opt(0.6, "Smallest fraction of the frame that is usable skin", lo=0.0, hi=1.0)
    min_mean_level: float = _opt(0.12, "Darkest acceptable mean level (0-1)", lo=0.0, hi=1.0)
    max_mean_level: float = _opt(0.9, "Brightest acceptable mean level (0-1)", lo=0.0, hi=1.0)
    lighting_tolerance: float = _opt(0.05, "White-card check: largest relative drift from the lighting baseline", lo=0.001, hi=0.5)


@dataclass(frozen=True)
class MqttConfig:
    host: str = _opt("", "Broker host; empty: MQTT off, results stay queued in the outbox")
    port: int = _opt(1883, "Broker port (8883 usual for TLS)", lo=1, hi=65535)
    tls: bool = _opt(False, "Connect with TLS")
    ca_file: str = _opt("", "TLS: CA certificate file; empty: system CAs")
    cert_file: str = _opt("", "TLS: client certificate file (optional)")
    key_file: str = _opt("", "TLS: client key file (optional)")
    username: str = _opt("", "Broker user name")
    password: str = _opt("", "Broker password")
    topic_prefix: str = _opt("tricho", "Topics are {prefix}/{station_id}/results|status")
    keepalive_s: int = _opt(30, "MQTT keepalive in seconds", lo=5, hi=3600)
    publish_images: bool = _opt(False, "Also publish the JPEG to {prefix}/{station_id}/images/{result_id}")
    include_hairs: bool = _opt(True, "Include the per-hair list in result payloads")


@dataclass(frozen=True)
class WebConfig:
    host: str = _opt("127.0.0.1", "Address the web page binds to; 0.0.0.0 opens it to the LAN")
    port: int = _opt(8080, "Web port", lo=1, hi=65535)
    api_token: str = _opt("", "Bearer token for /api/; empty: generated once and kept in state_dir/api_token")
    password: str = _opt("", "Technician password (plain or a werkzeug hash); empty: generated and kept in state_dir")
    capture_button_pin: int = _opt(-1, "GPIO (BCM) pin of a hardware capture button or foot pedal (to ground); -1: none", lo=-1, hi=27)


@dataclass(frozen=True)
class Config:
    station: StationConfig = field(default_factory=StationConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)

    @property
    def state_path(self) -> Path:
        return Path(self.station.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")

    @property
    def camera_backend(self) -> str:
        """The backend in force: the TRICHO_CAMERA environment variable beats the file."""
        return os.environ.get(CAMERA_ENV) or self.camera.backend

    @property
    def fake_images_dir(self) -> Path:
        return Path(self.camera.images) if self.camera.images else SAMPLES_DIR

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some keys changed, validated like the file: replace(camera={"backend": "fake"})."""
        return from_dict(merge(to_dict(self), sections))


def _allowed(f: dataclasses.Field, typ: Any) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    kind = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}.get(typ)
    if kind is None:  # tuple
        inner = get_args(typ)[0]
        kind = f"a list of {m['length']} {'integers' if inner is int else 'numbers'}"
    lo, hi = m.get("lo"), m.get("hi")
    if lo is not None and hi is not None and typ is not str:
        kind += f" from {_num(lo)} to {_num(hi)}"
    return kind


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _check_scalar(value: Any, typ: Any) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def _convert(section: str, f: dataclasses.Field, typ: Any, value: Any) -> Any:
    m = f.metadata
    where = f"[{section}] {f.name} = {value!r}"
    bad = ConfigError(f"{where}: must be {_allowed(f, typ)}")
    if get_origin(typ) is tuple:
        inner = get_args(typ)[0]
        if not isinstance(value, (list, tuple)) or len(value) != m["length"]:
            raise bad
        if not all(_check_scalar(v, inner) for v in value):
            raise bad
        items = [inner(v) for v in value]
    else:
        if not _check_scalar(value, typ):
            raise bad
        items = [typ(value)]
    if typ not in (str, bool):
        lo, hi = m.get("lo"), m.get("hi")
        if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in items):
            raise bad
    if m.get("choices") and value not in m["choices"]:
        raise bad
    return tuple(items) if get_origin(typ) is tuple else items[0]


def _section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table of keys, got {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"[{name}] {unknown[0]} is not a known key; allowed keys: {', '.join(fields)}"
        )
    values = {k: _convert(name, fields[k], hints[k], v) for k, v in raw.items()}
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML, rejecting unknown sections and keys."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"[{unknown[0]}] is not a known section; allowed sections: {', '.join(sections)}")
    hints = get_type_hints(Config)
    built = {name: _section(hints[name], name, raw) for name, raw in data.items()}
    cfg = Config(**built)
    if not cfg.station.id or not all(c.isalnum() or c in "-_." for c in cfg.station.id):
        raise ConfigError(f"[station] id = {cfg.station.id!r}: must be letters, digits, '-', '_' or '.'")
    if any(c in cfg.mqtt.topic_prefix for c in "+#") or cfg.mqtt.topic_prefix.strip("/") != cfg.mqtt.topic_prefix:
        raise ConfigError(f"[mqtt] topic_prefix = {cfg.mqtt.topic_prefix!r}: no wildcards (+ #) and no leading or trailing '/'")
    pw, ph = cfg.camera.preview_size
    mw, mh = cfg.camera.main_size
    if pw > mw or ph > mh:
        raise ConfigError(f"[camera] preview_size = {[pw, ph]!r}: must not exceed main_size {[mw, mh]!r}")
    return cfg


def load(path: str | os.PathLike) -> Config:
    """Load and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: config file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def to_dict(cfg: Config, *, mask_secrets: bool = False) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sec in dataclasses.fields(cfg):
        values = {}
        for f in dataclasses.fields(getattr(cfg, sec.name)):
            v = getattr(getattr(cfg, sec.name), f.name)
            if mask_secrets and f.name in SECRET_KEYS and v:
                v = "***"
            values[f.name] = list(v) if isinstance(v, tuple) else v
        out[sec.name] = values
    return out


def merge(base: dict[str, dict[str, Any]], override: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in base.items()}
    for sec, values in override.items():
        merged.setdefault(sec, {}).update(values)
    return merged


def to_toml(cfg: Config, *, mask_secrets: bool = True) -> str:
    """The effective config as TOML text (what check-config prints)."""
    lines = []
    for sec, values in to_dict(cfg, mask_secrets=mask_secrets).items():
        lines.append(f"[{sec}]")
        for key, v in values.items():
            lines.append(f"{key} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def annotated_toml() -> str:
    """Every key with its default and help text: the shipped example config (station/example.toml)."""
    lines = [
        "# tricho-station config. Every key is optional; the values shown are the defaults.",
        "# Check a file with: tricho check-config FILE",
        "",
    ]
    defaults = to_dict(Config())
    for sec in dataclasses.fields(Config):
        lines.append(f"[{sec.name}]")
        for f in dataclasses.fields(get_type_hints(Config)[sec.name]):
            typ = get_type_hints(get_type_hints(Config)[sec.name])[f.name]
            lines.append(f"# {f.metadata['help']} ({_allowed(f, typ)})")
            lines.append(f"{f.name} = {_toml_value(defaults[sec.name][f.name])}")
        lines.append("")
    return "\n".join(lines)
