"""Great Expectations suites, built in code. Parameters come from the device and metric
registry (`RegistryParams`) and from settings, never from literals scattered here.

Severity is GX's own: CRITICAL failures are errors (the batch is marked `error`, a data alert
is raised, training skips it); WARNING failures mark the batch `warning` only. Row-level
expectations tolerate a small share of offending rows (`mostly`): a single null in a batch is
quarantined and counted, a burst of them fails the expectation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.expectations.metadata_types import FailureSeverity

ERROR = FailureSeverity.CRITICAL
WARNING = FailureSeverity.WARNING
RAW_BATCH, KPI, SCORES = "raw_batch", "kpi", "scores"
KEY_COLUMNS = {RAW_BATCH: ["device_id", "metric_id", "ts"],
               KPI: ["mart", "device_id", "metric", "window_start"],
               SCORES: ["device_id", "metric", "ts"]}
SEVERITIES = ("none", "low", "medium", "high", "critical")
# A KPI mean may exceed its max by float rounding (sum / count of identical values).
MEAN_SLACK = 1e-9


@dataclass(frozen=True)
class MetricSpec:
    metric_id: int
    metric: str
    hard_min: float
    hard_max: float


@dataclass(frozen=True)
class RegistryParams:
    """What the suites check against, read from the registry tables."""

    device_ids: tuple[int, ...]
    metrics: tuple[MetricSpec, ...]
    readings_per_second: float  # sum over devices of metrics / interval: the fleet's rate
    max_interval_seconds: int

    @classmethod
    def from_registry(cls, devices: pd.DataFrame, metrics: list[MetricSpec]) -> RegistryParams:
        """devices: device_id, metrics (list of names), interval_seconds."""
        if devices.empty:
            raise ValueError("no devices registered: register the fleet before validating")
        per_device = devices["metrics"].map(len).to_numpy() / devices["interval_seconds"]
        return cls(tuple(int(d) for d in devices["device_id"]), tuple(metrics),
                   float(per_device.sum()), int(devices["interval_seconds"].max()))


@dataclass(frozen=True)
class Tolerances:
    rows: float  # share of rows that may break a row-level expectation
    row_count: float  # relative deviation of a batch's row count from the expected one
    future_seconds: int  # as the loader's rule


def _named(expectation: gxe.Expectation, name: str) -> gxe.Expectation:
    expectation.meta = {"name": name}
    return expectation


def value_column(metric: str) -> str:
    return f"value_{metric}"


def raw_batch_frame(readings: pd.DataFrame, registry: RegistryParams) -> pd.DataFrame:
    """The batch as received, plus one value column per metric (NaN elsewhere), so each
    metric's physical limits are one plain range expectation."""
    frame = readings.loc[:, ["device_id", "metric_id", "ts", "value"]].copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    value = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype="float64")
    metric_id = frame["metric_id"].to_numpy()
    for spec in registry.metrics:
        frame[value_column(spec.metric)] = np.where(metric_id == spec.metric_id, value, np.nan)
    return frame


