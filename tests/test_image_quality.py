"""The image-quality gate: each bad frame fails for its own reason, a good frame passes."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.image_quality import (
    ImageQuality,
    QualityThresholds,
    evaluate_quality,
    measure_image_quality,
)
from tests.cards import render_scalp

FRAMES = {
    "sharp": dict(),
    "sharp_other_seed": dict(seed=7, n_hairs=70),
    "sharp_noisy": dict(noise=0.02),
    "blurred_2px": dict(blur_px=2.0),
    "blurred_3px": dict(blur_px=3.0),
    "overexposed": dict(exposure=1.8),
    "underexposed": dict(exposure=0.15),
    "glare": dict(glare_spots=40),
    "motion_15px": dict(motion_px=15.0, motion_deg=0.0),
    "motion_25px": dict(motion_px=25.0, motion_deg=0.0),
    "motion_20px_60deg": dict(motion_px=20.0, motion_deg=60.0),
}
EXPECTED_FAILURE = {
    "sharp": None,
    "sharp_other_seed": None,
    "sharp_noisy": None,
    "blurred_2px": "focus",
    "blurred_3px": "focus",
    "overexposed": "clipping",
    "underexposed": "brightness_low",
    "glare": "glare",
    "motion_15px": "motion",
    "motion_25px": "motion",
    "motion_20px_60deg": "motion",
}


@pytest.fixture(scope="module")
def qualities():
    return {name: measure_image_quality(render_scalp(**kw)) for name, kw in FRAMES.items()}


@pytest.mark.parametrize("name", list(FRAMES))
def test_gate_fails_for_the_right_reason(qualities, name):
    verdict = evaluate_quality(qualities[name])
    failed = [c.name for c in verdict.checks if not c.passed]
    expected = EXPECTED_FAILURE[name]
    if expected is None:
        assert verdict.passed, (name, verdict.reasons, qualities[name])
    else:
        assert failed == [expected], (name, failed, verdict.reasons, qualities[name])
        assert len(verdict.reasons) == 1 and verdict.reasons[0]


def test_reason_texts_carry_the_figure_and_the_remedy(qualities):
    reasons = {name: evaluate_quality(q).reasons for name, q in qualities.items()}
    assert reasons["blurred_2px"][0].startswith("out of focus: sharpness 0.")
    assert "press the lens" in reasons["blurred_2px"][0]
    assert reasons["overexposed"][0].startswith("overexposed: ") and "% of pixels clipped > 2.0 %" in reasons["overexposed"][0]
    assert "polariser" in reasons["glare"][0]
    assert "hold the trichoscope still" in reasons["motion_15px"][0]


def test_sharpness_separates_focus_and_ignores_exposure_and_noise(qualities):
    sharp = qualities["sharp"].sharpness
    assert sharp > 0.6
    assert qualities["blurred_2px"].sharpness < QualityThresholds().min_sharpness < sharp
    assert qualities["blurred_3px"].sharpness < qualities["blurred_2px"].sharpness
    assert abs(qualities["sharp_noisy"].sharpness - sharp) < 0.05
    dim = measure_image_quality(render_scalp(exposure=0.5))
    assert abs(dim.sharpness - sharp) < 0.05


def test_sharpness_does_not_depend_on_frame_size():
    frame = render_scalp(seed=3)
    full = measure_image_quality(frame).sharpness
    crop = measure_image_quality(np.ascontiguousarray(frame[200:960, 300:1314])).sharpness
    assert abs(full - crop) < 0.08


def test_motion_blur_direction_is_reported(qualities):
    q = qualities["motion_20px_60deg"]
    assert q.motion_blur > QualityThresholds().max_motion_blur
    assert abs(((q.motion_angle_deg - 60.0) + 90.0) % 180.0 - 90.0) < 15.0
    assert qualities["sharp"].motion_blur < 0.3


def test_hair_shine_is_not_glare():
    frame = render_scalp(seed=5)
    # thin bright streaks, like specular reflection along hair shafts
    for k in range(30):
        y = 60 + 45 * k
        frame[y:y + 3, 200:1700] = 1.0
    q = measure_image_quality(frame)
    assert q.glare_fraction < 0.002
    assert q.clipped_fraction > 0.02 * 0.5


def test_skin_mask_limits_the_analysed_area():
    frame = render_scalp(seed=2)
    mask = np.zeros(frame.shape, bool)
    mask[:, : frame.shape[1] // 3] = True
    frame[:, frame.shape[1] // 3:] = 1.0  # clipped outside the skin: must not count
    q = measure_image_quality(frame, mask)
    assert q.clipped_fraction < 0.001
    assert q.usable_fraction == pytest.approx(1 / 3, abs=0.01)
    verdict = evaluate_quality(q)
    assert [c.name for c in verdict.checks if not c.passed] == ["skin"]
    assert verdict.reasons[0].startswith("too little skin visible: 33.")


def test_blank_frame_is_not_sharp():
    flat = np.full((480, 640), 0.5, np.float32) + np.random.default_rng(0).normal(0, 0.01, (480, 640)).astype(np.float32)
    q = measure_image_quality(np.clip(flat, 0, 1))
    assert q.sharpness == 0.0
    assert not evaluate_quality(q).passed


def test_accepts_rgb_uint8_and_uint16():
    rgb = render_scalp(seed=1, rgb=True)
    q8 = measure_image_quality(rgb)
    q16 = measure_image_quality(rgb.astype(np.uint16) * 257)
    assert q8.sharpness == pytest.approx(q16.sharpness, abs=1e-3)
    assert 0.3 < q8.mean_level < 0.7


def test_to_dict_is_json_safe(qualities):
    q = qualities["glare"]
    d = q.to_dict()
    assert set(d) >= {"sharpness", "clipped_fraction", "dark_fraction", "glare_fraction", "motion_blur",
                      "usable_fraction", "mean_level"}
    v = evaluate_quality(q).to_dict()
    text = json.dumps({"quality": d, "verdict": v})
    back = json.loads(text)
    assert back["verdict"]["passed"] is False
    assert back["verdict"]["checks"][0].keys() == {"name", "value", "threshold", "passed", "reason"}


def test_custom_thresholds():
    q = ImageQuality(0.5, 0.0, 0.0, 0.0, 0.1, 0.0, 0.9, 0.5)
    assert evaluate_quality(q).passed
    assert not evaluate_quality(q, QualityThresholds(min_sharpness=0.6)).passed


@pytest.mark.parametrize("bad, match", [
    ([[0.5] * 64] * 64, "numpy array"),
    (np.zeros((10, 10), np.float32), "between"),
    (np.full((64, 64), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.zeros((64, 64), np.int32), "uint8"),
    (np.zeros((4, 64, 64), np.float32), "channels"),
])
def test_bad_input_raises_value_error_naming_gray(bad, match):
    with pytest.raises(ValueError, match=match) as exc:
        measure_image_quality(bad)
    assert "gray" in str(exc.value)


def test_bad_mask_raises():
    with pytest.raises(ValueError, match="skin_mask"):
        measure_image_quality(np.zeros((64, 64), np.float32), np.ones((64, 65), bool))
    with pytest.raises(ValueError, match="skin_mask"):
        measure_image_quality(np.zeros((64, 64), np.float32), [[True]])
    with pytest.raises(ValueError, match="quality"):
        evaluate_quality({"sharpness": 1.0})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 120), w=st.integers(1, 120),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    channels=st.sampled_from([0, 1, 3, 4]),
    seed=st.integers(0, 2**16), pattern=st.sampled_from(["noise", "zeros", "ones", "stripes"]),
    with_mask=st.booleans(),
)
def test_fuzz_value_error_or_valid_figures(h, w, dtype, channels, seed, pattern, with_mask):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    if pattern == "noise":
        img = rng.random(shape)
    elif pattern == "zeros":
        img = np.zeros(shape)
    elif pattern == "ones":
        img = np.ones(shape)
    else:
        img = np.zeros(shape)
        img[::3] = 1.0
    if dtype == np.uint8:
        img = (img * 255).astype(np.uint8)
    elif dtype == np.uint16:
        img = (img * 65535).astype(np.uint16)
    else:
        img = img.astype(dtype)
    mask = rng.random((h, w)) > 0.3 if with_mask else None
    try:
        q = measure_image_quality(img, mask)
    except ValueError:
        assert min(h, w) < 32
        return
    for value in q.to_dict().values():
        assert math.isfinite(value)
    for name in ("sharpness", "clipped_fraction", "dark_fraction", "glare_fraction", "motion_blur",
                 "usable_fraction", "mean_level"):
        assert 0.0 <= getattr(q, name) <= 1.0, (name, q)
    evaluate_quality(q).to_dict()


@pytest.mark.parametrize("kind, seed", [("crown", 11), ("dark_skin", 11)])
def test_gate_on_core_phantoms(kind, seed):
    """The shared phantoms (tests/phantoms): in focus passes, optics blur σ = 2 px fails focus."""
    phantoms = pytest.importorskip("tests.phantoms.generator")
    from tests.phantoms.sets import draw_spec

    spec = draw_spec(kind, seed)
    for blur, expected in ((1.0, []), (2.0, ["focus"])):
        img, truth = phantoms.render_phantom(seed, dataclasses.replace(spec, blur_px=blur))
        verdict = evaluate_quality(measure_image_quality(img, truth.analysed_mask))
        assert [c.name for c in verdict.checks if not c.passed] == expected, (kind, blur, verdict.reasons)


def test_masked_out_banner_edge_does_not_count_as_detail():
    frame = render_scalp(seed=6, blur_px=2.0)
    mask = np.ones(frame.shape, bool)
    mask[-100:] = False
    frame[-100:] = 0.0
    frame[-60:-40, 100:1900:40] = 1.0  # sharp white text on black, outside the skin
    assert measure_image_quality(frame, mask).sharpness < QualityThresholds().min_sharpness
