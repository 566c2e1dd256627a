"""Live preview for the page: one JPEG encoder shared by every viewer, live analysis at a lower rate.

``PreviewBroadcaster`` runs two threads, and only while at least one viewer is connected:

- the encoder takes each new preview frame from ``Station.wait_preview``, draws the latest
  live analysis on it, encodes it to JPEG once and hands the same bytes to every viewer
  (a slow viewer skips frames instead of slowing the others or the capture);
- the live analysis takes the newest preview frame a few times a second, counts hairs and
  measures focus and exposure; it steps aside while a capture is being analysed.

- the guidance (issue 8), only while the page has named a patient and zone with a baseline
  visit (``set_target``): a ``core.registration.PreviewRegistrar`` built once per baseline
  registers the newest preview frame on the baseline image several times a second and says
  which way to move the lens, how far to turn it, the overlap and whether it is on target.
  It is OpenCV only (no numba), so it never waits for the analysis lock; it steps aside
  while a capture is being analysed.

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

from station.web.live_analysis import default_live_analysis, guidance_from_registration

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"


class PreviewBroadcaster:
    def __init__(self, station: Any, *, jpeg_quality: int = 75, analysis_hz: float = 3.0,
                 live_analysis: Callable[[Any, np.ndarray, float], dict[str, Any]] | None = default_live_analysis,
                 idle_timeout_s: float = 2.0, guidance_hz: float = 8.0) -> None:
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
        self.guidance_period_s = 1.0 / guidance_hz if guidance_hz > 0 else 0.0
        self._target: tuple[str, str] | None = None
        self._target_seq = 0
        self._guider: threading.Thread | None = None
        self._guidance: dict[str, Any] = {}
        self._guidance_times: list[float] = []

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
            self._start_guider()
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
        for t in (self._encoder, self._analyser, self._guider):
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
        out["guidance"] = self.guidance()
        return out

    # -- guidance: re-find the baseline spot ----------------------------------------------
    def set_target(self, patient_id: str | None, zone: str | None) -> dict[str, Any]:
        """The patient and zone being prepared on the page (None: none); returns the guidance state."""
        with self._cond:
            new = (patient_id, zone) if patient_id and zone else None
            if new != self._target:
                self._target = new
                self._target_seq += 1
                self._guidance = {}
                self._guidance_times = []
            self._start_guider()
            self._cond.notify_all()
        return self.guidance()

    def _start_guider(self) -> None:
        """(Lock held.) Start the guidance thread when someone watches and a target is set."""
        if self._guider is None and self._target is not None and self._should_run():
            self._guider = threading.Thread(target=self._guidance_loop, name="preview-guidance", daemon=True)
            self._guider.start()

    def guidance(self) -> dict[str, Any]:
        """What the page shows over the stream: arrows (mm), rotation, overlap, on target; {} without target."""
        with self._cond:
            target, g = self._target, dict(self._guidance)
            times = list(self._guidance_times)
        if target is None:
            return {}
        out = {"patient_id": target[0], "zone": target[1], "active": bool(self._viewers), **g}
        now = time.monotonic()
        if len(times) >= 2 and now - times[-1] < 1.0:
            out["updates_per_s"] = round((len(times) - 1) / (times[-1] - times[0]), 1)
        else:
            out["updates_per_s"] = 0.0
        if g.get("_at") is not None:
            out["age_s"] = round(max(0.0, now - g["_at"]), 2)
        out.pop("_at", None)
        return out

    def _guidance_loop(self) -> None:
        from core.registration import PreviewRegistrar
        from station import followup
        from station.imageio import read_image

        seq = 0
        registrar: tuple[str, Any] | None = None  # (baseline id, PreviewRegistrar)
        baseline, looked_up_at, target_seq = None, 0.0, -1
        try:
            while True:
                with self._cond:
                    target = self._target
                    if not self._should_run() or target is None:
                        self._guider = None
                        return
                    if self._target_seq != target_seq:
                        target_seq, looked_up_at = self._target_seq, 0.0
                t0 = time.monotonic()
                if t0 - looked_up_at > 3.0:  # the baseline may change (a new accepted visit, "make baseline")
                    baseline = followup.baseline_record(self.station.storage, *target)
                    looked_up_at = t0
                if baseline is None:
                    self._publish_guidance(target_seq, {
                        "baseline_id": None, "state": "no_baseline",
                        "message": "no accepted visit of this patient and zone yet: this capture becomes the baseline"})
                    self._pause(0.5)
                    continue
                if registrar is None or registrar[0] != baseline.id:
                    tb = time.monotonic()
                    img = read_image(self.station.storage.image_path(baseline.image_file))
                    registrar = (baseline.id, PreviewRegistrar(img, baseline.um_per_px))
                    log.info("guidance: baseline %s prepared in %.0f ms", baseline.id, (time.monotonic() - tb) * 1000)
                lock = getattr(self.station, "_analysis_lock", None)
                if lock is not None and lock.locked():  # a capture (or the live count) is being analysed
                    self._pause(0.05)
                    continue
                seq, frame = self.station.wait_preview(seq, timeout_s=0.5)
                if frame is None:
                    self._pause(0.1)
                    continue
                t1 = time.monotonic()
                um = self.station.scale().um_per_px * float(getattr(self.station.camera, "preview_scale", 1.0))
                reg = registrar[1].register(frame.image, um)
                g = guidance_from_registration(reg)
                g.update(baseline_id=baseline.id, baseline_captured_at=baseline.captured_at,
                         register_ms=round((time.monotonic() - t1) * 1000, 1),
                         latency_ms=round((time.monotonic() - t1) * 1000 + 1000.0 / max(
                             float(getattr(self.station.config.camera, "preview_fps", 20.0) or 20.0), 1.0), 1))
                self._publish_guidance(target_seq, g)
                spent = time.monotonic() - t0
                self._pause(max(self.guidance_period_s - spent, 0.25 * spent))  # at most ~80 % of a core
        except Exception as exc:
            log.exception("guidance thread failed")
            with self._cond:
                self._guidance = {"state": "error", "error": str(exc)}
                self._guider = None

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with self._cond:
                seq = self._target_seq
                self._cond.wait_for(lambda: not self._should_run() or self._target_seq != seq, timeout=seconds)

    def _publish_guidance(self, target_seq: int, g: dict[str, Any]) -> None:
        with self._cond:
            if target_seq != self._target_seq:
                return  # the page named another patient/zone meanwhile
            now = time.monotonic()
            self._guidance = {**g, "_at": now}
            if "on_target" in g:
                self._guidance_times.append(now)
                if len(self._guidance_times) > 20:
                    del self._guidance_times[:-20]

    def press_button(self) -> None:
        """The hardware capture button was pressed: pages polling live() submit their capture form."""
        with self._cond:
            self.button_presses += 1
            self._cond.notify_all()