def raw_batch_suite(registry: RegistryParams, window_start: datetime, window_end: datetime,
                    reference_time: datetime, tol: Tolerances) -> gx.ExpectationSuite:
    """One received batch (readings that arrived in [window_start, window_end))."""
    mostly = 1.0 - tol.rows
    seconds = (window_end - window_start).total_seconds()
    expected = registry.readings_per_second * seconds
    on_time = timedelta(seconds=registry.max_interval_seconds)
    checks = [
        _named(gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=mostly, severity=ERROR),
               f"{c}_not_null")
        for c in ("device_id", "metric_id", "ts", "value")
    ]
    checks += [
        _named(gxe.ExpectColumnValuesToBeInSet(
            column="metric_id", value_set=[m.metric_id for m in registry.metrics],
            mostly=mostly, severity=ERROR), "metric_known"),
        _named(gxe.ExpectColumnValuesToBeInSet(
            column="device_id", value_set=list(registry.device_ids), mostly=mostly,
            severity=ERROR), "device_known"),
        _named(gxe.ExpectColumnValuesToBeBetween(
            column="ts", max_value=pd.Timestamp(reference_time)
            + pd.Timedelta(seconds=tol.future_seconds), mostly=mostly, severity=ERROR),
            "ts_not_in_future"),
        # Stamped more than one reading interval before the batch window = arrived late.
        _named(gxe.ExpectColumnValuesToBeBetween(
            column="ts", min_value=pd.Timestamp(window_start - on_time), mostly=mostly,
            severity=WARNING), "ts_within_batch_window"),
        _named(gxe.ExpectCompoundColumnsToBeUnique(
            column_list=KEY_COLUMNS[RAW_BATCH], mostly=mostly, severity=WARNING),
            "keys_unique"),
        _named(gxe.ExpectTableRowCountToBeBetween(
            min_value=int(np.floor(expected * (1 - tol.row_count))),
            max_value=int(np.ceil(expected * (1 + tol.row_count))), severity=WARNING),
            "row_count_as_expected"),
    ]
    checks += [
        _named(gxe.ExpectColumnValuesToBeBetween(
            column=value_column(m.metric), min_value=m.hard_min, max_value=m.hard_max,
            mostly=mostly, severity=ERROR), f"{m.metric}_within_physical_limits")
        for m in registry.metrics
    ]
    return gx.ExpectationSuite(name=RAW_BATCH, expectations=checks)


def kpi_frame(kpis: pd.DataFrame) -> pd.DataFrame:
    """KPI rows plus how far the mean lies outside [min, max], relative to the values."""
    frame = kpis.copy()
    scale = np.maximum(np.maximum(frame["max"].abs(), frame["min"].abs()), 1.0)
    outside = np.maximum(frame["min"] - frame["mean"], frame["mean"] - frame["max"])
    frame["mean_outside_min_max"] = np.maximum(outside, 0.0) / scale
    return frame


def kpi_suite(tol: Tolerances) -> gx.ExpectationSuite:
    """Rows of a KPI mart over the windows a run rebuilt (complete windows only)."""
    mostly = 1.0 - tol.rows
    checks = [
        _named(gxe.ExpectColumnValuesToNotBeNull(column=c, severity=ERROR), f"{c}_not_null")
        for c in ("device_id", "metric", "window_start", "mean")
    ]
    checks += [
        _named(gxe.ExpectColumnValuesToBeBetween(column="reading_count", min_value=1,
                                                 severity=ERROR), "reading_count_positive"),
        _named(gxe.ExpectColumnValuesToBeBetween(column="breach_count", min_value=0,
                                                 severity=ERROR), "breach_count_non_negative"),
        _named(gxe.ExpectColumnValuesToBeBetween(column="stddev", min_value=0,
                                                 severity=ERROR), "stddev_non_negative"),
        _named(gxe.ExpectColumnValuesToBeBetween(column="mean_outside_min_max",
                                                 max_value=MEAN_SLACK, severity=ERROR),
               "mean_within_min_max"),
        _named(gxe.ExpectColumnValuesToBeBetween(
            column="completeness", min_value=1.0 - tol.row_count, mostly=mostly,
            severity=WARNING), "window_complete"),
        _named(gxe.ExpectCompoundColumnsToBeUnique(column_list=KEY_COLUMNS[KPI],
                                                   severity=ERROR), "keys_unique"),
    ]
    return gx.ExpectationSuite(name=KPI, expectations=checks)


def scores_suite() -> gx.ExpectationSuite:
    """Stored scores of a scored window."""
    return gx.ExpectationSuite(name=SCORES, expectations=[
        _named(gxe.ExpectColumnValuesToNotBeNull(column="score", severity=ERROR),
               "score_not_null"),
        _named(gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, severity=ERROR),
               "score_non_negative"),
        _named(gxe.ExpectColumnValuesToNotBeNull(column="model_id", severity=ERROR),
               "model_version_present"),
        _named(gxe.ExpectColumnValuesToBeInSet(column="severity", value_set=list(SEVERITIES),
                                               severity=WARNING), "severity_known"),
        _named(gxe.ExpectColumnValuesToBeBetween(column="baseline_std", min_value=0,
                                                 severity=ERROR), "baseline_std_non_negative"),
    ])
