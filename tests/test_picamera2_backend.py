"""The picamera2 backend against a stand-in picamera2 module: configuration, controls, checks, faults."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from station.camera import CameraControls, CameraError, CameraStalled, ExposureMismatch
from station.camera.picamera2_backend import Picamera2Camera, bgr_array_to_rgb, yuv420_to_rgb
from tests import picamera2_standin
from tests.picamera2_standin import RGB_LEVELS

CONTROLS = CameraControls(exposure_us=8000, analogue_gain=1.5, colour_gains=(1.8, 1.6),
                          lens_position=None, noise_reduction_mode="fast")


@pytest.fixture
def standin(monkeypatch):
    return picamera2_standin.install(monkeypatch)


def make(controls=CONTROLS, **kw) -> Picamera2Camera:
    kw.setdefault("timeout_s", 0.2)
    return Picamera2Camera(controls, kw.pop("main_size", (640, 480)), kw.pop("preview_size", (320, 240)), **kw)


def test_module_imports_without_picamera2_and_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    cam = make()
    with pytest.raises(CameraError, match="python3-picamera2.*--system-site-packages"):
        cam.open()
    cam.close()  # still fine


def test_importing_the_station_does_not_import_picamera2():
    code = ("import sys, station.camera, station.service, station.lighting, station.sdnotify, "
            "station.commands.station, station.camera.picamera2_backend; "
            "assert 'picamera2' not in sys.modules and 'gpiozero' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_one_configuration_with_fixed_controls_pinned_mode_and_full_crop(standin):
    with make() as cam:
        p = cam.picam2
        configures = [c for c in p.calls if c[0] == "configure"]
        assert len(configures) == 1, "one configuration for preview and capture"
        cfg = configures[0][1]
        assert cfg["main"] == {"size": (640, 480), "format": "RGB888"}
        assert cfg["lores"] == {"size": (320, 240), "format": "YUV420"}
        # The smallest mode that reads the whole sensor and covers main_size: 2028x1520 12-bit.
        assert cfg["sensor"] == {"output_size": (2028, 1520), "bit_depth": 12}
        ctl = cfg["controls"]
        assert ctl["AeEnable"] is False and ctl["AwbEnable"] is False
        assert ctl["ExposureTime"] == 8000 and ctl["AnalogueGain"] == 1.5
        assert ctl["ColourGains"] == (1.8, 1.6)
        assert ctl["NoiseReductionMode"] == 1
        assert ctl["ScalerCrop"] == (0, 0, 4056, 3040)
        lo, hi = ctl["FrameDurationLimits"]
        assert lo == hi >= 8000 + 1000, "frame duration must leave room for the exposure"
        assert "AfMode" not in ctl and "LensPosition" not in ctl
        assert [c[0] for c in p.calls] == ["init", "configure", "start"]
        cam.capture()
        cam.preview_frame()
        assert not any(c[0] in ("configure", "set_controls", "switch_mode") for c in p.calls[3:]), \
            "capture must not switch modes or change controls"


def test_frame_duration_grows_with_long_exposure(standin):
    long = CameraControls(60000, 1.0, (1.8, 1.6))
    with make(long, preview_fps=20) as cam:
        lo, hi = cam.configuration["controls"]["FrameDurationLimits"]
        assert lo == hi == 61000


def test_autofocus_module_gets_manual_focus(standin):
    standin.has_autofocus = True
    with make(CameraControls(8000, 1.0, (1.8, 1.6), lens_position=7.5)) as cam:
        ctl = cam.configuration["controls"]
        assert ctl["AfMode"] == 0 and ctl["LensPosition"] == 7.5
        assert cam.capture().metadata["LensPosition"] == 7.5


def test_lens_position_ignored_without_autofocus(standin, caplog):
    with make(CameraControls(8000, 1.0, (1.8, 1.6), lens_position=7.5)) as cam:
        assert "AfMode" not in cam.configuration["controls"]
    assert "no focus control" in caplog.text


def test_aspect_ratio_mismatch_is_refused_and_camera_closed(standin):
    cam = make(main_size=(640, 360), preview_size=(320, 180))
    with pytest.raises(CameraError, match="square"):
        cam.open()
    assert standin.instances[0].closed and cam.picam2 is None


def test_pi5_lores_is_rgb(standin):
    standin.platform = SimpleNamespace(name="PISP")
    with make() as cam:
        assert cam.configuration["lores"]["format"] == "RGB888"
        frame = cam.preview_frame()
        assert tuple(frame.image[0, -1]) == RGB_LEVELS


def test_capture_returns_rgb_main_frame_with_its_metadata(standin):
    with make() as cam:
        frame = cam.capture()
        assert frame.stream == "main"
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert tuple(frame.image[0, -1]) == RGB_LEVELS, "RGB888 arrays are B,G,R and must be reversed"
        assert frame.image.flags.c_contiguous
        info = frame.capture_info()
        assert info["exposure_us"] == 7997 and info["analogue_gain"] == 1.5, "records what the frame had"
        p = cam.picam2
        flushes = [c[1] for c in p.calls if c[0] == "capture_request"]
        assert flushes[-1] and isinstance(flushes[-1], int), "capture flushes frames exposed before the call"
        assert p.released == p.issued, "every request is released"


def test_preview_is_lores_yuv_converted_to_rgb(standin):
    with make() as cam:
        frame = cam.preview_frame()
        assert frame.stream == "lores" and frame.image.shape == (240, 320, 3)
        assert np.abs(frame.image[100, 300].astype(int) - RGB_LEVELS).max() <= 3
        assert frame.image[100, 10, 0] < 60, "left stripe keeps its place (no stride shear)"
        p = cam.picam2
        assert [c[1] for c in p.calls if c[0] == "capture_request"] == [None]
        assert p.released == p.issued == 1


def test_mismatched_frames_are_dropped_and_retaken(standin):
    with make() as cam:
        cam.picam2.metadata_overrides = [{"ExposureTime": 12000}, {"AnalogueGain": 2.0}]
        frame = cam.capture()
        assert frame.metadata["ExposureTime"] == 7997
        assert cam.rejected_frames == 2
        assert cam.picam2.released == cam.picam2.issued == 3


def test_five_mismatches_raise_exposure_mismatch_naming_the_figures(standin):
    with make() as cam:
        cam.picam2.metadata_overrides = [{"ExposureTime": 12000}] * 5
        with pytest.raises(ExposureMismatch, match=r"ExposureTime 12000 µs \(configured 8000\)"):
            cam.capture()
        assert cam.picam2.issued == 5 == cam.picam2.released
        cam.picam2.metadata_overrides = [{"AnalogueGain": 1.0}] * 5
        with pytest.raises(ExposureMismatch, match=r"AnalogueGain 1.0 \(configured 1.5\)"):
            cam.capture()
        assert cam.capture().metadata["AnalogueGain"] == 1.5  # within tolerance again


def test_within_five_percent_is_accepted(standin):
    with make() as cam:
        cam.picam2.metadata_overrides = [{"ExposureTime": 8390, "AnalogueGain": 1.45}]
        assert cam.capture().metadata["ExposureTime"] == 8390
        assert cam.rejected_frames == 0


def test_stall_raises_camera_stalled_and_cancels_the_job(standin):
    with make(timeout_s=0.1) as cam:
        cam.picam2.stalled = True
        with pytest.raises(CameraStalled, match="0.1 s"):
            cam.preview_frame()
        with pytest.raises(CameraStalled):
            cam.capture(timeout_s=0.05)
        assert cam.picam2.waits[-2:] == [0.1, 0.05]
        assert cam.picam2.cancelled == 2
        p = cam.picam2
    assert p.closed, "leaving the with block closes the camera after a stall"


def test_close_is_idempotent_and_happens_after_errors(standin):
    cam = make()
    cam.open()
    cam.start()
    p = cam.picam2
    cam.close()
    cam.close()
    assert p.closed and [c[0] for c in p.calls].count("close") == 1
    assert not cam.running
    with pytest.raises(CameraError, match="not started"):
        cam.capture()

    standin.fail_start = RuntimeError("boom")
    cam2 = make()
    with pytest.raises(CameraError, match="cannot start"):
        with cam2:
            pass
    assert standin.instances[-1].closed

    standin.fail_start = None
    standin.fail_configure = RuntimeError("Failed to configure the camera")
    cam3 = make()
    with pytest.raises(CameraError, match="cannot configure"):
        cam3.open()
    assert standin.instances[-1].closed and cam3.picam2 is None


def test_no_camera_gives_a_clear_error(standin):
    standin.fail_init = IndexError("list index out of range")
    with pytest.raises(CameraError, match="cannot open camera 0.*rpicam-hello"):
        make().open()


def test_tuning_file_by_path_and_by_name(standin, tmp_path):
    path = tmp_path / "imx477_station.json"
    path.write_text("{}")
    with make(tuning_file=str(path)) as cam:
        assert cam.picam2.tuning == str(path)
    standin.tuning_dirs["imx477_station.json"] = {"version": 2.0, "algorithms": []}
    with make(tuning_file="imx477_station.json") as cam:
        assert cam.picam2.tuning == {"version": 2.0, "algorithms": []}
    with pytest.raises(CameraError, match="not found"):
        make(tuning_file="missing.json").open()
    with pytest.raises(CameraError, match="no such file"):
        make(tuning_file=str(tmp_path / "nope.json")).open()


def test_make_camera_builds_the_backend(monkeypatch, standin):
    from station.camera import make_camera
    from station.config import Config

    cfg = Config().replace(camera={"backend": "picamera2", "main_size": [640, 480], "preview_size": [320, 240]})
    monkeypatch.delenv("TRICHO_CAMERA", raising=False)
    cam = make_camera(cfg)
    assert isinstance(cam, Picamera2Camera)
    with cam:
        assert cam.capture().image.shape == (480, 640, 3)


def test_conversions_handle_padding():
    rgb = np.random.default_rng(1).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    padded = np.zeros((6, 16, 3), np.uint8)
    padded[:, :10] = rgb[..., ::-1]
    assert np.array_equal(bgr_array_to_rgb(padded, 10), rgb)
    flat = np.full((24, 64, 3), 128, np.uint8)
    assert yuv420_to_rgb(np.full((36, 64), 128, np.uint8), 64, 24).shape == flat.shape


def test_old_picamera2_without_flush_drops_stale_frames_itself(standin):
    standin.supports_flush = False
    with make() as cam:
        cam.picam2.stale_frames = 2  # the stand-in's event loop does not flush: we must
        t = __import__("time").monotonic_ns()
        frame = cam.capture()
        assert frame.metadata["SensorTimestamp"] - 1000 * frame.metadata["ExposureTime"] >= t
        assert cam.picam2.issued == 3 and cam.picam2.released == 3
        assert cam.rejected_frames == 0, "stale frames are not exposure mismatches"


def test_sizes_adjusted_by_libcamera_are_adopted(standin, caplog):
    standin.adjust_lores_to = (384, 288)
    with make() as cam:
        assert cam.preview_size == (384, 288)
        assert cam.preview_frame().image.shape == (288, 384, 3)
    assert "adjusted the lores stream" in caplog.text
