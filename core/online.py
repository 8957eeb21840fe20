"""Online moving average +- k sigma: score the next points of a series from its saved state.

The rule is detectors.rolling.RollingZScore's: a point's baseline is the trailing window of the
`window` values before it (the point itself excluded, so a spike does not dilute its own
baseline); z = |x - mean| / scale, where scale is the sample std floored at FLOOR_FRACTION x the
window's sensor-noise level (std of first differences / sqrt 2, as detectors.base.noise_scale)
and at 1e-9 x (1 + |mean|); no verdict (NaN) while fewer than `min_periods` values precede it.
RollingZScore learns its noise floor in `fit`; a stream has no fit, so the floor comes from the
same trailing window.

The state is the last `window` values. Every window is reduced on its own, so a series sent in
one call or in any consecutive pieces gets bit-identical results. Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

F64 = npt.NDArray[np.float64]
FLOOR_FRACTION = 0.1  # RollingZScore's default
_REL_EPS = 1e-9


def default_min_periods(window: int) -> int:
    """RollingZScore's default (half the window), at least 2 so a std exists."""
    return max(2, window // 2)


@dataclass(frozen=True)
class SeriesState:
    """What a series needs between calls: its parameters and the last `window` values."""

    window: int
    min_periods: int
    recent: tuple[float, ...] = ()
    last_ts: datetime | None = None
    n_seen: int = 0

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window must be at least 2")
        if not 2 <= self.min_periods <= self.window:
            raise ValueError(f"min_periods must be in [2, window={self.window}]")
        if len(self.recent) > self.window:
            raise ValueError("recent holds more values than the window")


@dataclass(frozen=True)
class Scores:
    """Per new point: trailing mean, the scale z is divided by, |z|, and the 0/1 verdict.
    mean/std_dev/z are NaN (and is_anomaly False) while the window is too short."""

    mean: F64
    std_dev: F64
    z: F64
    is_anomaly: npt.NDArray[np.bool_]


def score(state: SeriesState, values: npt.ArrayLike, k: float, last_ts: datetime | None = None,
          floor_fraction: float = FLOOR_FRACTION) -> tuple[Scores, SeriesState]:
    """Score `values` (finite, in time order, all after state.last_ts) and advance the state."""
    if not (math.isfinite(k) and k > 0):
        raise ValueError("k must be a positive number")
    new = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(new).all():
        raise ValueError("values must be finite")
    w, n = state.window, new.shape[0]
    # w NaN slots in front: every new point has a full-width window, padded where the series
    # is younger than the window (the padding is the same whichever call a point arrives in).
    x = np.concatenate([np.full(w - len(state.recent), np.nan), state.recent, new])
    windows = sliding_window_view(x[:-1], w)[-n:] if n else np.empty((0, w))
    valid = ~np.isnan(windows)
    count = valid.sum(axis=1)
    filled = np.where(valid, windows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / count
        dev = np.where(valid, windows - mean[:, None], 0.0)
        std = np.sqrt((dev * dev).sum(axis=1) / (count - 1))
        steps = np.diff(windows, axis=1)  # NaN next to padding
        has_step = ~np.isnan(steps)
        n_steps = has_step.sum(axis=1)
        step_mean = np.where(has_step, steps, 0.0).sum(axis=1) / n_steps
        spread = np.where(has_step, steps - step_mean[:, None], 0.0)
        noise = np.sqrt((spread * spread).sum(axis=1) / n_steps) / math.sqrt(2.0)
    noise = np.where(n_steps > 0, noise, 0.0)
    scale = np.maximum(np.maximum(np.nan_to_num(std), floor_fraction * noise),
                       _REL_EPS * (1.0 + np.abs(np.nan_to_num(mean))))
    enough = count >= state.min_periods
    z = np.where(enough, np.abs(new - mean) / scale, np.nan)
    scores = Scores(mean=np.where(enough, mean, np.nan), std_dev=np.where(enough, scale, np.nan),
                    z=z, is_anomaly=enough & (z >= k))
    recent = tuple(float(v) for v in x[-w:] if not math.isnan(v))
    advanced = replace(state, recent=recent, n_seen=state.n_seen + n,
                       last_ts=last_ts if last_ts is not None else state.last_ts)
    return scores, advanced
