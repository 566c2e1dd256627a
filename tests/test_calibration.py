"""Scale calibration from dot-grid card images: accuracy, refusals and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.calibration import CalibrationError, GridCalibration, calibrate_grid
from tests.cards import (
    CardSpec,
    hexagonal_grid,
    jittered_grid,
    random_card_spec,
    rectangular_grid,
    render_blank,
    render_card,
    render_random_dots,
    render_scalp,
)

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.003  # 0.3 % on µm per pixel


def rotation_error(measured: float, truth: float) -> float:
    return abs((measured - truth + 45.0) % 90.0 - 45.0)


@pytest.mark.parametrize("pitch, scale, rotation, k1", [
    (250.0, 2.0, 0.0, 0.0),
    (250.0, 5.0, 33.0, -0.02),
    (250.0, 8.0, 89.5, -0.04),
    (500.0, 2.0, 12.0, -0.03),
    (500.0, 4.4, 45.0, 0.0),
    (500.0, 8.0, 71.0, -0.01),
    (1000.0, 3.0, 8.0, -0.02),
    (1000.0, 5.5, 60.0, -0.04),
    (1000.0, 8.0, 27.0, 0.0),
])
def test_accuracy_across_pitch_scale_rotation_distortion(pitch, scale, rotation, k1):
    spec = CardSpec(pitch_um=pitch, um_per_px=scale, rotation_deg=rotation, k1=k1, phase_px=(13.3, -7.7),
                    vignetting=0.3, lighting_tilt=0.1, blur_px=1.2, noise=0.01, jpeg_quality=90)
    cal = calibrate_grid(render_card(spec, seed=1), pitch)
    assert abs(cal.um_per_px / scale - 1) < TOLERANCE
    assert abs(cal.um_per_px_x / scale - 1) < TOLERANCE
    assert abs(cal.um_per_px_y / scale - 1) < TOLERANCE
    assert rotation_error(cal.rotation_deg, rotation) < 0.1
    assert abs(cal.distortion_k1 - k1) < 0.005
    assert cal.residual_px < 0.3
    assert cal.dots >= 12
    assert cal.pitch_um == pitch


def test_accuracy_on_random_station_cards():
    rng = np.random.default_rng(2026)
    errors = []
    for n in range(10):
        spec = random_card_spec(rng)
        cal = calibrate_grid(render_card(spec, seed=n), spec.pitch_um)
        errors.append(abs(cal.um_per_px / spec.um_per_px - 1))
        assert rotation_error(cal.rotation_deg, spec.rotation_deg) < 0.1, spec
    assert max(errors) < TOLERANCE, errors


def test_lens_with_r4_term_and_off_centre_axis():
    spec = CardSpec(pitch_um=250.0, um_per_px=5.0, rotation_deg=14.0, k1=-0.03, k2=0.015,
                    distortion_centre_px=(30.0, -20.0), blur_px=1.0, noise=0.01)
    cal = calibrate_grid(render_card(spec), 250.0)
    assert cal.um_per_px == pytest.approx(5.0, rel=TOLERANCE)
    assert cal.distortion_k1 == pytest.approx(-0.03, abs=0.003)
    assert cal.distortion_k2 == pytest.approx(0.015, abs=0.005)
    assert cal.distortion_centre_px == pytest.approx((30.0, -20.0), abs=3.0)
    assert cal.residual_px < 0.1


def test_non_square_pixels_are_measured_per_axis():
    spec = CardSpec(pitch_um=500.0, um_per_px=5.0, aspect=1.03, rotation_deg=20.0)
    cal = calibrate_grid(render_card(spec), 500.0)
    assert cal.um_per_px_x == pytest.approx(spec.um_per_px_x, rel=TOLERANCE)
    assert cal.um_per_px_y == pytest.approx(spec.um_per_px_y, rel=TOLERANCE)
    assert cal.um_per_px == pytest.approx(5.0, rel=TOLERANCE)


def test_colour_and_16_bit_input():
    grey = render_card(CardSpec(pitch_um=500.0, um_per_px=6.0, rotation_deg=5.0))
    rgb8 = (np.dstack([grey * 0.95, grey, grey * 0.9]) * 255 + 0.5).astype(np.uint8)
    assert calibrate_grid(rgb8, 500.0).um_per_px == pytest.approx(6.0, rel=TOLERANCE)
    grey16 = (grey * 65535 + 0.5).astype(np.uint16)
    assert calibrate_grid(grey16, 500.0).um_per_px == pytest.approx(6.0, rel=TOLERANCE)


def test_to_dict_has_the_documented_keys():
    cal = calibrate_grid(render_card(CardSpec(pitch_um=500.0, um_per_px=4.0)), 500.0)
    d = json.loads(json.dumps(cal.to_dict()))
    assert set(d) == {"um_per_px", "um_per_px_x", "um_per_px_y", "rotation_deg", "distortion_k1", "distortion_k2",
                      "distortion_centre_px", "residual_px", "dots", "pitch_um"}
    assert isinstance(cal, GridCalibration) and d["dots"] == cal.dots


@pytest.mark.parametrize("name, image, pitch, kwargs, match", [
    ("too few dots", lambda: render_card(CardSpec(pitch_um=1000.0, um_per_px=8.0, width=400, height=300)),
     1000.0, {}, r"only \d+ round dots found \(need 12\)"),
    ("1 mm card at 2 µm/px", lambda: render_card(CardSpec(pitch_um=1000.0, um_per_px=2.0)),
     1000.0, {}, r"only \d+ round dots found \(need 12\)"),
    ("random dots", lambda: render_random_dots(150, seed=4), 500.0, {}, "not on a square lattice"),
    ("irregular spacing", lambda: jittered_grid(8.0), 500.0, {}, "deviate .* px RMS|lie on one lattice"),
    ("hexagonal lattice", lambda: hexagonal_grid(), 500.0, {}, "not on a square lattice"),
    ("rectangular lattice", lambda: rectangular_grid(), 500.0, {}, r"spacings differ by 2\d\.\d %"),
    ("blank card", lambda: render_blank(), 500.0, {}, "no dark dots"),
    ("scalp photo", lambda: render_scalp(seed=3), 500.0, {}, "round dots found"),
    ("heavy blur", lambda: render_card(CardSpec(pitch_um=250.0, um_per_px=8.0, blur_px=12.0)),
     250.0, {}, "no dark dots"),
    ("outside expected range", lambda: render_card(CardSpec(pitch_um=500.0, um_per_px=5.0)),
     500.0, {"expected_um_per_px": (1.0, 3.0)}, r"scale 5\.00\d µm/px is outside the expected 1-3"),
    ("wrong pitch", lambda: render_card(CardSpec(pitch_um=500.0, um_per_px=5.0)),
     2500.0, {}, "outside the expected"),
])
def test_refuses_unusable_images_with_a_reason(name, image, pitch, kwargs, match):
    with pytest.raises(CalibrationError, match=match) as exc:
        calibrate_grid(image(), pitch, **kwargs)
    assert str(exc.value).startswith("not a usable grid: ")
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=[[0.5]], pitch_um=500.0), "image must be a numpy array"),
    (dict(image=np.zeros((64, 64), np.float32), pitch_um=-1.0), "pitch_um"),
    (dict(image=np.zeros((64, 64), np.float32), pitch_um="half a mm"), "pitch_um"),
    (dict(image=np.zeros((64, 64), np.float32), pitch_um=500.0, expected_um_per_px=(5.0, 1.0)), "expected_um_per_px"),
    (dict(image=np.zeros((64, 64), np.float32), pitch_um=500.0, expected_um_per_px=3.0), "expected_um_per_px"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match) as exc:
        calibrate_grid(**kwargs)
    assert not isinstance(exc.value, CalibrationError)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(32, 200), w=st.integers(32, 200), seed=st.integers(0, 1000),
       kind=st.sampled_from(["noise", "dots", "flat", "stripes"]))
def test_fuzz_never_crashes(h, w, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        img = rng.random((h, w)).astype(np.float32)
    elif kind == "flat":
        img = np.full((h, w), rng.random(), np.float32)
    elif kind == "stripes":
        img = np.full((h, w), 0.8, np.float32)
        img[:, :: int(rng.integers(2, 9))] = 0.1
    else:
        img = np.full((h, w), 0.85, np.float32)
        for _ in range(int(rng.integers(0, 60))):
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 8)), 0.1, -1)
    try:
        cal = calibrate_grid(img, float(rng.uniform(50, 1000)), expected_um_per_px=(0.5, 50.0))
    except CalibrationError:
        return
    assert np.isfinite(cal.um_per_px) and cal.dots >= 12


# ------------------------------------------------------------------ CLI

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", "calibrate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def card_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cards")
    good = render_card(CardSpec(pitch_um=500.0, um_per_px=4.2, rotation_deg=20.0, k1=-0.02, vignetting=0.2))
    cv2.imwrite(str(d / "card.png"), (good * 255 + 0.5).astype(np.uint8))
    few = render_card(CardSpec(pitch_um=1000.0, um_per_px=8.0, width=400, height=300))
    cv2.imwrite(str(d / "few.png"), (few * 255 + 0.5).astype(np.uint8))
    return d


def test_cli_prints_one_json_object(card_files):
    r = _cli(str(card_files / "card.png"), "--pitch-um", "500", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["um_per_px"] == pytest.approx(4.2, rel=TOLERANCE)
    assert {"um_per_px", "um_per_px_x", "um_per_px_y", "rotation_deg", "distortion_k1", "residual_px", "dots",
            "pitch_um"} <= set(d)


def test_cli_text_output(card_files):
    r = _cli(str(card_files / "card.png"), "--pitch-um", "500")
    assert r.returncode == 0, r.stderr
    assert "µm per pixel" in r.stdout


def test_cli_refusal_exits_2_with_the_reason(card_files):
    path = str(card_files / "few.png")
    r = _cli(path, "--pitch-um", "1000", "--json")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"calibrate: {path}: not a usable grid: only ")
    assert "(need 12)" in r.stderr


def test_cli_missing_file_and_help(card_files):
    r = _cli(str(card_files / "missing.png"), "--pitch-um", "500")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = _cli("--help")
    assert r.returncode == 0
    assert "example:" in r.stdout and "--pitch-um 500" in r.stdout
