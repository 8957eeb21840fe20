"""Data access for drift: the KPI frames compared, the windows kept out of a reference, the
stored per-metric results, alert flags and persistent drift (the train flow's re-baseline)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
import psycopg
from psycopg import sql

from core.settings import get_settings

ALL_SITES = "all"  # the site of a fleet-wide result
RESULT_COLUMNS = ("metric", "method", "statistic", "threshold", "drifted", "reference_rows",
                  "current_rows", "reference_mean", "current_mean")


def read_kpis(conn: psycopg.Connection, start: datetime, end: datetime,
              metrics: Iterable[str], site: str | None = None) -> pd.DataFrame:
    """5-minute means in [start, end) from the KPI mart, one row per device x window:
    device_id, site, window_start and one column per metric (NaN where a device had none)."""
    metrics = list(metrics)
    columns = sql.SQL(", ").join(
        sql.SQL("avg(k.mean) FILTER (WHERE k.metric = {}) AS {}").format(
            sql.Placeholder(f"metric_{i}"), sql.Identifier(m)) for i, m in enumerate(metrics))
    query = sql.SQL(
        "SELECT k.device_id, d.site, k.window_start, {columns}"
        " FROM {schema}.fct_kpi_5m k JOIN telemetry.devices d USING (device_id)"
        " WHERE k.window_start >= %(start)s AND k.window_start < %(end)s"
        " AND (%(site)s::text IS NULL OR d.site = %(site)s)"
        " GROUP BY k.device_id, d.site, k.window_start ORDER BY k.window_start, k.device_id"
    ).format(columns=columns, schema=sql.Identifier(get_settings().dbt_schema))
    params = {"start": start, "end": end, "site": site,
              **{f"metric_{i}": m for i, m in enumerate(metrics)}}
    rows = conn.execute(query, params).fetchall()
    frame = pd.DataFrame(rows, columns=["device_id", "site", "window_start", *metrics])
    frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True)
    return frame.astype({m: "float64" for m in metrics})


def exclusion_windows(conn: psycopg.Connection, start: datetime, end: datetime
                      ) -> pd.DataFrame:
    """Intervals a clean reference leaves out: labeled anomalies and device alerts (open ones
    up to their last reading), overlapping [start, end)."""
    rows = conn.execute(
        "SELECT device_id, start_ts, end_ts, 'label' FROM telemetry.anomaly_labels"
        " WHERE end_ts >= %(start)s AND start_ts < %(end)s"
        " UNION ALL"
        " SELECT device_id, opened_at, coalesce(resolved_at, last_seen_at), 'alert'"
        " FROM telemetry.alerts WHERE kind = 'device' AND device_id IS NOT NULL"
        " AND coalesce(resolved_at, last_seen_at) >= %(start)s AND opened_at < %(end)s",
        {"start": start, "end": end}).fetchall()
    frame = pd.DataFrame(rows, columns=["device_id", "start_ts", "end_ts", "source"])
    for column in ("start_ts", "end_ts"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def save_results(conn: psycopg.Connection, table: pd.DataFrame, *, site: str,
                 reference: tuple[datetime, datetime], current: tuple[datetime, datetime],
                 run_id: str, report_path: str | None) -> list[int]:
    """Store one comparison (RESULT_COLUMNS per metric). The rows of the same current period
    and site are replaced in place (their ids stay), so re-running a period changes nothing."""
    conn.execute(
        "DELETE FROM telemetry.drift_results WHERE current_start = %s AND current_end = %s"
        " AND site = %s AND metric <> ALL(%s)",
        (*current, site, table["metric"].tolist()))
    ids = []
    for row in table.reindex(columns=list(RESULT_COLUMNS)).itertuples(index=False):
        values = {name: _plain(value) for name, value in zip(RESULT_COLUMNS, row, strict=True)}
        ids.append(int(conn.execute(
            "INSERT INTO telemetry.drift_results (run_id, reference_start, reference_end,"
            " current_start, current_end, site, metric, method, statistic, threshold, drifted,"
            " reference_rows, current_rows, reference_mean, current_mean, report_path)"
            " VALUES (%(run_id)s, %(ref_start)s, %(ref_end)s, %(cur_start)s, %(cur_end)s,"
            " %(site)s, %(metric)s, %(method)s, %(statistic)s, %(threshold)s, %(drifted)s,"
            " %(reference_rows)s, %(current_rows)s, %(reference_mean)s, %(current_mean)s,"
            " %(report_path)s)"
            " ON CONFLICT (current_start, current_end, site, metric) DO UPDATE SET"
            " run_id = EXCLUDED.run_id, reference_start = EXCLUDED.reference_start,"
            " reference_end = EXCLUDED.reference_end, method = EXCLUDED.method,"
            " statistic = EXCLUDED.statistic, threshold = EXCLUDED.threshold,"
            " drifted = EXCLUDED.drifted, reference_rows = EXCLUDED.reference_rows,"
            " current_rows = EXCLUDED.current_rows, reference_mean = EXCLUDED.reference_mean,"
            " current_mean = EXCLUDED.current_mean, report_path = EXCLUDED.report_path,"
            " created_at = now() RETURNING drift_id",
            {**values, "run_id": run_id, "ref_start": reference[0], "ref_end": reference[1],
             "cur_start": current[0], "cur_end": current[1], "site": site,
             "report_path": report_path}).fetchone()[0]))
    return ids


def _plain(value: object) -> object:
    """numpy scalars to Python ones, NaN to NULL."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and value != value else value


