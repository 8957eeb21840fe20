"""Readings reshaped for the detectors (pure pandas: no I/O).

The univariate detectors take a wide matrix (time x series), PCA takes one row per device and
time with a column per metric, the seasonal detector a long frame with series/group keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METRIC_NAMES = {1: "co2", 2: "temperature", 3: "humidity", 4: "occupancy"}
PCA_METRICS = ["co2", "temperature", "humidity", "occupancy"]


@dataclass(frozen=True)
class SeriesMatrix:
    """values[t, j] is series j at time index[t]; NaN where the series has no reading."""

    index: pd.DatetimeIndex
    device_id: np.ndarray  # per column
    metric: np.ndarray  # per column (metric name)
    values: np.ndarray


def with_metric_names(readings: pd.DataFrame) -> pd.DataFrame:
    out = readings.copy()
    out["metric"] = out["metric_id"].map(METRIC_NAMES).astype(object)
    return out


def series_matrix(readings: pd.DataFrame) -> SeriesMatrix:
    wide = readings.pivot(index="ts", columns=["device_id", "metric_id"], values="value")
    wide = wide.sort_index()
    cols = wide.columns
    return SeriesMatrix(
        index=pd.DatetimeIndex(wide.index),
        device_id=cols.get_level_values(0).to_numpy(np.int64),
        metric=np.array([METRIC_NAMES.get(int(m), str(m)) for m in cols.get_level_values(1)],
                        dtype=object),
        values=wide.to_numpy(np.float64),
    )


def pca_matrix(readings: pd.DataFrame) -> pd.DataFrame:
    """One row per (device_id, ts); columns co2, temperature, humidity, occupancy."""
    wide = readings.pivot(index=["device_id", "ts"], columns="metric_id", values="value")
    wide.columns = [METRIC_NAMES.get(int(m), str(m)) for m in wide.columns]
    return wide.reindex(columns=PCA_METRICS).sort_index()


def seasonal_frame(readings: pd.DataFrame, devices: pd.DataFrame) -> pd.DataFrame:
    """Long frame: ts, value, series ('<device>:<metric>'), group ('<site>/<zone>:<metric>')."""
    named = with_metric_names(readings)
    zone = devices.set_index("device_id")["site"] + "/" + devices.set_index("device_id")["zone"]
    device_zone = named["device_id"].map(zone).fillna("unknown")
    return pd.DataFrame({
        "ts": named["ts"],
        "value": named["value"],
        "series": named["device_id"].astype(str) + ":" + named["metric"],
        "group": device_zone + ":" + named["metric"],
        "device_id": named["device_id"],
        "metric": named["metric"],
    })


def inside_intervals(frame: pd.DataFrame, intervals: pd.DataFrame) -> np.ndarray:
    """Rows of frame (device_id, metric, ts) inside any interval (device_id, metrics list,
    start_ts, end_ts) that names the row's metric. Used to keep labeled anomalies out of
    training data."""
    mask = np.zeros(len(frame), dtype=bool)
    if intervals.empty or frame.empty:
        return mask
    exploded = intervals.explode("metrics").rename(columns={"metrics": "metric"})
    ts = frame["ts"].to_numpy("datetime64[ns]")
    for (device, metric), group in exploded.groupby(["device_id", "metric"]):
        rows = np.flatnonzero((frame["device_id"].to_numpy() == device)
                              & (frame["metric"].to_numpy() == metric))
        if rows.size == 0:
            continue
        starts = group["start_ts"].to_numpy("datetime64[ns]")
        ends = group["end_ts"].to_numpy("datetime64[ns]")
        for lo, hi in zip(starts, ends, strict=True):  # labels per series are few
            mask[rows] |= (ts[rows] >= lo) & (ts[rows] < hi)
    return mask
