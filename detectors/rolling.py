"""RollingZScore: |x_t - trailing mean| / trailing std, the classic moving average +- k sigma.

The trailing window is x[t-window .. t-1]: it EXCLUDES the current point, so a spike does not
dilute its own baseline and the score at t depends only on positions <= t (causal). NaN values
are gaps: they are skipped inside windows (a window needs `min_periods` valid points, else the
score is NaN) and the score at a NaN input is NaN.

Constant windows (a stuck sensor, a quantized value at rest) have std 0; the std is floored at
`floor_fraction` x the series' sensor-noise level learned in `fit` (std of first differences /
sqrt 2), and at 1e-9 x (1 + |window mean|) if the training series was constant, so a
stuck-then-jump gives a large, finite score instead of inf. RollingZScore does NOT find stuck
values (a frozen series scores ~0); StuckDetector (detectors/stuck.py) does.

Default threshold 3.0: the textbook 3-sigma band (0.27% two-sided false-alarm rate for Gaussian
noise); the window of 60 points is 10 minutes at the simulator's 10 s cadence. The detector suite
(core.detection.SuiteParams) runs it at threshold 8 with floor_fraction 1.0, for alerting on
millions of readings a week (docs/EVALUATION.md).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from detectors.base import F64, TrailingWindowDetector

_REL_EPS = 1e-9


def _window_sums(c: F64, window: int) -> F64:
    """S[t] = c[t] - c[max(t - window, 0)] for a cumulative sum c with c[0] = 0 (slices only)."""
    n = c.shape[0] - 1
    s = np.empty((n, *c.shape[1:]))
    w = min(window, n)
    s[:w] = c[:w]
    np.subtract(c[w:n], c[: n - w], out=s[w:])
    return s


def trailing_moments(x: F64, window: int) -> tuple[F64, F64, F64]:
    """Count, mean and sample std (ddof=1) of x[t-window .. t-1] per column, NaNs skipped.

    Cumulative sums of (x - offset), with the offset each column's first valid value: this keeps
    the sums small (no catastrophic cancellation for series far from 0) and depends only on the
    past, so the result at t is unchanged when points are appended after t. Callers run this on
    fixed row blocks (base.blocked_rows), which also bounds the length of every cumulative sum.
    """
    n, k = x.shape
    nan = np.isnan(x)
    has_nan = bool(nan.any())
    valid = ~nan
    first = np.argmax(valid, axis=0) if has_nan else np.zeros(k, dtype=np.int64)
    offset = x[first, np.arange(k)]
    offset = np.where(np.isnan(offset), 0.0, offset)
    d = x - offset
    if has_nan:
        d[nan] = 0.0
    c = np.empty((n + 1, k))
    c[0] = 0.0
    np.cumsum(d, axis=0, out=c[1:])
    s1 = _window_sums(c, window)
    np.multiply(d, d, out=d)
    np.cumsum(d, axis=0, out=c[1:])
    s2 = _window_sums(c, window)
    if has_nan:
        np.cumsum(valid, axis=0, out=c[1:])
        cnt = _window_sums(c, window)
    else:
        cnt = np.minimum(np.arange(n, dtype=np.float64), window)[:, None].repeat(k, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = s1 / cnt
        s1 *= mean_d
        s2 -= s1
        s2 /= cnt - 1.0
    np.maximum(s2, 0.0, out=s2)
    np.sqrt(s2, out=s2)
    mean_d += offset
    return cnt, mean_d, s2


class RollingZScore(TrailingWindowDetector):
    """Trailing-window z-score per column of X (shape (n,) or (n, k), rows evenly spaced in time).

    n_jobs threads work on fixed row blocks (None = 1, -1 = all cores); results do not depend
    on it.

    decision_function(X) = |x_t - mean_w| / max(std_w, floor) / threshold  (1.0 = alarm);
    score_samples(X) = the raw |z|.
    """

    _min_periods_floor: ClassVar[int] = 2

    def __init__(
        self,
        window: int = 60,
        threshold: float = 3.0,
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
        cnt, mean, std = trailing_moments(xb, window)
        np.maximum(std, floor, out=std)
        scale = np.maximum(std, _REL_EPS * (1.0 + np.abs(mean)), out=std)
        with np.errstate(invalid="ignore"):
            z = np.abs(xb - mean, out=mean)
            z /= scale
        return cnt, z
