"""SQL of the API's write side: readings refused before the loader (quarantine and ledger),
online-detection series state and anomalies, and alert changes for the live stream. Bound
parameters only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

# -- ingestion (sync: it shares the loader's transaction) ------------------------------------


def metric_registry(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """metric name -> (metric_id, unit)."""
    rows = conn.execute("SELECT metric, metric_id, unit FROM telemetry.metrics").fetchall()
    return {name: (int(mid), unit) for name, mid, unit in rows}


def quarantine_refused(conn: psycopg.Connection, batch_id: int,
                       rows: list[tuple[Any, ...]]) -> None:
    """Rows the API refused before the loader saw them, as the loader stores its own: one
    quarantine row per (rule, payload) fingerprint, so re-posting adds nothing.

    Each row: (rule, reason, device_id, metric_id, ts, value, raw json text, fingerprint)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.quarantine (batch_id, rule, reason, device_id, metric_id, ts,"
            " value, raw, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (fingerprint) DO NOTHING",
            [(batch_id, *row) for row in rows])


def add_refused_to_ledger(conn: psycopg.Connection, batch_id: int, refused: int) -> None:
    """The ledger counts every row the request carried, refused ones as quarantined."""
    conn.execute(
        "UPDATE telemetry.batches SET rows_received = rows_received + %s,"
        " rows_quarantined = rows_quarantined + %s WHERE batch_id = %s",
        (refused, refused, batch_id))


def stored_conflicts(conn: psycopg.Connection, batch_id: int, device_id: list[int],
                     metric_id: list[int], ts: list[datetime], value: list[float]
                     ) -> list[tuple[int, float, int]]:
    """Of the given rows, those whose key another batch stored with another value:
    (position in the lists, stored value, stored batch)."""
    return conn.execute(
        """
        SELECT k.pos - 1, r.value, r.batch_id
        FROM unnest(%s::int[], %s::smallint[], %s::timestamptz[], %s::float8[])
             WITH ORDINALITY AS k(device_id, metric_id, ts, value, pos)
        JOIN telemetry.readings r
          ON r.device_id = k.device_id AND r.metric_id = k.metric_id AND r.ts = k.ts
        WHERE r.batch_id <> %s AND r.value IS DISTINCT FROM k.value
        ORDER BY 1
        """,
        (device_id, metric_id, ts, value, batch_id)).fetchall()


# -- online detection (async, one transaction per request) -----------------------------------


async def lock_series(conn: AsyncConnection, series: str, window: int, min_periods: int,
                      device_id: int | None, metric: str | None) -> dict[str, Any]:
    """The series' row, created with these parameters if new, locked until the transaction
    ends (two requests for one series take turns)."""
    await conn.execute(
        "INSERT INTO telemetry.online_series (series, device_id, metric, window_size,"
        " min_periods) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (series) DO NOTHING",
        (series, device_id, metric, window, min_periods))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT series, device_id, metric, window_size, min_periods, recent, last_ts, n_seen,"
            " n_anomalies FROM telemetry.online_series WHERE series = %s FOR UPDATE", (series,))
        row = await cur.fetchone()
    assert row is not None
    return row


async def save_series(conn: AsyncConnection, series: str, recent: list[float],
                      last_ts: datetime | None, n_seen: int, new_anomalies: int) -> None:
    await conn.execute(
        "UPDATE telemetry.online_series SET recent = %s, last_ts = %s, n_seen = %s,"
        " n_anomalies = n_anomalies + %s, updated_at = now() WHERE series = %s",
        (recent, last_ts, n_seen, new_anomalies, series))


async def insert_anomalies(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """Each row: (series, ts, value, mean, std_dev, z, k, window_size)."""
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO telemetry.online_anomalies (series, ts, value, mean, std_dev, z, k,"
            " window_size) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (series, ts) DO NOTHING", rows)


# -- alert changes for the live stream -------------------------------------------------------

_ALERT = """
SELECT a.alert_id, a.kind, a.device_id, d.device_name, d.site, d.zone, a.metric, a.state,
       a.severity, a.opened_at, a.fired_at, a.resolved_at, a.last_seen_at, a.peak_score,
       a.reason, a.acknowledged_at, a.acknowledged_by, a.ack_note, a.resolved_by,
       a.resolve_note, a.drifted, a.updated_at
FROM telemetry.alerts a LEFT JOIN telemetry.devices d USING (device_id)
"""


async def alerts_changed_since(conn: AsyncConnection, since: datetime, limit: int = 1000
                               ) -> list[dict[str, Any]]:
    """Alerts created or changed after `since`, oldest change first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ALERT + " WHERE a.updated_at > %s ORDER BY a.updated_at, a.alert_id"
                          " LIMIT %s", (since, limit))
        return await cur.fetchall()


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's clock: alerts.updated_at is stamped by it, not by this process."""
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    return row[0]
