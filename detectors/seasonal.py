"""SeasonalZScore: distance from the usual value for this series at this time of the week.

Buckets (parameter `seasonality`):
  "daytype_hour" (default)  hour of day (UTC) x weekday/weekend: 48 buckets. Offices repeat the
                            same weekday pattern, so a week of history already puts 5 days in
                            every weekday bucket (hour-of-week would need 5 weeks for that).
  "hour_of_week"            168 buckets, Monday 00:00 UTC = 0; for fleets whose days differ.

`fit` learns, from training history, robust baselines per (series, bucket) and per (group,
bucket): the median and 1.4826 x MAD of the values, with the count. Scoring a row looks up its
series' bucket; if that bucket had fewer than `min_samples` training points it falls back to the
row's group bucket (pass e.g. "site-01/zone-02:co2", or just the metric name for a fleet-wide
fallback); if that fails too, the score is NaN and baseline_status says "insufficient_history".

score = |value - median| / scale / threshold, scale = max(1.4826 MAD, floor_fraction x the key's
overall training std, pooled_fraction x the key's pooled residual scale, 1e-9 x (1 + |median|)):
a bucket where the value never moves (occupancy 0 at night) still has a finite, series-sized
scale. The pooled residual scale is 1.4826 x the median |value - its bucket median| over all the
key's buckets: a bucket's own MAD comes from only as many independent days as the history holds
(2 weekend days in a week), and slow weather-like wander makes the readings of one day in one
hour nearly one draw, so a lone bucket's MAD is often far too small; pooling the residuals over
the key's 48 buckets gives a stable estimate of the day-to-day spread (pooled_fraction 1.0).

Default threshold 4.0 (not 3.5): a bucket pools different days and within-hour ramps, and
readings are autocorrelated, so chance exceedances of a bucket baseline are more frequent than for
a trailing window; 4 robust sigmas keeps the clean false-alarm rate well under 1% on simulated
data (tests/detectors/test_seasonal.py). Per reading, 1% is still hundreds of alerts a day on a
fleet: the detector suite (core.detection.SuiteParams) runs it at 10 (docs/EVALUATION.md).

Scores depend only on the row and the fitted table, so they are trivially causal. Input frames
have columns ts (tz-aware, UTC), value, series (str or int key) and optionally group.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from detectors.base import Detector
from detectors.robust import MAD_TO_SIGMA

SERIES, GROUP, INSUFFICIENT = "series", "group", "insufficient_history"
_REL_EPS = 1e-9
_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9


def time_bucket(ts: pd.Series | pd.DatetimeIndex, seasonality: str) -> np.ndarray:
    """Bucket number per timestamp (UTC): see the module docstring."""
    t = pd.DatetimeIndex(ts)
    if t.tz is None:
        raise ValueError("ts must be timezone-aware (UTC)")
    ns = t.tz_convert("UTC").as_unit("ns").asi8
    hour = (ns % _DAY_NS) // _HOUR_NS
    dow = (ns // _DAY_NS + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    if seasonality == "daytype_hour":
        return ((dow >= 5) * 24 + hour).astype(np.int64)
    if seasonality == "hour_of_week":
        return (dow * 24 + hour).astype(np.int64)
    raise ValueError(f"unknown seasonality {seasonality!r}")


def _robust_table(
    keys: pd.Series, bucket: np.ndarray, value: np.ndarray, level: str
) -> pd.DataFrame:
    # Categorical keys (as core.detection builds them) group without hashing strings per row.
    frame = pd.DataFrame({"key": keys.array, "bucket": bucket, "value": value})
    g = frame.groupby(["key", "bucket"], sort=True, observed=True)["value"]
    med = g.transform("median")
    frame["dev"] = (frame["value"] - med).abs()
    stats = frame.groupby(["key", "bucket"], sort=True, observed=True).agg(
        median=("value", "median"), mad=("dev", "median"), n=("value", "size")
    )
    by_key = frame.groupby("key", observed=True)
    key_std = by_key["value"].std(ddof=0).fillna(0.0)
    key_resid = MAD_TO_SIGMA * by_key["dev"].median().fillna(0.0)
    stats = stats.reset_index()
    stats["key"] = stats["key"].astype(object)
    key_std.index = key_std.index.astype(object)
    key_resid.index = key_resid.index.astype(object)
    stats["key_std"] = key_std.reindex(stats["key"]).to_numpy()
    stats["key_resid"] = key_resid.reindex(stats["key"]).to_numpy()
    stats.insert(0, "level", level)
    return stats


def _find(sub: pd.DataFrame, keys: pd.Series, bucket: np.ndarray) -> np.ndarray:
    """Position in `sub` (rows of unique key, bucket) of each (key, bucket) pair, -1 where
    absent."""
    if not len(sub):
        return np.full(len(keys), -1, dtype=np.int64)
    if not isinstance(keys.dtype, pd.CategoricalDtype):
        index = pd.MultiIndex.from_arrays([sub["key"].to_numpy(), sub["bucket"].to_numpy()])
        return index.get_indexer(pd.MultiIndex.from_arrays([keys.to_numpy(), bucket]))
    # Categorical keys (as core.detection builds them): a dense (key x bucket) grid indexed by
    # category code, so no row's key is hashed.
    table_keys = pd.Index(sub["key"].unique())
    buckets = sub["bucket"].to_numpy(np.int64)
    width = int(max(buckets.max(), bucket.max(initial=0))) + 1
    grid = np.full((len(table_keys) + 1, width), -1, dtype=np.int64)  # last row: no such key
    grid[table_keys.get_indexer(sub["key"].to_numpy()), buckets] = np.arange(len(sub))
    key_of_code = table_keys.get_indexer(keys.cat.categories.astype(object))
    key_of_code = np.append(np.where(key_of_code < 0, len(table_keys), key_of_code),
                            len(table_keys))  # code -1 (missing) -> the last entry
    return grid[key_of_code[keys.cat.codes.to_numpy(np.int64)], bucket]


class SeasonalZScore(Detector):
    """Robust z-score against per-series (group fallback) time-of-week baselines."""

    _state_attrs: ClassVar[tuple[str, ...]] = ("baselines_",)

    def __init__(
        self,
        threshold: float = 4.0,
        min_samples: int = 30,
        seasonality: str = "daytype_hour",
        floor_fraction: float = 0.1,
        pooled_fraction: float = 1.0,
    ) -> None:
        self.threshold = threshold
        self.min_samples = min_samples
        self.seasonality = seasonality
        self.floor_fraction = floor_fraction
        self.pooled_fraction = pooled_fraction

    @staticmethod
    def _frame(X: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame) or not {"ts", "value", "series"} <= set(X.columns):
            raise ValueError("X must be a DataFrame with columns ts, value, series (and group)")
        return X

    def fit(self, X: pd.DataFrame, y: Any = None) -> SeasonalZScore:
        """Learn the baseline table (`baselines_`: level, key, bucket, median, scale, n)."""
        X = self._frame(X)
        ok = X["value"].notna().to_numpy()
        X = X.loc[ok]
        bucket = time_bucket(X["ts"], self.seasonality)
        value = X["value"].to_numpy(dtype=np.float64)
        parts = [_robust_table(X["series"], bucket, value, SERIES)]
        if "group" in X.columns:
            parts.append(_robust_table(X["group"], bucket, value, GROUP))
        table = pd.concat(parts, ignore_index=True)
        scale = np.maximum(MAD_TO_SIGMA * table["mad"], self.floor_fraction * table["key_std"])
        scale = np.maximum(scale, self.pooled_fraction * table["key_resid"])
        table["scale"] = np.maximum(scale, _REL_EPS * (1.0 + table["median"].abs()))
        table = table[["level", "key", "bucket", "median", "scale", "n"]]
        self.baselines_ = table.astype({"bucket": np.int64, "n": np.int64})
        return self

    def _lookup(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row of baselines_ used per row of X (-1 = none) and the level used."""
        check_is_fitted(self)
        X = self._frame(X)
        table = self.baselines_
        table = table[table["n"].to_numpy() >= self.min_samples]
        bucket = time_bucket(X["ts"], self.seasonality)
        pos = np.full(len(X), -1, dtype=np.int64)
        status = np.full(len(X), INSUFFICIENT, dtype=object)
        for level, col in ((SERIES, "series"), (GROUP, "group")):
            if col not in X.columns:
                continue
            sub = table[table["level"].to_numpy() == level]
            found = _find(sub, X[col], bucket)
            take = (pos < 0) & (found >= 0)
            pos[take] = sub.index.to_numpy()[found[take]]
            status[take] = level
        return pos, status

    def score_with_status(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """decision_function and baseline_status of X from one lookup."""
        pos, status = self._lookup(X)
        return self._score(X, pos) / self.threshold, status.astype(str)

    def baseline_status(self, X: pd.DataFrame) -> np.ndarray:
        """Per row: "series", "group" or "insufficient_history" (score NaN)."""
        return self._lookup(X)[1].astype(str)

    def score_samples(self, X: pd.DataFrame) -> np.ndarray:
        """Raw robust |z| against the row's baseline; NaN at NaN values and without history."""
        return self._score(X, self._lookup(X)[0])

    def _score(self, X: pd.DataFrame, pos: np.ndarray) -> np.ndarray:
        table = self.baselines_
        have = pos >= 0
        med = np.full(len(pos), np.nan)
        scale = np.full(len(pos), np.nan)
        med[have] = table["median"].to_numpy(dtype=np.float64)[pos[have]]
        scale[have] = table["scale"].to_numpy(dtype=np.float64)[pos[have]]
        return np.abs(X["value"].to_numpy(dtype=np.float64) - med) / scale

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Normalized score: robust |z| / threshold (higher = more anomalous, 1.0 = alarm)."""
        return self.score_samples(X) / self.threshold
