"""Names and shapes shared by the detection code (pure pandas: no I/O)."""

from __future__ import annotations

import pandas as pd

from detectors.frames import METRIC_NAMES

PCA_METRICS = ["co2", "temperature", "humidity", "occupancy"]

__all__ = ["METRIC_NAMES", "PCA_METRICS", "with_metric_names"]


def with_metric_names(readings: pd.DataFrame) -> pd.DataFrame:
    out = readings.copy()
    out["metric"] = out["metric_id"].map(METRIC_NAMES).astype(object)
    return out
