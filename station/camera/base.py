"""The Camera interface every backend implements, and the frame it returns."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class CameraError(RuntimeError):
    """The camera could not be opened, configured or read."""


class CameraStalled(CameraError):
    """No frame arrived within the timeout: the service should be restarted."""


class ExposureMismatch(CameraError):
    """Frames kept arriving with other exposure or gain than configured."""


@dataclass(frozen=True)
class CameraControls:
    """The fixed controls applied in every camera configuration."""

    exposure_us: int
    analogue_gain: float
    colour_gains: tuple[float, float]
    lens_position: float | None = None  # dioptres; None: the module has no focus control
    noise_reduction_mode: str = "fast"

    @classmethod
    def from_config(cls, cam: Any) -> "CameraControls":
        return cls(
            exposure_us=cam.exposure_us,
            analogue_gain=cam.analogue_gain,
            colour_gains=tuple(cam.colour_gains),
            lens_position=None if cam.lens_position < 0 else cam.lens_position,
            noise_reduction_mode=cam.noise_reduction_mode,
        )


@dataclass(frozen=True)
class Frame:
    """One frame: RGB uint8 pixels (H, W, 3) and picamera2-shaped metadata.

    ``metadata`` uses libcamera's names: ExposureTime (µs), AnalogueGain, ColourGains
    (red, blue), SensorTimestamp (ns), FrameDuration (µs), LensPosition when focusable.
    """

    image: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    stream: str = "main"  # "main" (full resolution) or "lores" (preview)

    def capture_info(self) -> dict[str, Any]:
        """What a stored result records about how the frame was exposed."""
        md = self.metadata
        return {
            "exposure_us": md.get("ExposureTime"),
            "analogue_gain": md.get("AnalogueGain"),
            "colour_gains": list(md["ColourGains"]) if md.get("ColourGains") else None,
            "lens_position": md.get("LensPosition"),
            "sensor_timestamp_ns": md.get("SensorTimestamp"),
            "width": int(self.image.shape[1]),
            "height": int(self.image.shape[0]),
        }


class Camera(abc.ABC):
    """A camera with a full-resolution (main) and a preview (lores) stream of the same field of view.

    Use it with ``with``: entering opens and starts it, leaving always closes it.
    """

    def __init__(self, controls: CameraControls, main_size: tuple[int, int],
                 preview_size: tuple[int, int], timeout_s: float = 5.0) -> None:
        self.controls = controls
        self.main_size = tuple(main_size)
        self.preview_size = tuple(preview_size)
        self.timeout_s = timeout_s

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def capture(self, timeout_s: float | None = None) -> Frame:
        """A full-resolution frame exposed after this call began, with its metadata."""

    @abc.abstractmethod
    def preview_frame(self, timeout_s: float | None = None) -> Frame:
        """The next preview (lores) frame."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def running(self) -> bool: ...

    @property
    def preview_scale(self) -> float:
        """How many main-stream pixels one preview pixel spans (multiply µm/px by this)."""
        return self.main_size[0] / self.preview_size[0]

    def __enter__(self) -> "Camera":
        self.open()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
