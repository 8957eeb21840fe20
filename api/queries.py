"""All SQL of the API (async psycopg, bound parameters only). Route handlers call these and
never build SQL themselves."""

from __future__ import annotations

from psycopg import AsyncConnection, sql


async def schema_revision(conn: AsyncConnection) -> str | None:
    cur = await conn.execute("SELECT version_num FROM public.alembic_version")
    row = await cur.fetchone()
    return row[0] if row else None


async def metric_gauges(conn: AsyncConnection, schema: str) -> tuple[dict[str, int], int]:
    """Open alerts by severity, and devices with a KPI window in the last 15 minutes before the
    newest one (simulated history may lie in the past; the mart is indexed by window)."""
    cur = await conn.execute(
        "SELECT severity, count(*) FROM telemetry.alerts"
        " WHERE state IN ('pending', 'firing') GROUP BY 1")
    open_alerts = {severity: int(n) for severity, n in await cur.fetchall()}
    cur = await conn.execute("SELECT to_regclass(%s)", (f"{schema}.fct_kpi_5m",))
    if (await cur.fetchone())[0] is None:  # dbt has not built the marts yet
        return open_alerts, 0
    kpis = sql.Identifier(schema, "fct_kpi_5m")
    cur = await conn.execute(sql.SQL(
        "SELECT count(DISTINCT device_id) FROM {} WHERE window_start >= ("
        " SELECT max(window_start) FROM {}) - interval '15 minutes'").format(kpis, kpis))
    row = await cur.fetchone()
    return open_alerts, int(row[0]) if row else 0
