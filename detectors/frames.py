"""Shape helpers from simulator/database readings to detector inputs (pure pandas, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

METRIC_NAMES: Mapping[int, str] = {1: "co2", 2: "temperature", 3: "humidity", 4: "occupancy"}


def wide_readings(
    readings: pd.DataFrame, metric_names: Mapping[int, str] = METRIC_NAMES
) -> pd.DataFrame:
    """Long readings (device_id, metric_id, ts, value) -> one row per (device_id, ts), one column
    per metric, sorted by device then ts. Duplicate (device, metric, ts) rows keep the first
    delivered; a metric missing at a timestamp is NaN (a gap)."""
    r = readings.drop_duplicates(["device_id", "metric_id", "ts"], keep="first")
    wide = r.pivot(index=["device_id", "ts"], columns="metric_id", values="value")
    wide = wide.rename(columns=dict(metric_names)).sort_index()
    wide.columns.name = None
    cols = [m for m in metric_names.values() if m in wide.columns]
    return wide[cols].reset_index()
