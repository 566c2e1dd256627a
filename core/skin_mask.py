"""Which pixels are skin: drops burned-in banners, scale bars, text and clipped areas."""
from __future__ import annotations

import cv2
import numpy as np

from ._frame_kernels import area4, block4_range, repeat4

# Overlays burned in by the device are drawn in (near) pure black or white.
_BLACK = 0.03
_WHITE = 0.97
_BANNER_ROW_FRACTION = 0.6
_SATURATED = 0.985
_BLACK_AREA = 0.01
# Burned-in boxes and scale bars anywhere in the frame (a corner label, a bar over the skin)
# carry no sensor noise: 4x4 blocks of one exact value.  Skin and shafts never do over
# this many blocks (the largest run of flat blocks on the phantom sets, JPEG quality 55
# included, is 20 blocks; overlays 100-3000).  Only dark or bright blocks are looked at;
# pure black and white ones are the glare / black-area test's.
_FLAT_RANGE = 0.5 / 255
_FLAT_DARK, _FLAT_BRIGHT = 0.15, 0.85
_OVERLAY_MIN_BLOCKS = 64
_OVERLAY_MIN_FILL = 0.5  # of its bounding box: boxes and bars are rectangles, shafts are not


def find_skin_mask(gray: np.ndarray, user_mask: np.ndarray | None = None) -> np.ndarray:
    """Bool mask (True = skin to analyse) of a float32 [0, 1] grey image.

    Removes (1) full-width / full-height bands along the border that are mostly pure black
    or white (banners with text, scale bars), (2) saturated white specks and pure black
    areas with a small margin (text over skin, glare cores, outside a circular field of
    view), (3) the bounding boxes of noiseless dark or bright rectangles anywhere (a label
    in a corner, a scale bar over the skin), then intersects with ``user_mask``.
    """
    h, w = gray.shape
    # a quarter-resolution copy is enough to find bands and specks, and ~16x cheaper
    exact4 = h % 4 == 0 and w % 4 == 0 and h >= 4 and w >= 4  # then the kernels give what OpenCV does
    if exact4 and gray.dtype == np.float32 and gray.flags.c_contiguous:
        small = area4(gray)
        whole, means = gray, small
    else:
        small = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        # the flatness test on whole 4x4 blocks: the top-left part that holds them
        whole = np.ascontiguousarray(gray[:h - h % 4, :w - w % 4], dtype=np.float32)
        means = area4(whole)
    extreme = (small <= _BLACK) | (small >= _WHITE)
    keep = np.ones(small.shape, bool)
    if means.size:
        spread = block4_range(whole, means, np.array([_BLACK_AREA, _FLAT_DARK], np.float32),
                              np.array([_FLAT_BRIGHT, _SATURATED], np.float32))
        _clear_flat_overlays(keep[:means.shape[0], :means.shape[1]], means, spread)
    _clear_border_bands(keep, extreme.mean(axis=1), 1, axis=0)
    _clear_border_bands(keep, extreme.mean(axis=0), 1, axis=1)
    hot = ((small >= _SATURATED) | (small <= _BLACK_AREA)).astype(np.uint8)
    if hot.any():
        # drop thin clipped streaks (glints along a shaft); keep blobs of glare or black
        hot = cv2.morphologyEx(hot, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        hot = cv2.dilate(hot, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        keep &= hot == 0
    if exact4:
        mask = repeat4(keep.view(np.uint8)).view(bool)  # what INTER_NEAREST gives at exactly x4, ~20x faster
    else:
        mask = cv2.resize(keep.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).view(bool)
    if user_mask is not None:
        mask &= user_mask
    return mask


def _clear_flat_overlays(keep: np.ndarray, small: np.ndarray, spread: np.ndarray) -> None:
    """Clear (in ``keep``, quarter resolution) the bounding box of every large, box-shaped
    run of noiseless dark or bright 4x4 blocks, with a 2-block margin; the box takes in the
    text drawn inside a label."""
    flat = spread <= _FLAT_RANGE  # only the dark and bright blocks have a finite range
    if np.count_nonzero(flat) < _OVERLAY_MIN_BLOCKS:
        return
    # the labels alone cost a tenth of what labels with stats do; few components are large
    n, labels = cv2.connectedComponents(flat.view(np.uint8), connectivity=8)
    h, w = keep.shape
    for i in np.flatnonzero(np.bincount(labels[flat], minlength=n) >= _OVERLAY_MIN_BLOCKS):
        ys, xs = np.nonzero(labels == i)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if len(ys) >= _OVERLAY_MIN_FILL * (y1 - y0) * (x1 - x0):
            keep[max(0, y0 - 2):min(h, y1 + 2), max(0, x0 - 2):min(w, x1 + 2)] = False


def _clear_border_bands(mask: np.ndarray, frac: np.ndarray, pad: int, axis: int) -> None:
    n = frac.shape[0]
    band = frac >= _BANNER_ROW_FRACTION
    # a banner touches the border; allow a few skin-like lines inside it (text gaps)
    for from_start in (True, False):
        idx = range(n) if from_start else range(n - 1, -1, -1)
        last, misses = -1, 0
        for i in idx:
            if band[i]:
                last, misses = i, 0
            else:
                misses += 1
                if misses > max(3, n // 100):
                    break
        if last < 0:
            continue
        sl = slice(0, last + 1 + pad) if from_start else slice(max(0, last - pad), n)
        if axis == 0:
            mask[sl, :] = False
        else:
            mask[:, sl] = False
