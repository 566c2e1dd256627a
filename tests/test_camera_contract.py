"""The Camera contract, run against every backend.

- ``fake``: FakeCamera replaying a folder of images;
- ``picamera2-standin``: Picamera2Camera over the stand-in picamera2 module (tests/picamera2_standin.py);
- ``picamera2-hardware``: Picamera2Camera on a real Raspberry Pi camera. Marked ``hardware`` and
  skipped unless TRICHO_HARDWARE=1 and picamera2 imports (run on the Pi:
  ``TRICHO_HARDWARE=1 pytest -m hardware tests/test_camera_contract.py``).
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from station.camera import Camera, CameraControls, CameraError, CameraStalled, FakeCamera, Frame
from station.camera.picamera2_backend import Picamera2Camera
from tests import picamera2_standin

CONTROLS = CameraControls(exposure_us=8000, analogue_gain=1.0, colour_gains=(1.8, 1.6))
MAIN, PREVIEW = (640, 480), (320, 240)


def _hardware_available() -> bool:
    if os.environ.get("TRICHO_HARDWARE") != "1":
        return False
    try:
        import picamera2  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=[
    "fake",
    "picamera2-standin",
    pytest.param("picamera2-hardware", marks=[
        pytest.mark.hardware,
        pytest.mark.skipif(not _hardware_available(), reason="needs TRICHO_HARDWARE=1 and picamera2 with a camera")]),
])
def backend(request, tmp_path, monkeypatch):
    """(make, stall): make(timeout_s) builds an unopened camera; stall(camera) makes it stop delivering."""
    kind = request.param
    if kind == "fake":
        images = tmp_path / "images"
        images.mkdir()
        cv2.imwrite(str(images / "a.png"), np.full((MAIN[1], MAIN[0], 3), (50, 100, 200), np.uint8))

        def make(timeout_s=0.3):
            return FakeCamera(images, CONTROLS, MAIN, PREVIEW, timeout_s, fps=50)

        def stall(cam):
            cam.stalled = True
        return make, stall
    if kind == "picamera2-standin":
        picamera2_standin.install(monkeypatch)

        def make(timeout_s=0.3):
            return Picamera2Camera(CONTROLS, MAIN, PREVIEW, timeout_s)

        def stall(cam):
            cam.picam2.stalled = True
        return make, stall

    # The station's own config (sizes and controls fit the module: 4:3 for IMX477, 16:9 for IMX708).
    from station import config as cfgmod

    path = os.environ.get("TRICHO_CONFIG", "/etc/tricho/station.toml")
    cam_cfg = cfgmod.load(path).camera if os.path.exists(path) else cfgmod.Config().camera
    hw_controls = CameraControls.from_config(cam_cfg)

    def make(timeout_s=5.0):
        return Picamera2Camera(hw_controls, cam_cfg.main_size, cam_cfg.preview_size, timeout_s,
                               tuning_file=cam_cfg.tuning_file or None, preview_fps=cam_cfg.preview_fps)
    return make, None


def expected_main(cam: Camera) -> tuple[int, int, int]:
    return (cam.main_size[1], cam.main_size[0], 3)


def test_open_start_capture_close(backend):
    make, _ = backend
    cam = make()
    assert not cam.running
    with cam as c:
        assert c is cam and cam.running
        frame = cam.capture()
        assert isinstance(frame, Frame) and frame.stream == "main"
        assert frame.image.shape == expected_main(cam) and frame.image.dtype == np.uint8
    assert not cam.running


def test_capture_metadata_matches_the_controls(backend):
    make, _ = backend
    with make() as cam:
        md = cam.capture().metadata
        c = cam.controls
        assert abs(md["ExposureTime"] - c.exposure_us) <= 0.05 * c.exposure_us
        assert abs(md["AnalogueGain"] - c.analogue_gain) <= 0.05 * c.analogue_gain
        assert isinstance(md["SensorTimestamp"], int)
        info = Frame(np.zeros((4, 6, 3), np.uint8), md).capture_info()
        assert info["exposure_us"] == md["ExposureTime"] and info["width"] == 6


def test_capture_is_exposed_after_the_call(backend):
    make, _ = backend
    with make() as cam:
        cam.preview_frame()
        t = time.monotonic_ns()
        md = cam.capture().metadata
        # The frame is from after the call (picamera2's flush even guarantees its exposure
        # began after it: SensorTimestamp - ExposureTime >= t; the fake stamps creation time).
        assert md["SensorTimestamp"] >= t


def test_preview_has_the_same_field_of_view(backend):
    make, _ = backend
    with make() as cam:
        frame = cam.preview_frame()
        assert frame.stream == "lores"
        assert frame.image.shape == (cam.preview_size[1], cam.preview_size[0], 3)
        assert frame.image.dtype == np.uint8
        main = cam.capture().image
        assert cam.preview_scale == pytest.approx(cam.main_size[0] / cam.preview_size[0])
        assert cam.main_size[0] / cam.main_size[1] == pytest.approx(cam.preview_size[0] / cam.preview_size[1], rel=0.01)
        # Same content: the preview is the main image scaled down (hardware: skipped, the scene moves).
        if not _hardware_available():
            small = cv2.resize(main, cam.preview_size, interpolation=cv2.INTER_AREA)
            assert np.abs(small.astype(int) - frame.image.astype(int)).mean() < 4


def test_frames_need_a_started_camera(backend):
    make, _ = backend
    cam = make()
    with pytest.raises(CameraError):
        cam.capture()
    cam.close()


def test_close_is_idempotent(backend):
    make, _ = backend
    cam = make()
    cam.open()
    cam.start()
    cam.close()
    cam.close()
    assert not cam.running


def test_stall_raises_camera_stalled_within_the_timeout(backend):
    make, stall = backend
    if stall is None:
        pytest.skip("cannot unplug a real camera from a test")
    with make(timeout_s=0.2) as cam:
        cam.preview_frame()
        stall(cam)
        t0 = time.monotonic()
        with pytest.raises(CameraStalled):
            cam.preview_frame()
        with pytest.raises(CameraStalled):
            cam.capture()
        assert time.monotonic() - t0 < 2.0
    assert not cam.running
