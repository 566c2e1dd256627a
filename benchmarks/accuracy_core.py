"""Accuracy of core.analyze on the phantom VALIDATION set (never tuned on).

Prints count error, per-hair detection F1, thickness MAE / bias by width bin, mean-thickness
error (clear vs hard images), repeatability of a re-captured spot (shift 0.2 mm, rotation
3 degrees, exposure +-3 %) and the measured change for a 10 % rise in density.

    .venv/bin/python benchmarks/accuracy_core.py [--per-kind 3] [--width 2028 --height 1520]
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from core.analysis import analyze  # noqa: E402
from tests.phantoms.generator import render_phantom  # noqa: E402
from tests.phantoms.matching import UNIT_KEYS, score_image, unit_figures  # noqa: E402
from tests.phantoms.sets import CLEAR_KINDS, HARD_KINDS, draw_spec, phantom_set, repeat_captures  # noqa: E402

WIDTH_BINS_UM = ((0, 25), (25, 40), (40, 60), (60, 80), (80, 130))


def evaluate_set(split: str, per_kind: int, width: int, height: int, kinds=CLEAR_KINDS + HARD_KINDS):
    rows = []
    for kind, seed, spec in phantom_set(split, kinds, per_kind, width, height):
        img, truth = render_phantom(seed, spec)
        result = analyze(img, spec.um_per_px)
        rows.append((kind, seed, score_image(result, truth)))
    return rows


def summarise(rows, label: str) -> dict:
    if not rows:
        return {}
    errs = [abs(s.detected_count - s.true_count) / max(1, s.true_count) for _, _, s in rows]
    tp = sum(s.tp for _, _, s in rows)
    fp = sum(s.fp for _, _, s in rows)
    fn = sum(s.fn for _, _, s in rows)
    pairs = np.array([p for _, _, s in rows for p in s.width_pairs]) if any(s.width_pairs for _, _, s in rows) \
        else np.zeros((0, 2))
    mean_err = [abs(s.detected_mean_um - s.true_mean_um) for _, _, s in rows if s.detected_mean_um is not None]
    out = {
        "images": len(rows),
        "count_error_pct_mean": 100 * float(np.mean(errs)),
        "count_error_pct_max": 100 * float(np.max(errs)),
        "f1_pooled": 2 * tp / max(1, 2 * tp + fp + fn),
        "f1_min": float(min(s.f1 for _, _, s in rows)),
        "thickness_mae_um": float(np.mean(np.abs(pairs[:, 1] - pairs[:, 0]))) if len(pairs) else float("nan"),
        "thickness_median_ae_um": float(np.median(np.abs(pairs[:, 1] - pairs[:, 0]))) if len(pairs) else float("nan"),
        "mean_thickness_error_um": float(np.mean(mean_err)) if mean_err else float("nan"),
        "pairs": pairs,
    }
    print(f"\n== {label}: {out['images']} images")
    print(f"count error |det-true|/true: mean {out['count_error_pct_mean']:.1f} %  max {out['count_error_pct_max']:.1f} %")
    print(f"detection F1 (pooled): {out['f1_pooled']:.3f}   worst image {out['f1_min']:.3f}   (tp {tp} fp {fp} fn {fn})")
    print(f"thickness per hair: MAE {out['thickness_mae_um']:.2f} um  median abs error "
          f"{out['thickness_median_ae_um']:.2f} um  (n = {len(pairs)})")
    print(f"mean thickness per image: mean abs error {out['mean_thickness_error_um']:.2f} um")
    err, per_t, per_d = unit_figures([s for _, _, s in rows])
    hist = lambda attr: [sum(getattr(s, attr)[k] for _, _, s in rows) for k in UNIT_KEYS]  # noqa: E731
    print(f"follicular units 1/2/3/4+: true {hist('true_units')} found {hist('detected_units')}  "
          f"histogram error {100 * err:.0f} % of units  hairs per unit true {per_t:.2f} found {per_d:.2f}")
    for lo, hi in WIDTH_BINS_UM:
        m = (pairs[:, 0] >= lo) & (pairs[:, 0] < hi) if len(pairs) else np.zeros(0, bool)
        if m.any():
            d = pairs[m, 1] - pairs[m, 0]
            print(f"  true width {lo:3d}-{hi:3d} um: n {m.sum():4d}  bias {np.mean(d):+6.2f} um  "
                  f"median bias {np.median(d):+6.2f} um  MAE {np.mean(np.abs(d)):5.2f} um")
    return out


def repeatability(width: int, height: int, n: int = 5, seeds=(10_901, 10_902)) -> None:
    print("\n== repeatability: same spot re-captured (shift 0.2 mm, rotation 3 deg, exposure +-3 %)")
    for seed in seeds:
        base = draw_spec("crown", seed, "val", width, height)
        counts, means, dens, tdens = [], [], [], []
        for k, spec in enumerate(repeat_captures(base, n, seed)):
            img, truth = render_phantom(seed, spec)
            r = analyze(img, spec.um_per_px)
            counts.append(r.hair_count)
            dens.append(r.density_per_cm2)
            tdens.append(len(truth.counted) / truth.area_cm2)
            means.append(r.mean_thickness_um)
        cv = lambda v: 100 * float(np.std(v, ddof=1) / np.mean(v))  # noqa: E731
        ratio = np.array(dens) / np.array(tdens)
        print(f"seed {seed}: counts {counts}  count CV {cv(counts):.2f} %  density CV {cv(dens):.2f} % "
              f"(truth density CV {cv(tdens):.2f} %: hairs entering/leaving the frame)  "
              f"measured/true density CV {cv(ratio):.2f} %  mean thickness CV {cv(means):.2f} %")


def density_change(width: int, height: int, seeds=(10_801, 10_802, 10_803, 10_804)) -> None:
    print("\n== a 10 % rise in density (same spot plus 10 % more follicular units)")
    for seed in seeds:
        base = draw_spec("crown", seed, "val", width, height)
        more = dataclasses.replace(base, extra_density_fraction=0.10)
        (ib, tb), (im, tm) = render_phantom(seed, base), render_phantom(seed, more)
        rb, rm = analyze(ib, base.um_per_px), analyze(im, more.um_per_px)
        true_rise = 100 * (len(tm.counted) / len(tb.counted) - 1)
        meas_rise = 100 * (rm.density_per_cm2 / rb.density_per_cm2 - 1)
        print(f"seed {seed}: true rise {true_rise:+.1f} %  measured {meas_rise:+.1f} %  "
              f"difference {meas_rise - true_rise:+.1f} points")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-kind", type=int, default=3)
    ap.add_argument("--width", type=int, default=2028)
    ap.add_argument("--height", type=int, default=1520)
    ap.add_argument("--split", default="val", choices=["val", "dev"])
    args = ap.parse_args()
    t0 = time.time()
    analyze(np.full((64, 64), 0.5, np.float32), 4.0)  # JIT / cache load outside the figures
    rows = evaluate_set(args.split, args.per_kind, args.width, args.height)
    for kind, seed, s in rows:
        print(f"{kind:10s} seed {seed:5d}: true {s.true_count:3d} found {s.detected_count:3d} "
              f"F1 {s.f1:.3f} mean thickness true {s.true_mean_um:5.1f} found {s.detected_mean_um or float('nan'):5.1f}")
    summarise([r for r in rows if r[0] in CLEAR_KINDS], f"CLEAR ({args.split})")
    summarise([r for r in rows if r[0] in HARD_KINDS], f"HARD ({args.split})")
    # the hard set had no greying kind before session 14: its earlier figures compare with this
    summarise([r for r in rows if r[0] in HARD_KINDS and r[0] != "greying"], f"HARD without greying ({args.split})")
    for kind in HARD_KINDS:
        summarise([r for r in rows if r[0] == kind], f"hard: {kind}")
    repeatability(args.width, args.height)
    density_change(args.width, args.height)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
