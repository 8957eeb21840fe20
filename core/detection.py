"""The detector suite over fleet readings: fit on clean history, score a window (pure: no I/O).

One path for production scoring (core/scoring.py) and the backtest (telemetry evaluate):
  fit_suite(train, devices)                       -> Suite (JSON state per detector)
  score_suite(suite, readings, devices, start, end) -> one row per reading in [start, end):
      each detector's normalized score (1.0 = its threshold), the rolling baseline (mean, std of
      the series' previous readings), PCA score and contributions of
      the reading's device and time, the fused score, severity and reason.
`readings` passed to score_suite may start earlier than `start`: the rolling detectors need
that history (causal scoring), and only rows in [start, end) come back.
  detect_gaps(readings, devices, start, end)      -> missing-data ("data", metric "multi") alerts
  DEFAULT_POLICY                                  -> the alert policy the defaults were tuned with

The fused score is max(rolling_z, stuck, seasonal_z, value / static limit); PCA is scored and
explained per reading but is not fused (alone it fires on every anomaly of any metric of a
device and on ~1% of normal device-times, see docs/EVALUATION.md). SuiteParams defaults and
DEFAULT_POLICY were tuned on simulator seed 1 and reported on seed 2 (`telemetry evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from core import features
from detectors import Fusion, PCADetector, RollingZScore, SeasonalZScore, StuckDetector
from detectors.alerts import AlertPolicy
from detectors.base import Detector
from detectors.frames import wide_readings
from detectors.gaps import GapDetector
from detectors.rolling import trailing_moments

UNIVARIATE = ("rolling_z", "stuck")


class SuiteParams(BaseModel):
    rolling_window: int = Field(60, ge=5, le=10_000)
    rolling_threshold: float = Field(8.0, gt=0, description="|z| alarm of the trailing window")
    rolling_floor: float = Field(1.0, ge=0, description="trailing std floored at this x the "
                                 "series' sensor-noise level (quantized series at rest)")
    stuck_min_run: int = Field(6, ge=2)
    seasonal_threshold: float = Field(10.0, gt=0, description="robust |z| alarm vs time-of-week")
    seasonal_min_samples: int = Field(30, ge=1)
    seasonal_pooled: float = Field(1.0, ge=0, description="bucket scale floored at this x the "
                                   "series' pooled residual scale")
    pca_quantile: float = Field(0.995, gt=0.5, lt=1)
    fit_stride: int = Field(3, ge=1, le=60, description="seasonal and PCA baselines are fitted "
                            "on every n-th reporting tick (medians and quantiles need far fewer "
                            "points than a week holds; the rolling and stuck detectors use all)")
    gap_factor: float = Field(3.0, ge=1.0, description="missing-data alarm: silence > factor x "
                              "the device's reporting interval")
    limits: dict[str, float] = Field(
        default_factory=lambda: {"co2": 1000.0, "temperature": 30.0, "humidity": 80.0},
        description="static alarm limits per metric (the registry's breach thresholds)",
    )


# Tuned on seed 1 (docs/EVALUATION.md): fire on the first point at or over the threshold (spikes
# last 1-6 readings, so a count would miss them; the thresholds above already make a lone normal
# point over 1.0 rare), close below 0.7, and ignore 10 minutes after a resolve so one flapping
# anomaly is one alert.
DEFAULT_POLICY = AlertPolicy(fire_threshold=1.0, resolve_threshold=0.7, min_count=1,
                             cooldown=600)


def policy_dict(policy: AlertPolicy) -> dict[str, Any]:
    """An AlertPolicy as JSON-safe values (durations in seconds)."""
    def seconds(value: Any) -> float | None:
        return None if value is None else float(pd.Timedelta(value).total_seconds())

    return {"fire_threshold": policy.fire_threshold,
            "resolve_threshold": policy.resolve_threshold,
            "min_duration_s": seconds(policy.min_duration), "min_count": policy.min_count,
            "cooldown_s": seconds(policy.cooldown), "max_gap_s": seconds(policy.max_gap)}


@dataclass
class Suite:
    params: SuiteParams
    detectors: dict[str, Detector]
    series: list[str]  # column order of the univariate detectors: "<device_id>:<metric>"
    train_rows: int = 0
    model_ids: dict[str, int] = field(default_factory=dict)

    def state(self, name: str) -> dict[str, Any]:
        """JSON-safe fitted state of one detector (plus the series order it needs)."""
        return {"detector": self.detectors[name].to_state(), "series": self.series}

    @classmethod
    def from_states(cls, params: SuiteParams, states: dict[str, dict[str, Any]],
                    model_ids: dict[str, int] | None = None) -> Suite:
        detectors = {name: Detector.from_state(s["detector"]) for name, s in states.items()}
        series = next(iter(states.values()))["series"] if states else []
        return cls(params, detectors, list(series), model_ids=dict(model_ids or {}))


_METRIC_IDS = {name: mid for mid, name in features.METRIC_NAMES.items()}


def _codes(device_id: np.ndarray, metric_id: np.ndarray) -> np.ndarray:
    return device_id.astype(np.int64) * 1024 + metric_id.astype(np.int64)


def _series_names(codes: np.ndarray) -> list[str]:
    return [f"{c // 1024}:{features.METRIC_NAMES.get(int(c % 1024), str(c % 1024))}"
            for c in codes]


def _names_to_codes(series: list[str]) -> np.ndarray:
    parts = [key.split(":", 1) for key in series]
    return np.array([int(d) * 1024 + _METRIC_IDS.get(m, -1) for d, m in parts], dtype=np.int64)


@dataclass(frozen=True)
class _Positions:
    """values[p, j] = the p-th reading (in time order) of series j; rows of the (sorted)
    readings sit at (pos, col), col -1 for a series the suite was not trained on.

    Windows count a series' own readings, so one device's late or off-grid reading never shifts
    another's window, and scoring a shard of devices gives the same scores as the whole."""

    series: list[str]
    values: np.ndarray
    pos: np.ndarray
    col: np.ndarray


