"""Small inline SVG plots rendered on the device: no JavaScript, no CDN, no style attributes.

Every piece of text passes through ``markupsafe.escape``; the functions return ``Markup``
so templates can insert them without ``|safe``. Colours are presentation attributes
(fill=, stroke=), which the page's CSP (style-src 'self') allows.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Sequence

from markupsafe import Markup, escape

INK = "#1d2733"
GRID = "#d5dbe3"
BAR = "#2f6fb3"
LINE = "#2f6fb3"
BASE = "#c0392b"
FONT = 'font-family="system-ui, sans-serif"'


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while len(ticks) < 50:
        ticks.append(round(v, 10))
        if v >= hi - step * 1e-9:
            break
        v += step
    if len(ticks) < 2:
        ticks.append(round(start + step, 10))
    return ticks


def _text(x: float, y: float, s: str, *, anchor: str = "middle", size: int = 13, weight: str = "normal",
          fill: str = INK, rotate: bool = False) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}"'
            f' fill="{fill}" {FONT}{transform}>{escape(s)}</text>')


def _y_axis(body: list[str], yt: Sequence[float], ml: float, mt: float, pw: float, ph: float):
    """Draw the horizontal grid lines and tick labels of ``yt``; return the value → y pixel map."""
    y0, y1 = yt[0], yt[-1]
    sy = lambda v: mt + ph - (v - y0) / (y1 - y0) * ph  # noqa: E731
    for t in yt:
        body.append(f'<line x1="{ml}" y1="{sy(t):.1f}" x2="{ml + pw}" y2="{sy(t):.1f}" stroke="{GRID}" stroke-width="1"/>')
        body.append(_text(ml - 6, sy(t) + 4, _fmt(t), anchor="end", size=13))
    return sy


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="plot" role="img"'
            f' aria-label="{escape(title)}"><title>{escape(title)}</title>')
    return Markup(head + "".join(body) + "</svg>")


def histogram_svg(edges: Sequence[float], counts: Sequence[float], *, title: str, x_label: str,
                  y_label: str = "hairs", width: int = 480, height: int = 270,
                  marker: float | None = None, marker_label: str = "") -> Markup:
    """Bars for ``counts`` between consecutive ``edges`` (len(edges) == len(counts) + 1)."""
    ml, mr, mt, mb = 56, 16, 44, 50
    pw, ph = width - ml - mr, height - mt - mb
    body = [_text(width / 2, 18, title, size=16, weight="bold")]
    counts = [float(c) for c in counts]
    edges = [float(e) for e in edges]
    if not counts or len(edges) != len(counts) + 1:
        body.append(_text(width / 2, height / 2, "no data"))
        return _svg(width, height, title, body)
    x0, x1 = edges[0], edges[-1]
    if x1 <= x0:
        x1 = x0 + 1
    ymax = max(counts) or 1.0
    yt = nice_ticks(0, ymax, 5)
    sx = lambda v: ml + (v - x0) / (x1 - x0) * pw  # noqa: E731
    sy = _y_axis(body, yt, ml, mt, pw, ph)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c <= 0:
            continue
        xa, xb = sx(a), sx(b)
        body.append(f'<rect x="{xa + 0.5:.1f}" y="{sy(c):.1f}" width="{max(xb - xa - 1, 1):.1f}"'
                    f' height="{sy(0) - sy(c):.1f}" fill="{BAR}"><title>{escape(f"{_fmt(a)}–{_fmt(b)}: {c:g}")}</title></rect>')
    for t in nice_ticks(x0, x1, 7):
        if x0 - 1e-9 <= t <= x1 + 1e-9:
            body.append(f'<line x1="{sx(t):.1f}" y1="{mt + ph}" x2="{sx(t):.1f}" y2="{mt + ph + 5}" stroke="{INK}"/>')
            body.append(_text(sx(t), mt + ph + 19, _fmt(t), size=13))
    if marker is not None and x0 <= marker <= x1:
        body.append(f'<line x1="{sx(marker):.1f}" y1="{mt}" x2="{sx(marker):.1f}" y2="{mt + ph}" stroke="{BASE}"'
                    f' stroke-width="2" stroke-dasharray="6 4"/>')
        if marker_label:
            body.append(_text(sx(marker), mt - 4, f"{marker_label} {_fmt(marker)}", anchor="middle", size=13, fill=BASE))
    body.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(_text(ml + pw / 2, height - 8, x_label, size=13))
    body.append(_text(14, mt + ph / 2, y_label, size=13, rotate=True))
    return _svg(width, height, title, body)


def _parse_time(t: str | datetime) -> datetime:
    if isinstance(t, datetime):
        return t
    return datetime.fromisoformat(str(t).replace("Z", "+00:00"))


def timeseries_svg(points: Sequence[tuple[str | datetime, float | None]], *, title: str, y_label: str,
                   baseline: float | None = None, baseline_label: str = "baseline",
                   width: int = 560, height: int = 280) -> Markup:
    """A line with dots over time; a dashed horizontal line at ``baseline``; values None are skipped."""
    ml, mr, mt, mb = 62, 20, 32, 54
    pw, ph = width - ml - mr, height - mt - mb
    body = [_text(width / 2, 19, title, size=16, weight="bold")]
    pts = [(_parse_time(t), float(v)) for t, v in points if v is not None and math.isfinite(float(v))]
    if not pts:
        body.append(_text(width / 2, height / 2, "no visits yet"))
        return _svg(width, height, title, body)
    pts.sort(key=lambda p: p[0])
    ts = [p[0].timestamp() for p in pts]
    vs = [p[1] for p in pts]
    t0, t1 = ts[0], ts[-1]
    if t1 - t0 < 1:
        t0, t1 = t0 - 86400, t1 + 86400
    pad = (t1 - t0) * 0.05
    t0, t1 = t0 - pad, t1 + pad
    lo = min(vs + ([baseline] if baseline is not None else []))
    hi = max(vs + ([baseline] if baseline is not None else []))
    span = hi - lo
    lo, hi = lo - (span * 0.15 or abs(lo) * 0.1 or 1), hi + (span * 0.15 or abs(hi) * 0.1 or 1)
    if lo < 0 <= min(vs):
        lo = 0.0
    yt = nice_ticks(lo, hi, 5)
    sx = lambda t: ml + (t - t0) / (t1 - t0) * pw  # noqa: E731
    sy = _y_axis(body, yt, ml, mt, pw, ph)
    # x labels: every visit when few, else about five evenly spread ones
    idx = list(range(len(pts))) if len(pts) <= 6 else sorted({round(i * (len(pts) - 1) / 4) for i in range(5)})
    days = [pts[i][0].strftime("%Y-%m-%d") for i in idx]
    fmt = "%Y-%m-%d" if len(set(days)) == len(days) else "%m-%d %H:%M"
    last_x = -1e9
    for i in idx:
        x = sx(ts[i])
        body.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 5}" stroke="{INK}"/>')
        if x - last_x >= 90:
            anchor = "end" if x > ml + pw - 40 else ("start" if x < ml + 40 else "middle")
            body.append(_text(x, mt + ph + 20, pts[i][0].strftime(fmt), size=13, anchor=anchor))
            last_x = x
    if baseline is not None:
        yb = sy(baseline)
        body.append(f'<line x1="{ml}" y1="{yb:.1f}" x2="{ml + pw}" y2="{yb:.1f}" stroke="{BASE}" stroke-width="2"'
                    f' stroke-dasharray="7 5"/>')
        body.append(_text(ml + pw - 4, yb - 6, f"{baseline_label} {_fmt(baseline)}", anchor="end", size=13, fill=BASE))
    if len(pts) > 1:
        path = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in zip(ts, vs))
        body.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2.5"/>')
    for (dt, v), t in zip(pts, ts):
        body.append(f'<circle cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="5" fill="{LINE}">'
                    f'<title>{escape(dt.strftime("%Y-%m-%d %H:%M") + ": " + _fmt(v))}</title></circle>')
    body.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(_text(ml + pw / 2, height - 10, "visit date (UTC)", size=13))
    body.append(_text(15, mt + ph / 2, y_label, size=13, rotate=True))
    return _svg(width, height, title, body)


NOISE = "#b8c2cf"
FAN = "#c9dcf2"
MATCHED = "#1e8449"


def trend_svg(trend: dict | None, *, title: str = "Change from baseline", width: int = 560,
              height: int = 300) -> Markup:
    """Change from the baseline (%) against months, with the noise band and the trend's 95 % band.

    ``trend`` is ``core.trend.Trend.to_dict()`` (``station.followup.trend``): visits with
    days_since_baseline, change_pct, source ("baseline", "matched", "density"), noise_pct;
    the slope and its 95 % interval.  Drawn: a grey band ±noise_pct around 0 (what repeat
    captures of an unchanged spot give), the least-squares line through the visits and its
    shaded 95 % confidence band (narrowest at the mean visit, widening away from it).
    Matched changes (hair to hair) are green dots, density changes blue rings.
    """
    ml, mr, mt, mb = 62, 20, 32, 54
    pw, ph = width - ml - mr, height - mt - mb
    body = [_text(width / 2, 19, title, size=16, weight="bold")]
    visits = list((trend or {}).get("visits") or [])
    if len(visits) < 1:
        body.append(_text(width / 2, height / 2, "no baseline visit yet"))
        return _svg(width, height, title, body)
    ts = [float(v["days_since_baseline"]) / 30.4375 for v in visits]
    ys = [float(v["change_pct"]) for v in visits]
    noise = float(trend.get("noise_pct") or 0.0)
    slope = trend.get("slope_pct_per_month")
    ci = trend.get("slope_ci95_pct_per_month")
    t0, t1 = 0.0, max(max(ts), 1.0)
    pad = (t1 - t0) * 0.05
    t0, t1 = t0 - pad, t1 + pad
    tbar, ybar = sum(ts) / len(ts), sum(ys) / len(ys)
    band = []  # 95 % confidence band of the fitted line: ybar + slope (t - tbar) ± 1.96 SE(t)
    se = trend.get("slope_se_pct_per_month")
    if slope is not None and se is not None:
        sxx = sum((t - tbar) ** 2 for t in ts)
        se_mean = se * math.sqrt(sxx / len(ts))  # the same sigma at the mean point
        for k in range(41):
            tt = t0 + (t1 - t0) * k / 40
            half = 1.96 * math.sqrt(se_mean ** 2 + (se * (tt - tbar)) ** 2)
            band.append((tt, ybar + slope * (tt - tbar) - half, ybar + slope * (tt - tbar) + half))
    fan = [[lo_, hi_] for _, lo_, hi_ in band]
    cand = ys + [noise, -noise] + [v for pair in fan for v in pair]
    lo, hi = min(cand), max(cand)
    span = hi - lo or 1.0
    yt = nice_ticks(lo - 0.08 * span, hi + 0.08 * span, 6)
    sx = lambda t: ml + (t - t0) / (t1 - t0) * pw  # noqa: E731
    sy = _y_axis(body, yt, ml, mt, pw, ph)
    if band:
        poly = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, _, v in band) + " " + \
            " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v, _ in reversed(band))
        body.append(f'<polygon points="{poly}" fill="{FAN}" fill-opacity="0.55" class="trend-band">'
                    f'<title>{escape(f"trend 95 % band; slope {ci[0]:+.1f} to {ci[1]:+.1f} % per month")}</title></polygon>')
    body.append(f'<rect x="{ml}" y="{sy(noise):.1f}" width="{pw}" height="{max(sy(-noise) - sy(noise), 1):.1f}"'
                f' fill="{NOISE}" fill-opacity="0.55" class="noise-band"><title>{escape(f"measurement noise ±{noise:.1f} % (95 %)")}</title></rect>')
    for yv in (noise, -noise):
        body.append(f'<line x1="{ml}" y1="{sy(yv):.1f}" x2="{ml + pw}" y2="{sy(yv):.1f}" stroke="#8a96a5"'
                    f' stroke-width="1" stroke-dasharray="3 3"/>')
    body.append(f'<line x1="{ml}" y1="{sy(0):.1f}" x2="{ml + pw}" y2="{sy(0):.1f}" stroke="{BASE}" stroke-width="1.5"'
                f' stroke-dasharray="7 5"/>')
    body.append(_text(ml + pw - 4, sy(noise) - 5, f"noise ±{noise:.1f} %", anchor="end", size=12, fill="#5a6675"))
    if band:
        body.append(f'<line x1="{sx(t0):.1f}" y1="{sy(ybar + slope * (t0 - tbar)):.1f}" x2="{sx(t1):.1f}"'
                    f' y2="{sy(ybar + slope * (t1 - tbar)):.1f}" stroke="{LINE}" stroke-width="2.5" class="trend-line">'
                    f'<title>{escape(f"trend {slope:+.1f} % per month")}</title></line>')
    for v, t, y in zip(visits, ts, ys):
        src = v.get("source")
        label = f"{str(v.get('captured_at', ''))[:10]}: {y:+.1f} % ({src})"
        if src == "matched":
            dot = f'<circle cx="{sx(t):.1f}" cy="{sy(y):.1f}" r="5.5" fill="{MATCHED}" class="pt-matched">'
        elif src == "baseline":
            dot = f'<circle cx="{sx(t):.1f}" cy="{sy(y):.1f}" r="5.5" fill="{BASE}" class="pt-baseline">'
        else:
            dot = f'<circle cx="{sx(t):.1f}" cy="{sy(y):.1f}" r="5" fill="#ffffff" stroke="{LINE}" stroke-width="2.5" class="pt-density">'
        body.append(dot + f"<title>{escape(label)}</title></circle>")
    for t in nice_ticks(max(t0, 0.0), t1, 6):
        if t0 <= t <= t1:
            body.append(f'<line x1="{sx(t):.1f}" y1="{mt + ph}" x2="{sx(t):.1f}" y2="{mt + ph + 5}" stroke="{INK}"/>')
            body.append(_text(sx(t), mt + ph + 19, _fmt(t), size=13))
    body.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="{INK}" stroke-width="1.5"/>')
    body.append(_text(ml + pw / 2, height - 10, "months since baseline", size=13))
    body.append(_text(15, mt + ph / 2, "change of density (%)", size=13, rotate=True))
    return _svg(width, height, title, body)
