"""Data-quality SQL: the registry the suites read, their results, batch marks, quality alerts,
and the rows the KPI and scores suites validate."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from expectations.suites import MetricSpec
from expectations.validate import SuiteResult

QUALITY_ALERT_PREFIX = "quality:"


def registry(conn: psycopg.Connection) -> tuple[pd.DataFrame, list[MetricSpec]]:
    """Registered devices (device_id, metrics, interval_seconds) and metric limits."""
    devices = pd.DataFrame(conn.execute(
        "SELECT device_id, metrics, interval_seconds FROM telemetry.devices ORDER BY device_id"
    ).fetchall(), columns=["device_id", "metrics", "interval_seconds"])
    metrics = [MetricSpec(int(r[0]), r[1], float(r[2]), float(r[3])) for r in conn.execute(
        "SELECT metric_id, metric, hard_min, hard_max FROM telemetry.metrics ORDER BY metric_id"
    ).fetchall()]
    return devices, metrics


def _observed(value: Any, message: str | None) -> str | None:
    """What GX observed (a table row count, say) and any error message; NULL when neither."""
    found = {k: v for k, v in (("value", value), ("message", message)) if v is not None}
    return json.dumps(found) if found else None


def save_results(conn: psycopg.Connection, result: SuiteResult, target: str,
                 batch_id: int | None, window_start: datetime | None,
                 window_end: datetime | None, run_id: str) -> None:
    """Replace the target's results for this suite (validating again changes nothing)."""
    conn.execute("DELETE FROM telemetry.quality_results WHERE suite = %s AND target = %s",
                 (result.suite, target))
    rows = [(result.suite, target, batch_id, window_start, window_end, o.expectation,
             o.expectation_type, o.column, o.severity, o.success, o.element_count,
             o.unexpected_count, o.unexpected_percent, json.dumps(o.sample),
             _observed(o.observed, o.message), json.dumps(o.kwargs),
             run_id, result.seconds) for o in result.outcomes]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.quality_results (suite, target, batch_id, window_start,"
            " window_end, expectation, expectation_type, column_name, severity, success,"
            " element_count, unexpected_count, unexpected_percent, unexpected_sample, observed,"
            " kwargs, run_id, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s)", rows)


def mark_batch(conn: psycopg.Connection, batch_id: int, status: str) -> None:
    conn.execute("UPDATE telemetry.batches SET quality = %s, quality_checked_at = now()"
                 " WHERE batch_id = %s", (status, batch_id))


def raise_quality_alert(conn: psycopg.Connection, key: str, seen_at: datetime, reason: str,
                        unexpected_percent: float | None, details: dict[str, Any]) -> bool:
    """A firing fleet-level data alert for `key` (one open alert per key). Data older than an
    already resolved alert of the same key does not reopen it (re-running an old batch)."""
    settled = conn.execute(
        "SELECT 1 FROM telemetry.alerts WHERE kind = 'data' AND device_id IS NULL"
        " AND metric = %s AND state = 'resolved' AND resolved_at >= %s LIMIT 1",
        (key, seen_at)).fetchone()
    if settled:
        return False
    inserted = conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
        " fired_at, last_seen_at, peak_score, peak_ts, reason, detectors, contributions)"
        " VALUES ('data', NULL, %(key)s, 'firing', 'high', %(ts)s, %(ts)s, %(ts)s, %(pct)s,"
        " %(ts)s, %(reason)s, ARRAY['great_expectations'], %(details)s)"
        " ON CONFLICT (kind, device_id, metric) WHERE state IN ('pending', 'firing')"
        " DO UPDATE SET last_seen_at = greatest(telemetry.alerts.last_seen_at, %(ts)s),"
        " peak_score = greatest(telemetry.alerts.peak_score, %(pct)s), reason = %(reason)s,"
        " contributions = %(details)s, updated_at = now()"
        " RETURNING (xmax = 0)",
        {"key": key, "ts": seen_at, "pct": unexpected_percent, "reason": reason,
         "details": json.dumps(details)}).fetchone()
    return bool(inserted and inserted[0])


def resolve_quality_alert(conn: psycopg.Connection, key: str, passed_at: datetime,
                          note: str) -> bool:
    """Resolve the open alert of `key` when newer data passes the same expectation."""
    return conn.execute(
        "UPDATE telemetry.alerts SET state = 'resolved', resolved_at = %s,"
        " resolved_by = 'great_expectations', resolve_note = %s, updated_at = now()"
        " WHERE kind = 'data' AND device_id IS NULL AND metric = %s"
        " AND state IN ('pending', 'firing') AND last_seen_at < %s",
        (passed_at, note, key, passed_at)).rowcount > 0


def kpi_rows(conn: psycopg.Connection, schema: str, models: tuple[str, ...], start: datetime,
             end: datetime) -> pd.DataFrame:
    """Complete windows inside [start, end) of each KPI mart, with the mart's name."""
    one = sql.SQL(
        "SELECT {name} AS mart, device_id, metric, window_start, reading_count, mean, min, max,"
        " stddev, breach_count, completeness FROM {schema}.{model}"
        " WHERE window_start >= %(start)s AND window_end <= %(end)s")
    query = sql.SQL(" UNION ALL ").join(
        one.format(name=sql.Literal(m), schema=sql.Identifier(schema), model=sql.Identifier(m))
        for m in models)
    with conn.cursor() as cur:
        cur.execute(query, {"start": start, "end": end})
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def score_rows(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT device_id, metric, ts, score, model_id, severity, baseline_std"
        " FROM telemetry.scores WHERE ts >= %s AND ts < %s", (start, end)).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "metric", "ts", "score", "model_id",
                                       "severity", "baseline_std"])


def failed_batch_readings(conn: psycopg.Connection, start: datetime, end: datetime
                          ) -> pd.DataFrame:
    """Keys of readings in [start, end) loaded by a batch that failed an error expectation:
    training must not learn from them."""
    batch_ids = [r[0] for r in conn.execute(
        "SELECT batch_id FROM telemetry.batches WHERE quality = 'error'").fetchall()]
    if not batch_ids:
        return pd.DataFrame(columns=["device_id", "metric_id", "ts"])
    rows = conn.execute(
        "SELECT device_id, metric_id, ts FROM telemetry.readings"
        " WHERE batch_id = ANY(%s) AND ts >= %s AND ts < %s", (batch_ids, start, end)
    ).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "metric_id", "ts"])


def results(conn: psycopg.Connection, suite: str | None = None, limit: int = 200
            ) -> list[dict[str, Any]]:
    """Latest results, newest first (for the CLI and reports)."""
    where = "WHERE suite = %s" if suite else ""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            f"SELECT suite, target, batch_id, window_start, window_end, expectation, severity,"
            f" success, element_count, unexpected_count, unexpected_percent, unexpected_sample,"
            f" validated_at FROM telemetry.quality_results {where}"
            f" ORDER BY validated_at DESC, suite, expectation LIMIT %s",
            (suite, limit) if suite else (limit,))
        return cur.fetchall()
