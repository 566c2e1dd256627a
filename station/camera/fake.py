"""A camera that replays image files, for demos and tests (like gpiozero's MockFactory).

It returns picamera2-shaped metadata, records every call in ``calls`` and can be told
to stall or to report another exposure, so the code above it can be tested for faults.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from station.camera.base import Camera, CameraControls, CameraError, CameraStalled, Frame
from station.imageio import ImageReadError, read_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


class FakeCamera(Camera):
    """Replays the images of a folder in name order, looping: each capture takes the next one.

    The preview shows the image the next capture will take, scaled to the preview size.
    """

    def __init__(self, images: str | Path, controls: CameraControls, main_size=(2028, 1520),
                 preview_size=(1014, 760), timeout_s: float = 5.0, fps: float = 20.0) -> None:
        super().__init__(controls, main_size, preview_size, timeout_s)
        self.folder = Path(images)
        self.fps = fps
        self.calls: list[str] = []
        self.stalled = False  # set True to simulate a camera that stops delivering frames
        self.metadata_override: dict = {}  # e.g. {"ExposureTime": 12000} to simulate drift
        self._paths: list[Path] = []
        self._index = 0
        self._cache: dict[Path, np.ndarray] = {}
        self._preview_cache: dict[Path, np.ndarray] = {}
        self._opened = False
        self._running = False
        self._lock = threading.Lock()
        self._next_preview_at = 0.0

    def open(self) -> None:
        self.calls.append("open")
        if not self.folder.is_dir():
            raise CameraError(f"fake camera: image folder {self.folder} does not exist")
        self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise CameraError(f"fake camera: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")
        self._opened = True

    def start(self) -> None:
        self.calls.append("start")
        if not self._opened:
            raise CameraError("camera is not open")
        self._running = True

    def stop(self) -> None:
        self.calls.append("stop")
        self._running = False

    def close(self) -> None:
        self.calls.append("close")
        self._running = False
        self._opened = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def current_path(self) -> Path:
        return self._paths[self._index % len(self._paths)]

    def capture(self, timeout_s: float | None = None) -> Frame:
        self.calls.append("capture")
        self._wait_or_stall(timeout_s)
        with self._lock:
            path = self.current_path
            self._index += 1
        return Frame(self._load(path), self._metadata(), "main")

    def preview_frame(self, timeout_s: float | None = None) -> Frame:
        self._wait_or_stall(timeout_s)
        now = time.monotonic()
        if self._next_preview_at > now:  # pace like a real sensor
            time.sleep(self._next_preview_at - now)
        self._next_preview_at = max(now, self._next_preview_at) + 1.0 / self.fps
        path = self.current_path
        image = self._preview_cache.get(path)
        if image is None:
            image = cv2.resize(self._load(path), self.preview_size, interpolation=cv2.INTER_AREA)
            self._preview_cache[path] = image
        return Frame(image, self._metadata(), "lores")

    def _wait_or_stall(self, timeout_s: float | None) -> None:
        if not self._running:
            raise CameraError("camera is not started")
        if self.stalled:
            time.sleep(self.timeout_s if timeout_s is None else timeout_s)
            raise CameraStalled(f"no frame from the camera within {self.timeout_s if timeout_s is None else timeout_s:g} s")

    def _load(self, path: Path) -> np.ndarray:
        image = self._cache.get(path)
        if image is None:
            try:
                image = read_image(path)
            except ImageReadError as exc:
                raise CameraError(f"fake camera: {exc}") from None
            if image.dtype != np.uint8:
                image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
            if (image.shape[1], image.shape[0]) != self.main_size:
                image = cv2.resize(image, self.main_size, interpolation=cv2.INTER_AREA)
            image.setflags(write=False)
            self._cache[path] = image
        return image

    def _metadata(self) -> dict:
        c: CameraControls = self.controls
        md = {
            "ExposureTime": c.exposure_us,
            "AnalogueGain": c.analogue_gain,
            "DigitalGain": 1.0,
            "ColourGains": tuple(c.colour_gains),
            "FrameDuration": max(c.exposure_us, int(1e6 / self.fps)),
            "SensorTimestamp": time.monotonic_ns(),
        }
        if c.lens_position is not None:
            md["LensPosition"] = c.lens_position
        md.update(self.metadata_override)
        return md
