"""core.draw_overlay: same size RGB uint8, shafts coloured by class, non-skin shaded, legend."""
from __future__ import annotations

import numpy as np
import pytest

import core
from core.overlay import TERMINAL_RGB, VELLUS_RGB
from tests.phantoms.generator import PhantomSpec, render_phantom


@pytest.fixture(scope="module")
def analysed():
    img, _ = render_phantom(5, PhantomSpec(width=800, height=600, vellus_fraction=0.4, banner=True))
    return img, core.analyze(img, 4.0)


def _has_colour(img, rgb, tol=40):
    return np.any(np.all(np.abs(img.astype(int) - np.array(rgb)) < tol, axis=2))


def test_overlay_shape_dtype_and_classes(analysed):
    img, r = analysed
    out = core.draw_overlay(img, r)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert r.vellus_count > 0 and r.terminal_count > 0
    assert _has_colour(out, VELLUS_RGB) and _has_colour(out, TERMINAL_RGB)


def test_overlay_shades_banner(analysed):
    img, r = analysed
    out = core.draw_overlay(img, r)
    assert not r.skin_mask[-5:].any()  # the burned-in banner is not skin
    # shaded area is tinted blue
    band = out[-5:, 200:400].reshape(-1, 3).astype(int)
    assert np.mean(band[:, 2] > band[:, 0]) > 0.9


def test_overlay_grey_and_16_bit(analysed):
    img, r = analysed
    grey16 = (img.mean(axis=2) * 257).astype(np.uint16)
    out = core.draw_overlay(grey16, r)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_overlay_size_mismatch_is_value_error(analysed):
    img, r = analysed
    with pytest.raises(ValueError, match="image"):
        core.draw_overlay(img[:100, :100], r)


def test_overlay_leaves_input_untouched(analysed):
    img, r = analysed
    before = img.copy()
    out = core.draw_overlay(img, r)
    assert np.array_equal(img, before) and not np.shares_memory(out, img)
