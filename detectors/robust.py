"""RobustZScore: |x_t - trailing median| / (1.4826 x trailing MAD), outlier-proof baselines.

Same shape, causality and gap rules as RollingZScore (detectors/rolling.py): the window is
x[t-window .. t-1], NaNs are skipped, fewer than `min_periods` valid points give NaN. Because
median and MAD ignore up to half the window, one spike in the window does not inflate the scale
and mask the next spike (a mean/std window does: the first spike's square dominates the std).

The MAD is 0 whenever more than half of the window is one value (quantized sensors at rest,
occupancy 0 at night), so the scale is floored at `floor_fraction` x the sensor-noise level
learned in `fit` (std of first differences / sqrt 2), and at 1e-9 x (1 + |median|).

Default threshold 3.5: the Iglewicz & Hoaglin cut-off for modified z-scores (0.6745 x dev / MAD
= dev / (1.4826 MAD)), the usual robust counterpart of 3 sigma.

Vectorized with sliding_window_view: each chunk of windows is sorted along the window axis
(numpy's SIMD sort; NaNs sort last), the median is the middle of each window's valid count, and
the absolute deviations are sorted again for the MAD.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import F64, TrailingWindowDetector

MAD_TO_SIGMA = 1.4826
_REL_EPS = 1e-9
_CELLS = 1 << 21  # window cells per chunk (x 8 bytes = 16 MB): bounds memory


def _sorted_median(s: F64, pos_lo: np.ndarray, pos_hi: np.ndarray) -> F64:
    """Median of rows of s (sorted along the last axis, NaNs last) given the middle positions."""
    lo = np.take_along_axis(s, pos_lo, axis=-1)[..., 0]
    hi = np.take_along_axis(s, pos_hi, axis=-1)[..., 0]
    return 0.5 * (lo + hi)


def trailing_median_mad(x: F64, window: int) -> tuple[F64, F64, F64]:
    """Valid count, median and MAD (unscaled) of x[t-window .. t-1] per column."""
    n, k = x.shape
    xp = np.concatenate([np.full((window, k), np.nan), x[:-1] if n else x], axis=0)
    # windows[t, j] = x[t-window .. t-1, j]; (n, k, window), a view.
    windows = sliding_window_view(xp, window, axis=0)[:n]
    cnt = np.empty((n, k))
    med = np.empty((n, k))
    mad = np.empty((n, k))
    step = max(1, _CELLS // max(1, k * window))
    for a in range(0, n, step):  # memory chunks of many rows each, not a per-row loop
        # numpy's SIMD sort beats np.partition on short rows; NaNs sort last.
        srt = np.sort(windows[a : a + step], axis=-1)
        c = (~np.isnan(srt[..., -1:])) * window  # fast path: a full window has no NaN at all
        if (c == 0).any():
            c = (~np.isnan(srt)).sum(axis=-1, keepdims=True)
        lo, hi = np.maximum(c - 1, 0) // 2, c // 2
        m = _sorted_median(srt, lo, hi)
        np.subtract(srt, m[..., None], out=srt)
        np.abs(srt, out=srt)
        srt.sort(axis=-1)
        d = _sorted_median(srt, lo, hi)
        empty = c[..., 0] == 0
        m[empty] = d[empty] = np.nan
        rows = slice(a, a + m.shape[0])
        med[rows], cnt[rows], mad[rows] = m, c[..., 0], d
    return cnt, med, mad


class RobustZScore(TrailingWindowDetector):
    """Trailing-window modified z-score per column of X (shape (n,) or (n, k)).

    decision_function(X) = |x_t - median_w| / max(1.4826 MAD_w, floor) / threshold (1.0 = alarm);
    score_samples(X) = the raw robust |z|.
    """

    _min_periods_floor: ClassVar[int] = 1

    def __init__(
        self,
        window: int = 60,
        threshold: float = 3.5,
        min_periods: int | None = None,
        floor_fraction: float = 0.1,
        n_jobs: int | None = None,
    ) -> None:
        self.window = window
        self.threshold = threshold
        self.min_periods = min_periods
        self.floor_fraction = floor_fraction
        self.n_jobs = n_jobs

    def _z(self, xb: F64, window: int, floor: F64) -> tuple[F64, F64]:
        cnt, med, mad = trailing_median_mad(xb, window)
        scale = np.maximum(MAD_TO_SIGMA * mad, floor)
        np.maximum(scale, _REL_EPS * (1.0 + np.abs(med)), out=scale)
        with np.errstate(invalid="ignore"):
            z = np.abs(xb - med) / scale
        return cnt, z
