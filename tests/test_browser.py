"""The page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Log in, see the stream, capture (with an XSS attempt in the note), see the result with its
overlay, retake/accept a blurred capture, see the history plot after three captures, log out.
Screenshots go to /tmp/tricho-screens/ for a person to look at.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SCREENS = Path("/tmp/tricho-screens")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_NOTE = '<img src=x onerror="alert(1)"><script>alert(2)</script> "quoted" & more'


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 800}, timeout=30_000)
        try:
            yield ctx
        finally:
            ctx.close()


def shot(page, name: str, full_page: bool = True) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=full_page, timeout=15_000)


def timed_goto(page, url: str, timings: dict, name: str) -> None:
    t0 = time.perf_counter()
    page.goto(url, wait_until="load", timeout=15_000)
    timings[name] = round((time.perf_counter() - t0) * 1000)


def wait_stream(page) -> None:
    page.wait_for_function("() => { const i = document.getElementById('live'); return i && i.naturalWidth > 0; }",
                           timeout=15_000)


def capture(page, patient: str, zone: str, note: str = "") -> float:
    page.fill("#patient_id", patient)
    page.click(f"label.zone:has(input[value='{zone}'])")
    page.fill("#note", note)
    t0 = time.perf_counter()
    page.click("#capture-btn")
    page.wait_for_url("**/results/**", timeout=30_000)
    page.wait_for_load_state("load")
    return time.perf_counter() - t0


def test_technician_session(browser, live_server, record_property):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    timings: dict[str, int] = {}
    base = live_server.url

    # not logged in: every page leads to the login
    timed_goto(page, base + "/", timings, "login")
    assert "/login" in page.url
    shot(page, "01-login")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong password."
    console_errors.clear()  # the browser logs the wrong password's 401 as a failed resource
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/", timeout=10_000)

    # the live view streams, with the live count and quality figures beside it
    wait_stream(page)
    page.wait_for_function("() => document.getElementById('lf-focus').textContent !== '–'", timeout=20_000)
    assert page.locator("#lf-count").inner_text().isdigit()
    shot(page, "02-capture-live")
    assert page.locator(".banner.warn").count() >= 1  # no calibration yet: warned on every page
    assert "calibrat" in page.locator(".banner.warn").first.inner_text()

    # capture 1 (sharp): accepted, with overlay and figures; the note is shown as text
    latencies = [capture(page, "P-0042", "crown", XSS_NOTE)]
    assert "Accepted" in page.locator("#verdict").inner_text()
    page.wait_for_function("() => { const i = document.getElementById('zoom-img'); return i.complete && i.naturalWidth > 1000; }",
                           timeout=15_000)
    assert page.locator("#note-text").inner_text() == XSS_NOTE
    assert page.locator("#note-text img, #note-text script").count() == 0
    assert page.locator("svg.plot").count() == 1
    assert page.locator("#delivery").inner_text().startswith("waiting in outbox")
    shot(page, "03-result-accepted")
    page.click("#zoom-img", position={"x": 300, "y": 200})
    page.wait_for_function("() => document.getElementById('zoom').classList.contains('zoomed')", timeout=5_000)
    shot(page, "04-result-zoomed", full_page=False)
    page.click("#zoom-img")

    # capture 2 (sharp) from "Next capture": patient and zone carried over
    page.click("text=Next capture")
    page.wait_for_url("**/?patient_id=*", timeout=10_000)
    assert page.input_value("#patient_id") == "P-0042"
    assert page.is_checked("input[name=zone][value=crown]")
    latencies.append(capture(page, "P-0042", "crown"))
    assert "Accepted" in page.locator("#verdict").inner_text()

    # capture 3 (blurred): the gate fails with its reason; retake or accept
    page.click("text=Next capture")
    page.wait_for_url("**/?patient_id=*", timeout=10_000)
    latencies.append(capture(page, "P-0042", "crown"))
    assert "Quality check failed" in page.locator("#verdict").inner_text()
    assert "out of focus" in page.locator("ul.reasons").inner_text()
    shot(page, "05-result-quality-failed")
    page.click("text=Accept anyway")
    page.wait_for_load_state("load")
    assert "Accepted" in page.locator("#verdict").inner_text()

    # history: three visits, two plots with a baseline line, change from the baseline
    t0 = time.perf_counter()
    page.click("text=History >> nth=-1")
    page.wait_for_url("**/history?*", timeout=10_000)
    timings["history"] = round((time.perf_counter() - t0) * 1000)
    assert page.locator("#visits tr").count() == 4  # header + 3 visits
    assert page.locator("#density-plot svg circle").count() == 3
    assert page.locator("#thickness-plot svg polyline").count() == 1
    assert page.locator("#visits tr.baseline").count() == 1
    shot(page, "06-history")
    with page.expect_download(timeout=10_000) as dl:
        page.click("text=Export CSV")
    csv_text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert csv_text.count("\n") == 4 and csv_text.startswith("id,captured_at,patient_id")

    timed_goto(page, base + "/station", timings, "station")
    shot(page, "07-station")
    timed_goto(page, base + "/", timings, "capture")

    # a small touchscreen (800x480, the official Pi display)
    page.set_viewport_size({"width": 800, "height": 480})
    wait_stream(page)
    page.wait_for_function("() => document.getElementById('lf-focus').textContent !== '–'", timeout=20_000)
    time.sleep(1.0)  # let the live overlay arrive
    capture_box = page.locator("#capture-btn").bounding_box()
    assert capture_box["y"] + capture_box["height"] <= 480  # the Capture button is on screen without scrolling
    shot(page, "08-capture-800x480", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})

    # the hardware capture button (or a pedal) makes the open page submit its form
    assert page.input_value("#patient_id") == "P-0042"
    time.sleep(1.0)  # the page has polled /api/live at least once
    live_server.app.extensions["tricho.preview"].press_button()
    page.wait_for_url("**/results/**", timeout=20_000)
    assert page.locator(".result-head .pid").inner_text() == "P-0042"

    page.click("text=Log out")
    page.wait_for_url("**/login", timeout=10_000)
    timed_goto(page, base + "/history", timings, "after-logout")
    assert "/login" in page.url

    assert dialogs == [], f"a dialog fired: {dialogs}"
    # no blocked script or style, and no request failed (a broken capture image, the favicon)
    assert console_errors == [], console_errors
    record_property("capture_latency_s", [round(x, 2) for x in latencies])
    record_property("page_load_ms", timings)
    print(f"\nbrowser: capture→result {[round(x, 2) for x in latencies]} s; page loads {timings} ms")
    page.close()
    # nobody watches any more: the shared encoder stops
    preview = live_server.app.extensions["tricho.preview"]
    deadline = time.monotonic() + 10
    while (preview.viewers or preview.encoding) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert preview.viewers == 0 and not preview.encoding


@contextlib.contextmanager
def station_page(browser, tmp_path, frames_dir):
    """A station of its own replaying ``frames_dir``, and a logged-in page on /station."""
    from station.service import Station
    from tests.conftest import build_app, make_config, start_live_server

    cfg = make_config(tmp_path / "state", frames_dir)
    station = Station(cfg)
    station.start()
    srv = start_live_server(build_app(cfg, station))
    page = browser.new_page()
    try:
        page.goto(srv.url + "/station", timeout=15_000)
        if "/login" in page.url:
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/station", timeout=10_000)
        yield page
    finally:
        page.close()
        srv.close()
        station.stop()


def test_calibration_from_the_station_page(browser, tmp_path, cards_dir):
    """Grid card → scale; white card → reference; dimmer white card → drift shown. The warning goes away."""
    with station_page(browser, tmp_path, cards_dir) as page:
        assert page.locator(".banner.warn").count() == 1
        page.fill("#pitch_um", "500")
        page.click("text=Place the grid card, then calibrate")
        page.wait_for_load_state("load")
        assert "Scale calibrated: 3.7" in page.locator(".banner.ok").inner_text()
        assert page.locator(".banner.warn").count() == 0  # calibrated: no warning on any page
        page.click("text=Store white-card reference")
        page.wait_for_load_state("load")
        page.click("text=Check lighting against reference")
        page.wait_for_load_state("load")
        assert "lighting drift" in page.locator(".banner.bad").inner_text()
        assert "DRIFT" in page.locator("#lighting-check").inner_text()
        assert "lighting drift" in page.locator(".banner.warn").inner_text()  # and on every page until fixed
        shot(page, "09-station-calibrated")


def test_a_refused_repeat_is_reported_in_view(browser, tmp_path, frames_dir):
    """The Station page returns scrolled to the repeat-capture card: the refusal of a repeat that
    shows another spot must be in that card and on screen, not in a banner scrolled out of view."""
    with station_page(browser, tmp_path, frames_dir) as page:  # captures cycle through unrelated frames
        page.click("text=Capture repeat 1")
        page.wait_for_load_state("load")
        assert "Repeat 1 of 5 captured" in page.locator("#repeatability .banner.ok").inner_text()
        page.click("text=Capture repeat 2")
        page.wait_for_load_state("load")
        refused = page.locator("#repeatability .banner.bad")
        assert "Repeat 2 does not show the spot of repeat 1" in refused.inner_text()
        box, view = refused.bounding_box(), page.viewport_size
        assert box["y"] >= 0 and box["y"] + box["height"] <= view["height"], (box, view)
        assert "Repeats taken: 1 of 5" in page.locator("#rep-progress").inner_text()
        assert page.locator("body > .banner.bad").count() == 0  # said once, where the technician looks
        shot(page, "10-repeat-refused", full_page=False)
