"""A stand-in for the ``picamera2`` module: records what the backend asks and returns frames we control.

Install it with ``install(monkeypatch)`` (puts a module named ``picamera2`` into sys.modules).
It mimics the parts of picamera2 the backend uses: ``Picamera2(camera_num, tuning=...)``,
``load_tuning_file``, ``sensor_modes`` / ``sensor_resolution`` / ``camera_controls`` (IMX477
figures), ``create_video_configuration``, ``configure``, ``start``/``stop``/``close``,
``capture_request(wait=False, flush=...)`` returning a job, ``wait(job, timeout)`` (raises
TimeoutError when stalled), ``cancel_all_and_flush``, and requests with ``make_array``
("main" as B,G,R bytes like picamera2's RGB888; "lores" as padded YUV420), ``get_metadata``
and ``release``.
"""
from __future__ import annotations

import time
import types
from types import SimpleNamespace

import cv2
import numpy as np

IMX477_MODES = [
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (1332, 990), "fps": 120.05,
     "crop_limits": (696, 528, 2664, 1980), "exposure_limits": (31, 667234896, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (2028, 1080), "fps": 50.03,
     "crop_limits": (0, 440, 4056, 2160), "exposure_limits": (60, 674181621, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (2028, 1520), "fps": 40.01,
     "crop_limits": (0, 0, 4056, 3040), "exposure_limits": (60, 674181621, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (4056, 3040), "fps": 10.0,
     "crop_limits": (0, 0, 4056, 3040), "exposure_limits": (114, 694422939, None)},
]
IMX477_CONTROLS = {
    "AeEnable": (False, True, None), "ExposureTime": (60, 674181621, None), "AnalogueGain": (1.0, 22.26, None),
    "AwbEnable": (False, True, None), "ColourGains": (0.0, 32.0, None), "NoiseReductionMode": (0, 4, 0),
    "FrameDurationLimits": (24994, 674193371, None), "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4056, 3040), (0, 0, 4056, 3040)),
}
AF_CONTROLS = {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}

# The colour the stand-in "sees": an RGB gradient so channel order mistakes show.
RGB_LEVELS = (200, 100, 50)


def test_rgb(width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = RGB_LEVELS
    img[:, : width // 4, 0] = 30  # a darker-red stripe on the left
    return img


test_rgb.__test__ = False  # not a pytest test


class Request:
    def __init__(self, cam: "StandInPicamera2", metadata: dict) -> None:
        self.cam = cam
        self.metadata = metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        assert not self.released, "array made from a released request"
        stream = self.cam.config[name]
        w, h = stream["size"]
        rgb = test_rgb(w, h)
        if stream["format"] == "RGB888":  # picamera2: RGB888 arrays are B, G, R per pixel
            return np.ascontiguousarray(rgb[..., ::-1])
        if stream["format"] == "YUV420":
            i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
            stride = (w + 63) // 64 * 64  # padded rows, as libcamera's buffers have
            y, u, v = i420[: w * h].reshape(h, w), i420[w * h: w * h * 5 // 4], i420[w * h * 5 // 4:]
            out = np.zeros(h * 3 // 2 * stride, np.uint8)
            out[: h * stride].reshape(h, stride)[:, :w] = y
            cs = stride // 2
            out[h * stride: h * stride + h // 2 * cs].reshape(h // 2, cs)[:, : w // 2] = u.reshape(h // 2, w // 2)
            out[h * stride + h // 2 * cs: h * stride + h * cs].reshape(h // 2, cs)[:, : w // 2] = v.reshape(h // 2, w // 2)
            return out.reshape(h * 3 // 2, stride)
        raise AssertionError(f"stand-in does not produce {stream['format']}")

    def get_metadata(self) -> dict:
        return dict(self.metadata)

    def release(self) -> None:
        assert not self.released, "request released twice"
        self.released = True
        self.cam.released += 1


class Job:
    def __init__(self, cam: "StandInPicamera2", flush) -> None:
        self.cam = cam
        self.flush = flush

    def get_result(self, timeout=None):
        return self.cam.wait(self, timeout=timeout)


class StandInPicamera2:
    platform = SimpleNamespace(name="VC4")
    # Class-level knobs a test sets before the backend opens the camera.
    has_autofocus = False
    fail_init: Exception | None = None
    fail_configure: Exception | None = None
    fail_start: Exception | None = None
    instances: list["StandInPicamera2"] = []
    tuning_dirs: dict[str, dict] = {}

    def __init__(self, camera_num: int = 0, tuning=None) -> None:
        if StandInPicamera2.fail_init is not None:
            raise StandInPicamera2.fail_init
        self.camera_num = camera_num
        self.tuning = tuning
        self.calls: list[tuple] = [("init", camera_num, tuning)]
        self.sensor_modes = [dict(m) for m in IMX477_MODES]
        self.sensor_resolution = (4056, 3040)
        self.camera_controls = dict(IMX477_CONTROLS, **(AF_CONTROLS if self.has_autofocus else {}))
        self.config: dict | None = None
        self.controls: dict = {}
        self.started = False
        self.closed = False
        self.stalled = False
        self.metadata_overrides: list[dict] = []  # applied to successive frames, then the plain metadata
        self.frames = 0
        self.released = 0
        self.issued = 0
        self.waits: list[float | None] = []
        self.cancelled = 0
        StandInPicamera2.instances.append(self)

    @staticmethod
    def load_tuning_file(name: str, dir=None) -> dict:
        if name in StandInPicamera2.tuning_dirs:
            return StandInPicamera2.tuning_dirs[name]
        raise RuntimeError("Tuning file not found")

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case="video"):
        return {"use_case": use_case, "main": dict(main or {}), "lores": dict(lores) if lores else None,
                "sensor": dict(sensor or {}), "controls": dict(controls or {}), "buffer_count": buffer_count,
                "display": display, "encode": encode, "queue": queue}

    def configure(self, config: dict) -> None:
        self.calls.append(("configure", config))
        if StandInPicamera2.fail_configure is not None:
            raise StandInPicamera2.fail_configure
        self.config = config
        self.controls = dict(config["controls"])  # picamera2 replaces the controls at each configure
        self.camera_config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
        if self.adjust_lores_to is not None:  # like libcamera: "configuration has been adjusted"
            self.config["lores"]["size"] = self.camera_config["lores"]["size"] = self.adjust_lores_to

    def set_controls(self, controls: dict) -> None:
        self.calls.append(("set_controls", dict(controls)))
        self.controls.update(controls)

    def start(self) -> None:
        self.calls.append(("start",))
        if StandInPicamera2.fail_start is not None:
            raise StandInPicamera2.fail_start
        assert self.config is not None, "start before configure"
        self.started = True

    def stop(self) -> None:
        self.calls.append(("stop",))
        self.started = False

    def close(self) -> None:
        self.calls.append(("close",))
        self.started = False
        self.closed = True

    adjust_lores_to: tuple[int, int] | None = None
    supports_flush = True  # False: like picamera2 before capture_request(flush=...)
    stale_frames = 0  # frames already queued (exposed before any call) when the camera starts

    def capture_request(self, wait=None, signal_function=None, **kw):
        assert wait is False, "the backend must not block without a timeout"
        if kw and not self.supports_flush:
            raise TypeError("capture_request() got an unexpected keyword argument 'flush'")
        flush = kw.pop("flush", None)
        assert not kw
        self.calls.append(("capture_request", flush))
        return Job(self, flush)

    def wait(self, job: Job, timeout=None):
        assert timeout is not None and timeout > 0, "wait without a timeout"
        self.waits.append(timeout)
        if self.stalled or not self.started:
            time.sleep(min(timeout, 0.02))
            raise TimeoutError
        self.frames += 1
        c = self.controls
        md = {"ExposureTime": c["ExposureTime"] - 3, "AnalogueGain": c["AnalogueGain"], "DigitalGain": 1.0,
              "ColourGains": tuple(c["ColourGains"]), "FrameDuration": c["FrameDurationLimits"][0],
              "SensorTimestamp": time.monotonic_ns() + c["ExposureTime"] * 1000, "Lux": 400.0}
        if "LensPosition" in c:
            md["LensPosition"] = c["LensPosition"]
        if self.stale_frames:
            self.stale_frames -= 1
            md["SensorTimestamp"] = time.monotonic_ns() - 10**9  # exposed a second ago
        if self.metadata_overrides:
            md.update(self.metadata_overrides.pop(0))
        self.issued += 1
        return Request(self, md)

    def cancel_all_and_flush(self) -> None:
        self.cancelled += 1


def install(monkeypatch) -> type[StandInPicamera2]:
    """Put the stand-in module into sys.modules as ``picamera2`` (undone after the test)."""
    module = types.ModuleType("picamera2")
    StandInPicamera2.instances = []
    StandInPicamera2.has_autofocus = False
    StandInPicamera2.fail_init = StandInPicamera2.fail_configure = StandInPicamera2.fail_start = None
    StandInPicamera2.tuning_dirs = {}
    StandInPicamera2.platform = SimpleNamespace(name="VC4")
    StandInPicamera2.supports_flush = True
    StandInPicamera2.stale_frames = 0
    StandInPicamera2.adjust_lores_to = None
    module.Picamera2 = StandInPicamera2
    monkeypatch.setitem(__import__("sys").modules, "picamera2", module)
    return StandInPicamera2
