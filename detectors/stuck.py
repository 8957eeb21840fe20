"""StuckDetector: a value repeated for longer than the series ever repeats it in training.

Mean/std and median/MAD detectors score a frozen sensor near 0 (a flat line is "very normal"),
so stuck values get their own detector. The raw statistic is the run length at t: how many
consecutive valid points, ending at t, equal the current value exactly (NaN gaps are skipped,
neither extending nor breaking a run). Real sensors are quantized, so short runs happen by chance;
`fit` learns the longest run per series in clean history, and the alarm run length is
    alarm_run_ = max(min_run, ceil(margin x longest training run)).
decision_function = run / alarm_run_ (1.0 = alarm), causal by construction.

Defaults: margin 2 (twice anything seen in clean history) and min_run 6 (one minute at the
simulator's 10 s cadence). A series that is legitimately constant for long stretches (occupancy
0 at night) learns a long alarm run, so a stuck value there is found only once it outlasts those
stretches: a stuck reading equal to a normal resting value is indistinguishable from rest.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from detectors.base import F64, Detector, as_columns, per_column


def run_lengths(x: F64) -> F64:
    """Per column: count of consecutive valid points ending at t equal to x_t (NaN at gaps)."""
    n, k = x.shape
    if n == 0:
        return np.empty((0, k))
    valid = ~np.isnan(x)
    idx = np.arange(n)[:, None]
    last_valid = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    prev_pos = np.vstack([np.full((1, k), -1), last_valid[:-1]])  # last valid strictly before t
    prev_val = np.take_along_axis(x, np.maximum(prev_pos, 0), axis=0)
    starts = valid & ((prev_pos < 0) | (x != prev_val))  # a new run begins at t
    nvalid = np.cumsum(valid, axis=0)  # valid points up to and including t
    start_count = np.maximum.accumulate(np.where(starts, nvalid, 0), axis=0)
    run = (nvalid - start_count + 1).astype(np.float64)
    run[~valid] = np.nan
    return run


class StuckDetector(Detector):
    """Run-length detector for frozen sensors, per column of X (shape (n,) or (n, k))."""

    _state_attrs: ClassVar[tuple[str, ...]] = ("alarm_run_", "n_features_in_")

    def __init__(self, margin: float = 2.0, min_run: int = 6) -> None:
        self.margin = margin
        self.min_run = min_run

    def fit(self, X: Any, y: Any = None) -> StuckDetector:
        """Learn the alarm run length per series from (clean) history."""
        x, _ = as_columns(X)
        self.n_features_in_ = x.shape[1]
        run = run_lengths(x)
        longest = np.nanmax(np.where(np.isnan(run), 0.0, run), axis=0) if len(x) else 0.0
        self.alarm_run_ = np.maximum(
            float(self.min_run), np.ceil(self.margin * np.asarray(longest, dtype=np.float64))
        ).reshape(-1)
        if not math.isfinite(float(self.alarm_run_.max(initial=0.0))):
            raise ValueError("could not learn alarm run lengths")
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Raw run length at each point (NaN at gaps)."""
        check_is_fitted(self)
        x, flat = as_columns(X)
        run = run_lengths(x)
        return run[:, 0] if flat else run

    def decision_function(self, X: Any) -> np.ndarray:
        """Normalized score: run length / alarm run length (1.0 = alarm)."""
        check_is_fitted(self)
        x, flat = as_columns(X)
        s = run_lengths(x) / per_column(self.alarm_run_, x.shape[1], "alarm_run_")
        return s[:, 0] if flat else s
