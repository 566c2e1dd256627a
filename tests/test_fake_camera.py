"""The fake camera: replay order, picamera2-shaped metadata, recorded calls, faults."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from station.camera import CameraControls, CameraError, CameraStalled, FakeCamera, make_camera
from station.config import Config

CONTROLS = CameraControls(exposure_us=9000, analogue_gain=1.5, colour_gains=(1.9, 1.4), lens_position=3.0)


@pytest.fixture
def image_dir(tmp_path):
    for i, name in enumerate(["b.png", "a.png", "c.jpg"]):
        img = np.full((120, 160, 3), 40 * (i + 1), np.uint8)
        img[0, 0] = (255, 0, 0)  # red marker: checks RGB order survives the BGR file format
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def make(image_dir, **kw):
    return FakeCamera(image_dir, CONTROLS, main_size=(160, 120), preview_size=(80, 60), **kw)


def test_replays_in_name_order_looping(image_dir):
    with make(image_dir) as cam:
        levels = [int(cam.capture().image[60, 80, 1]) for _ in range(4)]
    # a.png was written second (80), b.png first (40), c.jpg third (120); then a.png again
    assert levels[0] == 80 and levels[1] == 40 and abs(levels[2] - 120) <= 2 and levels[3] == 80


def test_frames_are_rgb_uint8_at_stream_sizes(image_dir):
    with make(image_dir) as cam:
        main = cam.capture()
        lores = cam.preview_frame()
    assert main.image.shape == (120, 160, 3) and main.image.dtype == np.uint8
    assert tuple(main.image[0, 0]) == (255, 0, 0)
    assert lores.image.shape == (60, 80, 3) and lores.stream == "lores"
    assert cam.preview_scale == 2.0


def test_metadata_is_picamera2_shaped(image_dir):
    with make(image_dir) as cam:
        t0 = time.monotonic_ns()
        md = cam.capture().metadata
    assert md["ExposureTime"] == 9000 and md["AnalogueGain"] == 1.5
    assert md["ColourGains"] == (1.9, 1.4) and md["LensPosition"] == 3.0
    assert md["SensorTimestamp"] >= t0 and md["FrameDuration"] >= 9000


def test_records_calls_and_closes_on_exit(image_dir):
    cam = make(image_dir)
    with cam:
        cam.capture()
    assert cam.calls == ["open", "start", "capture", "close"]
    assert not cam.running


def test_preview_is_paced(image_dir):
    with make(image_dir, fps=50) as cam:
        t0 = time.monotonic()
        for _ in range(11):
            cam.preview_frame()
        elapsed = time.monotonic() - t0
    assert elapsed >= 10 / 50 * 0.9


def test_stall_raises_after_timeout(image_dir):
    with make(image_dir, timeout_s=0.2) as cam:
        cam.stalled = True
        t0 = time.monotonic()
        with pytest.raises(CameraStalled, match="0.2 s"):
            cam.capture()
        assert 0.15 < time.monotonic() - t0 < 2


def test_metadata_override_simulates_drift(image_dir):
    with make(image_dir) as cam:
        cam.metadata_override = {"ExposureTime": 12000}
        assert cam.capture().metadata["ExposureTime"] == 12000


def test_errors_name_the_problem(tmp_path, image_dir):
    with pytest.raises(CameraError, match="does not exist"):
        make(tmp_path / "missing").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CameraError, match="no images"):
        make(empty).open()
    cam = make(image_dir)
    with pytest.raises(CameraError, match="not started"):
        cam.capture()
    (image_dir / "d.png").write_bytes(b"garbage")
    with make(image_dir) as cam:
        for _ in range(3):
            cam.capture()
        with pytest.raises(CameraError, match="d.png"):
            cam.capture()


def test_factory_uses_env_and_config(monkeypatch, image_dir):
    cfg = Config().replace(camera={"images": str(image_dir)})
    monkeypatch.setenv("TRICHO_CAMERA", "fake")
    cam = make_camera(cfg)
    assert isinstance(cam, FakeCamera) and cam.folder == image_dir
    monkeypatch.delenv("TRICHO_CAMERA")
    assert isinstance(make_camera(cfg.replace(camera={"backend": "fake"})), FakeCamera)
    with pytest.raises(CameraError, match="unknown camera backend"):
        make_camera(cfg, backend="usb")
