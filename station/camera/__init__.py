"""Cameras behind a factory: picamera2 on the Pi, a fake that replays files elsewhere.

The backend comes from the config or, overriding it, the TRICHO_CAMERA environment
variable. Only ``station.camera.picamera2_backend`` imports picamera2, and only when chosen.
"""
from __future__ import annotations

from station.camera.base import (Camera, CameraControls, CameraError, CameraStalled,
                                 ExposureMismatch, Frame)
from station.camera.fake import FakeCamera

__all__ = ["Camera", "CameraControls", "CameraError", "CameraStalled", "ExposureMismatch",
           "FakeCamera", "Frame", "make_camera"]


def make_camera(config, backend: str | None = None) -> Camera:
    """Build (not open) the camera that ``config`` (a station Config) asks for."""
    cam = config.camera
    backend = backend or config.camera_backend
    controls = CameraControls.from_config(cam)
    if backend == "fake":
        return FakeCamera(config.fake_images_dir, controls, cam.main_size, cam.preview_size,
                          cam.capture_timeout_s, cam.preview_fps)
    if backend == "picamera2":
        from station.camera.picamera2_backend import Picamera2Camera

        return Picamera2Camera(controls, cam.main_size, cam.preview_size, cam.capture_timeout_s,
                               tuning_file=cam.tuning_file or None, preview_fps=cam.preview_fps)
    raise CameraError(f"unknown camera backend {backend!r}; allowed: picamera2, fake (set by [camera] backend or TRICHO_CAMERA)")
