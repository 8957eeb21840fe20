"""Data access for everything around the readings: registry, labels, watermarks, status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import psycopg


def upsert_devices(conn: psycopg.Connection, fleet: pd.DataFrame) -> int:
    """Register or update devices (columns as simulator.build_fleet returns)."""
    rows = [
        (int(r.device_id), r.device_name, r.site, r.zone, r.device_kind, list(r.metrics),
         int(r.interval_seconds), r.installed_at)
        for r in fleet.itertuples(index=False)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.devices (device_id, device_name, site, zone, device_kind,"
            " metrics, interval_seconds, installed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET device_name = EXCLUDED.device_name,"
            " site = EXCLUDED.site, zone = EXCLUDED.zone, device_kind = EXCLUDED.device_kind,"
            " metrics = EXCLUDED.metrics, interval_seconds = EXCLUDED.interval_seconds,"
            " installed_at = EXCLUDED.installed_at"
            " WHERE (devices.device_name, devices.site, devices.zone, devices.device_kind,"
            " devices.metrics, devices.interval_seconds, devices.installed_at) IS DISTINCT FROM"
            " (EXCLUDED.device_name, EXCLUDED.site, EXCLUDED.zone, EXCLUDED.device_kind,"
            " EXCLUDED.metrics, EXCLUDED.interval_seconds, EXCLUDED.installed_at)",
            rows,
        )
    return len(rows)


def _insert_new(conn: psycopg.Connection, table: str, columns: tuple[str, ...],
                rows: list[tuple]) -> int:
    """Insert rows keyed by their first column; rows already stored are left as they are."""
    if rows:
        placeholders = ", ".join(["%s"] * len(columns))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO telemetry.{table} ({', '.join(columns)}) VALUES ({placeholders})"
                f" ON CONFLICT ({columns[0]}) DO NOTHING",
                rows,
            )
    return len(rows)


def devices(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute("SELECT device_id, site, zone, interval_seconds FROM telemetry.devices"
                        " ORDER BY device_id").fetchall()
    return pd.DataFrame(rows, columns=["device_id", "site", "zone", "interval_seconds"])


def insert_labels(conn: psycopg.Connection, labels: pd.DataFrame) -> int:
    """Store anomaly ground truth (simulator labels)."""
    rows = [
        (r.label_id, int(r.device_id), list(r.metrics), r.anomaly_type, r.start_ts, r.end_ts,
         float(r.magnitude))
        for r in labels.itertuples(index=False)
    ]
    return _insert_new(conn, "anomaly_labels", ("label_id", "device_id", "metrics",
                       "anomaly_type", "start_ts", "end_ts", "magnitude"), rows)


def insert_faults(conn: psycopg.Connection, faults: pd.DataFrame) -> int:
    """Store the data faults the simulator injected."""
    rows = [
        (r.fault_id, r.fault_type, int(r.device_id), int(r.metric_id), r.ts, r.arrival_ts,
         r.detail)
        for r in faults.itertuples(index=False)
    ]
    return _insert_new(conn, "data_faults", ("fault_id", "fault_type", "device_id",
                       "metric_id", "ts", "arrival_ts", "detail"), rows)


def advance_watermark(conn: psycopg.Connection, stream: str, high_water: datetime,
                      batch_id: int | None = None) -> None:
    """Move a stream's watermark forward (never back)."""
    conn.execute(
        "INSERT INTO telemetry.watermarks (stream, high_water, batch_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (stream) DO UPDATE SET"
        " high_water = GREATEST(watermarks.high_water, EXCLUDED.high_water),"
        " batch_id = coalesce(EXCLUDED.batch_id, watermarks.batch_id), updated_at = now()",
        (stream, high_water, batch_id),
    )


def get_watermark(conn: psycopg.Connection, stream: str) -> datetime | None:
    row = conn.execute(
        "SELECT high_water FROM telemetry.watermarks WHERE stream = %s", (stream,)
    ).fetchone()
    return row[0] if row else None


def _rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


def watermarks(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return _rows(conn, "SELECT stream, high_water, batch_id, updated_at,"
                       " now() - high_water AS lag FROM telemetry.watermarks ORDER BY stream")


def recent_batches(conn: psycopg.Connection, limit: int = 10) -> list[dict[str, Any]]:
    return _rows(conn, "SELECT batch_id, source, stream, window_start, window_end, rows_received,"
                       " rows_loaded, rows_duplicate, rows_quarantined, status, load_path, error,"
                       " finished_at - started_at AS took FROM telemetry.batches"
                       " ORDER BY batch_id DESC LIMIT %s", (limit,))


def quarantine_by_rule(conn: psycopg.Connection, batch_ids: list[int] | None = None
                       ) -> dict[str, int]:
    if batch_ids is None:
        rows = conn.execute("SELECT rule, count(*) FROM telemetry.quarantine GROUP BY rule"
                            " ORDER BY 2 DESC").fetchall()
    else:
        rows = conn.execute("SELECT rule, count(*) FROM telemetry.quarantine"
                            " WHERE batch_id = ANY(%s) GROUP BY rule ORDER BY 2 DESC",
                            (batch_ids,)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = ("devices", "readings", "batches", "quarantine", "anomaly_labels", "data_faults")
    query = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM telemetry.{t}" for t in tables
    )
    return {r[0]: int(r[1]) for r in conn.execute(query)}


def kpi_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """Row counts of the dbt KPI marts that exist (empty before the first dbt build)."""
    names = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_name LIKE 'fct_%%' ORDER BY table_name", (schema,))]
    out = {}
    for name in names:
        out[name] = int(conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}.{}").format(
                psycopg.sql.Identifier(schema), psycopg.sql.Identifier(name))
        ).fetchone()[0])
    return out
