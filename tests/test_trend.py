"""core.trend: change from baseline, trend line with a repeatability-based band, verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.trend import DAYS_PER_MONTH, follow_up_trend, repeatability_from_repeats


def test_repeatability_single_and_pooled():
    vals = [200.0, 210.0, 190.0, 205.0, 195.0]
    cv = repeatability_from_repeats(vals)
    assert cv == pytest.approx(np.std(vals, ddof=1) / np.mean(vals))
    pooled = repeatability_from_repeats([vals, [100.0, 104.0, 96.0]])
    a = np.std(vals, ddof=1) / np.mean(vals)
    b = np.std([100, 104, 96], ddof=1) / 100.0
    assert pooled == pytest.approx(math.sqrt((4 * a * a + 2 * b * b) / 6))


def test_repeatability_recovers_simulated_cv():
    rng = np.random.default_rng(1)
    spots = [list(220.0 * (1 + rng.normal(0, 0.05, 6))) for _ in range(40)]
    assert repeatability_from_repeats(spots) == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize("bad", [[], [200.0], [200.0, -1.0], [200.0, float("nan")], "abc", [[1.0, 2.0], [3.0]]])
def test_repeatability_rejects(bad):
    with pytest.raises(ValueError, match="values"):
        repeatability_from_repeats(bad)


def test_noise_band_and_verdicts():
    cv = 0.05
    noise = 1.96 * math.sqrt(2) * 5.0  # 13.9 %
    tr = follow_up_trend([(0, 200.0, 60.0), (90, 210.0, 61.0), (180, 240.0, 63.0)], cv)
    assert tr.noise_pct == pytest.approx(noise)
    v0, v1, v2 = tr.visits
    assert v0.source == "baseline" and v0.change_pct == 0.0
    assert v1.change_pct == pytest.approx(5.0) and not v1.beyond_noise
    assert "within measurement noise" in v1.verdict and "13.9" in v1.verdict
    assert v2.change_pct == pytest.approx(20.0) and v2.beyond_noise
    assert v2.verdict.startswith("increase of 20.0 %") and "beyond noise" in v2.verdict
    assert v2.thickness_change_pct == pytest.approx(5.0)
    d = tr.to_dict()
    assert d["visits"][2]["change_pct"] == pytest.approx(20.0)


def test_matched_change_is_preferred_and_decrease_wording():
    tr = follow_up_trend([(0, 200.0, 60.0), (120, 150.0, 55.0, -20.0)], 0.03)
    v = tr.visits[1]
    assert v.source == "matched" and v.change_pct == -20.0
    assert v.verdict.startswith("decrease of 20.0 %")


def test_slope_recovered_on_synthetic_series():
    rng = np.random.default_rng(7)
    days = np.arange(0, 361, 30)
    true_slope = 2.0  # % per month
    dens = 200.0 * (1 + true_slope / 100 * days / DAYS_PER_MONTH) * (1 + rng.normal(0, 0.02, days.size))
    dens[0] = 200.0
    tr = follow_up_trend([(d, x, None) for d, x in zip(days, dens)], 0.02)
    lo, hi = tr.slope_ci95_pct_per_month
    assert lo <= true_slope <= hi
    assert tr.beyond_noise and tr.verdict.startswith("increasing")
    # the repeatability sets a floor under the slope's SE
    sxx = np.sum((days / DAYS_PER_MONTH - (days / DAYS_PER_MONTH).mean()) ** 2)
    assert tr.slope_se_pct_per_month >= 2.0 / math.sqrt(sxx) - 1e-9


def test_flat_series_is_no_trend():
    rng = np.random.default_rng(3)
    days = [0, 60, 120, 180]
    dens = [200.0] + list(200.0 * (1 + rng.normal(0, 0.04, 3)))
    tr = follow_up_trend([{"days_since_baseline": d, "density_per_cm2": x} for d, x in zip(days, dens)], 0.04)
    assert not tr.beyond_noise and tr.verdict.startswith("no trend beyond measurement noise")


def test_single_visit_has_no_trend():
    tr = follow_up_trend([(0, 200.0, 60.0)], 0.05)
    assert tr.slope_pct_per_month is None and "not enough visits" in tr.verdict


@pytest.mark.parametrize("days,words", [(1 / 1440, "less than a day"), (1.0, "1 day"), (13.0, "13 days")])
def test_visits_close_together_have_no_trend(days, words):
    # a retake a minute after the baseline gave "+2059680.5 ± 6850971.5 % per month" on the
    # demo's trend page, with the plot's axis scaled to match
    tr = follow_up_trend([(0, 195.0, 70.6), (days, 203.0, 64.6)], 0.05)
    assert tr.slope_pct_per_month is None and tr.slope_ci95_pct_per_month is None and not tr.beyond_noise
    assert f"visits span {words}" in tr.verdict and "14 days apart" in tr.verdict
    assert tr.visits[1].change_pct == pytest.approx(100 * (203 / 195 - 1))  # the visit's own change stays


def test_two_weeks_apart_have_a_trend():
    tr = follow_up_trend([(0, 200.0, 60.0), (0.01, 201.0, 60.0), (14, 210.0, 61.0)], 0.05)
    assert tr.slope_pct_per_month is not None and "per month" in tr.verdict


@pytest.mark.parametrize("visits,cv,word", [
    ([(0, 200.0, 60.0)], 0.0, "repeatability_cv"),
    ([(0, 200.0, 60.0)], 1.5, "repeatability_cv"),
    ([], 0.05, "visits"),
    ([(0, 0.0, 60.0), (30, 10.0, 60.0)], 0.05, "visits\\[0\\] density_per_cm2"),
    ([(0, 200.0, 60.0), (30, "x", 60.0)], 0.05, "visits\\[1\\] density_per_cm2"),
    ([(0, 200.0)], 0.05, "visits\\[0\\]"),
    ([(10, 200.0, 60.0), (5, 200.0, 60.0)], 0.05, "days_since_baseline"),
    ([{"density_per_cm2": 200.0}], 0.05, "visits\\[0\\] lacks"),
])
def test_trend_rejects(visits, cv, word):
    with pytest.raises(ValueError, match=word):
        follow_up_trend(visits, cv)
