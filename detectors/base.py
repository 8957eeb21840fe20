"""Shared pieces of every detector: the 0/1 rule, JSON-safe state, array coercion, windows.

The sign convention lives in the package docstring (detectors/__init__.py); this module only
implements it: `predict(X) = decision_function(X) >= 1.0`, with NaN scores mapped to 0.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

F64 = npt.NDArray[np.float64]
ALARM = 1.0  # the normalized score at which every detector raises its alarm


def alarm(scores: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """0/1 labels from normalized scores: 1 where score >= 1.0; NaN (no verdict) is 0."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (s >= ALARM).astype(np.int64)


class Detector(BaseEstimator):
    """Base class: predict from decision_function, and to_state / from_state for fitted state.

    Subclasses implement `fit` and `decision_function`, and list in `_state_attrs` the fitted
    attributes (names ending in "_") that make up their learned state.
    """

    _state_attrs: ClassVar[tuple[str, ...]] = ()

    def predict(self, X: Any, **kwargs: Any) -> npt.NDArray[np.int64]:
        """1 where decision_function(X) >= 1.0 (the detector's alarm threshold), else 0."""
        return alarm(self.decision_function(X, **kwargs))

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> npt.NDArray[np.int64]:
        return self.fit(X, **kwargs).predict(X, **kwargs)

    # -- state ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Parameters and fitted attributes as JSON-safe values (lists, numbers, str, None)."""
        check_is_fitted(self)
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": _encode(self.get_params(deep=False)),
            "fitted": {name: _encode(getattr(self, name)) for name in self._state_attrs},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        """Rebuild a fitted detector from to_state() output (e.g. after a JSON round trip)."""
        module, _, name = state["class"].rpartition(".")
        klass = getattr(importlib.import_module(module), name)
        if not issubclass(klass, cls):
            raise TypeError(f"state is for {state['class']}, not {cls.__name__}")
        obj = klass(**_decode(state["params"]))
        for attr, value in state["fitted"].items():
            setattr(obj, attr, _decode(value))
        return obj


def _encode(value: Any) -> Any:
    """JSON-safe encoding: arrays and frames become tagged dicts, NaN/inf floats become None."""
    if isinstance(value, pd.DataFrame):
        return {
            "__frame__": {str(c): _encode(value[c].to_numpy()) for c in value.columns},
            "columns": [str(c) for c in value.columns],
        }
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":
            return {
                "__array__": _encode(value.tolist()),
                "dtype": value.dtype.str,
                "shape": list(value.shape),
            }
        return {"__array__": [_encode(v) for v in value.tolist()], "dtype": "object"}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__frame__" in value:
            return pd.DataFrame({c: _decode(value["__frame__"][c]) for c in value["columns"]})
        if "__array__" in value:
            if value["dtype"] == "object":
                return np.array([_decode(v) for v in value["__array__"]], dtype=object)
            arr = np.array(_decode(value["__array__"]), dtype=np.dtype(value["dtype"]))
            return arr.reshape(value["shape"])
        if "__dict__" in value:
            return {_decode(k): _decode(v) for k, v in value["__dict__"]}
        if "__float__" in value:
            return float(value["__float__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def as_columns(X: Any) -> tuple[F64, bool]:
    """X as a float64 (n, k) array of independent series along axis 0; True if X was 1-D."""
    arr = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame | pd.Series) else X)
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array of series, got shape {arr.shape}")
    return arr, False


def per_column(values: F64, k: int, name: str) -> F64:
    """A fitted per-column vector broadcast to k columns (a single fitted column broadcasts)."""
    if values.shape[0] == k:
        return values
    if values.shape[0] == 1:
        return np.repeat(values, k)
    raise ValueError(f"{name} was fitted on {values.shape[0]} series; X has {k}")


