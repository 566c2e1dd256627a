"""Live preview for the page: one JPEG encoder shared by every viewer, live analysis at a lower rate.

``PreviewBroadcaster`` runs two threads, and only while at least one viewer is connected:

- the encoder takes each new preview frame from ``Station.wait_preview``, draws the latest
  live analysis on it, encodes it to JPEG once and hands the same bytes to every viewer
  (a slow viewer skips frames instead of slowing the others or the capture);
- the live analysis takes the newest preview frame a few times a second, counts hairs and
  measures focus and exposure; it steps aside while a capture is being analysed.

The LED ring is held on (``Station.acquire_light``) while anyone watches.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import cv2
import numpy as np

import core

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
OVERLAY_BGR = (40, 220, 60)


def _quality_figures(image: np.ndarray) -> dict[str, Any]:
    from core.image_quality import evaluate_quality, measure_image_quality

    q = measure_image_quality(image)
    verdict = evaluate_quality(q)
    return {"quality": q.to_dict(), "passed": bool(verdict.passed), "reasons": list(verdict.reasons)}


def default_live_analysis(station: Any, image: np.ndarray, um_per_px: float) -> dict[str, Any]:
    """Count hairs on a preview frame (``core.analyze_preview``) and measure its quality.

    Returns hair_count, density_per_cm2, quality figures, the gate's verdict and ``draw``:
    a callable drawing the detected centre lines onto a BGR frame of the same size.
    """
    lock = getattr(station, "_analysis_lock", None)  # numba's workqueue: one analysis at a time
    if lock is not None and not lock.acquire(timeout=0.05):
        return {"skipped": "capture in progress"}
    try:
        result = core.analyze_preview(image, um_per_px)
    finally:
        if lock is not None:
            lock.release()
    out: dict[str, Any] = {"hair_count": int(result.hair_count), "preview_ms": round(float(result.elapsed_ms), 1)}
    area_cm2 = result.width * result.height * (float(result.um_per_px) * 1e-4) ** 2
    if area_cm2 > 0:
        out["density_per_cm2"] = round(result.hair_count / area_cm2, 1)
    out.update(_quality_figures(image))
    out["draw"] = _drawer(getattr(result, "centerlines_px", ()) or ())
    return out


def _drawer(lines: Any) -> Callable[[np.ndarray], None] | None:
    """A function drawing the centre lines ((N, 2) x, y arrays) on a BGR frame."""
    polylines = []
    for p in lines:
        pts = np.asarray(p, dtype=np.float32).reshape(-1, 2)
        if len(pts) >= 2 and np.all(np.isfinite(pts)):
            polylines.append(np.round(pts).astype(np.int32).reshape(-1, 1, 2))
    if not polylines:
        return None

    def draw(frame: np.ndarray) -> None:
        cv2.polylines(frame, polylines, False, OVERLAY_BGR, 1, cv2.LINE_AA)

    return draw


class PreviewBroadcaster:
    def __init__(self, station: Any, *, jpeg_quality: int = 75, analysis_hz: float = 3.0,
                 live_analysis: Callable[[Any, np.ndarray, float], dict[str, Any]] | None = default_live_analysis,
                 idle_timeout_s: float = 2.0) -> None:
        self.station = station
        self.jpeg_quality = jpeg_quality
        self.analysis_period_s = 1.0 / analysis_hz if analysis_hz > 0 else 0.0
        self.live_analysis = live_analysis
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._viewers = 0
        self._encoder: threading.Thread | None = None
        self._analyser: threading.Thread | None = None
        self._closed = False
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._jpeg_at = 0.0
        self._live: dict[str, Any] = {}
        self._draw: Callable[[np.ndarray], None] | None = None
        self._encode_times: list[float] = []
        self.frames_encoded = 0
        self.button_presses = 0

    # -- viewers ------------------------------------------------------------------------
    @property
    def viewers(self) -> int:
        return self._viewers

    @property
    def encoding(self) -> bool:
        t = self._encoder
        return t is not None and t.is_alive()

    def _join(self) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the preview has stopped")
            self._viewers += 1
            first = self._viewers == 1
            if self._encoder is None:
                self._encoder = threading.Thread(target=self._encode_loop, name="preview-encoder", daemon=True)
                self._encoder.start()
            if self._analyser is None and self.live_analysis is not None:
                self._analyser = threading.Thread(target=self._analysis_loop, name="live-analysis", daemon=True)
                self._analyser.start()
        if first:
            self.station.acquire_light()

    def _leave(self) -> None:
        with self._cond:
            self._viewers -= 1
            last = self._viewers == 0
            self._cond.notify_all()
        if last:
            self.station.release_light()

    @contextmanager
    def viewer(self) -> Iterator["PreviewBroadcaster"]:
        self._join()
        try:
            yield self
        finally:
            self._leave()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in (self._encoder, self._analyser):
            if t is not None:
                t.join(timeout=3)

    # -- encoder ------------------------------------------------------------------------
    def _should_run(self) -> bool:
        return self._viewers > 0 and not self._closed

    def _encode_loop(self) -> None:
        seq = 0
        try:
            while True:
                with self._cond:
                    if not self._should_run():
                        self._encoder = None
                        return
                seq, frame = self.station.wait_preview(seq, timeout_s=0.5)
                if frame is None:  # camera stopped or stalled: wait instead of spinning
                    time.sleep(0.1)
                    continue
                jpeg = self.encode(frame.image, draw=self._draw)
                with self._cond:
                    self._jpeg, self._jpeg_at = jpeg, time.monotonic()
                    self._jpeg_seq += 1
                    self.frames_encoded += 1
                    self._encode_times.append(self._jpeg_at)
                    if len(self._encode_times) > 40:
                        del self._encode_times[:-40]
                    self._cond.notify_all()
        except Exception:  # never leave viewers hanging on a dead encoder
            log.exception("preview encoder failed")
            with self._cond:
                self._encoder = None
                self._cond.notify_all()

    def encode(self, image: np.ndarray, draw: Callable[[np.ndarray], None] | None = None) -> bytes:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if draw is not None:
            try:
                draw(bgr)
            except Exception:  # a bad overlay must not stop the stream
                log.exception("live overlay failed")
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def wait_jpeg(self, after_seq: int, timeout_s: float = 2.0) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._jpeg_seq > after_seq or self._closed or self._encoder is None,
                                timeout=timeout_s)
            if self._jpeg_seq > after_seq:
                return self._jpeg_seq, self._jpeg
            return self._jpeg_seq, None

    def stream(self) -> Iterator[bytes]:
        """multipart/x-mixed-replace body; the caller's iteration holds a viewer slot until closed."""
        self._join()
        try:
            seq = 0
            idle_since = time.monotonic()
            while not self._closed:
                seq, jpeg = self.wait_jpeg(seq, timeout_s=1.0)
                if jpeg is None:
                    if time.monotonic() - idle_since > 30:  # camera gone: end the response
                        return
                    with self._cond:  # restart a crashed encoder
                        if self._encoder is None and self._should_run():
                            self._encoder = threading.Thread(target=self._encode_loop, name="preview-encoder", daemon=True)
                            self._encoder.start()
                    continue
                idle_since = time.monotonic()
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                       .encode("ascii") + jpeg + b"\r\n")
        finally:
            self._leave()

    def snapshot(self, timeout_s: float = 2.0) -> bytes | None:
        """The newest preview frame as JPEG (shared bytes if the stream runs, else encoded now)."""
        if not getattr(self.station, "preview_healthy", True):
            return None  # never hand out a stale frame as the live view
        with self._cond:
            if self._jpeg is not None and time.monotonic() - self._jpeg_at < 0.5:
                return self._jpeg
        _, frame = self.station.wait_preview(0, timeout_s=timeout_s)
        if frame is None:
            return None
        return self.encode(frame.image, draw=self._draw)

    # -- live analysis --------------------------------------------------------------------
    def _analysis_loop(self) -> None:
        seq = 0
        try:
            while True:
                with self._cond:
                    if not self._should_run():
                        self._analyser = None
                        self._draw = None
                        return
                t0 = time.monotonic()
                seq, frame = self.station.wait_preview(seq, timeout_s=0.5)
                if frame is None:
                    time.sleep(0.1)
                    continue
                try:
                    um = self.station.scale().um_per_px * float(getattr(self.station.camera, "preview_scale", 1.0))
                    live = self.live_analysis(self.station, frame.image, um)
                except Exception as exc:  # keep the stream alive; show what went wrong
                    log.exception("live analysis failed")
                    live = {"error": str(exc)}
                if "skipped" not in live:
                    live["analysis_ms"] = round((time.monotonic() - t0) * 1000, 1)
                    live["at"] = time.time()
                    draw = live.pop("draw", None)
                    with self._cond:
                        self._live = live
                        self._draw = draw
                spent = time.monotonic() - t0
                rest = max(self.analysis_period_s - spent, 2.0 * spent)  # at most a third of a core
                if rest > 0:
                    with self._cond:
                        self._cond.wait_for(lambda: not self._should_run(), timeout=rest)
        except Exception:
            log.exception("live analysis thread failed")
            with self._cond:
                self._analyser = None

    def live(self) -> dict[str, Any]:
        """What the page shows beside the stream: viewers, fps, live count and quality figures."""
        with self._cond:
            times = list(self._encode_times)
            live = dict(self._live)
            now = time.monotonic()
            fps = 0.0
            if len(times) >= 2 and now - times[-1] < 1.0:
                fps = (len(times) - 1) / (times[-1] - times[0])
            out = {"viewers": self._viewers, "streaming": self.encoding, "fps": round(fps, 1),
                   "frames_encoded": self.frames_encoded, "button_presses": self.button_presses}
        if live.get("at") is not None:
            live["age_s"] = round(max(0.0, time.time() - live.pop("at")), 2)
        out["analysis"] = live if self._viewers else {}
        return out

    def press_button(self) -> None:
        """The hardware capture button was pressed: pages polling live() submit their capture form."""
        with self._cond:
            self.button_presses += 1
            self._cond.notify_all()
