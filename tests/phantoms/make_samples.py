"""Write the demo images the fake camera replays: station/samples/sample_0N_<zone>.jpg.

    .venv/bin/python -m tests.phantoms.make_samples [--out station/samples]

Six 2028x1520 RGB phantoms at exactly 4.0 µm per pixel (two each of a dense terminal
crown, a thinning hairline with vellus hairs, and a follicular-unit-rich donor area),
JPEG quality 90, no burned-in banner (a live camera frame has none).  The second crown
frame is the first one's spot at a follow-up visit (FOLLOW_UP), so two captures of one
patient and zone in the demo show the comparison with the baseline.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib

import cv2

from tests.phantoms.generator import render_phantom
from tests.phantoms.sets import draw_spec

UM_PER_PX = 4.0
SAMPLES = (("crown", 20_001), ("crown", 20_001), ("hairline", 20_003), ("hairline", 20_004),
           ("donor", 20_005), ("donor", 20_006))
# sample 2: the spot of sample 1 a month later, placed 0.29 mm / 3 degrees off, exposure
# +2 %, 10 % more follicular units, every stub clipped again
FOLLOW_UP = {2: dict(shift_um=(250.0, -150.0), rotation_deg=3.0, exposure=1.02, extra_density_fraction=0.10,
                     length_seed=20_102, noise_seed=20_102)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[2] / "station" / "samples"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n, (zone, seed) in enumerate(SAMPLES, 1):
        spec = dataclasses.replace(draw_spec(zone, seed, "val", 2028, 1520, UM_PER_PX), banner=False, bits=8,
                                   rgb=True, jpeg_quality=None, blur_px=1.0, noise=0.01, **FOLLOW_UP.get(n, {}))
        img, truth = render_phantom(seed, spec)
        path = out / f"sample_{n:02d}_{zone}.jpg"
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(f"{path.name}: {len(truth.counted)} hairs ({len(truth.counted) / truth.area_cm2:.0f}/cm2), "
              f"mean diameter {sum(h.diameter_um for h in truth.counted) / max(1, len(truth.counted)):.1f} um, "
              f"units {truth.follicular_units}, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