def noise_scale(x: F64) -> F64:
    """Per-column sensor-noise level: std of first differences / sqrt(2), NaN-aware.

    First differences remove level, trend and seasonality, so this estimates the tick-to-tick
    noise of each series. It is the unit for the scale floors of the rolling detectors.
    """
    d = np.diff(x, axis=0)
    with np.errstate(invalid="ignore"), _quiet():
        s = np.nanstd(d, axis=0) / math.sqrt(2.0) if d.shape[0] else np.full(x.shape[1], np.nan)
    return np.where(np.isfinite(s), s, 0.0)


class _quiet:
    """Silence numpy's 'all-NaN slice' / 'degrees of freedom' warnings inside a block."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


quiet = _quiet


BLOCK_ROWS = 1 << 16  # fixed row blocks: results never depend on how long X is


def blocked_rows(
    x: F64,
    lead: int,
    fn: Any,
    n_jobs: int | None = None,
    block_rows: int = BLOCK_ROWS,
) -> F64:
    """out[a:b] = fn(x[a-lead : b])[-(b-a):] over fixed row blocks [a, b), optionally threaded.

    Block boundaries sit at multiples of block_rows, independent of len(x), so every value at
    row t is computed from the same rows whether or not points are appended later (bit-identical
    causality), and per-block offsets keep cumulative sums short. numpy releases the GIL in the
    heavy loops, so n_jobs threads give real parallel speed-up (None = 1, -1 = all cores).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    n = x.shape[0]
    out = np.empty(x.shape, dtype=np.float64)
    starts = range(0, n, block_rows)

    def one(a: int) -> None:
        b = min(a + block_rows, n)
        lo = max(a - lead, 0)
        out[a:b] = fn(x[lo:b])[a - lo :]

    jobs = 1 if n_jobs is None else (os.cpu_count() or 1) if n_jobs < 0 else int(n_jobs)
    if jobs <= 1 or n <= block_rows:
        for a in starts:
            one(a)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, starts))
    return out


class TrailingWindowDetector(Detector):
    """Shared machinery of the trailing-window z-scores (rolling mean/std, robust median/MAD).

    Subclasses keep their own __init__ (scikit-learn reads parameters from its signature) with
    window, threshold, min_periods, floor_fraction, n_jobs, and implement `_z(xb, window, floor)`
    returning (count of valid points in the window, |z|) for a block of rows."""

    _state_attrs: ClassVar[tuple[str, ...]] = ("scale_floor_", "n_features_in_")
    _min_periods_floor: ClassVar[int] = 1

    window: int
    threshold: float
    min_periods: int | None
    floor_fraction: float
    n_jobs: int | None

    def _check_params(self) -> int:
        if int(self.window) < 2:
            raise ValueError("window must be at least 2")
        if not self.threshold > 0:
            raise ValueError("threshold must be positive")
        mp = self.window // 2 if self.min_periods is None else int(self.min_periods)
        low = self._min_periods_floor
        if not low <= mp <= self.window:
            raise ValueError(f"min_periods must be in [{low}, window]")
        return mp

    def fit(self, X: Any, y: Any = None) -> TrailingWindowDetector:
        """Learn only the per-series scale floor (floor_fraction x sensor-noise level)."""
        self._check_params()
        x, _ = as_columns(X)
        self.n_features_in_ = x.shape[1]
        self.scale_floor_ = self.floor_fraction * noise_scale(x)
        return self

    def _z(self, xb: F64, window: int, floor: F64) -> tuple[F64, F64]:
        raise NotImplementedError

    def score_samples(self, X: Any) -> np.ndarray:
        """Raw |z| per point (same shape as X); NaN where X is NaN or the window is too sparse."""
        check_is_fitted(self)
        mp = self._check_params()
        x, flat = as_columns(X)
        w = int(self.window)
        floor = per_column(self.scale_floor_, x.shape[1], "scale_floor_")

        def block(xb: F64) -> F64:
            cnt, z = self._z(xb, w, floor)
            z[cnt < mp] = np.nan
            return z

        z = blocked_rows(x, w, block, self.n_jobs)
        return z[:, 0] if flat else z

    def decision_function(self, X: Any) -> np.ndarray:
        """Normalized score: |z| / threshold (higher = more anomalous, 1.0 = alarm)."""
        return self.score_samples(X) / self.threshold
