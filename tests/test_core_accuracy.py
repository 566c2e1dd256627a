"""Accuracy of core.analyze on a small slice of the phantom VALIDATION set (seeds never tuned on).

Each figure has two tests:
- ``*_no_worse``: a regression guard at the level reached so far (measured 2026-11-21 with
  both dependency sets, plus a margin); it fails when a change makes the core worse.
- ``*_meets_target``: the issue's target. Where it is not met yet the test is marked
  ``xfail(strict=True)``: it reports the gap on every run and fails as XPASS the day the
  target is reached, so the marker gets removed. benchmarks/accuracy_core.py prints the
  full figures on the whole validation set.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

NOT_YET = pytest.mark.xfail(strict=True, reason="issue 3 target not met yet; see docs/status.md")

from core.analysis import analyze
from tests.phantoms.generator import render_phantom
from tests.phantoms.matching import score_image, unit_figures
from tests.phantoms.sets import draw_spec, phantom_set, repeat_captures

W, H = 1014, 760  # a quarter frame keeps the suite fast; ~25-40 hairs per image


def _scores(kinds, per_kind=2):
    out = []
    for kind, seed, spec in phantom_set("val", kinds, per_kind, W, H):
        img, truth = render_phantom(seed, spec)
        out.append(score_image(analyze(img, spec.um_per_px), truth))
    return out


@pytest.fixture(scope="module")
def clear():
    return _scores(("crown", "hairline", "donor"))


@pytest.fixture(scope="module")
def hard():
    return _scores(("grey", "dark_skin", "long", "blur", "jpeg"), per_kind=1)


def _count_error(scores):
    # per image, then the mean (as benchmarks/accuracy_core.py): pooled over images, an
    # overcounted image and an undercounted one cancel
    return float(np.mean([abs(s.detected_count - s.true_count) / s.true_count for s in scores]))


def _f1(scores):
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    return 2 * tp / (2 * tp + fp + fn)


def _pairs(scores):
    return np.array([p for s in scores for p in s.width_pairs])


def _repeat_capture_cvs():
    # a full frame: on a quarter frame hairs entering / leaving at the border alone move the count by ~2 %
    base = draw_spec("crown", 10_950, "val", 2028, 1520)
    ratios, means = [], []
    for spec in repeat_captures(base, 4, 10_950):
        img, truth = render_phantom(10_950, spec)
        r = analyze(img, spec.um_per_px)
        # hairs really enter and leave the frame when it moves: judge the measurement against
        # each capture's own truth
        ratios.append(r.hair_count / len(truth.counted))
        means.append(r.mean_thickness_um)
    cv = lambda v: float(np.std(v, ddof=1) / np.mean(v))  # noqa: E731
    return cv(ratios), cv(means)


def _density_rise_error():
    diffs = []
    for seed in (10_960, 10_961):
        base = draw_spec("crown", seed, "val", 2028, 1520)
        more = dataclasses.replace(base, extra_density_fraction=0.10)
        (ib, tb), (im, tm) = render_phantom(seed, base), render_phantom(seed, more)
        true = len(tm.counted) / len(tb.counted) - 1
        meas = analyze(im, more.um_per_px).density_per_cm2 / analyze(ib, base.um_per_px).density_per_cm2 - 1
        diffs.append(meas - true)
    return max(abs(d) for d in diffs)


@pytest.fixture(scope="module")
def repeat_cvs():
    return _repeat_capture_cvs()


@pytest.fixture(scope="module")
def density_rise_error():
    return _density_rise_error()


def _mae(scores):
    p = _pairs(scores)
    return float(np.mean(np.abs(p[:, 1] - p[:, 0])))


def _mean_thickness_error(scores):
    return float(np.mean([abs(s.detected_mean_um - s.true_mean_um) for s in scores]))


# -- count ----------------------------------------------------------------------------------
def test_count_error_clear_no_worse(clear):
    assert _count_error(clear) <= 0.09  # reached: 7.9 % (7.3 % before pieces were joined at crossings after trimming)


@NOT_YET
def test_count_error_clear_meets_target(clear):
    assert _count_error(clear) <= 0.05


def test_count_error_hard_no_worse(hard):
    assert _count_error(hard) <= 0.17  # reached: 14.4-14.9 % on this slice (whole validation set: 13.0 %)


@NOT_YET
def test_count_error_hard_meets_target(hard):
    assert _count_error(hard) <= 0.10


# -- per-hair detection ---------------------------------------------------------------------
def test_detection_f1_clear_no_worse(clear):
    assert _f1(clear) >= 0.84  # reached: 0.880


@NOT_YET
def test_detection_f1_clear_meets_target(clear):
    assert _f1(clear) >= 0.95


def test_detection_f1_hard_no_worse(hard):
    assert _f1(hard) >= 0.80  # reached: 0.836-0.840


@NOT_YET
def test_detection_f1_hard_meets_target(hard):
    assert _f1(hard) >= 0.85


# -- thickness ------------------------------------------------------------------------------
def test_thickness_mae_clear_no_worse(clear):
    assert _mae(clear) <= 12.5  # reached: 9.2-10.4 µm


@NOT_YET
def test_thickness_mae_clear_meets_target(clear):
    assert _mae(clear) <= 5.0


def test_mean_thickness_clear_no_worse(clear):
    assert _mean_thickness_error(clear) <= 6.0  # reached: 4.3-4.6 µm


@NOT_YET
def test_mean_thickness_clear_meets_target(clear):
    assert _mean_thickness_error(clear) <= 3.0


def test_thickness_bias_does_not_grow_with_width(clear):
    p = _pairs(clear)
    d = p[:, 1] - p[:, 0]
    thin, thick = p[:, 0] < 45, p[:, 0] >= 65
    # median bias in the thick bin within 3 µm of the thin bin's (reached: 1.9 µm)
    assert abs(np.median(d[thick]) - np.median(d[thin])) <= 3.0


# -- the same spot again, and a known change --------------------------------------------------
def test_repeat_capture_count_cv_no_worse(repeat_cvs):
    assert repeat_cvs[0] <= 0.045  # reached: 2.5-3.1 %


@NOT_YET
def test_repeat_capture_count_cv_meets_target(repeat_cvs):
    assert repeat_cvs[0] <= 0.015


def test_repeat_capture_mean_thickness_cv_no_worse(repeat_cvs):
    assert repeat_cvs[1] <= 0.02  # reached: 0.8 % (numpy 1.24/OpenCV 4.11) - 1.3 % (numpy 2/OpenCV 5)


@pytest.mark.xfail(strict=False, reason="target met with one dependency set (0.8 %), not the other (1.3 %)")
def test_repeat_capture_mean_thickness_cv_meets_target(repeat_cvs):
    assert repeat_cvs[1] <= 0.01


def test_density_rise_of_ten_percent_no_worse(density_rise_error):
    assert density_rise_error <= 0.07  # reached: off by 1.9 points (4.2 before the turn-weighted joins)


# Met on these two seeds since the seventh session (-1.9 and -0.7 points) but not on the
# benchmark's: 4 validation seeds are off by up to 5.9 points, 24 development seeds by 4.5 rms
@pytest.mark.xfail(strict=False, reason="met on this 2-seed slice, not on benchmarks/accuracy_core.py's seeds")
def test_density_rise_of_ten_percent_meets_target(density_rise_error):
    assert density_rise_error <= 0.02


# -- follicular units (the issue sets no figure; guard the level reached) ------------------

def test_follicular_unit_histogram_no_worse(clear):
    err, true_per_unit, found_per_unit = unit_figures(clear)
    # reached: 0.42 of the true number of units (0.56 before a sibling traced from where it
    # leaves the shared shaft joined the unit, 1.11 before siblings were grouped)
    assert err <= 0.52
    assert found_per_unit >= 1.45  # reached: 1.56 hairs per unit (1.43 before), truth 1.77
