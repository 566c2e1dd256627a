"""The LED ring through gpiozero's MockFactory: pin states, PWM frequency rules, pin factory choice."""
from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from station.config import Config
from station.lighting import (Lighting, LightingError, NoLighting, check_pwm_frequency, choose_pin_factory,
                              is_raspberry_pi_5, make_lighting)


def lighting_config(**kw):
    return Config().replace(lighting={"backend": "gpio", **kw}).lighting


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def test_pwm_ring_on_at_fixed_brightness_and_off(factory):
    with Lighting(lighting_config(pin=18, brightness=0.6, pwm_frequency_hz=2000), pin_factory=factory) as light:
        pin = factory.pin(18)
        assert pin.frequency == 2000
        assert not light.is_on and pin.state == 0
        light.on()
        assert light.is_on and pin.state == pytest.approx(0.6)
        light.on()  # idempotent
        light.off()
        assert not light.is_on and pin.state == 0
        pin.assert_states([0, 0.6, 0])
    assert pin.frequency is None, "closing releases the PWM"


def test_constant_current_driver_is_a_plain_switch(factory):
    with Lighting(lighting_config(pin=17, pwm=False, brightness=0.5), pin_factory=factory) as light:
        pin = factory.pin(17)
        light.on()
        assert pin.state == 1 and light.is_on
        assert pin.frequency is None, "no PWM on a constant-current driver"
        light.off()
        pin.assert_states([False, True, False])


def test_frequency_zero_means_constant_current(factory):
    with Lighting(lighting_config(pin=17, pwm_frequency_hz=0), pin_factory=factory) as light:
        light.on()
        assert factory.pin(17).state == 1 and not light.pwm


def test_low_pwm_frequency_is_rejected_with_the_reason(factory):
    with pytest.raises(LightingError, match="bands.*rolling shutter.*>= 1000 Hz"):
        Lighting(lighting_config(pwm_frequency_hz=200), pin_factory=factory, exposure_us=8000)
    with pytest.raises(LightingError, match=r"whole multiple of 125 Hz \(e.g. 250 Hz\)"):
        Lighting(lighting_config(pwm_frequency_hz=200), pin_factory=factory, exposure_us=8000)


def test_low_frequency_that_divides_the_exposure_is_allowed(factory):
    check_pwm_frequency(250, 8000)  # two whole periods per 8 ms exposure
    check_pwm_frequency(1000)
    check_pwm_frequency(0)
    with Lighting(lighting_config(pin=5, pwm_frequency_hz=500), pin_factory=factory, exposure_us=8000) as light:
        light.on()
        assert factory.pin(5).frequency == 500
    with pytest.raises(LightingError):
        check_pwm_frequency(100, 8000)  # 0.8 periods


def test_zero_brightness_is_refused(factory):
    with pytest.raises(LightingError, match="dark"):
        Lighting(lighting_config(brightness=0.0), pin_factory=factory)


def test_close_is_idempotent_and_off_after_close_is_harmless(factory):
    light = Lighting(lighting_config(pin=22), pin_factory=factory)
    light.on()
    light.close()
    light.close()
    light.off()
    assert not light.is_on
    with pytest.raises(LightingError, match="closed"):
        light.on()
    # The pin is free again.
    with Lighting(lighting_config(pin=22), pin_factory=factory):
        pass


def test_make_lighting(factory):
    none = make_lighting(Config().lighting)
    assert isinstance(none, NoLighting)
    none.on()
    assert none.is_on
    none.off()
    none.close()
    gpio = make_lighting(lighting_config(pin=23), pin_factory=factory)
    assert isinstance(gpio, Lighting)
    gpio.close()


def test_config_pin_factory_mock_is_built():
    light = Lighting(lighting_config(pin=24, pin_factory="mock"))
    try:
        light.on()
        assert light.is_on
    finally:
        light.close()


def test_pi5_is_detected_and_gets_lgpio(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert is_raspberry_pi_5(model)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    try:
        import lgpio  # noqa: F401
        has_lgpio = True
    except ImportError:
        has_lgpio = False
    if has_lgpio:
        pytest.skip("lgpio installed here: building its factory would touch real GPIO")
    with pytest.raises(LightingError, match="'lgpio' is not available.*python3-lgpio"):
        choose_pin_factory("", model)
    pi4 = tmp_path / "pi4"
    pi4.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert not is_raspberry_pi_5(pi4)
    assert choose_pin_factory("", pi4) is None, "gpiozero picks on a Pi 4"
    assert choose_pin_factory("", tmp_path / "missing") is None
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert choose_pin_factory("", model) is None, "GPIOZERO_PIN_FACTORY wins"


def test_station_reference_counts_the_light(factory, tmp_path):
    """Preview and capture both hold the light; it goes off only when the last user lets go."""
    from station.service import Station

    cfg = Config().replace(station={"state_dir": str(tmp_path)}, camera={"backend": "fake"})
    light = Lighting(lighting_config(pin=18), pin_factory=factory)
    station = Station(cfg, lighting=light)
    try:
        station.acquire_light()
        station.acquire_light()
        station.release_light()
        assert light.is_on
        station.release_light()
        assert not light.is_on
        assert station.status()["lighting"]["on"] is False
    finally:
        station.storage.close()
        light.close()
