"""Response shapes of the read endpoints, for the OpenAPI document.

List handlers return the query's rows as they are (serialized by orjson) and name these
models only in `responses=`: validating and re-serializing every row through pydantic cut a
100-row page's throughput by a fifth (/kpis) to a quarter (/alerts) in a local comparison on
one uvicorn worker, and the rows come from fixed SQL whose columns these models mirror (the
tests compare responses with SQL on the same database).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at "
                                                "the end.")


class Device(BaseModel):
    device_id: int
    device_name: str
    site: str
    zone: str
    device_kind: str
    metrics: list[str]
    interval_seconds: int
    installed_at: datetime
    open_alert_count: int = Field(description="Pending or firing alerts of this device.")


class LatestReading(BaseModel):
    metric: str
    ts: datetime
    value: float


class Alert(BaseModel):
    alert_id: int
    kind: str = Field(description="device, or data (a quality check; no device)")
    device_id: int | None
    device_name: str | None
    site: str | None
    zone: str | None
    metric: str
    state: str = Field(description="pending, firing or resolved")
    severity: str
    opened_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_seen_at: datetime
    peak_score: float | None
    reason: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    resolved_by: str | None
    resolve_note: str | None
    drifted: bool


class AlertDetail(Alert):
    peak_ts: datetime | None
    detectors: list[str]
    contributions: dict[str, Any] | None
    updated_at: datetime


class DeviceDetail(Device):
    status: str = Field(description="firing or pending when it has such an alert, else ok")
    latest: list[LatestReading] = Field(description="Newest reading of each metric.")
    open_alerts: list[Alert] = Field(description="Its pending and firing alerts.")


class Reading(BaseModel):
    device_id: int
    metric_id: int
    metric: str
    ts: datetime
    value: float
    batch_id: int


class Kpi(BaseModel):
    window_start: datetime
    window_end: datetime
    device_id: int
    metric_id: int
    metric: str
    reading_count: int
    mean: float
    min: float | None
    max: float | None
    stddev: float | None = Field(description="Sample standard deviation; null below 2 "
                                             "readings.")
    breach_count: int
    completeness: float | None = Field(description="Readings / expected readings.")


class HeatmapCell(BaseModel):
    site: str
    zone: str
    hour: datetime
    health: float = Field(description="Healthy 5-minute device-metric windows (complete, no "
                                      "breach) / expected ones, 0..1.")
    alerts: int
    anomalies: int


class Anomaly(BaseModel):
    device_id: int
    metric: str
    ts: datetime
    value: float | None
    baseline_mean: float | None
    std_dev: float | None = Field(description="Standard deviation of the rolling baseline.")
    score: float = Field(description="Normalized: 1.0 = the detector's threshold.")
    severity: str | None
    detector: str
    reason: str | None
    model_id: int | None


class Run(BaseModel):
    batch_id: int
    source: str
    stream: str
    window_start: datetime | None
    window_end: datetime | None
    reference_time: datetime
    rows_received: int
    rows_loaded: int
    rows_duplicate: int
    rows_quarantined: int
    status: str
    error: str | None
    quality: str | None
    quality_checked_at: datetime | None
    load_path: str | None
    timings_ms: dict[str, Any]
    started_at: datetime
    finished_at: datetime


class Model(BaseModel):
    model_id: int
    detector: str
    version: int
    params: dict[str, Any]
    train_start: datetime
    train_end: datetime
    row_count: int
    metrics: dict[str, Any]
    reason: str
    created_at: datetime


class ModelDetail(Model):
    state_bytes: int = Field(description="Size of the stored JSON state.")
    is_current: bool = Field(description="The newest version of its detector.")


class Evaluation(BaseModel):
    run_id: str
    detector: str
    anomaly_type: str
    seed: int
    days: float
    devices: int
    events: int
    detected: int
    precision: float | None
    recall: float | None
    f1: float | None
    false_alarms_per_device_day: float | None
    median_time_to_detect_s: float | None
    created_at: datetime


class ModelEvaluation(BaseModel):
    model_id: int
    detector: str
    version: int
    training: dict[str, Any] = Field(description="What training recorded (rows, exclusions).")
    run_id: str | None = Field(description="The newest backtest run of this detector.")
    evaluations: list[Evaluation]


class QualityResult(BaseModel):
    result_id: int
    suite: str
    target: str
    batch_id: int | None
    window_start: datetime | None
    window_end: datetime | None
    expectation: str
    expectation_type: str
    column_name: str | None
    severity: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    unexpected_sample: list[Any]
    observed: Any
    run_id: str
    seconds: float | None
    validated_at: datetime


class DriftResult(BaseModel):
    drift_id: int
    run_id: str
    reference_start: datetime
    reference_end: datetime
    current_start: datetime
    current_end: datetime
    site: str
    metric: str
    method: str
    statistic: float | None
    threshold: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None
    report_path: str | None
    created_at: datetime


class SeverityCounts(BaseModel):
    low: int
    medium: int
    high: int
    critical: int


class Stats(BaseModel):
    devices: int
    readings: int = Field(description="Readings loaded (from the batch ledger).")
    anomalies: int = Field(description="Scored points at or above the threshold.")
    alerts: int = Field(description="Alerts ever opened.")
    open_alerts: int
    alerts_by_severity: SeverityCounts = Field(description="Open alerts by severity.")


class Report(BaseModel):
    name: str
    title: str
    url: str
    path: str
    generated_at: str
    range_start: str | None
    range_end: str | None
    run_id: str | None
    summary: str


class MetricSummary(BaseModel):
    metric: str
    devices: int
    windows: int = Field(description="Hourly KPI windows.")
    readings: int
    mean: float | None
    stddev: float | None
    min: float | None
    max: float | None
    breaches: int
    completeness: float | None
    first_window: datetime
    last_window: datetime


class TopK(BaseModel):
    key: str
    label: str | None
    count: int


class Bin(BaseModel):
    bin: int
    lower: float
    upper: float
    count: int


def documented(model: Any) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a handler that returns rows as they are."""
    return {200: {"model": model}}
