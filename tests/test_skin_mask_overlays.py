"""Burned-in labels and scale bars anywhere in the frame are not skin (core.skin_mask)."""
from __future__ import annotations

import numpy as np
import pytest

from core.analysis import analyze
from core.skin_mask import find_skin_mask
from tests.phantoms.alt_generator import render_alt
from tests.phantoms.generator import PhantomSpec, render_phantom


def _noisy_skin(h=480, w=640, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.7 + rng.normal(0, 0.01, (h, w)), 0, 1).astype(np.float32)


def test_a_dark_corner_label_and_a_white_bar_over_the_skin_are_masked():
    g = _noisy_skin()
    g[:40, :250] = 0.06  # a dark-grey label in a corner, not a full-width banner
    g[10:30, 20:230:12] = 0.9  # its text
    g[400:412, 380:600] = 0.95  # a scale bar over the skin, not pure white
    mask = find_skin_mask(g)
    assert not mask[:40, :250].any()
    assert not mask[400:412, 380:600].any()
    assert mask[200:300, 200:400].all()
    assert mask.mean() > 0.85


def test_noisy_dark_and_bright_shafts_are_left_alone():
    g = _noisy_skin()
    rng = np.random.default_rng(1)
    g[100:130, 50:600] = np.clip(0.07 + rng.normal(0, 0.004, (30, 550)), 0, 1)  # a thick black shaft, horizontal
    g[300:320, 50:600] = np.clip(0.93 + rng.normal(0, 0.004, (20, 550)), 0, 1)  # a white one
    assert find_skin_mask(g).all()


def test_uint8_rounding_alone_does_not_make_a_dark_shaft_an_overlay():
    # sensor noise below half a grey level rounds whole blocks of a black shaft to one value
    g = _noisy_skin()
    rng = np.random.default_rng(2)
    g[100:104, 100:116] = np.round((0.12 + rng.normal(0, 0.001, (4, 16))) * 255) / 255  # 4 flat blocks
    assert find_skin_mask(g).all()


@pytest.mark.parametrize("kind, seed", [("plain", 1), ("round_field", 200)])
def test_no_hair_is_found_on_the_label_or_the_scale_bar_of_an_independent_phantom(kind, seed):
    img, truth = render_alt(seed, kind)
    result = analyze(img, truth.um_per_px)
    overlay = ~truth.analysed_mask
    on_overlay = [h for h in result.hairs
                  if overlay[np.clip(np.round(h.centerline_px[:, 1]).astype(int), 0, img.shape[0] - 1),
                             np.clip(np.round(h.centerline_px[:, 0]).astype(int), 0, img.shape[1] - 1)].mean() > 0.3]
    assert on_overlay == []
    assert result.hair_count >= 0.7 * len(truth.counted)


def test_the_main_phantoms_skin_is_kept():
    img, truth = render_phantom(3, PhantomSpec(width=640, height=480, jpeg_quality=55))
    mask = find_skin_mask(img.mean(axis=2).astype(np.float32) / 255)
    assert mask[truth.analysed_mask].mean() > 0.99  # JPEG-flattened black shafts are not labels
