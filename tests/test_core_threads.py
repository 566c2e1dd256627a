"""The two steps of core.analyze that run on a second thread give what one thread gives."""
from __future__ import annotations

import numpy as np
import pytest

from core import hairs
from core._beside import Beside
from core._validate import as_gray_float32
from core._width_kernels import measure_blocks
from core.skin_mask import find_skin_mask
from tests.phantoms.generator import PhantomSpec, render_phantom


def test_width_fits_on_two_threads_equal_one_call():
    img, _ = render_phantom(3, PhantomSpec(width=640, height=480, um_per_px=4.0, density_per_cm2=300))
    gray = as_gray_float32(img, "image", integer_luma=True)
    skin = find_skin_mask(gray, None)
    f = hairs.detection_factor(4.0)
    det, valid = hairs.to_detection_grid(gray, skin, f)
    con = hairs.relative_contrast(det, valid, 4.0 * f)
    lines = hairs.trace_lines(con, valid, True, 4.0 * f, f, 150)
    n = len(lines.lines)
    assert n >= 4
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in lines.lines])
    dense, dstarts = hairs.resample_lines(np.concatenate(lines.lines), starts, 1.0)
    labels = np.zeros(con.shape, np.int32)
    w_est = np.maximum(lines.width_est_px, 2.0)
    everything = np.ones(n, np.bool_)
    one = measure_blocks(gray, skin, labels, float(f), everything, everything, dense, dstarts, w_est, 8,
                         hairs.MAX_BLOCKS, hairs.PROFILE_SAMPLES, True, hairs.STREAK_OPEN_WIDTHS,
                         hairs.STREAK_MIN_GAIN)
    two = hairs._fit_in_two(gray, skin, labels, float(f), dense, dstarts, w_est, 8, True, everything, everything)
    assert len(set(one[np.isfinite(one[:, 1]), 0].astype(int))) >= 4
    np.testing.assert_array_equal(one, two)


def test_work_beside_returns_its_value_and_raises_its_error():
    assert Beside(lambda a, b: a + b, 2, 3).result() == 5
    with pytest.raises(ZeroDivisionError):
        Beside(lambda: 1 / 0).result()
