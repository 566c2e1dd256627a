"""Development and validation phantom sets.

The two sets never share a seed (dev seeds < 10_000 <= validation seeds) and draw their
parameters from shifted ranges, so figures reported on validation are not tuned figures.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .generator import PhantomSpec

CLEAR_KINDS = ("crown", "hairline", "donor")
HARD_KINDS = ("grey", "blond", "dark_skin", "long", "blur", "jpeg", "greying")
VALIDATION_SEED_BASE = 10_000


def _zone(kind: str, rng) -> dict:
    if kind in ("crown", "long", "blur", "jpeg", "dark_skin", "grey", "blond", "greying"):
        return dict(density_per_cm2=rng.uniform(180, 260), vellus_fraction=rng.uniform(0.05, 0.15),
                    hairs_per_unit_p=(0.45, 0.4, 0.12, 0.03))
    if kind == "hairline":
        return dict(density_per_cm2=rng.uniform(110, 170), vellus_fraction=rng.uniform(0.3, 0.5),
                    terminal_mean_um=rng.uniform(50, 62), hairs_per_unit_p=(0.75, 0.22, 0.03, 0.0))
    if kind == "donor":
        return dict(density_per_cm2=rng.uniform(220, 300), vellus_fraction=rng.uniform(0.03, 0.08),
                    terminal_mean_um=rng.uniform(68, 82), hairs_per_unit_p=(0.2, 0.45, 0.27, 0.08))
    raise ValueError(f"unknown phantom kind {kind!r}")


def draw_spec(kind: str, seed: int, split: str = "dev", width: int = 2028, height: int = 1520,
              um_per_px: float | None = None) -> PhantomSpec:
    """A randomised spec of ``kind``; ``split`` ('dev' or 'val') picks the parameter ranges."""
    rng = np.random.default_rng(seed * 31 + (1 if split == "val" else 0))
    val = split == "val"
    base = dict(
        width=width, height=height,
        um_per_px=um_per_px or float(rng.uniform(3.5, 5.0) if val else rng.uniform(3.0, 4.5)),
        blur_px=float(rng.uniform(0.9, 1.5) if val else rng.uniform(0.8, 1.3)),
        noise=float(rng.uniform(0.008, 0.02)), vignetting=float(rng.uniform(0.1, 0.35)),
        furrows=int(rng.integers(1, 5)), dandruff=int(rng.integers(0, 7)),
        flow_deg=float(rng.uniform(0, 180)), banner=bool(rng.random() < 0.7),
        bits=16 if rng.random() < 0.2 else 8, rgb=bool(rng.random() < 0.8),
        long_fraction=float(rng.uniform(0.03, 0.1)), specular_fraction=float(rng.uniform(0.1, 0.4)),
        terminal_sd_um=float(rng.uniform(10, 18) if val else rng.uniform(8, 15)),
    )
    base.update(_zone(kind, rng))
    if kind == "grey":
        base.update(hair="grey")
    elif kind == "blond":
        base.update(hair="blond")
    elif kind == "greying":  # dark and white hairs side by side
        base.update(grey_fraction=float(rng.uniform(0.2, 0.6) if val else rng.uniform(0.15, 0.55)))
    elif kind == "dark_skin":
        base.update(skin="dark")
    elif kind == "long":
        base.update(long_fraction=float(rng.uniform(0.35, 0.6)), density_per_cm2=float(rng.uniform(140, 200)))
    elif kind == "blur":
        base.update(blur_px=float(rng.uniform(2.0, 2.8)))
    elif kind == "jpeg":
        base.update(jpeg_quality=int(rng.integers(55, 75)), bits=8)
    if base["jpeg_quality"] if "jpeg_quality" in base else False:
        base["bits"] = 8
    return PhantomSpec(**base)


def phantom_set(split: str, kinds=CLEAR_KINDS + HARD_KINDS, per_kind: int = 3, width: int = 2028,
                height: int = 1520):
    """[(kind, seed, spec)] for ``split``; validation seeds start at VALIDATION_SEED_BASE."""
    base = VALIDATION_SEED_BASE if split == "val" else 0
    out = []
    for ki, kind in enumerate(kinds):
        for j in range(per_kind):
            seed = base + 100 * ki + j
            out.append((kind, seed, draw_spec(kind, seed, split, width, height)))
    return out


def repeat_captures(spec: PhantomSpec, n: int = 5, seed: int = 0):
    """Specs of the same spot re-captured: shifted 0.2 mm, rotated 3 degrees, exposure +-3 %."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ang = rng.uniform(0, 2 * np.pi)
        out.append(dataclasses.replace(
            spec, shift_um=(200.0 * np.cos(ang), 200.0 * np.sin(ang)), rotation_deg=float(rng.choice([-3.0, 3.0])),
            exposure=float(1.0 + rng.choice([-0.03, 0.03])), noise_seed=seed * 100 + i))
    return out
