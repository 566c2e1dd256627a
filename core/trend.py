"""Follow-up trend of one patient and zone: change from baseline, trend line, honest verdicts.

A change is only news if it is larger than what repeat captures of an unchanged spot give.
The station's repeatability is the coefficient of variation (CV) of repeat captures of the
same spot (``repeatability_from_repeats``).  The difference of two independent captures
then has a relative SD of about sqrt(2)·CV, so a single visit's change is called "within
measurement noise" when it lies inside ±1.96·sqrt(2)·CV (95 %).  The trend line is a least-
squares fit of the change (%) against time (months of 30.44 days) through all visits, the
baseline included; its standard error is the larger of the one from the residuals and the
one the repeatability alone implies (100·CV / sqrt(Σ(t - t̄)²)), so a few lucky points
cannot make a trend look surer than the instrument allows.

When a visit has a hair-to-hair matched change (``core.hair_matching``), it is used
instead of the change of densities; the same noise band is applied (conservative: matching
removes most of the re-finding error).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core._validate import check_positive

DAYS_PER_MONTH = 30.4375
Z95 = 1.96
# a slope in % per month from visits a few minutes or days apart (a same-day retake of the
# baseline) is the change divided by almost nothing: no trend below this span
MIN_TREND_SPAN_DAYS = 14.0


@dataclass(frozen=True)
class VisitChange:
    """One visit compared with the baseline (visit 0).

    days_since_baseline: days.
    density_per_cm2, mean_thickness_um: as measured at this visit (thickness may be None).
    change_pct:          change of hair count / density from the baseline, % (matched
                         change when given, else from the densities); 0 for the baseline.
    source:              "baseline", "matched" or "density".
    thickness_change_pct: change of mean thickness from the baseline, % (None if unknown).
    noise_pct:           95 % half-width of the change of an unchanged spot, %.
    beyond_noise:        |change_pct| > noise_pct.
    verdict:             plain-language sentence.
    """

    days_since_baseline: float
    density_per_cm2: float
    mean_thickness_um: float | None
    change_pct: float
    source: str
    thickness_change_pct: float | None
    noise_pct: float
    beyond_noise: bool
    verdict: str


@dataclass(frozen=True)
class Trend:
    """Change of every visit from the baseline and the least-squares trend.

    visits:                 VisitChange per visit, baseline first.
    repeatability_cv:       CV of repeat captures used (fraction, e.g. 0.05).
    noise_pct:              95 % half-width of a single visit's change, %.
    slope_pct_per_month:    trend of change_pct, % per month (None when the visits span less
                            than MIN_TREND_SPAN_DAYS).
    slope_se_pct_per_month: its standard error, % per month (max of residual and repeatability SE).
    slope_ci95_pct_per_month: (low, high), slope ± 1.96 SE.
    beyond_noise:           the 95 % interval of the slope excludes 0.
    verdict:                plain-language sentence on the trend.
    """

    visits: tuple
    repeatability_cv: float
    noise_pct: float
    slope_pct_per_month: float | None
    slope_se_pct_per_month: float | None
    slope_ci95_pct_per_month: tuple | None
    beyond_noise: bool
    verdict: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["visits"] = [asdict(v) for v in self.visits]
        if self.slope_ci95_pct_per_month is not None:
            d["slope_ci95_pct_per_month"] = list(self.slope_ci95_pct_per_month)
        return d


def _num(v, name: str, allow_none: bool = False) -> float | None:
    if v is None and allow_none:
        return None
    if hasattr(v, "count_change_pct"):  # a HairMatch
        v = v.count_change_pct
        if v is None and allow_none:
            return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def _visit_fields(v, k: int) -> tuple:
    name = f"visits[{k}]"
    if isinstance(v, dict):
        try:
            days, dens = v["days_since_baseline"], v["density_per_cm2"]
        except KeyError as e:
            raise ValueError(f"{name} lacks key {e}") from None
        thick, matched = v.get("mean_thickness_um"), v.get("matched_change_pct")
    else:
        try:
            items = tuple(v)
        except TypeError:
            raise ValueError(f"{name} must be a tuple (days, density, thickness[, matched change]) or dict") from None
        if len(items) not in (3, 4):
            raise ValueError(f"{name} must have 3 or 4 items (days, density, thickness[, matched change])")
        days, dens, thick = items[:3]
        matched = items[3] if len(items) == 4 else None
    days = _num(days, f"{name} days_since_baseline")
    dens = _num(dens, f"{name} density_per_cm2")
    if dens < 0:
        raise ValueError(f"{name} density_per_cm2 must be >= 0, got {dens}")
    thick = _num(thick, f"{name} mean_thickness_um", allow_none=True)
    matched = _num(matched, f"{name} matched change", allow_none=True)
    return days, dens, thick, matched


def _verdict_change(change: float, noise: float) -> str:
    if abs(change) <= noise:
        return f"within measurement noise (±{noise:.1f} %)"
    word = "increase" if change > 0 else "decrease"
    return f"{word} of {abs(change):.1f} % (beyond noise ±{noise:.1f} %)"


def _span_words(days: float) -> str:
    return f"{days:.0f} days" if days >= 1.5 else ("1 day" if days >= 0.5 else "less than a day")


def follow_up_trend(visits, repeatability_cv: float) -> Trend:
    """Trend of a patient's zone over visits (baseline first).

    visits: sequence of (days_since_baseline, density_per_cm2, mean_thickness_um[, matched
            change]) tuples or dicts with those keys (``matched_change_pct``).  The matched
            change is a % (or a ``HairMatch``) from hair-to-hair matching with the baseline,
            or None.  Days are taken relative to the first visit.
    repeatability_cv: CV of repeat captures of one spot (fraction in (0, 1]), e.g. from
            ``repeatability_from_repeats``.
    """
    cv = check_positive(repeatability_cv, "repeatability_cv", hi=1.0)
    if isinstance(visits, (str, bytes, dict)) or not hasattr(visits, "__len__"):
        raise ValueError("visits must be a sequence of visits")
    if len(visits) < 1:
        raise ValueError("visits must contain at least the baseline visit")
    rows = [_visit_fields(v, k) for k, v in enumerate(visits)]
    d0, dens0, thick0, _ = rows[0]
    if dens0 <= 0:
        raise ValueError("visits[0] density_per_cm2 (baseline) must be > 0")
    days = np.array([r[0] - d0 for r in rows])
    if np.any(days[1:] < 0):
        raise ValueError("visits days_since_baseline must not precede the baseline")
    noise = Z95 * math.sqrt(2.0) * cv * 100.0
    out = []
    for k, (dd, dens, thick, matched) in enumerate(rows):
        tchg = None if thick is None or thick0 is None or thick0 <= 0 else 100.0 * (thick / thick0 - 1.0)
        if k == 0:
            out.append(VisitChange(0.0, dens, thick, 0.0, "baseline", tchg, noise, False, "baseline"))
            continue
        change, src = (matched, "matched") if matched is not None else (100.0 * (dens / dens0 - 1.0), "density")
        out.append(VisitChange(float(days[k]), dens, thick, change, src, tchg, noise, abs(change) > noise,
                               _verdict_change(change, noise)))

    t = days / DAYS_PER_MONTH
    y = np.array([v.change_pct for v in out])
    sxx = float(np.sum((t - t.mean()) ** 2))
    span = float(days.max())
    if len(out) < 2 or span < MIN_TREND_SPAN_DAYS:
        why = "a single visit" if len(out) < 2 else f"visits span {_span_words(span)}"
        return Trend(tuple(out), cv, noise, None, None, None, False,
                     f"not enough visits for a trend ({why}; a trend needs visits at least "
                     f"{MIN_TREND_SPAN_DAYS:.0f} days apart)")
    slope = float(np.sum((t - t.mean()) * (y - y.mean())) / sxx)
    se_rep = 100.0 * cv / math.sqrt(sxx)
    se = se_rep
    if len(out) >= 3:
        resid = y - (y.mean() + slope * (t - t.mean()))
        se = max(se, math.sqrt(float(np.sum(resid ** 2)) / (len(out) - 2) / sxx))
    lo, hi = slope - Z95 * se, slope + Z95 * se
    beyond = lo > 0 or hi < 0
    if beyond:
        word = "increasing" if slope > 0 else "decreasing"
        verdict = f"{word} by {abs(slope):.1f} % per month (95 % interval {lo:+.1f} to {hi:+.1f}; beyond noise)"
    else:
        verdict = f"no trend beyond measurement noise ({slope:+.1f} ± {Z95 * se:.1f} % per month)"
    return Trend(tuple(out), cv, noise, slope, se, (lo, hi), beyond, verdict)


def repeatability_from_repeats(values) -> float:
    """Coefficient of variation (fraction) of repeat captures of the same spot.

    values: a sequence of >= 2 positive measurements (e.g. densities) of one spot, or a
            sequence of such sequences (several spots): then the pooled CV,
            sqrt(mean of the per-spot CV²) weighted by degrees of freedom.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
        raise ValueError("values must be a non-empty sequence of repeat measurements")
    groups = values if all(hasattr(v, "__len__") for v in values) else [values]
    num, dof = 0.0, 0
    for g, grp in enumerate(groups):
        try:
            arr = np.asarray(grp, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"values[{g}] must be numbers") from None
        if arr.ndim != 1 or arr.size < 2:
            raise ValueError(f"values must hold at least 2 repeat measurements per spot (group {g})")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"values must be positive finite numbers (group {g})")
        cv = float(arr.std(ddof=1) / arr.mean())
        num += cv * cv * (arr.size - 1)
        dof += arr.size - 1
    return math.sqrt(num / dof)