def _positions(readings: pd.DataFrame, series: list[str] | None = None) -> _Positions:
    """`readings` sorted by (device_id, metric_id, ts)."""
    codes = _codes(readings["device_id"].to_numpy(), readings["metric_id"].to_numpy())
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.array([], int)
    group = np.cumsum(np.r_[True, codes[1:] != codes[:-1]]) - 1 if n else np.array([], int)
    pos = np.arange(n) - starts[group] if n else np.array([], int)
    trained = np.unique(codes) if series is None else _names_to_codes(series)
    col = pd.Index(trained).get_indexer(codes) if n else np.array([], int)
    rows = int(pos.max()) + 1 if n else 0
    values = np.full((rows, len(trained)), np.nan)
    ok = col >= 0
    values[pos[ok], col[ok]] = readings["value"].to_numpy(np.float64)[ok]
    names = _series_names(trained) if series is None else list(series)
    return _Positions(names, values, pos, col)


def seasonal_frame(readings: pd.DataFrame, devices: pd.DataFrame) -> pd.DataFrame:
    """Long frame for SeasonalZScore: ts, value, series "<device>:<metric>", group
    "<site>/<zone>:<metric>" as categoricals (built per
    distinct (device, metric) instead of per row: ~10x faster on a fleet-week)."""
    dev = readings["device_id"].to_numpy(np.int64)
    mid = readings["metric_id"].to_numpy(np.int64)
    codes, uniq = pd.factorize(dev * 1024 + mid)
    udev, umid = uniq // 1024, uniq % 1024
    mname = np.array([features.METRIC_NAMES.get(int(m), str(m)) for m in umid], dtype=object)
    zone = devices.set_index("device_id")["site"] + "/" + devices.set_index("device_id")["zone"]
    uzone = pd.Series(udev).map(zone).fillna("unknown").to_numpy(dtype=object)

    def categorical(names: np.ndarray) -> pd.Categorical:
        cats = np.array(sorted(set(names)), dtype=object)
        pos = pd.Index(cats).get_indexer(names)
        return pd.Categorical.from_codes(pos[codes], categories=cats) if len(codes) else \
            pd.Categorical([], categories=cats)

    series = np.array([f"{d}:{m}" for d, m in zip(udev, mname, strict=True)], dtype=object)
    group = np.array([f"{z}:{m}" for z, m in zip(uzone, mname, strict=True)], dtype=object)
    return pd.DataFrame({
        "ts": readings["ts"],
        "value": readings["value"].astype(np.float64),
        "series": categorical(series),
        "group": categorical(group),
        "device_id": dev,
        "metric": categorical(mname),
    }, index=readings.index)


