"""Backtest metrics of alerts against the simulator's labeled anomalies (pure numpy/pandas).

**Matching rule.** An alert matches a label when all of these hold:

* same ``device_id``;
* the alert's ``metric`` is one of the label's ``metrics``, or is ``"multi"`` (a device-level
  alert: multivariate detectors and device-wide "data" alerts such as missing data);
* the alert interval ``[start_ts, end_ts)`` overlaps the widened label interval
  ``[label.start_ts - tolerance, label.end_ts + tolerance)``; an alert with ``end_ts`` NaT is
  still open and lasts until ``range_end`` (or forever if not given); a zero-length alert
  counts as the instant ``start_ts``.

Matching is by device, metric and time only, never by readings, so a ``dropout`` label (which
has no readings inside it) is credited to any matching alert, e.g. a "data"/missing alert with
metric "multi" on that device. ``label_mask`` (pointwise) cannot mark dropouts: no readings.

Alerts to evaluate are the caller's choice: filter fired alerts, one detector or one kind
first. Use ``start_col="fired_ts"`` to measure detection delay to notification instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

MULTI = "multi"
_DAY = pd.Timedelta(days=1)
SCORE_COLUMNS: tuple[str, ...] = (
    "n_labels",
    "n_detected",
    "recall",
    "n_alerts",
    "n_true_alerts",
    "precision",
    "f1",
    "n_false_alarms",
    "false_alarms_per_device_day",
    "median_time_to_detect",
)


def _utc(values: Any) -> pd.Series:
    """A datetime-like column as tz-aware UTC with a fresh RangeIndex (naive = UTC)."""
    return pd.to_datetime(pd.Series(values), utc=True).reset_index(drop=True)


def _naive(values: Any) -> npt.NDArray[np.datetime64]:
    """A datetime-like column as naive UTC datetime64 (for fast vectorized comparisons)."""
    return _utc(values).dt.tz_localize(None).to_numpy().astype("datetime64[ns]")


def _moment(value: datetime | str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _alert_intervals(
    alerts: pd.DataFrame, range_end: datetime | None, start_col: str
) -> pd.DataFrame:
    """alert_idx, device_id, metric, a_start, a_end (open alerts end at range_end or never)."""
    end = _utc(alerts["end_ts"])
    limit = _moment(range_end)
    return pd.DataFrame(
        {
            "alert_idx": np.arange(len(alerts)),
            "device_id": alerts["device_id"].to_numpy().astype(np.int64),
            "metric": alerts["metric"].astype(str).to_numpy(),
            "a_start": _utc(alerts[start_col]),
            "a_end": end if limit is None else end.fillna(limit),
        }
    )


def _label_metrics(labels: pd.DataFrame) -> pd.DataFrame:
    """label_idx, device_id, metric: one row per metric of each label."""
    metrics = labels["metrics"].map(lambda m: [m] if isinstance(m, str) else list(m))
    frame = pd.DataFrame(
        {
            "label_idx": np.arange(len(labels)),
            "device_id": labels["device_id"].to_numpy().astype(np.int64),
            "metric": metrics.to_numpy(),
        }
    )
    out = frame.explode("metric").dropna(subset=["metric"])
    return out.astype({"metric": object})  # an empty explode would leave float64


def _pairs(
    labels: pd.DataFrame,
    alerts: pd.DataFrame,
    tolerance: timedelta,
    range_end: datetime | None,
    start_col: str,
) -> pd.DataFrame:
    """Every (label_idx, alert_idx) pair that matches (see the module docstring)."""
    intervals = _alert_intervals(alerts, range_end, start_col)
    by_metric = _label_metrics(labels).merge(intervals, on=["device_id", "metric"])
    multi = intervals[intervals["metric"] == MULTI].drop(columns="metric")
    devices = pd.DataFrame(
        {"label_idx": np.arange(len(labels)), "device_id": labels["device_id"].astype(np.int64)}
    )
    pairs = pd.concat([by_metric.drop(columns="metric"), devices.merge(multi, on="device_id")])
    tol = np.timedelta64(pd.Timedelta(tolerance).value, "ns")
    idx = pairs["label_idx"].to_numpy()
    w_start = _naive(labels["start_ts"])[idx] - tol
    w_end = _naive(labels["end_ts"])[idx] + tol
    a_start, a_end = _naive(pairs["a_start"]), _naive(pairs["a_end"])
    open_ = np.isnat(a_end)
    instant = ~open_ & (a_end <= a_start) & (a_start >= w_start)
    hit = (a_start < w_end) & (open_ | (a_end > w_start) | instant)
    return pairs.loc[hit, ["label_idx", "alert_idx", "a_start"]].drop_duplicates(
        ["label_idx", "alert_idx"]
    )


def match_events(
    labels: pd.DataFrame,
    alerts: pd.DataFrame,
    tolerance: timedelta,
    range_end: datetime | None = None,
    start_col: str = "start_ts",
) -> pd.DataFrame:
    """One row per label (its columns kept, same order) plus: detected (bool), n_alerts
    (matching alerts), first_alert_ts (earliest matching alert start, NaT if missed),
    time_to_detect (first_alert_ts - label start, clipped at 0; NaT if missed)."""
    pairs = _pairs(labels, alerts, tolerance, range_end, start_col)
    grouped = pairs.groupby("label_idx")
    first = grouped["a_start"].min().reindex(np.arange(len(labels)))
    count = grouped.size().reindex(np.arange(len(labels)), fill_value=0)
    out = labels.reset_index(drop=True).copy()
    out["detected"] = count.to_numpy() > 0
    out["n_alerts"] = count.to_numpy().astype(np.int64)
    out["first_alert_ts"] = _utc(first)
    delay = out["first_alert_ts"] - _utc(out["start_ts"])
    out["time_to_detect"] = delay.clip(lower=pd.Timedelta(0))
    return out


def _overlapping(frame: pd.DataFrame, start: Any, end: Any, lo: Any, hi: Any) -> npt.NDArray:
    """Rows whose [start, end) (end NaT = open) overlaps [lo, hi)."""
    s, e = _utc(frame[start]), _utc(frame[end])
    return ((s < hi) & (e.isna() | (e > lo) | (s >= lo))).to_numpy()


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _f1(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    return _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0


def _row(matched: pd.DataFrame) -> dict[str, Any]:
    detected = matched["detected"]
    return {
        "n_labels": len(matched),
        "n_detected": int(detected.sum()),
        "recall": _ratio(detected.sum(), len(matched)),
        "median_time_to_detect": matched.loc[detected, "time_to_detect"].median(),
    }


def event_scores(
    labels: pd.DataFrame,
    alerts: pd.DataFrame,
    tolerance: timedelta,
    range_start: datetime,
    range_end: datetime,
    device_count: int,
    start_col: str = "start_ts",
) -> pd.DataFrame:
    """Event-level scores, one row per anomaly_type plus an "overall" row (index anomaly_type).

    Only labels and alerts overlapping ``[range_start, range_end)`` count; open alerts end at
    ``range_end``. recall = detected labels / labels; precision = alerts matching any label /
    alerts; f1 = their harmonic mean; false_alarms_per_device_day = alerts matching no label /
    (device_count x days in the range); median_time_to_detect over detected labels.
    Precision, f1 and false alarms are properties of alerts, which carry no anomaly type: they
    are NaN in the per-type rows. Undefined ratios (0/0) are NaN.
    """
    lo, hi = _moment(range_start), _moment(range_end)
    if lo is None or hi is None or not hi > lo:
        raise ValueError("range_end must be after range_start")
    if device_count < 1:
        raise ValueError("device_count must be >= 1")
    labels = labels[_overlapping(labels, "start_ts", "end_ts", lo, hi)].reset_index(drop=True)
    alerts = alerts[_overlapping(alerts, start_col, "end_ts", lo, hi)].reset_index(drop=True)
    matched = match_events(labels, alerts, tolerance, hi, start_col)
    true_alerts = _pairs(labels, alerts, tolerance, hi, start_col)["alert_idx"].nunique()
    rows = {kind: _row(group) for kind, group in matched.groupby("anomaly_type", sort=True)}
    overall = _row(matched)
    false_alarms = len(alerts) - true_alerts
    overall |= {
        "n_alerts": len(alerts),
        "n_true_alerts": true_alerts,
        "precision": _ratio(true_alerts, len(alerts)),
        "n_false_alarms": false_alarms,
        "false_alarms_per_device_day": false_alarms / (device_count * ((hi - lo) / _DAY)),
    }
    overall["f1"] = _f1(overall["precision"], overall["recall"])
    rows["overall"] = overall
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(SCORE_COLUMNS))
    counts = ["n_labels", "n_detected", "n_alerts", "n_true_alerts", "n_false_alarms"]
    table[counts] = table[counts].astype("Int64")
    table.index.name = "anomaly_type"
    return table


class PointwiseScores(NamedTuple):
    precision: float
    recall: float
    f1: float


def pointwise_scores(y_true: Any, y_pred: Any) -> PointwiseScores:
    """Point-level precision, recall and F1 (= 2tp / (2tp + fp + fn)); NaN when undefined."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    if truth.shape != pred.shape:
        raise ValueError("y_true and y_pred must have the same shape")
    tp = int((truth & pred).sum())
    fp, fn = int((~truth & pred).sum()), int((truth & ~pred).sum())
    return PointwiseScores(
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
    )


