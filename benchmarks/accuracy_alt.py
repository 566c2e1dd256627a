"""Accuracy of core.analyze on the second, independent phantom family (never tuned on).

``tests/phantoms/alt_generator.py`` draws a scalp differently from the development
generator (flat opaque shafts, a whorl, pores and yellow dots, mixed grey hair, a round
field of view, JPEG, 2-8 µm per px), so these figures show how much of the main
benchmark's accuracy belongs to the way its own phantoms are drawn.

    .venv/bin/python benchmarks/accuracy_alt.py [--per-kind 4] [--first-seed 0]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.accuracy_core import summarise  # noqa: E402
from core.analysis import analyze  # noqa: E402
from tests.phantoms.alt_generator import ALT_KINDS, render_alt  # noqa: E402
from tests.phantoms.matching import score_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-kind", type=int, default=4)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    analyze(np.full((64, 64), 0.5, np.float32), 4.0)  # JIT / cache load outside the figures
    rows = []
    for ki, kind in enumerate(ALT_KINDS):
        for j in range(args.per_kind):
            seed = args.first_seed + 100 * ki + j
            img, truth = render_alt(seed, kind)
            s = score_image(analyze(img, truth.um_per_px), truth)
            rows.append((kind, seed, s))
            print(f"{kind:12s} seed {seed:5d} {truth.um_per_px:4.2f} um/px: true {s.true_count:3d} "
                  f"found {s.detected_count:3d} F1 {s.f1:.3f} (tp {s.tp} fp {s.fp} fn {s.fn}) mean thickness "
                  f"true {s.true_mean_um:5.1f} found {s.detected_mean_um or float('nan'):5.1f}", flush=True)
    summarise(rows, "ALL alt phantoms")
    for kind in ALT_KINDS:
        summarise([r for r in rows if r[0] == kind], f"alt: {kind}")
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
