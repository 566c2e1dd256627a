"""``tricho analyze``: JSON lines, readable summary, overlays, unreadable files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.phantoms.generator import PhantomSpec, render_phantom

ROOT = Path(__file__).resolve().parents[1]


def _tricho(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "station.cli", "analyze", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for seed, ext in ((1, ".png"), (2, ".jpg")):
        img, _ = render_phantom(seed, PhantomSpec(width=640, height=480, density_per_cm2=200))
        p = d / f"scalp{seed}{ext}"
        cv2.imwrite(str(p), img[:, :, ::-1])
        paths.append(p)
    return paths


def test_json_lines_one_per_image(images):
    r = _tricho(*map(str, images), "--um-per-px", "4", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, images):
        d = json.loads(line)
        assert d["image"] == str(path)
        assert d["hair_count"] > 0 and d["width"] == 640 and d["height"] == 480
        assert d["hairs"] and set(d["hairs"][0]) == {"x", "y", "angle_deg", "length_um", "thickness_um",
                                                      "root_x", "root_y"}
        assert "sharpness" in d["quality"]


def test_no_hairs_and_vellus_threshold(images):
    r = _tricho(str(images[0]), "--um-per-px", "4", "--json", "--no-hairs", "--vellus-threshold-um", "200")
    d = json.loads(r.stdout)
    assert d["hairs"] == [] and d["vellus_threshold_um"] == 200.0
    assert d["vellus_count"] == d["hair_count"] and d["terminal_count"] == 0


def test_summary_and_overlay(images, tmp_path):
    r = _tricho(str(images[0]), "--um-per-px", "4", "--overlay", str(tmp_path / "ov"))
    assert r.returncode == 0, r.stderr
    assert "hairs" in r.stdout and "/cm2" in r.stdout and str(images[0]) in r.stdout
    out = cv2.imread(str(tmp_path / "ov" / f"{images[0].stem}_overlay.png"))
    assert out is not None and out.shape == (480, 640, 3)


def test_unreadable_file_reported_others_still_run(images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    r = _tricho(str(bad), str(images[0]), str(tmp_path / "missing.jpg"), "--um-per-px", "4", "--json")
    assert r.returncode == 1
    assert "broken.png" in r.stderr and "missing.jpg" in r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and json.loads(r.stdout)["image"] == str(images[0])


def test_bad_scale_is_clear_error(images):
    r = _tricho(str(images[0]), "--um-per-px", "-3")
    assert r.returncode == 1 and "um_per_px" in r.stderr


def test_help_has_example():
    r = subprocess.run([sys.executable, "-m", "station.cli", "analyze", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "example" in r.stdout and "--um-per-px" in r.stdout


def test_kernels_are_warm_before_the_first_image_is_timed(images, monkeypatch):
    import argparse

    import core.analysis
    from station.commands import analyze as command

    calls = []
    real_analyze = core.analysis.analyze
    monkeypatch.setattr(core.analysis, "warm_up", lambda: calls.append("warm_up") or 0.0)
    monkeypatch.setattr(core.analysis, "analyze", lambda *a, **k: calls.append("analyze") or real_analyze(*a, **k))
    args = argparse.Namespace(images=[str(images[0])], um_per_px=4.0, vellus_threshold_um=40.0, json=True,
                              no_hairs=True, overlay=None)
    assert command.run(args) == 0
    assert calls == ["warm_up", "analyze"]
