"""core.registration: re-finding the baseline spot on phantom re-captures.

Pairs are rendered with the phantom generator's camera pose, which allows up to 0.4 mm per
axis and 6 degrees from the scene centre; both captures get mirrored poses (baseline
-d/2, -r/2; current +d/2, +r/2), so relative shifts up to 0.8 mm per axis (1.1 mm
diagonally) and rotations up to 12 degrees are possible.  ``render_pair`` returns the exact
2x3 transform current px -> baseline px.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from core.registration import PreviewRegistrar, Registration, register_to_baseline
from tests.phantoms.generator import render_phantom
from tests.phantoms.sets import draw_spec

SMALL = dict(width=1014, height=760)


def render_pair(seed, spec, dx_um, dy_um, rot_deg, exposure=1.0, baseline_changes=None, **current_changes):
    """(baseline image, truth, current image, truth, 2x3 current px -> baseline px).

    ``dx_um, dy_um``: shift of the current camera relative to the baseline camera (each
    at most 800 µm), ``rot_deg`` its rotation (at most 12 degrees).
    """
    sb = dataclasses.replace(spec, shift_um=(-dx_um / 2, -dy_um / 2), rotation_deg=-rot_deg / 2,
                             noise_seed=seed * 7 + 1, **(baseline_changes or {}))
    sc = dataclasses.replace(spec, shift_um=(dx_um / 2, dy_um / 2), rotation_deg=rot_deg / 2, exposure=exposure,
                             noise_seed=seed * 7 + 2, **current_changes)
    a, ta = render_phantom(seed, sb)
    b, tb = render_phantom(seed, sc)

    def rot(d):
        t = math.radians(d)
        return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])

    fc = np.array([spec.width / 2, spec.height / 2])
    rb, rc = rot(sb.rotation_deg), rot(sc.rotation_deg)
    lin = rb.T @ rc
    t = -lin @ fc + rb.T @ ((np.array(sc.shift_um) - np.array(sb.shift_um)) / spec.um_per_px) + fc
    return a, ta, b, tb, np.hstack([lin, t[:, None]])


def pose_error(reg: Registration, truth: np.ndarray, size, um_per_px):
    """(max position error over the frame, µm; rotation error, degrees)."""
    w, h = size
    g = np.array([[x, y] for x in (0, w / 2, w) for y in (0, h / 2, h)], float)
    m = reg.matrix
    e = np.hypot(*((g @ m[:, :2].T + m[:, 2]) - (g @ truth[:, :2].T + truth[:, 2])).T)
    rot_err = reg.rotation_deg - math.degrees(math.atan2(truth[1, 0], truth[0, 0]))
    return float(e.max() * um_per_px), abs(rot_err)


def true_offset_um(truth, size, um_per_px):
    c = np.array([size[0] / 2, size[1] / 2])
    return (truth[:, :2] @ c + truth[:, 2] - c) * um_per_px


POSES = [  # kind, seed, dx µm, dy µm, rotation °, exposure
    ("crown", 1, 700.0, 700.0, 10.0, 1.04),
    ("hairline", 2, -600.0, 700.0, -8.0, 0.96),
    ("donor", 3, 300.0, -250.0, 4.0, 1.03),
    ("dark_skin", 4, -700.0, -500.0, -10.0, 1.05),
    ("grey", 5, 0.0, 800.0, 6.0, 0.97),
    ("jpeg", 6, 150.0, 100.0, -2.0, 1.02),
]


@pytest.mark.parametrize("kind,seed,dx,dy,rot,exposure", POSES)
def test_recapture_registered_within_50um_1deg(kind, seed, dx, dy, rot, exposure):
    spec = draw_spec(kind, seed, **SMALL)
    a, _, b, _, truth = render_pair(seed, spec, dx, dy, rot, exposure)
    reg = register_to_baseline(a, b, spec.um_per_px)
    assert reg.success, reg.reason
    err_um, err_deg = pose_error(reg, truth, (spec.width, spec.height), spec.um_per_px)
    assert err_um < 50.0 and err_deg < 1.0
    off = true_offset_um(truth, (spec.width, spec.height), spec.um_per_px)
    assert reg.dx_um == pytest.approx(off[0], abs=50) and reg.dy_um == pytest.approx(off[1], abs=50)
    assert reg.scale == pytest.approx(1.0, abs=0.01)
    assert 0.3 < reg.overlap_fraction <= 1.0
    assert reg.matched_points >= 12 and 0 < reg.match_quality <= 1
    assert reg.on_target == (math.hypot(*off) <= 200.0 and abs(rot) <= 3.0)


def test_full_frame_with_changed_hairs_and_preview_registrar():
    """2028x1520 baseline; current with 10 % extra follicular units, registered at full and
    preview size."""
    spec = draw_spec("crown", 11)
    a, _, b, _, truth = render_pair(11, spec, 800.0, -400.0, 7.0, 1.05, extra_density_fraction=0.1)
    reg = register_to_baseline(a, b, spec.um_per_px)
    assert reg.success, reg.reason
    err_um, err_deg = pose_error(reg, truth, (spec.width, spec.height), spec.um_per_px)
    assert err_um < 50.0 and err_deg < 1.0

    # preview stream: half-size frames, their own scale; matrix maps preview px -> baseline px
    pr = PreviewRegistrar(a, spec.um_per_px)
    small = cv2.resize(b, (spec.width // 2, spec.height // 2), interpolation=cv2.INTER_AREA)
    rp = pr.register(small, spec.um_per_px * 2)
    assert rp.success, rp.reason
    up = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])  # preview px -> full px
    truth_p = truth @ up
    err_um, err_deg = pose_error(rp, truth_p, (spec.width // 2, spec.height // 2), spec.um_per_px)
    assert err_um < 50.0 and err_deg < 1.0
    assert rp.dx_um == pytest.approx(reg.dx_um, abs=50) and rp.dy_um == pytest.approx(reg.dy_um, abs=50)


def test_on_target_thresholds_are_parameters():
    spec = draw_spec("donor", 21, **SMALL)
    a, _, b, _, truth = render_pair(21, spec, 120.0, 60.0, 1.5)
    reg = register_to_baseline(a, b, spec.um_per_px)
    assert reg.success and reg.on_target
    assert reg.max_offset_um == 200.0 and reg.max_rotation_deg == 3.0
    strict = register_to_baseline(a, b, spec.um_per_px, max_offset_um=50.0)
    assert strict.success and not strict.on_target
    strict = register_to_baseline(a, b, spec.um_per_px, max_rotation_deg=1.0)
    assert strict.success and not strict.on_target
    d = reg.to_dict()
    assert d["success"] is True and len(d["matrix_px"]) == 2 and len(d["matrix_px"][0]) == 3


def test_refuses_unrelated_spot():
    for seed in (31, 32, 33):
        a, _ = render_phantom(seed, draw_spec("crown", seed, **SMALL))
        b, _ = render_phantom(seed + 100, draw_spec("crown", seed + 100, **SMALL))
        reg = register_to_baseline(a, b, 4.0)
        assert not reg.success and "no consistent transform" in reg.reason
        assert not reg.on_target and reg.to_dict()["reason"]


@pytest.mark.parametrize("frame", ["grey", "black", "noise_blur"])
def test_refuses_blank_frames(frame):
    a, _ = render_phantom(41, draw_spec("crown", 41, **SMALL))
    if frame == "grey":
        b = np.full_like(a, 140)
    elif frame == "black":
        b = np.zeros_like(a)
    else:
        rng = np.random.default_rng(0)
        b = cv2.GaussianBlur((rng.random(a.shape[:2]) * 255).astype(np.uint8), (0, 0), 25)
    reg = register_to_baseline(a, b, 4.0)
    assert not reg.success and reg.reason
    reg = register_to_baseline(b, a, 4.0)
    assert not reg.success and reg.reason


def test_root_points_are_accepted():
    spec = draw_spec("hairline", 51, **SMALL)
    a, ta, b, tb, truth = render_pair(51, spec, 400.0, 300.0, 5.0)
    pa = np.array([h.root_px for h in ta.hairs if h.root_px is not None])
    pb = np.array([h.root_px for h in tb.hairs if h.root_px is not None])
    reg = register_to_baseline(a, b, spec.um_per_px, baseline_points=pa, current_points=pb)
    assert reg.success
    err_um, err_deg = pose_error(reg, truth, (spec.width, spec.height), spec.um_per_px)
    assert err_um < 50.0 and err_deg < 1.0


def test_point_pattern_matching_recovers_similarity_with_outliers():
    """The follicle-opening fallback: 40 openings, 25 seen again (moved by a known similarity,
    jittered 1 px), 15 spurious detections on each side."""
    from core._registration_points import match_point_patterns, similarity_params

    rng = np.random.default_rng(3)
    base = rng.uniform(0, [512, 384], (40, 2))
    t = math.radians(7.0)
    m = np.array([[math.cos(t), -math.sin(t), 30.0], [math.sin(t), math.cos(t), -20.0]])
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    seen = base[:25] @ inv[:, :2].T + inv[:, 2] + rng.normal(0, 1.0, (25, 2))
    cur = np.vstack([seen, rng.uniform(0, [512, 384], (15, 2))])
    base = np.vstack([base, rng.uniform(0, [512, 384], (15, 2))])
    est, pairs = match_point_patterns(base, cur, 4.0, math.hypot(512, 384))
    assert len(pairs) >= 20
    scale, rot = similarity_params(est)
    assert scale == pytest.approx(1.0, abs=0.01) and rot == pytest.approx(7.0, abs=0.5)
    c = np.array([256.0, 192.0])
    assert np.hypot(*(est[:, :2] @ c + est[:, 2] - (m[:, :2] @ c + m[:, 2]))) < 2.0
    # unrelated point sets: few coincidences
    _, pairs = match_point_patterns(base, rng.uniform(0, [512, 384], (40, 2)), 4.0, math.hypot(512, 384))
    assert len(pairs) < 8


@pytest.mark.parametrize("kwargs,word", [
    (dict(baseline=None), "baseline"),
    (dict(current=np.zeros((10, 10), np.uint8)), "current"),
    (dict(um_per_px=-1.0), "um_per_px"),
    (dict(um_per_px="x"), "um_per_px"),
    (dict(baseline_points=np.zeros((5, 3))), "baseline_points"),
    (dict(current_points=[[1.0, float("nan")]]), "current_points"),
    (dict(max_offset_um=0.0), "max_offset_um"),
    (dict(max_rotation_deg=-3.0), "max_rotation_deg"),
    (dict(current_um_per_px=0.0), "um_per_px"),
])
def test_input_validation(kwargs, word):
    img = np.full((100, 120), 128, np.uint8)
    args = dict(baseline=img, current=img, um_per_px=4.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        register_to_baseline(args.pop("baseline"), args.pop("current"), args.pop("um_per_px"), **args)