def label_mask(readings: pd.DataFrame, labels: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """For readings (device_id, metric name, ts): True where the reading lies in
    [start_ts, end_ts) of a label on its device that lists its metric. Order as ``readings``.

    One merge_asof: the last label interval starting at or before the reading, with ends
    replaced by their running maximum per (device, metric) so overlapping labels are covered.
    """
    if readings.empty or labels.empty:
        return np.zeros(len(readings), dtype=bool)
    spans = _label_metrics(labels)
    spans["start"] = _naive(labels["start_ts"])[spans["label_idx"].to_numpy()]
    spans["end"] = _naive(labels["end_ts"])[spans["label_idx"].to_numpy()]
    spans["metric"] = spans["metric"].astype(str)
    spans = spans.sort_values(["device_id", "metric", "start"], kind="stable")
    spans["end"] = spans.groupby(["device_id", "metric"])["end"].cummax()
    left = pd.DataFrame(
        {
            "pos": np.arange(len(readings)),
            "device_id": readings["device_id"].to_numpy().astype(np.int64),
            "metric": readings["metric"].astype(str).to_numpy(),
            "ts": _naive(readings["ts"]),
        }
    ).sort_values("ts", kind="stable")
    joined = pd.merge_asof(
        left,
        spans[["device_id", "metric", "start", "end"]].sort_values("start", kind="stable"),
        left_on="ts",
        right_on="start",
        by=["device_id", "metric"],
        direction="backward",
    )
    inside = (joined["ts"] < joined["end"]).to_numpy()
    mask = np.zeros(len(readings), dtype=bool)
    mask[joined["pos"].to_numpy()] = inside
    return mask


def error_breakdown(matched: pd.DataFrame, by: str = "anomaly_type") -> pd.DataFrame:
    """Missed events per value of ``by`` (e.g. anomaly_type, or a site column joined onto the
    ``match_events`` output): n_labels, n_missed, miss_rate, most missed first."""
    if by not in matched:
        raise KeyError(f"column {by!r} not in the matched frame; join it onto the labels first")
    missed = ~matched["detected"].astype(bool)
    table = (
        pd.DataFrame({by: matched[by], "missed": missed})
        .groupby(by, sort=True)["missed"]
        .agg(n_labels="size", n_missed="sum")
    )
    table["n_missed"] = table["n_missed"].astype(np.int64)
    table["miss_rate"] = table["n_missed"] / table["n_labels"]
    return table.sort_values(["n_missed", "miss_rate"], ascending=False, kind="stable")
