"""The Raspberry Pi camera through picamera2 (libcamera). The only module that imports picamera2.

One configuration, one sensor mode, one crop
    Both streams come from one ``create_video_configuration``: main = full-resolution RGB888
    (what is measured), lores = the preview (YUV420 on a Pi 4, RGB888 on a Pi 5, converted to
    RGB here). The sensor mode is pinned (``sensor={"output_size", "bit_depth"}``) to a mode
    that reads the whole sensor, and ScalerCrop is fixed to that mode's full area, so the
    preview and the capture see the same field of view and µm per pixel never changes
    between what the technician sees and what is measured. Captures take the main stream of
    the running configuration: no mode switch.

Fixed controls
    picamera2 replaces the controls at every ``configure``, so the fixed controls (AE and AWB
    off, ExposureTime, AnalogueGain, ColourGains, NoiseReductionMode, FrameDurationLimits,
    ScalerCrop, AfMode manual + LensPosition on autofocus modules) go into the configuration.
    Every captured frame's metadata is checked against ExposureTime and AnalogueGain (5 %,
    as picamera2's tests/switch_mode_exposure.py); a frame that does not match is dropped and
    the next one taken; after ``max_attempts`` the capture fails with ExposureMismatch.

Timeouts
    picamera2's blocking calls can wait forever (a loose ribbon cable). Requests are taken as
    jobs (``capture_request(wait=False)``) and waited for with a timeout; a timeout cancels
    the queued jobs (``cancel_all_and_flush``) and raises CameraStalled.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from station.camera.base import Camera, CameraControls, CameraError, CameraStalled, ExposureMismatch, Frame

log = logging.getLogger(__name__)

INSTALL_HINT = ("picamera2 is not installed: install python3-picamera2 from apt "
                "(sudo apt install python3-picamera2) and create the venv with --system-site-packages")
NOISE_REDUCTION_MODES = {"off": 0, "fast": 1, "high_quality": 2}  # libcamera draft::NoiseReductionModeEnum
AF_MODE_MANUAL = 0  # libcamera AfModeEnum.Manual
TOLERANCE = 0.05
ASPECT_TOLERANCE = 0.01


def _cv2():
    import cv2

    return cv2


def yuv420_to_rgb(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """picamera2's YUV420 array ((h*3/2, stride) bytes, I420 planes) to RGB uint8 (h, w, 3)."""
    stride = array.shape[1]
    if stride == width:
        i420 = np.ascontiguousarray(array[: height * 3 // 2])
    else:  # rows are padded: Y rows have `stride` bytes, U and V rows stride/2
        flat = array.reshape(-1)
        y = flat[: height * stride].reshape(height, stride)[:, :width]
        cstride, ch, cw = stride // 2, height // 2, width // 2
        u0 = height * stride
        u = flat[u0: u0 + ch * cstride].reshape(ch, cstride)[:, :cw]
        v0 = u0 + ch * cstride
        v = flat[v0: v0 + ch * cstride].reshape(ch, cstride)[:, :cw]
        i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)
    cv2 = _cv2()
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def bgr_array_to_rgb(array: np.ndarray, width: int | None = None) -> np.ndarray:
    """picamera2's "RGB888" array is stored B, G, R per pixel (its own PIL mode table maps
    RGB888 -> "BGR"): reverse the channels to get RGB. Drops row padding if any."""
    if width is not None and array.shape[1] != width:
        array = array[:, :width]
    return np.ascontiguousarray(array[..., 2::-1])


def within(actual: Any, wanted: float, tolerance: float = TOLERANCE) -> bool:
    try:
        return abs(float(actual) - wanted) <= tolerance * wanted
    except (TypeError, ValueError):
        return False


class Picamera2Camera(Camera):
    """A Raspberry Pi camera module (HQ IMX477, Camera Module 3 IMX708, ...) via picamera2."""

    def __init__(self, controls: CameraControls, main_size=(2028, 1520), preview_size=(1014, 760),
                 timeout_s: float = 5.0, *, tuning_file: str | None = None, camera_num: int = 0,
                 preview_fps: float = 20.0, max_attempts: int = 5, buffer_count: int = 4) -> None:
        super().__init__(controls, main_size, preview_size, timeout_s)
        self.tuning_file = tuning_file or None
        self.camera_num = camera_num
        self.preview_fps = preview_fps
        self.max_attempts = max_attempts
        self.buffer_count = buffer_count
        self.picam2: Any = None
        self.configuration: dict | None = None
        self.sensor_mode: dict | None = None
        self.lores_format = "YUV420"
        self.rejected_frames = 0  # frames dropped by the exposure/gain check, for status and tests
        self._running = False
        self._native_flush = True

    # -- lifecycle ----------------------------------------------------------------------
    def open(self) -> None:
        if self.picam2 is not None:
            return
        try:
            import picamera2
        except ImportError as exc:
            raise CameraError(f"{INSTALL_HINT} ({exc})") from None
        Picamera2 = picamera2.Picamera2
        tuning = self._tuning(Picamera2)
        try:
            self.picam2 = Picamera2(self.camera_num, tuning=tuning) if tuning is not None else Picamera2(self.camera_num)
        except Exception as exc:  # IndexError when no camera, RuntimeError when busy or init fails
            self.picam2 = None
            raise CameraError(f"cannot open camera {self.camera_num}: {exc!r} (is it connected and enabled in "
                              f"config.txt, and is no other program using it? try: rpicam-hello --list-cameras)") from None
        try:
            platform = getattr(getattr(Picamera2, "platform", None), "name", "VC4")
            self.lores_format = "RGB888" if platform == "PISP" else "YUV420"
            self.configuration = self._make_configuration()
            self.picam2.configure(self.configuration)
            self._adopt_configured_sizes()
            log.info("camera configured: sensor mode %s %d-bit, main %s RGB888, lores %s %s, crop %s",
                     self.sensor_mode["size"], self.sensor_mode["bit_depth"], self.main_size,
                     self.preview_size, self.lores_format, self.configuration["controls"].get("ScalerCrop"))
        except BaseException as exc:
            self.close()
            if isinstance(exc, CameraError) or not isinstance(exc, Exception):
                raise
            raise CameraError(f"cannot configure the camera: {exc!r}") from None

    def _tuning(self, Picamera2: Any) -> Any:
        if not self.tuning_file:
            return None
        if os.sep in self.tuning_file or os.path.isfile(self.tuning_file):
            if not os.path.isfile(self.tuning_file):
                raise CameraError(f"[camera] tuning_file = {self.tuning_file!r}: no such file")
            return self.tuning_file
        try:  # a bare name such as "imx477_scientific.json": picamera2 searches libcamera's folders
            return Picamera2.load_tuning_file(self.tuning_file)
        except Exception as exc:
            raise CameraError(f"[camera] tuning_file = {self.tuning_file!r}: not found in libcamera's tuning "
                              f"folders ({exc}); give a full path or copy it to /usr/share/libcamera/ipa/rpi/") from None

    def choose_sensor_mode(self, modes: list[dict], sensor_resolution: tuple[int, int]) -> dict:
        """The smallest mode that reads the whole sensor and is at least main_size; else the largest full one."""
        full_w, full_h = sensor_resolution

        def full_fov(mode: dict) -> bool:
            crop = mode.get("crop_limits")
            if not crop:
                return tuple(mode["size"]) == (full_w, full_h)
            return crop[2] >= full_w * 0.99 and crop[3] >= full_h * 0.99

        candidates = [m for m in modes if full_fov(m)]
        if not candidates:
            raise CameraError(f"no sensor mode reads the whole {full_w}x{full_h} sensor; modes: "
                              + ", ".join(f"{m['size']}" for m in modes))
        mw, mh = self.main_size
        big_enough = [m for m in candidates if m["size"][0] >= mw and m["size"][1] >= mh]
        pool = big_enough or candidates
        key = (lambda m: m["size"][0] * m["size"][1])
        mode = min(pool, key=key) if big_enough else max(pool, key=key)
        if not big_enough:
            log.warning("main_size %s is larger than every full-sensor mode; using %s (upscaled by the ISP)",
                        self.main_size, mode["size"])
        return mode

    def fixed_controls(self, crop: tuple[int, int, int, int]) -> dict[str, Any]:
        c = self.controls
        frame_us = max(int(round(1e6 / self.preview_fps)), c.exposure_us + 1000)
        controls: dict[str, Any] = {
            "AeEnable": False,
            "ExposureTime": int(c.exposure_us),
            "AnalogueGain": float(c.analogue_gain),
            "AwbEnable": False,
            "ColourGains": (float(c.colour_gains[0]), float(c.colour_gains[1])),
            "NoiseReductionMode": NOISE_REDUCTION_MODES[c.noise_reduction_mode],
            # Fixed frame duration, long enough for the exposure plus readout margin.
            "FrameDurationLimits": (frame_us, frame_us),
            "ScalerCrop": tuple(int(v) for v in crop),
        }
        available = self.picam2.camera_controls
        if c.lens_position is not None:
            if "AfMode" in available:
                controls["AfMode"] = AF_MODE_MANUAL
                controls["LensPosition"] = float(c.lens_position)
            else:
                log.warning("lens_position = %s ignored: this camera module has no focus control", c.lens_position)
        elif "AfMode" in available:
            log.warning("autofocus module without [camera] lens_position: focus stays where the lens rests; "
                        "set lens_position (dioptres) so every capture has the same focus and scale")
            controls["AfMode"] = AF_MODE_MANUAL
        for name in ("NoiseReductionMode", "ScalerCrop"):
            if available and name not in available:
                controls.pop(name)
        return controls

    def _make_configuration(self) -> dict:
        p = self.picam2
        self.sensor_mode = dict(self.choose_sensor_mode(list(p.sensor_modes), tuple(p.sensor_resolution)))
        mode = self.sensor_mode
        crop = tuple(mode.get("crop_limits") or (0, 0, *p.sensor_resolution))
        crop_aspect = crop[2] / crop[3]
        for name, (w, h) in (("main_size", self.main_size), ("preview_size", self.preview_size)):
            if abs((w / h) / crop_aspect - 1) > ASPECT_TOLERANCE:
                raise CameraError(
                    f"[camera] {name} = [{w}, {h}] has aspect {w / h:.4f} but the sensor area is {crop[2]}x{crop[3]} "
                    f"(aspect {crop_aspect:.4f}); with the crop fixed to the whole sensor the pixels would not be "
                    f"square. Use a size with the sensor's aspect, e.g. [{w}, {round(w / crop_aspect) // 2 * 2}]")
        config = p.create_video_configuration(
            main={"size": tuple(self.main_size), "format": "RGB888"},
            lores={"size": tuple(self.preview_size), "format": self.lores_format},
            sensor={"output_size": tuple(mode["size"]), "bit_depth": int(mode["bit_depth"])},
            controls=self.fixed_controls(crop),
            buffer_count=self.buffer_count,
            encode=None,
            display=None,
        )
        return config

    def _adopt_configured_sizes(self) -> None:
        """libcamera may adjust a stream size to what the ISP can do ("configuration has been
        adjusted"); frames are then that size, so use it (and say so: µm/px follows main)."""
        actual = getattr(self.picam2, "camera_config", None) or {}
        for stream, attr in (("main", "main_size"), ("lores", "preview_size")):
            size = (actual.get(stream) or {}).get("size")
            if size and tuple(size) != tuple(getattr(self, attr)):
                log.warning("camera adjusted the %s stream from %s to %s; set [camera] %s to %s",
                            stream, getattr(self, attr), tuple(size), attr, list(size))
                setattr(self, attr, tuple(size))

    def start(self) -> None:
        if self.picam2 is None:
            raise CameraError("camera is not open")
        if self._running:
            return
        try:
            self.picam2.start()
        except Exception as exc:
            raise CameraError(f"cannot start the camera: {exc!r}") from None
        self._running = True

    def stop(self) -> None:
        if self.picam2 is not None and self._running:
            self._running = False
            try:
                self.picam2.stop()
            except Exception as exc:
                log.warning("camera stop failed: %r", exc)

    def close(self) -> None:
        """Stop and release the camera; safe to call more than once and after any error."""
        picam2, self.picam2 = self.picam2, None
        self._running = False
        if picam2 is None:
            return
        try:
            picam2.stop()
        except Exception as exc:
            log.warning("camera stop failed while closing: %r", exc)
        try:
            picam2.close()
        except Exception as exc:
            log.warning("camera close failed: %r", exc)

    @property
    def running(self) -> bool:
        return self._running

    # -- frames -------------------------------------------------------------------------
    def _request(self, timeout_s: float | None, flush: int | None = None) -> Any:
        if self.picam2 is None or not self._running:
            raise CameraError("camera is not started")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        p = self.picam2
        try:
            if flush and self._native_flush:
                try:
                    job = p.capture_request(wait=False, flush=flush)
                except TypeError:  # picamera2 older than capture_request(flush=...)
                    self._native_flush = False
                    log.info("picamera2 has no capture_request(flush=...): flushing here instead")
            if flush and not self._native_flush:
                return self._request_exposed_after(flush, timeout)
            if not flush:
                job = p.capture_request(wait=False)
            return job.get_result(timeout=timeout)
        except TimeoutError:
            cancel = getattr(p, "cancel_all_and_flush", None)
            if cancel is not None:
                try:
                    cancel()  # drop the queued job so it cannot hold a request forever
                except Exception as exc:
                    log.warning("cancel_all_and_flush failed: %r", exc)
            raise CameraStalled(f"no frame from the camera within {timeout:g} s "
                                f"(check the ribbon cable; the service will be restarted)") from None
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(f"camera request failed: {exc!r}") from None

    def _request_exposed_after(self, flush_ns: int, timeout: float) -> Any:
        """What picamera2's flush does, for versions without it: drop frames whose exposure
        began before ``flush_ns`` (SensorTimestamp is the start of readout, in ns)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            request = self.picam2.capture_request(wait=False).get_result(timeout=remaining)
            md = request.get_metadata()
            if md.get("SensorTimestamp", 0) - 1000 * md.get("ExposureTime", 0) >= flush_ns:
                return request
            request.release()

    def preview_frame(self, timeout_s: float | None = None) -> Frame:
        request = self._request(timeout_s)
        try:
            array = request.make_array("lores")
            metadata = dict(request.get_metadata())
        finally:
            request.release()
        w, h = self.preview_size
        if self.lores_format == "YUV420":
            image = yuv420_to_rgb(array, w, h)
        else:
            image = bgr_array_to_rgb(array, w)
        return Frame(image, metadata, "lores")

    def check_metadata(self, metadata: dict) -> str | None:
        """None if the frame was exposed as configured, else what differs."""
        c = self.controls
        problems = []
        if not within(metadata.get("ExposureTime"), c.exposure_us):
            problems.append(f"ExposureTime {metadata.get('ExposureTime')} µs (configured {c.exposure_us})")
        if not within(metadata.get("AnalogueGain"), c.analogue_gain):
            problems.append(f"AnalogueGain {metadata.get('AnalogueGain')} (configured {c.analogue_gain:g})")
        return "; ".join(problems) or None

    def capture(self, timeout_s: float | None = None) -> Frame:
        """A full-resolution frame whose exposure began after this call, exposed as configured."""
        flush = time.monotonic_ns()  # frames exposed before now (e.g. before the light came on) are skipped
        problems = []
        for attempt in range(1, self.max_attempts + 1):
            request = self._request(timeout_s, flush=flush)
            try:
                metadata = dict(request.get_metadata())
                problem = self.check_metadata(metadata)
                array = None if problem else request.make_array("main")
                if array is not None:
                    image = bgr_array_to_rgb(array, self.main_size[0])
            finally:
                request.release()
            if problem is None:
                return Frame(image, metadata, "main")
            self.rejected_frames += 1
            problems.append(problem)
            log.warning("capture attempt %d/%d dropped: %s", attempt, self.max_attempts, problem)
        raise ExposureMismatch(
            f"{self.max_attempts} frames in a row were not exposed as configured (tolerance "
            f"{TOLERANCE:.0%}); last: {problems[-1]}. Check that no other program changes the camera "
            f"controls and that exposure_us fits the sensor mode")
