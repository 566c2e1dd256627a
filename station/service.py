"""The running station: camera, analysis, storage and publishing wired together.

One process owns the camera. A frame loop thread keeps the latest preview frame for the
web page and pings the watchdog; captures run in the caller's thread; numba analysis is
serialised by one lock (numba's workqueue layer aborts on concurrent parallel calls).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import core
from core.flat_field import FlatField, apply_flat_field
from core.image_quality import QualityThresholds, evaluate_quality
from station import payload
from station.camera import Camera, CameraError, Frame, make_camera
from station.config import Config
from station.imageio import encode_image, read_image
from station.records import ResultRecord, check_note, check_patient_id, check_zone, new_id, utc_now_iso
from station.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scale:
    um_per_px: float
    source: str  # "calibration" or "config"
    calibration: dict[str, Any] | None  # id, created_at and the fitted figures


class Station:
    """Owns the hardware and the database; the web app and the CLI talk to it."""

    def __init__(self, config: Config, *, camera: Camera | None = None, storage: Storage | None = None,
                 lighting: Any = None, publisher: Any = None) -> None:
        self.config = config
        self.camera = camera or make_camera(config)
        self.storage = storage or Storage(config.state_path)
        self.lighting = lighting
        self.publisher = publisher
        self.started_at: str | None = None
        self.frame_listeners: list[Callable[[Frame], None]] = []
        self._camera_lock = threading.Lock()
        self._analysis_lock = threading.Lock()
        self._frame_cond = threading.Condition()
        self._latest: Frame | None = None
        self._frame_seq = 0
        self._frame_error: str | None = None
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._light_users = 0
        self._light_lock = threading.Lock()
        self._flat_field: tuple[str, FlatField, dict[tuple[int, int], Any]] | None = None
        self.quality_thresholds = QualityThresholds(
            **{k: v for k, v in vars(config.quality).items() if k != "lighting_tolerance"})

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, warm_up: bool = True) -> None:
        # One OpenCV thread: core already keeps both cores busy for part of an analysis
        # (core/analysis.py), and the web server, MQTT and the camera need the rest.
        core.configure_threads(1)
        if warm_up:
            t0 = time.perf_counter()
            core.warm_up()
            log.info("analysis kernels warm in %.0f ms", (time.perf_counter() - t0) * 1000)
        self.camera.open()
        self.camera.start()
        if self.publisher is None and self.config.mqtt.host:
            from station.publisher import OutboxPublisher

            self.publisher = OutboxPublisher(self.config.mqtt, self.config.station.id, self.storage)
        if self.publisher is not None:
            self.publisher.start()
        self._stop.clear()
        self._loop = threading.Thread(target=self._frame_loop, name="frame-loop", daemon=True)
        self._loop.start()
        self.started_at = utc_now_iso()

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=self.config.camera.capture_timeout_s + 2)
        try:
            if self.publisher is not None:
                self.publisher.stop()
        finally:
            try:
                if self.lighting is not None:
                    self.lighting.off()
            finally:
                with self._camera_lock:
                    self.camera.close()
                self.storage.close()

    def __enter__(self) -> "Station":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lighting: on while someone previews or captures, off when idle -------------------
    def acquire_light(self) -> None:
        with self._light_lock:
            self._light_users += 1
            if self._light_users == 1 and self.lighting is not None:
                self.lighting.on()

    def release_light(self) -> None:
        with self._light_lock:
            self._light_users = max(0, self._light_users - 1)
            if self._light_users == 0 and self.lighting is not None:
                self.lighting.off()

    def capture_still(self) -> Frame:
        """One full-resolution frame with the LED ring on; nothing analysed or stored.
        CameraError when the camera fails or stalls."""
        self.acquire_light()
        try:
            with self._camera_lock:
                return self.camera.capture()
        finally:
            self.release_light()

    # -- preview ------------------------------------------------------------------------
    def _frame_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._camera_lock:
                    frame = self.camera.preview_frame()
            except CameraError as exc:
                # A stalled camera stops the loop, so the watchdog pings stop and systemd restarts us.
                log.error("preview stopped: %s", exc)
                self._frame_error = str(exc)
                with self._frame_cond:
                    self._frame_cond.notify_all()
                return
            with self._frame_cond:
                self._latest = frame
                self._frame_seq += 1
                self._frame_cond.notify_all()
            for listener in list(self.frame_listeners):
                listener(frame)

    def wait_preview(self, after_seq: int = 0, timeout_s: float = 2.0) -> tuple[int, Frame | None]:
        """The newest preview frame with a sequence number above ``after_seq`` (or None on timeout)."""
        with self._frame_cond:
            self._frame_cond.wait_for(lambda: self._frame_seq > after_seq or self._frame_error is not None
                                      or self._stop.is_set(), timeout=timeout_s)
            if self._frame_seq > after_seq:
                return self._frame_seq, self._latest
            return self._frame_seq, None

    @property
    def preview_healthy(self) -> bool:
        return self._loop is not None and self._loop.is_alive() and self._frame_error is None

    # -- scale --------------------------------------------------------------------------
    def scale(self) -> Scale:
        cal = self.storage.latest_calibration("scale")
        if cal is None:
            return Scale(self.config.camera.um_per_px, "config", None)
        return Scale(float(cal.data["um_per_px"]), "calibration",
                     {"id": cal.id, "created_at": cal.created_at, **cal.data})

    @staticmethod
    def calibration_age_days(scale: Scale) -> float | None:
        """Days since the scale calibration in force was made (None when there is none)."""
        if scale.calibration is None:
            return None
        created = datetime.fromisoformat(scale.calibration["created_at"].replace("Z", "+00:00"))
        return (datetime.now(timezone.utc) - created).total_seconds() / 86400

    def conditions(self) -> dict[str, Any]:
        """The flat-field reference and the last lighting check in force, stored with each result."""
        out: dict[str, Any] = {"flat_field": None, "lighting_check": None}
        ff = self.storage.latest_calibration("flat_field")
        if ff is not None:
            out["flat_field"] = {"id": ff.id, "created_at": ff.created_at, "mean_level": ff.data.get("mean_level")}
        check = self.storage.latest_calibration("lighting_check")
        if check is not None and (ff is None or check.data.get("reference_id") == ff.id):
            out["lighting_check"] = {"id": check.id, "created_at": check.created_at,
                                     **{k: check.data.get(k) for k in ("within_tolerance", "level_change", "shape_change")}}
        return out

    def flat_field_correct(self, image):
        """The frame divided by the stored white-card reference (unchanged when none is stored)."""
        cal = self.storage.latest_calibration("flat_field")
        if cal is None or not cal.blob:
            return image
        if self._flat_field is None or self._flat_field[0] != cal.id:
            self._flat_field = (cal.id, FlatField.from_bytes(cal.blob), {})
        _, field, corrections = self._flat_field
        size = image.shape[:2]
        if size not in corrections:
            corrections[size] = field.correction_map(*size)
        return apply_flat_field(image, field, correction=corrections[size])

    # -- capture ------------------------------------------------------------------------
    def analyze(self, image, um_per_px: float):
        with self._analysis_lock:
            return core.analyze(image, um_per_px,
                                vellus_threshold_um=self.config.analysis.vellus_threshold_um,
                                min_visible_length_um=self.config.analysis.min_visible_length_um)

    def capture(self, patient_id: str, zone: str, note: str = "", accept: bool | None = None) -> ResultRecord:
        """Capture, analyse and store one frame.

        accept=None keeps the capture pending when the quality gate fails (the technician then
        accepts or retakes); True accepts it anyway; False always leaves it pending.
        """
        patient_id, zone, note = check_patient_id(patient_id), check_zone(zone), check_note(note)
        frame = self.capture_still()
        captured_at = utc_now_iso()
        scale = self.scale()
        t0 = time.perf_counter()
        result = self.analyze(self.flat_field_correct(frame.image), scale.um_per_px)
        overlay = core.draw_overlay(frame.image, result)
        log.info("capture analysed in %.0f ms (%d hairs)", (time.perf_counter() - t0) * 1000, result.hair_count)
        verdict = evaluate_quality(result.quality, self.quality_thresholds)
        passed = bool(verdict.passed)
        status = "accepted" if (accept is True or (accept is None and passed)) else "pending"
        record = ResultRecord(
            id=new_id(), captured_at=captured_at, patient_id=patient_id, zone=zone, note=note,
            status=status, image_file="", overlay_file=None, um_per_px=scale.um_per_px,
            scale_source=scale.source, calibration={**(scale.calibration or {}), **self.conditions()},
            capture=frame.capture_info(),
            quality=verdict.to_dict(), analysis=result.to_dict(include_hairs=True),
        )
        record = self._with_follow_up(record, frame.image, result)
        outbox = self._outbox_messages(record, frame.image) if status == "accepted" else None
        cfg = self.config.station
        stored = self.storage.save_result(record, frame.image, overlay, cfg.image_format, cfg.jpeg_quality, outbox)
        self._wake_publisher()
        return stored

    def _with_follow_up(self, record: ResultRecord, image, result) -> ResultRecord:
        """The record with ``extra["follow_up"]`` (comparison with the baseline visit, issue 8).

        A failure of the comparison never loses the capture: it is stored as {"error": ...}.
        """
        try:
            from station import followup

            t0 = time.perf_counter()
            fu = followup.compare_to_baseline(self, record, image, result)
            if fu is None:
                return record
            log.info("follow-up against %s in %.0f ms", fu.get("baseline_id"), (time.perf_counter() - t0) * 1000)
        except Exception as exc:  # noqa: BLE001 - the capture matters more than the comparison
            log.exception("follow-up comparison failed")
            fu = {"error": f"{type(exc).__name__}: {exc}"}
        return dataclasses.replace(record, extra={**record.extra, "follow_up": fu})

    def set_status(self, result_id: str, status: str) -> ResultRecord:
        record = self.storage.set_status(result_id, status, outbox=self._outbox_messages)
        self._wake_publisher()
        return record

    def _outbox_messages(self, record: ResultRecord, image=None) -> list[tuple[str, bytes]]:
        """The messages to queue for an accepted capture; ``image`` is the frame when it is not stored yet."""
        mqtt = self.config.mqtt
        jpeg = None
        if mqtt.publish_images:
            if image is None:
                stored = self.storage.image_path(record.image_file)
                if stored.suffix.lower() in (".jpg", ".jpeg"):
                    jpeg = stored.read_bytes()
                else:
                    image = read_image(stored)
            if jpeg is None:
                jpeg = encode_image(image, ".jpg", self.config.station.jpeg_quality)
        return payload.outbox_messages(record, self.config.station.id, include_hairs=mqtt.include_hairs,
                                       image_jpeg=jpeg)

    def _wake_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.wake()

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        scale = self.scale()
        age = self.calibration_age_days(scale)
        warnings = []
        if scale.source == "config":
            warnings.append(f"no scale calibration stored: results use the configured {scale.um_per_px:g} µm/px; calibrate the station")
        elif age is not None and age > self.config.analysis.calibration_max_age_days:
            warnings.append(f"scale calibration is {age:.0f} days old (limit {self.config.analysis.calibration_max_age_days}); recalibrate")
        if not self.preview_healthy and self.started_at:
            warnings.append(f"camera: {self._frame_error or 'preview not running'}")
        mqtt = self.publisher.status() if self.publisher is not None else {"enabled": False, "connected": False}
        for kind, reason in (mqtt.get("refused") or {}).items():
            warnings.append(f"the clinic's MQTT broker {mqtt['broker']} refuses this station's {kind} ({reason}): its "
                            f"access list must let it publish to {mqtt['topics']}; they stay queued on the station")
        return {
            "station_id": self.config.station.id,
            "software_version": payload.software_version(),
            "started_at": self.started_at,
            "camera": {"backend": self.config.camera_backend, "running": self.camera.running,
                       "preview_ok": self.preview_healthy, "error": self._frame_error,
                       "main_size": list(self.camera.main_size), "preview_size": list(self.camera.preview_size)},
            "lighting": {"backend": self.config.lighting.backend,
                         "on": bool(getattr(self.lighting, "is_on", False)) if self.lighting else False},
            "scale": {"um_per_px": scale.um_per_px, "source": scale.source,
                      "calibration_id": (scale.calibration or {}).get("id"),
                      "age_days": None if age is None else round(age, 2)},
            "mqtt": mqtt,
            "outbox": {"waiting": self.storage.outbox_count()},
            "disk": {"free_bytes": self.storage.free_disk_bytes()},
            "warnings": warnings,
        }