def flag_alerts(conn: psycopg.Connection, drifted: Iterable[tuple[str, str]],
                start: datetime, end: datetime) -> int:
    """Mark device alerts on drifted (metric, site) pairs (site 'all': every site) that are
    open or overlap [start, end); returns how many were newly marked."""
    pairs = list(drifted)
    if not pairs:
        return 0
    return conn.execute(
        "UPDATE telemetry.alerts a SET drifted = true, updated_at = now()"
        " FROM telemetry.devices d, unnest(%(metrics)s::text[], %(sites)s::text[]) AS x(metric,"
        " site)"
        " WHERE a.device_id = d.device_id AND a.kind = 'device' AND NOT a.drifted"
        " AND a.metric = x.metric AND (x.site = %(all)s OR d.site = x.site)"
        " AND (a.state IN ('pending', 'firing')"
        "      OR (a.opened_at < %(end)s AND a.last_seen_at >= %(start)s))",
        {"metrics": [m for m, _ in pairs], "sites": [s for _, s in pairs], "all": ALL_SITES,
         "start": start, "end": end}).rowcount


def persistent_drift(conn: psycopg.Connection, runs: int, until: datetime | None = None
                     ) -> pd.DataFrame:
    """(site, metric) whose newest `runs` or more drift runs (current periods ending by `until`)
    all drifted: the streak's length, the start of its first current period (`since`) and the
    end of its newest."""
    rows = conn.execute(
        "WITH ranked AS (SELECT site, metric, current_start, current_end, drifted,"
        " count(*) FILTER (WHERE NOT drifted) OVER (PARTITION BY site, metric"
        "   ORDER BY current_end DESC, current_start DESC) AS breaks"
        " FROM telemetry.drift_results"
        " WHERE %(until)s::timestamptz IS NULL OR current_end <= %(until)s)"
        " SELECT site, metric, count(*) AS runs, min(current_start) AS since,"
        " max(current_end) AS latest FROM ranked WHERE breaks = 0"
        " GROUP BY site, metric HAVING count(*) >= %(runs)s ORDER BY site, metric",
        {"until": until, "runs": runs}).fetchall()
    return pd.DataFrame(rows, columns=["site", "metric", "runs", "since", "latest"])
