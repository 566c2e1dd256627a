"""Flat field from a white card: vignetting correction, storage, lighting drift, refusals."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.flat_field import FlatField, apply_flat_field, compare_lighting, flat_field_from_reference
from tests.cards import lighting_field, render_blank, render_card, render_scalp, CardSpec


@pytest.fixture(scope="module")
def reference():
    return flat_field_from_reference(render_blank(level=0.8, vignetting=0.35, noise=0.01, seed=1))


def _residual(flat: np.ndarray) -> float:
    """Largest deviation from the mean after averaging out pixel noise (15 px box)."""
    smooth = cv2.blur(flat, (15, 15))
    return float(np.max(np.abs(smooth / smooth.mean() - 1.0)))


def test_reference_figures(reference):
    assert reference.gain.shape == (48, 64) and reference.gain.dtype == np.float32
    assert reference.gain.mean() == pytest.approx(1.0, abs=1e-3)
    assert 0.55 < reference.uniformity < 0.75  # corners 35 % darker than the centre
    assert 0.65 < reference.mean_level < 0.75
    assert reference.source_shape == (1520, 2028)


def test_vignetted_card_is_flattened_below_2_percent(reference):
    card = render_blank(level=0.8, vignetting=0.35, noise=0.01, seed=2)
    assert _residual(card) > 0.25
    flat = apply_flat_field(card, reference)
    assert flat.dtype == np.float32 and flat.shape == card.shape
    assert _residual(flat) < 0.02
    assert float(flat.mean()) == pytest.approx(float(card.mean()), rel=0.01)  # brightness kept


def test_uneven_lighting_with_tilt_is_flattened():
    card = render_blank(level=0.7, vignetting=0.45, noise=0.0) * lighting_field(2028, 1520, 0.0, 0.2)
    ff = flat_field_from_reference(card)
    assert _residual(apply_flat_field(card, ff)) < 0.005


def test_rgb_frames_keep_colour_and_get_the_same_correction(reference):
    card = render_blank(level=0.8, vignetting=0.35, noise=0.0, seed=3)
    rgb = (np.dstack([card, card * 0.9, card * 0.8]) * 255 + 0.5).astype(np.uint8)
    out = apply_flat_field(rgb, reference)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert _residual(np.ascontiguousarray(out[:, :, 1])) < 0.02
    ratio = out[700:800, 900:1000, 2].mean() / out[700:800, 900:1000, 0].mean()
    assert ratio == pytest.approx(0.8, abs=0.01)


def test_precomputed_correction_gives_the_same_result(reference):
    card = render_blank(level=0.8, vignetting=0.35, seed=4)
    corr = reference.correction_map(*card.shape)
    np.testing.assert_allclose(apply_flat_field(card, reference, correction=corr),
                               apply_flat_field(card, reference), atol=1e-6)
    with pytest.raises(ValueError, match="correction"):
        apply_flat_field(card, reference, correction=corr[:-1])


def test_output_is_clipped_to_one(reference):
    bright = np.full((1520, 2028), 0.95, np.float32)
    assert float(apply_flat_field(bright, reference).max()) == 1.0


def test_bytes_and_dict_round_trip(reference):
    data = reference.to_bytes()
    assert len(data) < 16_000
    back = FlatField.from_bytes(data)
    np.testing.assert_array_equal(back.gain, reference.gain)
    assert back.mean_level == pytest.approx(reference.mean_level, rel=1e-6)
    assert back.source_shape == reference.source_shape
    d = json.loads(json.dumps(reference.to_dict()))
    assert {"mean_level", "uniformity", "data_base64"} <= set(d)
    np.testing.assert_array_equal(FlatField.from_dict(d).gain, reference.gain)
    for bad in (b"", b"XXXX" + data[4:], data[:-4]):
        with pytest.raises(ValueError, match="flat field"):
            FlatField.from_bytes(bad)


def test_other_frame_sizes_of_the_same_aspect(reference):
    half = cv2.resize(render_blank(level=0.8, vignetting=0.35, noise=0.0), (1014, 760), interpolation=cv2.INTER_AREA)
    assert _residual(apply_flat_field(half, reference)) < 0.02
    with pytest.raises(ValueError, match="aspect ratio"):
        apply_flat_field(np.zeros((1080, 1920), np.float32), reference)


@pytest.mark.parametrize("factor, within", [(0.92, False), (0.98, True), (1.02, True), (1.08, False)])
def test_level_drift(reference, factor, within):
    card = render_blank(level=0.8, vignetting=0.35, noise=0.01, seed=5) * factor
    drift = compare_lighting(reference, card)
    assert drift.within_tolerance is within
    assert drift.level_change == pytest.approx(factor - 1.0, abs=0.005)
    if within:
        assert drift.reason == ""
    else:
        direction = "below" if factor < 1 else "above"
        assert drift.reason.startswith(f"lighting drift: card level {drift.level:.2f} is 8.0 % {direction} "
                                       f"the baseline {reference.mean_level:.2f} (tolerance 5 %)")
    assert json.loads(json.dumps(drift.to_dict()))["within_tolerance"] is within


def test_shape_drift_and_dead_lighting_are_reported_not_refused(reference):
    flatter = render_blank(level=0.8, vignetting=0.1, noise=0.01, seed=6) * 0.88
    drift = compare_lighting(reference, flatter)
    assert not drift.within_tolerance
    assert drift.shape_change > 0.1
    assert any(r.startswith("lighting shape changed") for r in drift.reasons)
    dead = compare_lighting(reference, np.full((1520, 2028), 0.02, np.float32))
    assert not dead.within_tolerance and dead.level_change < -0.9
    assert "check the LED ring and its connector" in dead.reason


@pytest.mark.parametrize("image, match", [
    (lambda: render_blank(level=0.8) * 0.2, "too dark"),
    (lambda: np.clip(render_blank(level=0.8) * 1.4, 0, 1), "clipped"),
    (lambda: render_scalp(seed=1), "not a plain white card"),
    (lambda: render_card(CardSpec()), "not a plain white card"),
    (lambda: _card_with_hair(), "not a plain white card"),
    (lambda: render_blank(level=0.8, vignetting=0.85, noise=0.0), "unevenly lit"),
])
def test_bad_references_are_refused(image, match):
    with pytest.raises(ValueError, match=match):
        flat_field_from_reference(image())


def _card_with_hair() -> np.ndarray:
    card = render_blank(level=0.8, vignetting=0.3)
    cv2.line(card, (100, 200), (1800, 1300), 0.3, 12, cv2.LINE_AA)
    return card


def test_bad_arguments(reference):
    with pytest.raises(ValueError, match="flat_field"):
        apply_flat_field(np.zeros((64, 64), np.float32), "not a flat field")
    with pytest.raises(ValueError, match="image"):
        apply_flat_field(np.zeros((64, 64), np.int32), reference)
    with pytest.raises(ValueError, match="tolerance"):
        compare_lighting(reference, render_blank(), tolerance=0.0)
    with pytest.raises(ValueError, match="reference"):
        compare_lighting(None, render_blank())
