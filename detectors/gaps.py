"""GapDetector: missing data, i.e. a device that stops reporting for longer than usual.

A dropout leaves no readings at all, so no value-based detector can see it; what is visible is
the silence. Input is the sorted timestamps at which a device reported (any metric: pass the
union, so one metric's null reading is not a gap). `fit` learns the usual reporting interval
(`interval_`, the median positive step between consecutive timestamps), and

    score_samples(ts)      seconds since the previous report, at each report (NaN at the first);
    decision_function(ts)  that gap / (factor x interval_)   (1.0 = alarm, as for every detector);
    gaps(ts, until)        one row per alarming silence (gap >= factor x interval_, score >= 1):
                           start_ts = last report + factor x
                           interval_ (the moment the silence becomes detectable), end_ts = the
                           next report (or `until`, NaT if not given, for a silence still running
                           at the end), last_ts = the last report before it.

Default factor 3.0: a silence of three reporting intervals (30 s at the simulator's 10 s
cadence). Single lost readings (null or quarantined rows, 0.1-0.2% of readings, independent per
metric) almost never remove every metric of a device at once, so a device-level silence that
long is itself the anomaly; a larger factor only delays detection. Scoring is causal: the score
of a report depends on it and the previous one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from detectors.base import Detector

_NS = 1_000_000_000


def _ns(ts: Any) -> np.ndarray:
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


class GapDetector(Detector):
    """Silences in one device's report timestamps (1-D, sorted, unique)."""

    _state_attrs: ClassVar[tuple[str, ...]] = ("interval_",)

    def __init__(self, factor: float = 3.0) -> None:
        self.factor = factor

    def _check_params(self) -> None:
        if not float(self.factor) >= 1.0:
            raise ValueError("factor must be >= 1 (a gap shorter than one interval is normal)")

    def fit(self, X: Any, y: Any = None) -> GapDetector:
        """Learn the usual reporting interval in seconds (median positive step)."""
        self._check_params()
        t = np.unique(_ns(X))
        steps = np.diff(t)
        if steps.size == 0:
            raise ValueError("need at least two timestamps to learn the reporting interval")
        self.interval_ = float(np.median(steps)) / _NS
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Seconds since the previous timestamp (NaN at the first)."""
        check_is_fitted(self)
        t = _ns(X)
        out = np.full(t.shape, np.nan)
        out[1:] = np.diff(t) / _NS
        return out

    def decision_function(self, X: Any) -> np.ndarray:
        """Normalized score: gap / (factor x interval_)  (1.0 = alarm)."""
        self._check_params()
        return self.score_samples(X) / (float(self.factor) * self.interval_)

    def gaps(self, X: Any, until: Any = None) -> pd.DataFrame:
        """Alarming silences: start_ts, end_ts, last_ts (see the module docstring)."""
        check_is_fitted(self)
        self._check_params()
        t = np.unique(_ns(X))
        limit = int(float(self.factor) * self.interval_ * _NS)
        if t.size == 0:
            return pd.DataFrame({"start_ts": pd.to_datetime([], utc=True),
                                 "end_ts": pd.to_datetime([], utc=True),
                                 "last_ts": pd.to_datetime([], utc=True)})
        last = t[:-1][np.diff(t) >= limit]
        nxt = t[1:][np.diff(t) >= limit]
        if until is not None:
            end = int(pd.Timestamp(until).as_unit("ns").value)
            if end - t[-1] >= limit:
                last = np.append(last, t[-1])
                nxt = np.append(nxt, end)
        return pd.DataFrame({
            "start_ts": pd.to_datetime(last + limit, unit="ns", utc=True),
            "end_ts": pd.to_datetime(nxt, unit="ns", utc=True),
            "last_ts": pd.to_datetime(last, unit="ns", utc=True),
        })
