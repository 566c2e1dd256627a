"""``tricho analyze IMAGE... --um-per-px F``: count hairs and measure thickness on image files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
examples:
  tricho analyze scalp.jpg --um-per-px 4.0
  scalp.jpg: 112 hairs, 228.4/cm2, mean 64.2 um (median 66.0), vellus 9 / terminal 103, FU 1:31 2:28 3:7 4+:1, 38 ms

  tricho analyze crown/*.png --um-per-px 4.0 --json --no-hairs --overlay out/
  {"image": "crown/a.png", "width": 2028, "height": 1520, "um_per_px": 4.0, "hair_count": 112, ...}

--json prints one JSON object per image and line: {"image": path, ...result}, where the
result keys are width, height, um_per_px, area_cm2, hair_count, density_per_cm2,
mean_thickness_um, median_thickness_um (null without hairs), vellus_threshold_um,
vellus_count, terminal_count, cumulative_thickness_mm_per_cm2, follicular_units
{"1","2","3","4+"}, thickness_histogram {edges_um, counts}, hairs [{x, y, angle_deg,
length_um, thickness_um, root_x, root_y}], quality {...}, elapsed_ms (decoding excluded).
Pixel coordinates: x right, y down; angle_deg counter-clockwise from +x, in [0, 180).

exit status: 0 all images analysed, 1 at least one image could not be read or analysed
(the others are still analysed; the reason goes to stderr).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="count hairs and measure shaft thickness on trichoscope images",
        description="Analyse trichoscope image files: hair count and density, shaft thickness "
                    "(mean, median, histogram, vellus/terminal), cumulative thickness, follicular "
                    "units and an image-quality report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF; 8 or 16 bit)")
    p.add_argument("--um-per-px", type=float, required=True, metavar="F",
                   help="image scale in micrometres per pixel (from 'tricho calibrate')")
    p.add_argument("--vellus-threshold-um", type=float, default=40.0, metavar="F",
                   help="hairs at most this thick (µm) count as vellus (default 40)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image and line")
    p.add_argument("--no-hairs", action="store_true", help="leave the per-hair list out of the JSON")
    p.add_argument("--overlay", metavar="DIR", help="write an annotated PNG per image into DIR")
    p.set_defaults(func=run)


def _summary(path: str, d: dict) -> str:
    mean = d["mean_thickness_um"]
    median = d["median_thickness_um"]
    thick = "no hairs" if mean is None else f"mean {mean:.1f} um (median {median:.1f})"
    fu = d["follicular_units"]
    q = d["quality"] or {}
    sharp = f", sharpness {q['sharpness']:.2f}" if "sharpness" in q else ""
    return (f"{path}: {d['hair_count']} hairs, {d['density_per_cm2']:.1f}/cm2, {thick}, "
            f"vellus {d['vellus_count']} / terminal {d['terminal_count']}, "
            f"FU 1:{fu['1']} 2:{fu['2']} 3:{fu['3']} 4+:{fu['4+']}, "
            f"area {d['area_cm2']:.3f} cm2{sharp}, {d['elapsed_ms']:.0f} ms")


def run(args: argparse.Namespace) -> int:
    # submodules, not ``core.analyze``: works even where ``core`` resolves as a namespace package
    from core.analysis import analyze, configure_threads, warm_up
    from core.overlay import draw_overlay
    from station.imageio import ImageReadError, read_image, write_image_atomic

    configure_threads()
    # load (or compile) the numba kernels first: elapsed_ms is the analysis alone, and the
    # first image would otherwise carry 0.3 s of cache loading (30 s with an empty cache)
    warm_up()
    out_dir = Path(args.overlay) if args.overlay else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"analyze: cannot create overlay directory {out_dir}: {exc}", file=sys.stderr)
            return 2
    failures = 0
    for path in args.images:
        try:
            image = read_image(path)
            result = analyze(image, args.um_per_px, vellus_threshold_um=args.vellus_threshold_um)
        except ImageReadError as exc:
            print(f"analyze: {exc}", file=sys.stderr)
            failures += 1
            continue
        except ValueError as exc:
            print(f"analyze: {path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        d = result.to_dict(include_hairs=not args.no_hairs)
        if args.json:
            print(json.dumps({"image": str(path), **d}), flush=True)
        else:
            print(_summary(str(path), d), flush=True)
        if out_dir is not None:
            target = out_dir / (Path(path).stem + "_overlay.png")
            try:
                write_image_atomic(target, draw_overlay(image, result))
            except OSError as exc:
                print(f"analyze: {path}: cannot write overlay {target}: {exc}", file=sys.stderr)
                failures += 1
    return 1 if failures else 0
