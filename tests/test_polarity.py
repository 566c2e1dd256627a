"""Dark and white hair in one image (a greying scalp): both are traced (core.polarity)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import hairs, polarity
from core._validate import as_gray_float32
from core.analysis import analyze, analyze_preview
from core.skin_mask import find_skin_mask
from tests.phantoms.generator import render_phantom
from tests.phantoms.matching import score_image
from tests.phantoms.sets import draw_spec

UM = 4.0


def _bars(colours, h=760, w=1014, seed=0):
    """Skin with straight shafts 48 µm wide and 1.2-1.6 mm long, one per colour, apart."""
    rng = np.random.default_rng(seed)
    g = 0.62 + rng.normal(0, 0.01, (h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    for k, c in enumerate(colours):
        x0, y0 = 80 + (k % 4) * 230, 90 + (k // 4) * 330
        a = math.radians(60 + 8 * k)
        ux, uy = math.cos(a), math.sin(a)
        length = (300 + 20 * (k % 5))
        t = np.clip((xx - x0) * ux + (yy - y0) * uy, 0, length)
        d = np.hypot(xx - x0 - t * ux, yy - y0 - t * uy)
        cover = np.clip(6.5 - d, 0, 1)  # 12 px = 48 µm, anti-aliased edge
        g = g * (1 - cover) + c * cover
    return np.clip(g, 0, 1).astype(np.float32)


def _polarities(img, um=UM):
    gray = as_gray_float32(img, "image", integer_luma=True)
    f = hairs.detection_factor(um)
    det, valid = hairs.to_detection_grid(gray, find_skin_mask(gray), f)
    contrast = hairs.relative_contrast(det, valid, um * f)
    return polarity.hair_polarities(contrast, valid, um * f)


def test_dark_and_white_shafts_in_one_image_are_all_counted():
    img = _bars([0.12, 0.95] * 4)
    assert sorted(_polarities(img)) == [False, True]
    r = analyze(img, UM)
    assert r.hair_count == 8
    assert all(40 <= h.thickness_um <= 60 for h in r.hairs), [round(h.thickness_um, 1) for h in r.hairs]
    assert analyze_preview(img[::2, ::2].copy(), 2 * UM).hair_count == 8


def test_a_white_majority_still_finds_the_dark_hairs():
    img = _bars([0.95, 0.95, 0.12, 0.95, 0.95, 0.12, 0.95, 0.95])
    assert _polarities(img) == (False, True)
    assert analyze(img, UM).hair_count == 8


def test_one_colour_of_hair_is_traced_once():
    assert _polarities(_bars([0.12] * 8)) == (True,)
    assert _polarities(_bars([0.95] * 8)) == (False,)
    assert analyze(_bars([0.12] * 8), UM).hair_count == 8
    assert analyze(_bars([0.95] * 8), UM).hair_count == 8


@pytest.mark.parametrize("kind", ["crown", "donor", "dark_skin", "grey", "blond"])
def test_phantoms_with_one_hair_colour_get_one_polarity(kind):
    # dense dark hair makes the skin between shafts look like bright ridges (the donor
    # area most of all); it must not start a second, bright pass
    spec = draw_spec(kind, 10_000 + 7, "val", 1014, 760)
    img, _ = render_phantom(10_007, spec)
    assert len(_polarities(img, spec.um_per_px)) == 1


def _rim_and_shaft(left_shaft, rim, right_shaft, dark):
    """Lines of one polarity traced on the rim beside a shaft (x 60-66) and on a shaft on skin (x 140-146)."""
    contrast = np.zeros((200, 200), np.float32)
    contrast[:, 60:66], contrast[:, 66:69], contrast[:, 140:146] = left_shaft, rim, right_shaft
    ys = np.arange(10, 190, 2.0)
    lines = [np.stack([np.full_like(ys, x), ys], 1) for x in (67.0, 142.5)]
    return hairs.Lines(lines, np.array([3.0, 6.0]), dark, contrast, 1, np.array([180.0, 180.0]))


def test_the_rim_beside_a_dark_shaft_is_not_kept_as_a_white_hair():
    lines = _rim_and_shaft(-0.5, 0.04, 0.3, dark=False)  # slightly bright skin along a dark shaft; a white shaft
    kept = polarity.keep_on_skin(lines, second=True)
    assert len(kept.lines) == 1 and kept.lines[0] is lines.lines[1]


def test_a_dark_trace_along_a_white_shaft_is_dropped_from_the_first_polarity():
    lines = _rim_and_shaft(0.4, -0.06, -0.5, dark=True)  # the darker rim of a white shaft; a dark shaft
    kept = polarity.keep_on_skin(lines, second=False)
    assert len(kept.lines) == 1 and kept.lines[0] is lines.lines[1]


def test_a_trace_running_on_along_a_white_shaft_keeps_its_stretch_on_skin():
    # a dark shaft on skin (y 10-82) whose trace runs on through the opening along the darker
    # rim of a white shaft (y 82-190): only the stretch on skin is a hair, and it is not lost
    contrast = np.zeros((200, 200), np.float32)
    contrast[10:82, 140:146] = -0.5
    contrast[82:190, 140:146], contrast[82:190, 146:152] = -0.06, 0.4
    ys = np.arange(10, 190, 2.0)
    lines = hairs.Lines([np.stack([np.full_like(ys, 142.5), ys], 1)], np.array([6.0]), True, contrast, 1,
                        np.array([180.0]))
    kept = polarity.keep_on_skin(lines, second=True, min_length_px=50.0)
    assert len(kept.lines) == 1
    y = kept.lines[0][:, 1]
    assert y.min() <= 12 and 76 <= y.max() <= 84
    assert kept.length_px[0] == pytest.approx(y.max() - y.min())
    assert len(polarity.keep_on_skin(lines, second=True, min_length_px=100.0).lines) == 0
    contrast[10:82, 140:146] = -0.05  # a faint stretch is skin texture, not a shaft cut free
    assert len(polarity.keep_on_skin(lines, second=True, min_length_px=50.0).lines) == 0


def test_greying_phantom_white_hairs_are_counted():
    # validation seeds (never tuned on).  Measured: one pass of dark hair only found 85 of
    # 156 (recall 0.54) and undercounted by 30 % on average; both polarities 0.79, 13 %
    scores = []
    for seed in range(10_900, 10_906):
        spec = draw_spec("greying", seed, "val", 1014, 760)
        img, truth = render_phantom(seed, spec)
        scores.append(score_image(analyze(img, spec.um_per_px), truth))
    recall = sum(s.tp for s in scores) / sum(s.tp + s.fn for s in scores)
    count_error = np.mean([abs(s.detected_count - s.true_count) / s.true_count for s in scores])
    assert recall >= 0.72, [(s.tp, s.fp, s.fn) for s in scores]
    assert count_error <= 0.18, [(s.true_count, s.detected_count) for s in scores]