def _every_nth_tick(readings: pd.DataFrame, stride: int, devices: pd.DataFrame) -> pd.DataFrame:
    """Readings on every `stride`-th tick of the reporting grid (all of them for stride 1)."""
    if stride <= 1 or readings.empty:
        return readings
    interval = int(devices["interval_seconds"].iloc[0]) if len(devices) else 10
    seconds = pd.DatetimeIndex(readings["ts"]).as_unit("s").asi8
    return readings[(seconds // interval) % stride == 0]


def fit_suite(train: pd.DataFrame, devices: pd.DataFrame,
              params: SuiteParams | None = None) -> Suite:
    """Fit every detector on clean training readings (anomalies already removed)."""
    params = params or SuiteParams()
    train = train.sort_values(["device_id", "metric_id", "ts"], ignore_index=True)
    grid = _positions(train)
    series, values = grid.series, grid.values
    sub = _every_nth_tick(train, params.fit_stride, devices)
    rolling = RollingZScore(window=params.rolling_window, threshold=params.rolling_threshold,
                            floor_fraction=params.rolling_floor).fit(values)
    stuck = StuckDetector(min_run=params.stuck_min_run).fit(values)
    seasonal = SeasonalZScore(threshold=params.seasonal_threshold,
                              min_samples=params.seasonal_min_samples,
                              pooled_fraction=params.seasonal_pooled).fit(
        seasonal_frame(sub, devices))
    wide = wide_readings(sub).dropna(subset=features.PCA_METRICS)
    pca = PCADetector(quantile=params.pca_quantile).fit(
        wide[features.PCA_METRICS], groups=wide["device_id"].to_numpy())
    detectors: dict[str, Detector] = {"rolling_z": rolling, "stuck": stuck,
                                      "seasonal_z": seasonal, "pca": pca}
    return Suite(params, detectors, series, train_rows=len(train))


def _sorted_by_series(readings: pd.DataFrame) -> pd.DataFrame:
    """`readings` ordered by (device_id, metric_id, ts), with a fresh index; the read path
    already delivers that order, so it is checked (one pass) before paying for a sort."""
    codes = _codes(readings["device_id"].to_numpy(), readings["metric_id"].to_numpy())
    ts = pd.DatetimeIndex(readings["ts"]).asi8  # not to_numpy: that boxes tz-aware stamps
    step = np.diff(codes)
    if len(codes) < 2 or ((step > 0) | ((step == 0) & (ts[1:] >= ts[:-1]))).all():
        return readings.reset_index(drop=True)
    return readings.sort_values(["device_id", "metric_id", "ts"], ignore_index=True)


@dataclass(frozen=True)
class _Wide:
    """PCA input: one row per (device, ts), a column per PCA metric (NaN = not reported), rows
    in (device, ts) order; `row` maps each long reading to its wide row."""

    values: np.ndarray
    device_id: np.ndarray
    row: np.ndarray


def _wide(rows: pd.DataFrame) -> _Wide:
    """`rows` sorted by series. The (device, ts) pairs are numbered with one integer key when
    the window's span allows it (a pivot of a day's readings was a tenth of scoring it)."""
    device = rows["device_id"].to_numpy(np.int64)
    ts = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8 if len(rows) else np.zeros(0, np.int64)
    metric = rows["metric_id"].to_numpy(np.int64)
    cols = np.array([_METRIC_IDS[m] for m in features.PCA_METRICS])
    col = pd.Index(cols).get_indexer(metric)
    span = int(ts.max() - ts.min()) + 1 if len(ts) else 1
    codes = _codes(device, metric)
    repeated = bool(len(codes) > 1 and ((codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])).any())
    if repeated or device.min(initial=0) < 0 or \
            int(device.max(initial=0)) + 1 > np.iinfo(np.int64).max // span:
        wide = wide_readings(rows)  # duplicates (first kept) or a span too long for one key
        where = pd.MultiIndex.from_frame(wide[["device_id", "ts"]]).get_indexer(
            pd.MultiIndex.from_frame(rows[["device_id", "ts"]]))
        return _Wide(wide.reindex(columns=features.PCA_METRICS).to_numpy(np.float64),
                     wide["device_id"].to_numpy(), where)
    key = device * span + (ts - ts.min())
    unique, row = np.unique(key, return_inverse=True)
    values = np.full((len(unique), len(cols)), np.nan)
    ok = col >= 0
    values[row[ok], col[ok]] = rows["value"].to_numpy(np.float64)[ok]
    return _Wide(values, unique // span, row)


def score_suite(suite: Suite, readings: pd.DataFrame, devices: pd.DataFrame,
                start: datetime, end: datetime) -> pd.DataFrame:
    """Score every reading with ts in [start, end); see the module docstring for columns."""
    readings = _sorted_by_series(readings)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    in_window = ((readings["ts"] >= lo) & (readings["ts"] < hi)).to_numpy()
    window_rows = readings[in_window].reset_index(drop=True)
    metric_id = window_rows["metric_id"].to_numpy()
    out: dict[str, Any] = {
        "device_id": window_rows["device_id"].to_numpy(),
        "metric": window_rows["metric_id"].map(features.METRIC_NAMES).astype(object).to_numpy(),
        "ts": window_rows["ts"],
        "value": window_rows["value"].to_numpy(),
    }
    if window_rows.empty:
        return pd.DataFrame(out).assign(score=[], severity=[], reason=[], fired_by=[])

    # Univariate detectors: each series' own sequence (history included), gathered back.
    grid = _positions(readings, suite.series)
    pos, col = grid.pos[in_window], grid.col[in_window]
    known = col >= 0

    def gather(matrix: np.ndarray) -> np.ndarray:
        gathered = np.full(len(window_rows), np.nan)
        gathered[known] = matrix[pos[known], col[known]]
        return gathered

    scores = {name: gather(suite.detectors[name].decision_function(grid.values))
              for name in UNIVARIATE}
    # The rolling baseline each reading was compared with (mean and std of the series' previous
    # `rolling_window` readings), for people reading an anomaly: value vs mean +- k std.
    _, mean, std = trailing_moments(grid.values, suite.params.rolling_window)
    out["baseline_mean"], out["baseline_std"] = gather(mean), gather(std)

    seasonal: SeasonalZScore = suite.detectors["seasonal_z"]  # type: ignore[assignment]
    scores["seasonal_z"], out["baseline_status"] = seasonal.score_with_status(
        seasonal_frame(window_rows, devices))

    # PCA per (device, ts), spread to that device and time's readings.
    pca: PCADetector = suite.detectors["pca"]  # type: ignore[assignment]
    wide = _wide(window_rows)
    pca_score = pca.decision_function(wide.values, groups=wide.device_id)
    contrib = pca.contributions(wide.values, groups=wide.device_id)
    found = wide.row >= 0
    at = np.maximum(wide.row, 0)
    out["pca_score"] = np.where(found, pca_score[at], np.nan)
    for j, name in enumerate(features.PCA_METRICS):
        out[f"pca_share_{name}"] = np.where(found, contrib[at, j], np.nan)

    out.update(scores)
    value = out["value"].astype(np.float64)
    limit_values = {m: np.where(metric_id == _METRIC_IDS.get(m, -1), value, np.nan)
                    for m in suite.params.limits}
    fused = Fusion(limits=suite.params.limits).combine(scores, limit_values)
    for column in ("score", "severity", "reason", "fired_by"):
        out[column] = fused[column].to_numpy()
    # copy=False: no consolidation of ~20 columns into blocks (a copy of every column that
    # cost as much as the detectors on a day of readings).
    return pd.DataFrame(out, copy=False)


def detect_gaps(readings: pd.DataFrame, devices: pd.DataFrame, start: datetime, end: datetime,
                params: SuiteParams | None = None) -> pd.DataFrame:
    """Missing-data alerts: per device, silences longer than gap_factor x its reporting interval
    (the registry's interval_seconds) in the union of its readings' timestamps, clipped to
    [start, end). Columns device_id, metric ("multi"), start_ts, fired_ts (= start_ts), end_ts,
    peak_score (silence / alarm length), kind ("data"). A device with no reading at all in the
    window is silent from `start`."""
    params = params or SuiteParams()
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    r = readings[(readings["ts"] >= lo) & (readings["ts"] < hi)]
    by_device = r.groupby("device_id")["ts"].unique() if len(r) else pd.Series(dtype=object)
    interval = devices.set_index("device_id")["interval_seconds"]
    parts = []
    for device in devices["device_id"].to_numpy():
        step = float(interval.get(device, 10))
        # Known cadence: the registry's interval is the fitted state (no history needed).
        det = GapDetector(factor=params.gap_factor)
        det.interval_ = step
        ts = by_device.get(device)
        seen = (pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").sort_values()
                if ts is not None else pd.DatetimeIndex([], tz="UTC", dtype="datetime64[ns, UTC]"))
        # A silence running from the start of the window counts from `start`.
        stamps = seen.insert(0, (lo - pd.Timedelta(seconds=step)).tz_convert("UTC"))
        found = det.gaps(stamps, until=hi)
        if found.empty:
            continue
        parts.append(found.assign(device_id=int(device)))
    cols = ["device_id", "metric", "start_ts", "fired_ts", "end_ts", "peak_score", "kind"]
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols}).astype(
            {"start_ts": "datetime64[ns, UTC]", "fired_ts": "datetime64[ns, UTC]",
             "end_ts": "datetime64[ns, UTC]", "peak_score": np.float64})
    out = pd.concat(parts, ignore_index=True)
    out = out[out["start_ts"] < hi]
    alarm = out["start_ts"] - out["last_ts"]
    length = (out["end_ts"] - out["last_ts"]) / alarm
    return pd.DataFrame({"device_id": out["device_id"].astype(np.int64), "metric": "multi",
                         "start_ts": out["start_ts"], "fired_ts": out["start_ts"],
                         "end_ts": out["end_ts"], "peak_score": length.astype(np.float64),
                         "kind": "data"}).reset_index(drop=True)
