"""Data access for the HTML reports (reports/): every query they run, bound parameters only.

Reports read the dbt marts (schema `settings.dbt_schema`) for KPIs and the telemetry tables for
alerts, scores, labels, quality, quarantine, evaluations and drift. Each function takes an open
connection and returns a DataFrame (or a small dict); none of them writes.

Time buckets use date_bin with the KPI models' origin (2000-01-01 UTC), so an hour here is the
same hour as in analytics.fct_kpi_1h whatever the session's time zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core import readback
from core.settings import get_settings

ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"
HEALTHY_COMPLETENESS = 0.9  # a 5-minute window is healthy at >= this completeness, no breach
_SEVERITY_RANK = "array_position(ARRAY['low', 'medium', 'high', 'critical'], a.severity)"


def _frame(conn: psycopg.Connection, query: str | sql.Composable, params: Any = None,
           columns: list[str] | None = None) -> pd.DataFrame:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
        names = columns or [c.name for c in (cur.description or [])]
    return pd.DataFrame(rows, columns=names)


def _marts(query: str) -> sql.Composed:
    """A query whose {schema} placeholder is the dbt schema (an identifier, never a value)."""
    return sql.SQL(query).format(schema=sql.Identifier(get_settings().dbt_schema))


def data_end(conn: psycopg.Connection) -> datetime | None:
    """The newest watermark (loaded or scored data): the default end of a report's range, so
    a simulated history in the past still gets a report of its last day."""
    return conn.execute("SELECT max(high_water) FROM telemetry.watermarks").fetchone()[0]


def data_start(conn: psycopg.Connection) -> datetime | None:
    """The start of the oldest loaded window: a default range is clipped to it, so hours
    before anything was loaded do not show up as a silent fleet."""
    return conn.execute("SELECT min(window_start) FROM telemetry.batches"
                        " WHERE status = 'succeeded'").fetchone()[0]


def marts_built(conn: psycopg.Connection) -> bool:
    schema = get_settings().dbt_schema
    return all(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{name}",)
                            ).fetchone()[0] for name in ("fct_kpi_5m", "dim_devices"))


def devices(conn: psycopg.Connection) -> pd.DataFrame:
    """device_id, device_name, site, zone, interval_seconds (the scoring code's registry)."""
    return _frame(conn, "SELECT device_id, device_name, site, zone, interval_seconds"
                        " FROM telemetry.devices ORDER BY device_id")


# ---------------------------------------------------------------------------------------------
# Alerts.

def alerts(conn: psycopg.Connection, start: datetime, end: datetime, limit: int = 500
           ) -> pd.DataFrame:
    """Alerts open now (opened before `end`) or active at some time in [start, end), with their
    device's name, site and zone; open first, then most severe, then newest."""
    return _frame(conn, f"""
        SELECT a.alert_id, a.kind, a.device_id, d.device_name, d.site, d.zone, a.metric,
               a.state, a.severity, a.opened_at, a.fired_at, a.resolved_at, a.last_seen_at,
               a.peak_score, a.peak_ts, a.reason, a.detectors, a.contributions,
               a.acknowledged_at, a.acknowledged_by, a.drifted,
               a.state IN ('pending', 'firing') AS is_open
        FROM telemetry.alerts a
        LEFT JOIN telemetry.devices d ON d.device_id = a.device_id
        WHERE a.opened_at < %(end)s
          AND (a.state IN ('pending', 'firing')
               OR coalesce(a.resolved_at, a.last_seen_at) >= %(start)s)
        ORDER BY is_open DESC, {_SEVERITY_RANK} DESC, a.opened_at DESC
        LIMIT %(limit)s""", {"start": start, "end": end, "limit": limit})


def latest_alert_change(conn: psycopg.Connection) -> datetime | None:
    """When any alert last changed (opened, moved state, acknowledged, resolved)."""
    return conn.execute("SELECT max(updated_at) FROM telemetry.alerts").fetchone()[0]


def alert_counts(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Counts of the alerts `alerts` selects (without its limit) per severity, kind and
    open/closed."""
    return _frame(conn, """
        SELECT a.severity, a.kind, a.state IN ('pending', 'firing') AS is_open, count(*) AS n
        FROM telemetry.alerts a
        WHERE a.opened_at < %(end)s
          AND (a.state IN ('pending', 'firing')
               OR coalesce(a.resolved_at, a.last_seen_at) >= %(start)s)
        GROUP BY 1, 2, 3""", {"start": start, "end": end})


def device_readings(conn: psycopg.Connection, device_id: int, start: datetime, end: datetime
                    ) -> pd.DataFrame:
    """One device's readings in [start, end) in the shape core.readback returns."""
    return readback.read_readings(start, end, device_ids=[device_id], conn=conn)


def device_labels(conn: psycopg.Connection, device_id: int, start: datetime, end: datetime
                  ) -> pd.DataFrame:
    """Ground-truth anomaly labels of a device overlapping [start, end)."""
    return _frame(conn, "SELECT label_id, device_id, metrics, anomaly_type, start_ts, end_ts,"
                        " magnitude FROM telemetry.anomaly_labels WHERE device_id = %s"
                        " AND end_ts > %s AND start_ts < %s ORDER BY start_ts",
                  (device_id, start, end),
                  columns=["label_id", "device_id", "metrics", "anomaly_type", "start_ts",
                           "end_ts", "magnitude"])


def stored_contributions(conn: psycopg.Connection, device_id: int, metric: str,
                         start: datetime, end: datetime) -> dict[str, Any] | None:
    """The contributions of the highest stored score of a series in [start, end]."""
    row = conn.execute("SELECT contributions FROM telemetry.scores WHERE device_id = %s"
                       " AND metric = %s AND ts >= %s AND ts <= %s AND contributions IS NOT NULL"
                       " ORDER BY score DESC LIMIT 1", (device_id, metric, start, end)).fetchone()
    return row[0] if row else None


def models(conn: psycopg.Connection) -> pd.DataFrame:
    """The newest version of each detector: what the alert report re-scores with."""
    return _frame(conn, "SELECT DISTINCT ON (detector) detector, version, train_start,"
                        " train_end, row_count, created_at FROM telemetry.models"
                        " ORDER BY detector, version DESC",
                  columns=["detector", "version", "train_start", "train_end", "row_count",
                           "created_at"])


# ---------------------------------------------------------------------------------------------
# Fleet (dbt marts).

def zone_health(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per site, zone and hour: expected 5-minute device-metric windows (every metric of every
    device installed by the window's start, so a silent device counts against its zone),
    observed ones, healthy ones (completeness >= HEALTHY_COMPLETENESS and no breach), breached
    ones, and health = healthy / expected. [start, end) should be whole 5-minute windows."""
    return _frame(conn, _marts(f"""
        WITH windows AS (
            SELECT w FROM generate_series(%(start)s::timestamptz,
                                          %(end)s::timestamptz - interval '5 minutes',
                                          interval '5 minutes') AS w
        ),
        expected AS (
            SELECT d.site, d.zone, date_bin('1 hour', windows.w, {ORIGIN}) AS hour,
                   sum(d.metric_count)::bigint AS expected
            FROM windows
            JOIN {{schema}}.dim_devices d ON d.installed_at <= windows.w
            GROUP BY 1, 2, 3
        ),
        observed AS (
            SELECT d.site, d.zone, date_bin('1 hour', k.window_start, {ORIGIN}) AS hour,
                   count(*) AS observed,
                   count(*) FILTER (WHERE k.completeness >= %(healthy)s
                                    AND k.breach_count = 0) AS healthy,
                   count(*) FILTER (WHERE k.breach_count > 0) AS breached
            FROM {{schema}}.fct_kpi_5m k
            JOIN {{schema}}.dim_devices d ON d.device_id = k.device_id
            WHERE k.window_start >= %(start)s AND k.window_end <= %(end)s
            GROUP BY 1, 2, 3
        )
        SELECT e.site, e.zone, e.hour, e.expected,
               coalesce(o.observed, 0) AS observed, coalesce(o.healthy, 0) AS healthy,
               coalesce(o.breached, 0) AS breached,
               coalesce(o.healthy, 0)::float8 / e.expected AS health
        FROM expected e
        LEFT JOIN observed o USING (site, zone, hour)
        ORDER BY e.site, e.zone, e.hour"""),
        {"start": start, "end": end, "healthy": HEALTHY_COMPLETENESS})


def zone_alerts(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Alerts opened per site, zone and hour (device and data alerts of the zone's devices)."""
    return _frame(conn, f"""
        SELECT d.site, d.zone, date_bin('1 hour', a.opened_at, {ORIGIN}) AS hour,
               count(*) AS alerts
        FROM telemetry.alerts a
        JOIN telemetry.devices d ON d.device_id = a.device_id
        WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", {"start": start, "end": end},
        columns=["site", "zone", "hour", "alerts"])


def device_health(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per device over [start, end): expected and healthy 5-minute windows, breached windows,
    completeness (readings / expected readings), alerts opened and anomalous points scored."""
    return _frame(conn, _marts("""
        WITH windows AS (
            SELECT w FROM generate_series(%(start)s::timestamptz,
                                          %(end)s::timestamptz - interval '5 minutes',
                                          interval '5 minutes') AS w
        ),
        expected AS (
            SELECT d.device_id, sum(d.metric_count)::bigint AS expected_windows,
                   sum(d.metric_count * 300.0 / d.interval_seconds)::float8 AS expected_readings
            FROM windows JOIN {schema}.dim_devices d ON d.installed_at <= windows.w
            GROUP BY 1
        ),
        kpi AS (
            SELECT device_id, count(*) FILTER (WHERE completeness >= %(healthy)s
                                               AND breach_count = 0) AS healthy,
                   count(*) FILTER (WHERE breach_count > 0) AS breached,
                   sum(reading_count)::float8 AS readings
            FROM {schema}.fct_kpi_5m
            WHERE window_start >= %(start)s AND window_end <= %(end)s
            GROUP BY 1
        ),
        alerts AS (
            SELECT device_id, count(*) AS alerts FROM telemetry.alerts
            WHERE opened_at >= %(start)s AND opened_at < %(end)s GROUP BY 1
        ),
        anomalies AS (
            SELECT device_id, count(*) AS anomalies FROM telemetry.scores
            WHERE is_anomaly AND ts >= %(start)s AND ts < %(end)s GROUP BY 1
        )
        SELECT d.device_id, d.device_name, d.site, d.zone, e.expected_windows,
               coalesce(k.healthy, 0) AS healthy, coalesce(k.breached, 0) AS breached,
               coalesce(k.healthy, 0)::float8 / e.expected_windows AS health,
               coalesce(k.readings, 0) / e.expected_readings AS completeness,
               coalesce(a.alerts, 0) AS alerts, coalesce(s.anomalies, 0) AS anomalies
        FROM {schema}.dim_devices d
        JOIN expected e USING (device_id)
        LEFT JOIN kpi k USING (device_id)
        LEFT JOIN alerts a USING (device_id)
        LEFT JOIN anomalies s USING (device_id)
        ORDER BY health, alerts DESC, d.device_id"""),
        {"start": start, "end": end, "healthy": HEALTHY_COMPLETENESS})


def device_metric_completeness(conn: psycopg.Connection, start: datetime, end: datetime
                               ) -> pd.DataFrame:
    """Per device and metric: readings / expected readings over [start, end) (from install)."""
    return _frame(conn, _marts("""
        WITH span AS (
            SELECT d.device_id, d.device_name, d.site, d.zone, m.metric,
                   (extract(epoch FROM %(end)s::timestamptz
                           - greatest(%(start)s::timestamptz, d.installed_at))
                   / d.interval_seconds)::float8 AS expected
            FROM {schema}.dim_devices d CROSS JOIN unnest(d.metric_names) AS m (metric)
            WHERE d.installed_at < %(end)s
        ),
        got AS (
            SELECT device_id, metric, sum(reading_count)::bigint AS readings
            FROM {schema}.fct_kpi_5m
            WHERE window_start >= %(start)s AND window_end <= %(end)s
            GROUP BY 1, 2
        )
        SELECT s.device_id, s.device_name, s.site, s.zone, s.metric,
               coalesce(g.readings, 0) AS readings, s.expected,
               coalesce(g.readings, 0)::float8 / s.expected AS completeness
        FROM span s LEFT JOIN got g USING (device_id, metric)
        ORDER BY s.device_id, s.metric"""), {"start": start, "end": end})


# ---------------------------------------------------------------------------------------------
# Quality: Great Expectations results and quarantine.

_QUALITY_AT = "coalesce(q.window_start, q.validated_at)"


def quality_summary(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per suite: validated targets, expectations evaluated, failed (errors, warnings), last
    validation."""
    return _frame(conn, f"""
        SELECT q.suite, count(DISTINCT q.target) AS targets, count(*) AS evaluated,
               count(*) FILTER (WHERE NOT q.success) AS failed,
               count(*) FILTER (WHERE NOT q.success AND q.severity = 'error') AS failed_errors,
               count(*) FILTER (WHERE NOT q.success AND q.severity = 'warning')
                   AS failed_warnings,
               max(q.validated_at) AS last_validated_at
        FROM telemetry.quality_results q
        WHERE {_QUALITY_AT} >= %(start)s AND {_QUALITY_AT} < %(end)s
        GROUP BY 1 ORDER BY 1""", {"start": start, "end": end},
        columns=["suite", "targets", "evaluated", "failed", "failed_errors", "failed_warnings",
                 "last_validated_at"])


def quality_timeline(conn: psycopg.Connection, start: datetime, end: datetime,
                     bucket: timedelta) -> pd.DataFrame:
    """Per suite, time bucket (of the validated window's start) and severity: expectations
    evaluated and failed."""
    return _frame(conn, f"""
        SELECT q.suite, date_bin(%(bucket)s, {_QUALITY_AT}, {ORIGIN}) AS bucket, q.severity,
               count(*) AS evaluated, count(*) FILTER (WHERE NOT q.success) AS failed,
               count(DISTINCT q.target) AS targets
        FROM telemetry.quality_results q
        WHERE {_QUALITY_AT} >= %(start)s AND {_QUALITY_AT} < %(end)s
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", {"start": start, "end": end, "bucket": bucket},
        columns=["suite", "bucket", "severity", "evaluated", "failed", "targets"])


def failing_expectations(conn: psycopg.Connection, start: datetime, end: datetime
                         ) -> pd.DataFrame:
    """Per suite and expectation that failed: how often, on how many targets, rows affected."""
    return _frame(conn, f"""
        SELECT q.suite, q.expectation, q.column_name, q.severity,
               count(*) FILTER (WHERE NOT q.success) AS failures, count(*) AS evaluated,
               sum(q.unexpected_count) FILTER (WHERE NOT q.success)::bigint AS unexpected_rows,
               max(q.validated_at) FILTER (WHERE NOT q.success) AS last_failed_at
        FROM telemetry.quality_results q
        WHERE {_QUALITY_AT} >= %(start)s AND {_QUALITY_AT} < %(end)s
        GROUP BY 1, 2, 3, 4 HAVING count(*) FILTER (WHERE NOT q.success) > 0
        ORDER BY failures DESC, q.suite, q.expectation""", {"start": start, "end": end},
        columns=["suite", "expectation", "column_name", "severity", "failures", "evaluated",
                 "unexpected_rows", "last_failed_at"])


def latest_failures(conn: psycopg.Connection, start: datetime, end: datetime, limit: int = 20
                    ) -> pd.DataFrame:
    """The newest failed expectations with their unexpected counts and sample rows."""
    return _frame(conn, f"""
        SELECT q.suite, q.target, q.expectation, q.expectation_type, q.column_name, q.severity,
               q.element_count, q.unexpected_count, q.unexpected_percent, q.unexpected_sample,
               q.observed, q.kwargs, q.run_id, q.window_start, q.window_end, q.validated_at
        FROM telemetry.quality_results q
        WHERE NOT q.success AND {_QUALITY_AT} >= %(start)s AND {_QUALITY_AT} < %(end)s
        ORDER BY {_QUALITY_AT} DESC, q.severity, q.suite, q.expectation
        LIMIT %(limit)s""", {"start": start, "end": end, "limit": limit},
        columns=["suite", "target", "expectation", "expectation_type", "column_name",
                 "severity", "element_count", "unexpected_count", "unexpected_percent",
                 "unexpected_sample", "observed", "kwargs", "run_id", "window_start",
                 "window_end", "validated_at"])


# Quarantined rows are placed in time by their batch's reference time (when the batch arrived,
# in event time): a rejected row's own timestamp may be missing or absurd, and quarantined_at is
# wall-clock time, which for a backfilled history is today.
_QUARANTINE_FROM = """
    FROM telemetry.quarantine q
    JOIN telemetry.batches b ON b.batch_id = q.batch_id
    WHERE b.reference_time >= %(start)s AND b.reference_time < %(end)s"""


def quarantine_timeline(conn: psycopg.Connection, start: datetime, end: datetime,
                        bucket: timedelta) -> pd.DataFrame:
    return _frame(conn, f"""
        SELECT date_bin(%(bucket)s, b.reference_time, {ORIGIN}) AS bucket, q.rule,
               count(*) AS rows
        {_QUARANTINE_FROM}
        GROUP BY 1, 2 ORDER BY 1, 2""", {"start": start, "end": end, "bucket": bucket},
        columns=["bucket", "rule", "rows"])


def quarantine_rules(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    return _frame(conn, f"""
        SELECT q.rule, count(*) AS rows, count(DISTINCT q.device_id) AS devices,
               count(DISTINCT q.batch_id) AS batches, max(b.reference_time) AS last_batch_at
        {_QUARANTINE_FROM}
        GROUP BY 1 ORDER BY rows DESC, q.rule""", {"start": start, "end": end},
        columns=["rule", "rows", "devices", "batches", "last_batch_at"])


def quarantine_examples(conn: psycopg.Connection, start: datetime, end: datetime,
                        per_rule: int = 3) -> pd.DataFrame:
    """The newest `per_rule` rejected rows of each rule: reason and raw payload."""
    return _frame(conn, f"""
        SELECT rule, reason, device_id, metric_id, ts, value, raw, batch_id FROM (
            SELECT q.*, row_number() OVER (PARTITION BY q.rule ORDER BY q.quarantine_id DESC)
                   AS nth
            {_QUARANTINE_FROM}
        ) ranked WHERE nth <= %(per_rule)s ORDER BY rule, nth""",
        {"start": start, "end": end, "per_rule": per_rule},
        columns=["rule", "reason", "device_id", "metric_id", "ts", "value", "raw", "batch_id"])


# ---------------------------------------------------------------------------------------------
# Evaluations and drift.

def latest_evaluation(conn: psycopg.Connection, run_id: str | None = None) -> pd.DataFrame:
    """Every row of one backtest run (default: the newest), telemetry.evaluations columns."""
    return _frame(conn, """
        SELECT * FROM telemetry.evaluations
        WHERE run_id = coalesce(%(run)s, (SELECT run_id FROM telemetry.evaluations
                                          ORDER BY created_at DESC, evaluation_id DESC
                                          LIMIT 1))
        ORDER BY evaluation_id""", {"run": run_id})


def evaluation_runs(conn: psycopg.Connection, limit: int = 10) -> pd.DataFrame:
    """The newest backtest runs with the fused detector's overall figures."""
    return _frame(conn, """
        SELECT run_id, max(created_at) AS created_at, max(seed) AS seed, max(days) AS days,
               max(devices) AS devices,
               max(f1) FILTER (WHERE detector = 'fused' AND anomaly_type = 'all') AS f1,
               max(recall) FILTER (WHERE detector = 'fused' AND anomaly_type = 'all') AS recall,
               max(precision) FILTER (WHERE detector = 'fused' AND anomaly_type = 'all')
                   AS precision
        FROM telemetry.evaluations GROUP BY run_id ORDER BY created_at DESC LIMIT %s""",
        (limit,), columns=["run_id", "created_at", "seed", "days", "devices", "f1", "recall",
                           "precision"])


def latest_drift(conn: psycopg.Connection) -> pd.DataFrame:
    """drift_results of the newest tested period, per site and metric."""
    return _frame(conn, """
        SELECT * FROM telemetry.drift_results
        WHERE (current_start, current_end) = (
            SELECT current_start, current_end FROM telemetry.drift_results
            ORDER BY current_end DESC, created_at DESC LIMIT 1)
        ORDER BY site = 'all' DESC, site, metric""")


def drift_history(conn: psycopg.Connection, periods: int = 30) -> pd.DataFrame:
    """Per tested period (newest `periods`), site and metric: statistic, threshold, drifted."""
    return _frame(conn, """
        WITH recent AS (
            SELECT DISTINCT current_end FROM telemetry.drift_results
            ORDER BY current_end DESC LIMIT %s
        )
        SELECT r.current_end, r.site, r.metric, r.method, r.statistic, r.threshold, r.drifted
        FROM telemetry.drift_results r JOIN recent USING (current_end)
        ORDER BY r.current_end, r.site, r.metric""", (periods,),
        columns=["current_end", "site", "metric", "method", "statistic", "threshold", "drifted"])
