"""The LED ring: on while someone previews or captures, off when idle, at a fixed brightness.

gpiozero drives the pin: a ``PWMLED`` dims the ring by PWM duty cycle; a plain ``LED`` switches
a constant-current driver (``pwm = false`` or ``pwm_frequency_hz = 0``), which has no banding
at all. The Station reference-counts users and calls on()/off(); this module only switches.

Rolling-shutter banding: a CMOS sensor exposes each row at a slightly different time. A PWM
light that flickers during the exposure gives each row a different share of "on" time, so
horizontal bands appear unless every row integrates (nearly) the same number of PWM periods.
That holds when the period divides the exposure exactly (frequency = whole multiple of
1/exposure) or when there are so many periods per exposure that the leftover fraction is
small (>= 1 kHz: at most one period in 8 ms, and less at higher frequencies). Lower
frequencies that are not a whole multiple are rejected.

Pin factory: gpiozero picks one by itself (``GPIOZERO_PIN_FACTORY`` or its preference order),
but on a Raspberry Pi 5 only lgpio works (RPi.GPIO and the native factory cannot reach the RP1
GPIO block, gpiozero#1229). The config's ``pin_factory`` names one explicitly; when it is
empty and the machine is a Pi 5 (``/proc/device-tree/model``), lgpio is chosen here. Tests
pass ``pin_factory=MockFactory(pin_class=MockPWMPin)``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_PWM_HZ = 1000
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
PIN_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}


class LightingError(RuntimeError):
    """The LED ring could not be set up (bad settings, pin busy, no GPIO library)."""


def check_pwm_frequency(frequency_hz: int, exposure_us: int | None = None) -> None:
    """Reject PWM frequencies that would band the image; explain why in the message."""
    if frequency_hz == 0 or frequency_hz >= MIN_PWM_HZ:
        return
    if frequency_hz < 0:
        raise LightingError(f"[lighting] pwm_frequency_hz = {frequency_hz}: must be 0 (constant current) or positive")
    if exposure_us:
        periods = frequency_hz * exposure_us / 1e6
        if periods >= 1 and abs(periods - round(periods)) < 1e-6:
            return  # every row integrates the same whole number of PWM periods
        hint = (f"; with exposure_us = {exposure_us} a whole multiple of {1e6 / exposure_us:g} Hz "
                f"(e.g. {_next_multiple(frequency_hz, exposure_us)} Hz) also works")
    else:
        hint = ""
    raise LightingError(
        f"[lighting] pwm_frequency_hz = {frequency_hz}: PWM below {MIN_PWM_HZ} Hz makes dark and bright "
        f"bands across the image (the rolling shutter exposes each row at a different moment of the "
        f"PWM cycle). Use >= {MIN_PWM_HZ} Hz{hint}, or 0 / pwm = false for a constant-current driver.")


def _next_multiple(frequency_hz: int, exposure_us: int) -> int:
    base = 1e6 / exposure_us
    n = max(1, int(frequency_hz // base) + (0 if (frequency_hz / base).is_integer() else 1))
    value = n * base
    while not value.is_integer():  # a whole-number frequency that is an exact multiple
        n += 1
        value = n * base
        if n > 10_000:
            return MIN_PWM_HZ
    return int(value)


def is_raspberry_pi_5(model_file: Path = DEVICE_TREE_MODEL) -> bool:
    try:
        return "Raspberry Pi 5" in model_file.read_text(errors="replace")
    except OSError:
        return False


def choose_pin_factory(name: str, model_file: Path = DEVICE_TREE_MODEL) -> Any:
    """A gpiozero pin factory instance for ``name``; None lets gpiozero choose (not on a Pi 5)."""
    if not name:
        if os.environ.get("GPIOZERO_PIN_FACTORY"):
            return None  # the operator chose through gpiozero's own variable
        if not is_raspberry_pi_5(model_file):
            return None
        name = "lgpio"
        log.info("Raspberry Pi 5 detected: using gpiozero's lgpio pin factory")
    if name not in PIN_FACTORIES:
        raise LightingError(f"[lighting] pin_factory = {name!r}: allowed: {', '.join(PIN_FACTORIES)}")
    module_name, class_name = PIN_FACTORIES[name]
    try:
        module = __import__(module_name, fromlist=[class_name])
        factory_cls = getattr(module, class_name)
        if name == "mock":
            from gpiozero.pins.mock import MockPWMPin

            return factory_cls(pin_class=MockPWMPin)
        return factory_cls()
    except ImportError as exc:
        apt = {"lgpio": "python3-lgpio", "rpigpio": "python3-rpi-lgpio or python3-rpi.gpio",
               "pigpio": "python3-pigpio"}.get(name, "python3-gpiozero")
        raise LightingError(f"gpiozero pin factory {name!r} is not available ({exc}); "
                            f"install {apt} from apt (the venv needs --system-site-packages)") from None
    except Exception as exc:  # the library is there but cannot reach the GPIO chip
        raise LightingError(f"gpiozero pin factory {name!r} failed to start: {exc}") from None


class NoLighting:
    """No LED ring is driven (backend "none"): on()/off() only record the state."""

    backend = "none"

    def __init__(self) -> None:
        self.is_on = False

    def on(self) -> None:
        self.is_on = True

    def off(self) -> None:
        self.is_on = False

    def close(self) -> None:
        self.is_on = False

    def __enter__(self) -> "NoLighting":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lighting:
    """The LED ring on a GPIO pin through gpiozero, at the configured fixed brightness.

    ``config`` is a ``LightingConfig``; ``pin_factory`` overrides the config's factory
    (tests: ``MockFactory(pin_class=MockPWMPin)``); ``exposure_us`` lets a low PWM frequency
    that is a whole multiple of the exposure pass the banding check.
    """

    backend = "gpio"

    def __init__(self, config: Any, pin_factory: Any = None, exposure_us: int | None = None) -> None:
        self.config = config
        self.pin = config.pin
        self.pwm = bool(config.pwm) and config.pwm_frequency_hz > 0
        self.frequency_hz = config.pwm_frequency_hz if self.pwm else 0
        if config.pwm:
            check_pwm_frequency(config.pwm_frequency_hz, exposure_us)
        if not 0.0 < config.brightness <= 1.0:
            raise LightingError(f"[lighting] brightness = {config.brightness}: must be above 0 and at most 1 "
                                f"(0 would leave the ring dark during captures)")
        self.brightness = float(config.brightness) if self.pwm else 1.0
        if not self.pwm and config.brightness < 1.0:
            log.info("lighting: constant-current mode, brightness %.2f is ignored (set it on the driver)",
                     config.brightness)
        if exposure_us and self.pwm:
            periods = self.frequency_hz * exposure_us / 1e6
            if abs(periods - round(periods)) > 1e-6:
                log.info("lighting: %.1f PWM periods per %d µs exposure; a whole number removes the last "
                         "trace of banding", periods, exposure_us)
        factory = pin_factory if pin_factory is not None else choose_pin_factory(config.pin_factory)
        try:
            from gpiozero import LED, PWMLED
        except ImportError:
            raise LightingError("gpiozero is not installed: install python3-gpiozero (and python3-lgpio) "
                                "from apt and create the venv with --system-site-packages") from None
        try:
            if self.pwm:
                self._device = PWMLED(self.pin, frequency=self.frequency_hz, initial_value=0,
                                      pin_factory=factory)
            else:
                self._device = LED(self.pin, initial_value=False, pin_factory=factory)
        except Exception as exc:
            raise LightingError(f"cannot drive the LED ring on GPIO{self.pin}: {exc}") from None
        self._closed = False

    @property
    def is_on(self) -> bool:
        return not self._closed and bool(self._device.value)

    def on(self) -> None:
        if self._closed:
            raise LightingError("lighting is closed")
        if self.pwm:
            self._device.value = self.brightness
        else:
            self._device.on()

    def off(self) -> None:
        if self._closed:
            return
        self._device.off()

    def close(self) -> None:
        """Switch off and release the pin; safe to call more than once."""
        if self._closed:
            return
        try:
            self._device.off()
        except Exception:  # the pin may already be gone; closing must still release it
            pass
        finally:
            self._device.close()
            self._closed = True

    def __enter__(self) -> "Lighting":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = f"PWM {self.frequency_hz} Hz at {self.brightness:.0%}" if self.pwm else "constant current"
        return f"<Lighting GPIO{self.pin} {mode} {'on' if self.is_on else 'off'}>"


def make_lighting(config: Any, pin_factory: Any = None, exposure_us: int | None = None) -> Lighting | NoLighting:
    """The lighting that ``config`` (a LightingConfig) asks for: gpio, or a no-op for "none"."""
    if config.backend == "none":
        return NoLighting()
    if config.backend == "gpio":
        return Lighting(config, pin_factory=pin_factory, exposure_us=exposure_us)
    raise LightingError(f"[lighting] backend = {config.backend!r}: allowed: gpio, none")
