"""core.analyze / analyze_preview / draw_overlay: bad input gets a ValueError naming the parameter,
and no input crashes or hangs the process."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core
from core.analysis import analyze, analyze_preview


def _frame(h=96, w=128, dtype=np.uint8):
    rng = np.random.default_rng(0)
    img = rng.normal(0.6, 0.02, (h, w)).clip(0, 1)
    img[h // 2 - 2:h // 2 + 2, :] = 0.1  # one horizontal hair
    if dtype == np.uint8:
        return (img * 255).astype(np.uint8)
    if dtype == np.uint16:
        return (img * 65535).astype(np.uint16)
    return img.astype(dtype)


@pytest.mark.parametrize("image, word", [
    (None, "image"),
    ([[1, 2], [3, 4]], "image"),
    (np.zeros((0, 0), np.uint8), "image"),
    (np.zeros((10, 10), np.uint8), "image"),  # tiny
    (np.zeros((64, 64, 2), np.uint8), "image"),  # wrong channel count
    (np.zeros((4, 64, 64, 3), np.uint8), "image"),  # wrong rank
    (np.zeros((64, 64), np.int32), "image"),  # wrong dtype
    (np.zeros((64, 64), bool), "image"),
    (np.full((64, 64), np.nan, np.float32), "image"),
    (np.full((64, 64), 2.0, np.float32), "image"),  # float out of [0, 1]
])
def test_bad_image_names_parameter(image, word):
    with pytest.raises(ValueError, match=word):
        analyze(image, 4.0)
    with pytest.raises(ValueError, match=word):
        analyze_preview(image, 4.0)


@pytest.mark.parametrize("um", [0, -1, float("nan"), float("inf"), 1e6, 1e-6, "four", None])
def test_bad_scale_names_parameter(um):
    with pytest.raises(ValueError, match="um_per_px"):
        analyze(_frame(), um)


@pytest.mark.parametrize("kw", [{"vellus_threshold_um": 0}, {"vellus_threshold_um": float("nan")},
                                {"vellus_threshold_um": 1e5}, {"min_visible_length_um": -1}])
def test_bad_options_name_parameter(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        analyze(_frame(), 4.0, **kw)


@pytest.mark.parametrize("mask", [np.ones((10, 10), bool), np.ones((96, 128), np.uint8), "all"])
def test_bad_mask_names_parameter(mask):
    with pytest.raises(ValueError, match="mask"):
        analyze(_frame(), 4.0, mask=mask)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_uniform_image_gives_zero_hairs_and_null_means(value):
    r = analyze(np.full((120, 160), value, np.float32), 4.0)
    assert r.hair_count == 0 and r.hairs == ()
    d = r.to_dict()
    assert d["mean_thickness_um"] is None and d["median_thickness_um"] is None
    json.dumps(d, allow_nan=False)


def test_all_masked_out_gives_zero_hairs():
    r = analyze(_frame(), 4.0, mask=np.zeros((96, 128), bool))
    assert r.hair_count == 0 and r.area_cm2 == 0.0
    json.dumps(r.to_dict(), allow_nan=False)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_accepts_depths_and_layouts(dtype, channels):
    img = _frame(dtype=dtype)
    if channels:
        img = np.repeat(img[:, :, None], channels, axis=2)
    r = analyze(img, 4.0)
    assert (r.width, r.height) == (128, 96)
    assert core.draw_overlay(img, r).shape == (96, 128, 3)


def test_to_dict_keys_exact():
    d = analyze(_frame(), 4.0).to_dict()
    assert list(d) == ["width", "height", "um_per_px", "area_cm2", "hair_count", "density_per_cm2",
                       "mean_thickness_um", "median_thickness_um", "vellus_threshold_um", "vellus_count",
                       "terminal_count", "cumulative_thickness_mm_per_cm2", "follicular_units",
                       "thickness_histogram", "hairs", "quality", "elapsed_ms"]
    assert set(d["follicular_units"]) == {"1", "2", "3", "4+"}
    assert set(d["thickness_histogram"]) == {"edges_um", "counts"}
    for h in d["hairs"]:
        assert set(h) == {"x", "y", "angle_deg", "length_um", "thickness_um", "root_x", "root_y"}
    assert analyze(_frame(), 4.0).to_dict(include_hairs=False)["hairs"] == []


_dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.bool_])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(0, 90), w=st.integers(0, 90), ch=st.sampled_from([None, 1, 2, 3, 4, 5]), dtype=_dtypes,
       fill=st.sampled_from(["random", "zeros", "max", "nan", "stripes"]),
       um=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([2.0, 4.0, 8.0])))
def test_fuzz_never_crashes(h, w, ch, dtype, fill, um):
    """Any input either analyses or raises ValueError; never another exception, never a NaN out."""
    shape = (h, w) if ch is None else (h, w, ch)
    rng = np.random.default_rng(h * 97 + w)
    if dtype in (np.float32, np.float64):
        img = {"random": rng.random(shape), "zeros": np.zeros(shape), "max": np.ones(shape),
               "nan": np.full(shape, np.nan), "stripes": (np.indices(shape).sum(0) % 7 < 2) * 0.8}[fill]
        img = img.astype(dtype)
    else:
        top = 1 if dtype is np.bool_ else np.iinfo(dtype).max
        img = {"random": rng.integers(0, top, shape, endpoint=True), "zeros": np.zeros(shape),
               "max": np.full(shape, top), "nan": np.zeros(shape),
               "stripes": (np.indices(shape).sum(0) % 7 < 2) * top}[fill].astype(dtype)
    for fn in (analyze, analyze_preview):
        try:
            r = fn(img, um)
        except ValueError:
            continue
        if fn is analyze:
            d = r.to_dict()
            json.dumps(d, allow_nan=False)
            assert all(math.isfinite(hh["thickness_um"]) for hh in d["hairs"])
