"""Reading and writing image files, with errors that name the file."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


class ImageReadError(ValueError):
    """An image file is missing, unreadable or not an image."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB (or grey) uint8/uint16, channel last.

    16-bit PNG/TIFF keep their depth; colour comes back in RGB order.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{p}: file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{p}: not a readable image (corrupt or unsupported format)")
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def encode_image(image: np.ndarray, ext: str = ".png", jpeg_quality: int = 92) -> bytes:
    """Encode an RGB or grey array to PNG/JPEG bytes."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ValueError(f"could not encode image as {ext}")
    return buf.tobytes()


def write_image_atomic(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 92) -> None:
    """Write an image so that a power cut leaves either the old file or the whole new one."""
    p = Path(path)
    data = encode_image(image, p.suffix or ".png", jpeg_quality)
    write_bytes_atomic(p, data)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
