"""``tricho calibrate IMAGE --pitch-um F``: measure µm per pixel from a dot-grid card image."""
from __future__ import annotations

import argparse
import json
import sys

from core.calibration import CalibrationError, calibrate_grid
from station.imageio import ImageReadError, read_image

EPILOG = """\
example:
  # capture the 0.5 mm dot card under the lens, then
  tricho calibrate card.png --pitch-um 500 --json
  {"um_per_px": 4.012133, "um_per_px_x": 4.012137, "um_per_px_y": 4.012129, "rotation_deg": 12.4,
   "distortion_k1": -0.02097, "distortion_k2": -1e-05, "distortion_centre_px": [-0.03, -0.04],
   "residual_px": 0.0088, "dots": 191, "pitch_um": 500.0}

exit status: 0 calibrated, 2 the image is not a usable grid (reason on stderr) or unreadable.
distortion: r_distorted = r (1 + k1 p^2 + k2 p^4), p = r / R, R = half the image diagonal,
r from the distortion centre (distortion_centre_px from the image centre); k1 < 0 is barrel.
um_per_px is the scale at the centre of the image.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure the image scale (µm per pixel) from a dot-grid calibration card",
        description="Find the dots of a calibration card (dark dots on a square grid of known pitch), "
                    "fit the grid and print the scale in µm per pixel, the card rotation, the lens "
                    "distortion and the fit residual. Refuses (exit 2) an image that is not a usable grid.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="image file of the card (PNG, JPEG, TIFF; 8 or 16 bit)")
    p.add_argument("--pitch-um", type=float, required=True, metavar="F",
                   help="centre-to-centre dot spacing of the card in µm (e.g. 250, 500, 1000)")
    p.add_argument("--min-um-per-px", type=float, default=1.0, metavar="F",
                   help="smallest plausible scale, µm per pixel (default 1)")
    p.add_argument("--max-um-per-px", type=float, default=12.0, metavar="F",
                   help="largest plausible scale, µm per pixel (default 12)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        image = read_image(args.image)
        result = calibrate_grid(image, args.pitch_um,
                                expected_um_per_px=(args.min_um_per_px, args.max_um_per_px))
    except ImageReadError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    except CalibrationError as exc:
        print(f"calibrate: {args.image}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad arguments, e.g. a negative pitch
        print(f"calibrate: {args.image}: {exc}", file=sys.stderr)
        return 2
    d = result.to_dict()
    if args.json:
        print(json.dumps(d))
        return 0
    print(f"{args.image}: {d['um_per_px']:.4f} µm per pixel "
          f"(x {d['um_per_px_x']:.4f}, y {d['um_per_px_y']:.4f})")
    print(f"  card rotation {d['rotation_deg']:.2f}°, distortion k1 {d['distortion_k1']:+.4f} "
          f"k2 {d['distortion_k2']:+.4f}, fit residual {d['residual_px']:.3f} px RMS over {d['dots']} dots "
          f"of pitch {d['pitch_um']:g} µm")
    return 0
