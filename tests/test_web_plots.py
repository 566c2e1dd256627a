"""Inline SVG plots and the history arithmetic."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from station.web import history as hist
from station.web.plots import histogram_svg, nice_ticks, timeseries_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def test_histogram_bars_axes_and_escaped_text():
    svg = histogram_svg([0, 10, 20, 30], [3, 0, 7], title="<b>T&</b>", x_label="µm <x>", marker=15, marker_label="vellus")
    root = parse(svg)  # well-formed XML
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 2  # empty bins draw nothing
    heights = sorted(float(r.get("height")) for r in rects)
    assert heights[1] / heights[0] == pytest.approx(7 / 3, rel=0.01)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<b>T&</b>" in texts and "µm <x>" in texts  # escaped in the markup, intact once parsed
    assert "<b>" not in str(svg) and "&lt;b&gt;T&amp;&lt;/b&gt;" in str(svg)
    assert "style=" not in str(svg) and "<script" not in str(svg)
    ymax_tick = max(float(t.text) for t in root.iter(f"{SVG}text") if t.text.replace(".", "").isdigit()
                    and t.get("text-anchor") == "end")
    assert ymax_tick >= 7  # the axis covers the tallest bar


def test_histogram_without_data():
    assert "no data" in str(histogram_svg([], [], title="x", x_label="y"))


def test_timeseries_points_line_and_baseline():
    pts = [("2026-01-01T10:00:00Z", 200.0), ("2026-03-01T10:00:00Z", 180.0), ("2026-06-01T10:00:00Z", 230.0),
           ("2026-07-01T10:00:00Z", None)]
    root = parse(timeseries_svg(pts, title="Density", y_label="hairs / cm²", baseline=200.0))
    assert len(root.findall(f"{SVG}circle")) == 3
    assert len(root.findall(f"{SVG}polyline")) == 1
    dashed = [ln for ln in root.findall(f"{SVG}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "baseline 200" in texts and "2026-01-01" in texts and "hairs / cm²" in texts
    # higher values are drawn higher (smaller y)
    ys = {float(c.get("cx")): float(c.get("cy")) for c in root.findall(f"{SVG}circle")}
    by_x = [ys[x] for x in sorted(ys)]
    assert by_x[2] < by_x[0] < by_x[1]


def test_timeseries_same_day_shows_times_and_single_point_works():
    root = parse(timeseries_svg([("2026-01-01T10:00:00Z", 5.0), ("2026-01-01T11:30:00Z", 6.0)], title="t", y_label="y"))
    assert "01-01 10:00" in [t.text for t in root.iter(f"{SVG}text")]
    root = parse(timeseries_svg([("2026-01-01T10:00:00Z", 5.0)], title="t", y_label="y", baseline=5.0))
    assert len(root.findall(f"{SVG}circle")) == 1
    assert "no visits yet" in str(timeseries_svg([], title="t", y_label="y"))


@pytest.mark.parametrize("lo,hi", [(0, 21), (0, 1), (196.3, 206.0), (5, 5), (-3, 12), (0, 0.004)])
def test_nice_ticks_cover_the_range(lo, hi):
    t = nice_ticks(lo, hi)
    assert t[0] <= lo and t[-1] >= hi and len(t) >= 2 and len(t) <= 12
    steps = {round(b - a, 9) for a, b in zip(t, t[1:])}
    assert len(steps) == 1


def test_csv_cells_against_formula_injection():
    assert hist._cell("=1+1") == "'=1+1" and hist._cell("@x") == "'@x" and hist._cell("-2") == "'-2"
    assert hist._cell(-2.5) == -2.5 and hist._cell(None) == "" and hist._cell(True) == "true"
    assert hist.csv_filename("P-1", "left side") == "tricho-history-P-1-left_side.csv"
