"""Row rules for incoming readings: pure, vectorized, no I/O.

Every rejected row gets the name of the rule it broke and a sentence a person can act on.
The first rule a row breaks (in RULES order) is the one recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NULL_VALUE = "null_value"
UNKNOWN_METRIC = "unknown_metric"
UNKNOWN_DEVICE = "unknown_device"
IMPOSSIBLE_VALUE = "impossible_value"
FUTURE_TIMESTAMP = "future_timestamp"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
RULES = (NULL_VALUE, UNKNOWN_METRIC, UNKNOWN_DEVICE, IMPOSSIBLE_VALUE, FUTURE_TIMESTAMP,
         CONFLICTING_DUPLICATE)

READING_COLUMNS = ("device_id", "metric_id", "ts", "value")


@dataclass(frozen=True)
class MetricLimits:
    metric_id: int
    metric: str
    unit: str
    hard_min: float
    hard_max: float


@dataclass(frozen=True)
class Registry:
    """What the rules check against: the device and metric registries."""

    device_ids: np.ndarray  # sorted int64
    metrics: dict[int, MetricLimits]


@dataclass(frozen=True)
class Verdict:
    """Rows split into clean (to load), exact in-batch duplicates, and rejected with reasons."""

    clean: pd.DataFrame
    in_batch_duplicates: int
    rejected: pd.DataFrame  # READING_COLUMNS + rule, reason


def _fmt_ts(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ").fillna("null")


def check(readings: pd.DataFrame, registry: Registry, reference_time: pd.Timestamp,
          future_tolerance_s: float) -> Verdict:
    """Apply every rule; never raises for bad rows, only for a malformed frame."""
    missing = [c for c in READING_COLUMNS if c not in readings.columns]
    if missing:
        raise ValueError(f"readings frame lacks columns {missing}")
    frame = readings.loc[:, list(READING_COLUMNS)].reset_index(drop=True)
    n = len(frame)
    code = np.zeros(n, dtype=np.int8)  # 0 = passes; k = broke RULES[k - 1] (first one wins)

    def flag(mask: np.ndarray, name: str) -> None:
        code[mask & (code == 0)] = RULES.index(name) + 1

    value = frame["value"].to_numpy(dtype="float64", na_value=np.nan)
    metric_id = frame["metric_id"].to_numpy(dtype="int64")
    device_id = frame["device_id"].to_numpy(dtype="int64")
    ts = frame["ts"]
    if not (isinstance(ts.dtype, pd.DatetimeTZDtype) and str(ts.dtype.tz) == "UTC"):
        ts = pd.to_datetime(ts, utc=True)
    # PostgreSQL keeps microseconds: keys differing below that are the same stored key.
    ts = ts.dt.floor("us")
    frame["ts"] = ts

    flag(np.isnan(value) | ts.isna().to_numpy(), NULL_VALUE)
    flag(~np.isin(metric_id, list(registry.metrics)), UNKNOWN_METRIC)
    known = registry.device_ids
    idx = np.minimum(np.searchsorted(known, device_id), max(len(known) - 1, 0))
    flag(~((len(known) > 0) & (known[idx] == device_id)), UNKNOWN_DEVICE)
    # Limits by table lookup (metric ids are small); unknown ids get an open range.
    size = max(registry.metrics, default=0) + 2
    lo_table, hi_table = np.full(size, -np.inf), np.full(size, np.inf)
    for mid, lim in registry.metrics.items():
        lo_table[mid], hi_table[mid] = lim.hard_min, lim.hard_max
    slot = np.where((metric_id >= 0) & (metric_id < size), metric_id, size - 1)
    with np.errstate(invalid="ignore"):
        flag((value < lo_table[slot]) | (value > hi_table[slot]), IMPOSSIBLE_VALUE)
    limit = reference_time + pd.Timedelta(seconds=future_tolerance_s)
    flag((ts > limit).to_numpy(dtype=bool), FUTURE_TIMESTAMP)

    # In-batch repeats of a key: identical ones are plain duplicates (counted, not stored twice),
    # different values conflict (the first one wins, later ones are rejected).
    keep = code == 0
    key = ["device_id", "metric_id", "ts"]
    passing = frame[keep]
    keyed = passing[passing.duplicated(key, keep=False).to_numpy()]  # only keys seen twice+
    first_value = pd.Series(dtype="float64")
    exact_dups = 0
    if not keyed.empty:
        repeated = keyed.duplicated(key, keep="first").to_numpy()
        first_value = keyed[~repeated].set_index(key)["value"]
        repeat = keyed[repeated]
        seen = first_value.reindex(pd.MultiIndex.from_frame(repeat[key])).to_numpy()
        same = repeat["value"].to_numpy() == seen
        code[repeat.index[~same]] = RULES.index(CONFLICTING_DUPLICATE) + 1
        keep[repeat.index] = False
        exact_dups = int(same.sum())

    bad = code > 0
    rejected = frame[bad].copy()
    rejected["rule"] = np.array(RULES, dtype=object)[code[bad] - 1]
    rejected["reason"] = _reasons(rejected, registry, reference_time, future_tolerance_s,
                                  first_value)
    return Verdict(clean=frame[keep], in_batch_duplicates=exact_dups, rejected=rejected)


def _reasons(rejected: pd.DataFrame, registry: Registry, reference_time: pd.Timestamp,
             future_tolerance_s: float, first_value: pd.Series) -> pd.Series:
    """One sentence per rejected row (rejections are rare, so a row loop is fine here)."""
    out = []
    names = {mid: lim.metric for mid, lim in registry.metrics.items()}
    ts_text = _fmt_ts(rejected["ts"])
    ref_text = reference_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    for row, when in zip(rejected.itertuples(index=False), ts_text, strict=True):
        mid, dev, val = int(row.metric_id), int(row.device_id), row.value
        what = f"device {dev}, {names.get(mid, f'metric {mid}')}, {when}"
        match row.rule:
            case "null_value":
                out.append(f"value or timestamp is null ({what}); send a number and a time, "
                           "or leave the reading out")
            case "unknown_metric":
                out.append(f"metric_id {mid} is not in the metric registry (known: "
                           f"{', '.join(f'{k}={v}' for k, v in sorted(names.items()))})")
            case "unknown_device":
                out.append(f"device_id {dev} is not in the device registry ({what}); register "
                           "the device before sending its readings")
            case "impossible_value":
                lim = registry.metrics[mid]
                out.append(f"{lim.metric} = {val:g} {lim.unit} is outside the physically "
                           f"possible range [{lim.hard_min:g}, {lim.hard_max:g}] ({what}); "
                           "check the sensor or its unit")
            case "future_timestamp":
                ahead_h = (row.ts - reference_time).total_seconds() / 3600
                out.append(f"timestamp {when} is {ahead_h:.2f} h after the batch's reference "
                           f"time {ref_text} (tolerance {future_tolerance_s:g} s); check the "
                           "device clock")
            case "conflicting_duplicate":
                kept = first_value.get((row.device_id, row.metric_id, row.ts))
                out.append(f"another reading in this batch has the same device, metric and "
                           f"timestamp with value {kept:g} ({what}); the first one was kept, "
                           f"this value {val:g} was not loaded")
            case other:
                out.append(other)
    return pd.Series(out, index=rejected.index, dtype=object)
