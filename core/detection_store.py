"""Data access for detection: model registry, scores, alerts and the alert machine's state."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row


def save_model(conn: psycopg.Connection, detector: str, params: dict[str, Any],
               train_start: datetime, train_end: datetime, row_count: int,
               state: dict[str, Any], metrics: dict[str, Any] | None = None,
               reason: str = "scheduled") -> tuple[int, int]:
    """Register a fitted detector as the next version; returns (model_id, version)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('telemetry.models:' || %s))",
                 (detector,))
    row = conn.execute(
        "INSERT INTO telemetry.models (detector, version, params, train_start, train_end,"
        " row_count, state, metrics, reason)"
        " SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s, %s"
        " FROM telemetry.models WHERE detector = %s RETURNING model_id, version",
        (detector, json.dumps(params, default=str), train_start, train_end, row_count,
         json.dumps(state), json.dumps(metrics or {}, default=str), reason, detector),
    ).fetchone()
    return int(row[0]), int(row[1])


def latest_models(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """The newest version of each detector: model_id, version, params, state."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT DISTINCT ON (detector) model_id, detector, version, params, state,"
            " train_start, train_end, row_count, created_at FROM telemetry.models"
            " ORDER BY detector, version DESC"
        ).fetchall()
    return {r["detector"]: r for r in rows}


def replace_scores(conn: psycopg.Connection, start: datetime, end: datetime,
                   device_ids: np.ndarray, scores: pd.DataFrame) -> int:
    """Idempotent: the window's scores for these devices are replaced by `scores`."""
    conn.execute(
        "DELETE FROM telemetry.scores WHERE ts >= %s AND ts < %s AND device_id = ANY(%s)",
        (start, end, [int(d) for d in device_ids]),
    )
    if scores.empty:
        return 0
    columns = ["detector", "device_id", "metric", "ts", "model_id", "value", "baseline_mean",
               "baseline_std", "score", "is_anomaly", "severity", "reason", "contributions"]
    frame = scores.reindex(columns=columns)
    with conn.cursor().copy(
        f"COPY telemetry.scores ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for row in frame.itertuples(index=False):
            copy.write_row([None if _missing(v) else v for v in row])
    return len(frame)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def confirmed_anomalies(conn: psycopg.Connection, start: datetime, end: datetime
                        ) -> pd.DataFrame:
    """Points already scored as anomalies (excluded from training baselines)."""
    rows = conn.execute(
        "SELECT DISTINCT device_id, metric, ts FROM telemetry.scores"
        " WHERE is_anomaly AND ts >= %s AND ts < %s", (start, end)).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "metric", "ts"])


def labels_between(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT label_id, device_id, metrics, anomaly_type, start_ts, end_ts, magnitude"
        " FROM telemetry.anomaly_labels WHERE end_ts > %s AND start_ts < %s", (start, end)
    ).fetchall()
    return pd.DataFrame(rows, columns=["label_id", "device_id", "metrics", "anomaly_type",
                                       "start_ts", "end_ts", "magnitude"])


def alert_states(conn: psycopg.Connection, device_ids: np.ndarray
                 ) -> dict[tuple[str, int, str], dict[str, Any]]:
    rows = conn.execute(
        "SELECT kind, device_id, metric, state FROM telemetry.alert_states"
        " WHERE device_id = ANY(%s)", ([int(d) for d in device_ids],)).fetchall()
    return {(r[0], int(r[1]), r[2]): r[3] for r in rows}

