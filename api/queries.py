"""All SQL of the API (async psycopg, bound parameters only). Route handlers call these and
never build SQL themselves; REST and GraphQL read through the same functions.

List queries are keyset-paginated: each takes `Filters`, a limit and the decoded cursor (the
previous page's last sort key) and returns limit + 1 rows at most (see pagination.next_cursor).
Their SQL text depends only on which filters are set, so it is built once per shape and
cached: the same text every time lets psycopg prepare it server-side after a few uses.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row

from api.pagination import Filters, MartsNotBuilt

ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"  # the KPI marts' window origin
HEALTHY_COMPLETENESS = 0.9  # as the fleet report: a healthy 5-min window, no breach
OPEN_STATES = "('pending', 'firing')"
GRAINS = {"5m": "fct_kpi_5m", "15m": "fct_kpi_15m", "1h": "fct_kpi_1h"}


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


# ---------------------------------------------------------------------------------------------
# Helpers.

async def _rows(conn: AsyncConnection, query: str, params: dict[str, Any] | tuple = ()
                ) -> list[dict[str, Any]]:
    # Binary results: timestamps and floats arrive without text parsing.
    async with conn.cursor(row_factory=dict_row, binary=True) as cur:
        try:
            await cur.execute(query, params)
        except errors.UndefinedTable as exc:
            raise MartsNotBuilt() from exc
        return await cur.fetchall()


async def _one(conn: AsyncConnection, query: str, params: dict[str, Any] | tuple = ()
               ) -> dict[str, Any] | None:
    rows = await _rows(conn, query, params)
    return rows[0] if rows else None


def _schema(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _keyset(columns: tuple[str, ...], desc: bool) -> str:
    """(a, b) > (k0, k1): one row comparison, which PostgreSQL matches to a btree prefix."""
    marks = ", ".join(f"%(k{i})s" for i in range(len(columns)))
    return f"({', '.join(columns)}) {'<' if desc else '>'} ({marks})"


def _order(columns: tuple[str, ...], desc: bool) -> str:
    return " ORDER BY " + ", ".join(f"{c} {'DESC' if desc else 'ASC'}" for c in columns)


def _params(filters: Filters, limit: int, after: tuple[Any, ...] | None,
            **extra: Any) -> dict[str, Any]:
    params = {**filters.params(), **extra, "limit": limit + 1}
    for i, value in enumerate(after or ()):
        params[f"k{i}"] = value
    return params


def _device_scope(column: str, present: tuple[str, ...]) -> list[str]:
    """site/zone filters on a table keyed by device: a semi-join on the registry."""
    scope = [f"{name} = %({name})s" for name in ("site", "zone") if name in present]
    if not scope:
        return []
    return [f"{column} IN (SELECT device_id FROM telemetry.devices WHERE {' AND '.join(scope)})"]


# ---------------------------------------------------------------------------------------------
# Devices.

DEVICE_KEY = ("device_id",)


@lru_cache(maxsize=64)
def _devices_sql(present: tuple[str, ...], paged: bool) -> str:
    where = [f"d.{name} = %({name})s" for name in ("site", "zone", "device_id")
             if name in present]
    if "metric" in present:
        where.append("%(metric)s = ANY(d.metrics)")
    if paged:
        where.append(_keyset(("d.device_id",), False))
    return (
        "SELECT d.device_id, d.device_name, d.site, d.zone, d.device_kind, d.metrics,"
        " d.interval_seconds, d.installed_at,"
        f" (SELECT count(*) FROM telemetry.alerts a WHERE a.device_id = d.device_id"
        f"  AND a.state IN {OPEN_STATES}) AS open_alert_count"
        f" FROM telemetry.devices d{_where(where)} ORDER BY d.device_id LIMIT %(limit)s")


async def devices(conn: AsyncConnection, filters: Filters, limit: int,
                  after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    return await _rows(conn, _devices_sql(filters.present(), after is not None),
                       _params(filters, limit, after))


async def device(conn: AsyncConnection, device_id: int) -> dict[str, Any] | None:
    return await _one(conn, _devices_sql(("device_id",), False),
                      {"device_id": device_id, "limit": 1})


async def latest_readings(conn: AsyncConnection, device_id: int) -> list[dict[str, Any]]:
    """The newest reading of each metric the device reports (a backward index probe each)."""
    return await _rows(conn, """
        SELECT m.metric, r.ts, r.value
        FROM telemetry.devices d
        JOIN telemetry.metrics m ON m.metric = ANY(d.metrics)
        CROSS JOIN LATERAL (
            SELECT ts, value FROM telemetry.readings r
            WHERE r.device_id = d.device_id AND r.metric_id = m.metric_id
            ORDER BY ts DESC LIMIT 1) r
        WHERE d.device_id = %(device_id)s
        ORDER BY m.metric_id""", {"device_id": device_id})


# ---------------------------------------------------------------------------------------------
# Readings (raw; the caller bounds the range).

READING_KEY = ("device_id", "metric_id", "ts")


@lru_cache(maxsize=64)
def _readings_sql(present: tuple[str, ...], paged: bool) -> str:
    where = ["r.ts >= %(start)s", "r.ts < %(end)s"]
    if "device_id" in present:
        where.append("r.device_id = %(device_id)s")
    if "metric" in present:
        where.append("r.metric_id = (SELECT metric_id FROM telemetry.metrics"
                     " WHERE metric = %(metric)s)")
    where += _device_scope("r.device_id", present)
    if paged:
        where.append(_keyset(("r.device_id", "r.metric_id", "r.ts"), False))
    # The metric name by scalar subquery keeps the plan an ordered scan of the primary key.
    return (
        "SELECT r.device_id, r.metric_id,"
        " (SELECT m.metric FROM telemetry.metrics m WHERE m.metric_id = r.metric_id) AS metric,"
        " r.ts, r.value, r.batch_id"
        f" FROM telemetry.readings r{_where(where)}"
        f"{_order(('r.device_id', 'r.metric_id', 'r.ts'), False)} LIMIT %(limit)s")


async def readings(conn: AsyncConnection, filters: Filters, limit: int,
                   after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    return await _rows(conn, _readings_sql(filters.present(), after is not None),
                       _params(filters, limit, after))


async def data_end(conn: AsyncConnection) -> datetime | None:
    """The newest loaded event time (watermarks, and batches posted outside the simulator):
    the default end of a time range, so a history in the past still answers."""
    row = await _one(conn, """
        SELECT greatest(
            (SELECT max(high_water) FROM telemetry.watermarks),
            (SELECT max(coalesce(window_end, reference_time)) FROM telemetry.batches
             WHERE status = 'succeeded')) AS end_at""")
    return row["end_at"] if row else None


# ---------------------------------------------------------------------------------------------
# KPI marts (dbt). Keyset on (window_start, device_id, metric_id): the window_start index
# gives the order, an incremental sort the rest within a window; one device's metric reads a
# range of the unique (device_id, metric_id, window_start) index.

KPI_KEY = ("window_start", "device_id", "metric_id")


@lru_cache(maxsize=256)
def _kpis_sql(schema: str, grain: str, present: tuple[str, ...], paged: bool,
              desc: bool) -> str:
    where = []
    if "start" in present:
        where.append("k.window_start >= %(start)s")
    if "end" in present:
        where.append("k.window_start < %(end)s")
    if "device_id" in present:
        where.append("k.device_id = %(device_id)s")
    if "metric" in present:  # by id: one device's metric is then a range of the unique index
        where.append("k.metric_id = (SELECT metric_id FROM telemetry.metrics"
                     " WHERE metric = %(metric)s)")
    where += _device_scope("k.device_id", present)
    key = ("k.window_start", "k.device_id", "k.metric_id")
    if paged:
        where.append(_keyset(key, desc))
    return (
        "SELECT k.window_start, k.window_end, k.device_id, k.metric_id, k.metric,"
        " k.reading_count, k.mean,"
        " k.min, k.max, k.stddev, k.breach_count, k.completeness"
        f" FROM {_schema(schema)}.{GRAINS[grain]} k{_where(where)}"
        f"{_order(key, desc)} LIMIT %(limit)s")


async def kpis(conn: AsyncConnection, schema: str, grain: str, filters: Filters, limit: int,
               after: tuple[Any, ...] | None, desc: bool = False) -> list[dict[str, Any]]:
    return await _rows(conn, _kpis_sql(schema, grain, filters.present(), after is not None,
                                       desc), _params(filters, limit, after))


async def kpi_end(conn: AsyncConnection, schema: str) -> datetime | None:
    """End of the newest 5-minute KPI window (index-only: max of the window_start index)."""
    row = await _one(conn, f"SELECT max(window_start) + interval '5 minutes' AS end_at"
                           f" FROM {_schema(schema)}.fct_kpi_5m")
    return row["end_at"] if row else None


# ---------------------------------------------------------------------------------------------
# Heatmap: per site, zone and hour, the fleet report's health (healthy 5-minute device-metric
# windows / expected ones, a silent device counting against its zone), alerts opened and
# anomalous points. The caller passes whole hours.

HEATMAP_KEY = ("site", "zone", "hour")


@lru_cache(maxsize=32)
def _heatmap_sql(schema: str, present: tuple[str, ...], paged: bool) -> str:
    s = _schema(schema)
    scope = "".join(f" AND d.{name} = %({name})s" for name in ("site", "zone")
                    if name in present)
    cells = f"""
        WITH windows AS (
            SELECT w FROM generate_series(%(start)s::timestamptz,
                                          %(end)s::timestamptz - interval '5 minutes',
                                          interval '5 minutes') AS w
        ),
        expected AS (
            SELECT d.site, d.zone, date_bin('1 hour', windows.w, {ORIGIN}) AS hour,
                   sum(d.metric_count)::bigint AS expected
            FROM windows JOIN {s}.dim_devices d ON d.installed_at <= windows.w{scope}
            GROUP BY 1, 2, 3
        ),
        observed AS (
            SELECT d.site, d.zone, date_bin('1 hour', k.window_start, {ORIGIN}) AS hour,
                   count(*) FILTER (WHERE k.completeness >= {HEALTHY_COMPLETENESS}
                                    AND k.breach_count = 0) AS healthy
            FROM {s}.fct_kpi_5m k JOIN {s}.dim_devices d ON d.device_id = k.device_id{scope}
            WHERE k.window_start >= %(start)s AND k.window_end <= %(end)s
            GROUP BY 1, 2, 3
        ),
        alerts AS (
            SELECT d.site, d.zone, date_bin('1 hour', a.opened_at, {ORIGIN}) AS hour,
                   count(*) AS alerts
            FROM telemetry.alerts a JOIN telemetry.devices d ON d.device_id = a.device_id{scope}
            WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s
            GROUP BY 1, 2, 3
        ),
        anomalies AS (
            SELECT d.site, d.zone, date_bin('1 hour', x.ts, {ORIGIN}) AS hour,
                   count(*) AS anomalies
            FROM telemetry.scores x JOIN telemetry.devices d ON d.device_id = x.device_id{scope}
            WHERE x.is_anomaly AND x.ts >= %(start)s AND x.ts < %(end)s
            GROUP BY 1, 2, 3
        )
        SELECT e.site, e.zone, e.hour,
               coalesce(o.healthy, 0)::float8 / e.expected AS health,
               coalesce(a.alerts, 0) AS alerts, coalesce(x.anomalies, 0) AS anomalies
        FROM expected e
        LEFT JOIN observed o USING (site, zone, hour)
        LEFT JOIN alerts a USING (site, zone, hour)
        LEFT JOIN anomalies x USING (site, zone, hour)"""
    where = [_keyset(("e.site", "e.zone", "e.hour"), False)] if paged else []
    return f"{cells}{_where(where)} ORDER BY e.site, e.zone, e.hour LIMIT %(limit)s"


async def heatmap(conn: AsyncConnection, schema: str, filters: Filters, limit: int,
                  after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    return await _rows(conn, _heatmap_sql(schema, filters.present(), after is not None),
                       _params(filters, limit, after))


# ---------------------------------------------------------------------------------------------
# Anomalies: stored scores at or above the detector threshold (scores_anomaly_idx on ts).

ANOMALY_KEY = ("ts", "device_id", "metric", "detector")


@lru_cache(maxsize=128)
def _anomalies_sql(present: tuple[str, ...], paged: bool, desc: bool) -> str:
    where = ["x.is_anomaly"]
    if "start" in present:
        where.append("x.ts >= %(start)s")
    if "end" in present:
        where.append("x.ts < %(end)s")
    where += [f"x.{name} = %({name})s" for name in ("device_id", "metric", "severity")
              if name in present]
    where += _device_scope("x.device_id", present)
    key = ("x.ts", "x.device_id", "x.metric", "x.detector")
    if paged:
        where.append(_keyset(key, desc))
    return (
        "SELECT x.device_id, x.metric, x.ts, x.value, x.baseline_mean,"
        " x.baseline_std AS std_dev, x.score, x.severity, x.detector, x.reason, x.model_id"
        f" FROM telemetry.scores x{_where(where)}{_order(key, desc)} LIMIT %(limit)s")


async def anomalies(conn: AsyncConnection, filters: Filters, limit: int,
                    after: tuple[Any, ...] | None, desc: bool = True) -> list[dict[str, Any]]:
    return await _rows(conn, _anomalies_sql(filters.present(), after is not None, desc),
                       _params(filters, limit, after))


# ---------------------------------------------------------------------------------------------
# Alerts: newest first by id (the primary key gives the order for free).

ALERT_KEY = ("alert_id",)
ALERT_COLUMNS = (
    "a.alert_id, a.kind, a.device_id, d.device_name, d.site, d.zone, a.metric, a.state,"
    " a.severity, a.opened_at, a.fired_at, a.resolved_at, a.last_seen_at, a.peak_score,"
    " a.reason, a.acknowledged_at, a.acknowledged_by, a.ack_note, a.resolved_by,"
    " a.resolve_note, a.drifted")
ALERT_FROM = " FROM telemetry.alerts a LEFT JOIN telemetry.devices d ON d.device_id = a.device_id"


@lru_cache(maxsize=256)
def _alerts_sql(present: tuple[str, ...], paged: bool, desc: bool, kind: bool,
                open_only: bool) -> str:
    where = []
    if open_only:
        where.append(f"a.state IN {OPEN_STATES}")
    elif "state" in present:
        where.append("a.state = %(state)s")
    where += [f"a.{name} = %({name})s" for name in ("severity", "device_id", "metric")
              if name in present]
    where += [f"d.{name} = %({name})s" for name in ("site", "zone") if name in present]
    if kind:
        where.append("a.kind = %(kind)s")
    if "start" in present:
        where.append("a.opened_at >= %(start)s")
    if "end" in present:
        where.append("a.opened_at < %(end)s")
    if paged:
        where.append(_keyset(("a.alert_id",), desc))
    return (f"SELECT {ALERT_COLUMNS}{ALERT_FROM}{_where(where)}"
            f"{_order(('a.alert_id',), desc)} LIMIT %(limit)s")


async def alerts(conn: AsyncConnection, filters: Filters, limit: int,
                 after: tuple[Any, ...] | None, desc: bool = True, kind: str | None = None
                 ) -> list[dict[str, Any]]:
    return await _rows(conn, _alerts_sql(filters.present(), after is not None, desc,
                                         kind is not None, filters.state == "open"),
                       _params(filters, limit, after, kind=kind))


ALERT_DETAIL_SQL = (f"SELECT {ALERT_COLUMNS}, a.peak_ts, a.detectors, a.contributions,"
                    f" a.updated_at{ALERT_FROM} WHERE a.alert_id = %(alert_id)s")


async def alert(conn: AsyncConnection, alert_id: int) -> dict[str, Any] | None:
    """One alert in the list's shape, plus peak_ts, detectors, contributions, updated_at."""
    return await _one(conn, ALERT_DETAIL_SQL, {"alert_id": alert_id})


async def open_alerts(conn: AsyncConnection, device_id: int) -> list[dict[str, Any]]:
    return await _rows(conn, _alerts_sql(("device_id", "state"), False, True, False, True),
                       {"device_id": device_id, "state": "open", "limit": 1000})


# ---------------------------------------------------------------------------------------------
# Batch ledger, models, evaluations, quality, drift: small tables, newest first by id.

@lru_cache(maxsize=64)
def _runs_sql(present: tuple[str, ...], paged: bool) -> str:
    where = [f"b.{name} = %({name})s" for name in ("source", "stream", "status", "quality")
             if name in present]
    if "start" in present:
        where.append("b.started_at >= %(start)s")
    if "end" in present:
        where.append("b.started_at < %(end)s")
    if paged:
        where.append(_keyset(("b.batch_id",), True))
    return (
        "SELECT b.batch_id, b.source, b.stream, b.window_start, b.window_end, b.reference_time,"
        " b.rows_received, b.rows_loaded, b.rows_duplicate, b.rows_quarantined, b.status,"
        " b.error, b.quality, b.quality_checked_at, b.load_path, b.timings_ms, b.started_at,"
        " b.finished_at"
        f" FROM telemetry.batches b{_where(where)} ORDER BY b.batch_id DESC LIMIT %(limit)s")


async def runs(conn: AsyncConnection, filters: dict[str, Any], limit: int,
               after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    present = tuple(sorted(k for k, v in filters.items() if v is not None))
    return await _rows(conn, _runs_sql(present, after is not None),
                       {**filters, "limit": limit + 1, **_keys(after)})


def _keys(after: tuple[Any, ...] | None) -> dict[str, Any]:
    return {f"k{i}": value for i, value in enumerate(after or ())}


MODEL_COLUMNS = ("m.model_id, m.detector, m.version, m.params, m.train_start, m.train_end,"
                 " m.row_count, m.metrics, m.reason, m.created_at")


async def models(conn: AsyncConnection, detector: str | None, limit: int,
                 after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    where = (["m.detector = %(detector)s"] if detector is not None else []) + (
        [_keyset(("m.model_id",), True)] if after else [])
    return await _rows(conn, f"SELECT {MODEL_COLUMNS} FROM telemetry.models m{_where(where)}"
                             " ORDER BY m.model_id DESC LIMIT %(limit)s",
                       {"detector": detector, "limit": limit + 1, **_keys(after)})


async def model(conn: AsyncConnection, model_id: int) -> dict[str, Any] | None:
    """A model version with the size of its stored state (the state itself stays inside)."""
    return await _one(conn, f"SELECT {MODEL_COLUMNS}, pg_column_size(m.state) AS state_bytes,"
                            " (SELECT max(version) FROM telemetry.models n"
                            "  WHERE n.detector = m.detector) = m.version AS is_current"
                            " FROM telemetry.models m WHERE m.model_id = %(id)s",
                      {"id": model_id})


async def model_evaluations(conn: AsyncConnection, detector: str) -> list[dict[str, Any]]:
    """Backtest rows of a detector from the newest evaluation run that included it."""
    return await _rows(conn, """
        SELECT e.run_id, e.detector, e.anomaly_type, e.seed, e.days, e.devices, e.events,
               e.detected, e.precision, e.recall, e.f1, e.false_alarms_per_device_day,
               e.median_time_to_detect_s, e.created_at
        FROM telemetry.evaluations e
        WHERE e.detector = %(detector)s AND e.run_id = (
            SELECT run_id FROM telemetry.evaluations WHERE detector = %(detector)s
            ORDER BY created_at DESC, evaluation_id DESC LIMIT 1)
        ORDER BY e.anomaly_type = 'all' DESC, e.anomaly_type""", {"detector": detector})


@lru_cache(maxsize=64)
def _quality_sql(present: tuple[str, ...], paged: bool) -> str:
    where = [f"q.{name} = %({name})s" for name in ("suite", "severity", "success", "batch_id")
             if name in present]
    if "start" in present:
        where.append("q.validated_at >= %(start)s")
    if "end" in present:
        where.append("q.validated_at < %(end)s")
    if paged:
        where.append(_keyset(("q.result_id",), True))
    return (
        "SELECT q.result_id, q.suite, q.target, q.batch_id, q.window_start, q.window_end,"
        " q.expectation, q.expectation_type, q.column_name, q.severity, q.success,"
        " q.element_count, q.unexpected_count, q.unexpected_percent, q.unexpected_sample,"
        " q.observed, q.run_id, q.seconds, q.validated_at"
        f" FROM telemetry.quality_results q{_where(where)}"
        " ORDER BY q.result_id DESC LIMIT %(limit)s")


async def quality(conn: AsyncConnection, filters: dict[str, Any], limit: int,
                  after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    present = tuple(sorted(k for k, v in filters.items() if v is not None))
    return await _rows(conn, _quality_sql(present, after is not None),
                       {**filters, "limit": limit + 1, **_keys(after)})


@lru_cache(maxsize=64)
def _drift_sql(present: tuple[str, ...], paged: bool) -> str:
    where = [f"r.{name} = %({name})s" for name in ("site", "metric", "drifted")
             if name in present]
    if "start" in present:
        where.append("r.current_end > %(start)s")
    if "end" in present:
        where.append("r.current_start < %(end)s")
    if paged:
        where.append(_keyset(("r.drift_id",), True))
    return (
        "SELECT r.drift_id, r.run_id, r.reference_start, r.reference_end, r.current_start,"
        " r.current_end, r.site, r.metric, r.method, r.statistic, r.threshold, r.drifted,"
        " r.reference_rows, r.current_rows, r.reference_mean, r.current_mean, r.report_path,"
        f" r.created_at FROM telemetry.drift_results r{_where(where)}"
        " ORDER BY r.drift_id DESC LIMIT %(limit)s")


async def drift(conn: AsyncConnection, filters: dict[str, Any], limit: int,
                after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    present = tuple(sorted(k for k, v in filters.items() if v is not None))
    return await _rows(conn, _drift_sql(present, after is not None),
                       {**filters, "limit": limit + 1, **_keys(after)})


# ---------------------------------------------------------------------------------------------
# Platform statistics: one round trip. Readings come from the batch ledger (every load goes
# through it), which is exact and costs nothing, where count(*) would scan every partition.

async def stats(conn: AsyncConnection) -> dict[str, Any]:
    row = await _one(conn, f"""
        SELECT (SELECT count(*) FROM telemetry.devices) AS devices,
               (SELECT coalesce(sum(rows_loaded), 0) FROM telemetry.batches
                WHERE status = 'succeeded') AS readings,
               (SELECT count(*) FROM telemetry.scores WHERE is_anomaly) AS anomalies,
               (SELECT count(*) FROM telemetry.alerts) AS alerts,
               (SELECT coalesce(jsonb_object_agg(severity, n), '{{}}') FROM (
                    SELECT severity, count(*) AS n FROM telemetry.alerts
                    WHERE state IN {OPEN_STATES} GROUP BY severity) s) AS open_by_severity""")
    assert row is not None
    return row


# ---------------------------------------------------------------------------------------------
# Dataset analytics, computed in SQL.

@lru_cache(maxsize=64)
def _summary_sql(schema: str, present: tuple[str, ...]) -> str:
    where = []
    if "start" in present:
        where.append("k.window_start >= %(start)s")
    if "end" in present:
        where.append("k.window_start < %(end)s")
    where += [f"k.{name} = %({name})s" for name in ("device_id", "metric") if name in present]
    where += _device_scope("k.device_id", present)
    # Exact pooled statistics from the hourly windows' sums (Chan's combination of M2).
    return f"""
        WITH k AS (
            SELECT k.* FROM {_schema(schema)}.fct_kpi_1h k{_where(where)}
        ),
        pooled AS (
            SELECT metric, sum(value_sum) / sum(reading_count) AS mean FROM k GROUP BY metric
        )
        SELECT k.metric, count(DISTINCT k.device_id) AS devices, count(*) AS windows,
               sum(k.reading_count)::bigint AS readings, p.mean,
               CASE WHEN sum(k.reading_count) > 1 THEN sqrt(greatest(sum(
                   k.value_m2 + k.reading_count * (k.value_sum / k.reading_count - p.mean) ^ 2)
                   / (sum(k.reading_count) - 1), 0)) END AS stddev,
               min(k.min) AS min, max(k.max) AS max,
               sum(k.breach_count)::bigint AS breaches,
               sum(k.reading_count)::float8 / sum(k.expected_count) AS completeness,
               min(k.window_start) AS first_window, max(k.window_end) AS last_window
        FROM k JOIN pooled p USING (metric)
        GROUP BY k.metric, p.mean ORDER BY k.metric"""


async def summary(conn: AsyncConnection, schema: str, filters: Filters) -> list[dict[str, Any]]:
    return await _rows(conn, _summary_sql(schema, filters.present()), filters.params())


_TOPK_GROUPS = {
    "device": ("x.device_id::text", "d.device_name"),
    "site": ("d.site", "d.site"),
    "zone": ("d.site || '/' || d.zone", "d.site || '/' || d.zone"),
    "anomaly_type": ("coalesce(l.anomaly_type, 'unlabeled')",
                     "coalesce(l.anomaly_type, 'unlabeled')"),
}


@lru_cache(maxsize=64)
def _topk_sql(by: str, present: tuple[str, ...]) -> str:
    key, label = _TOPK_GROUPS[by]
    where = ["x.is_anomaly"]
    if "start" in present:
        where.append("x.ts >= %(start)s")
    if "end" in present:
        where.append("x.ts < %(end)s")
    where += [f"x.{name} = %({name})s" for name in ("device_id", "metric", "severity")
              if name in present]
    where += [f"d.{name} = %({name})s" for name in ("site", "zone") if name in present]
    # An anomalous point's type is that of the simulator's label covering it, if any.
    labels = """
        LEFT JOIN LATERAL (
            SELECT anomaly_type FROM telemetry.anomaly_labels l
            WHERE l.device_id = x.device_id AND l.start_ts <= x.ts AND l.end_ts > x.ts
              AND (x.metric = ANY(l.metrics) OR x.metric = 'multi')
            ORDER BY l.start_ts DESC LIMIT 1) l ON true""" if by == "anomaly_type" else ""
    return f"""
        SELECT {key} AS key, max({label}) AS label, count(*) AS count
        FROM telemetry.scores x
        LEFT JOIN telemetry.devices d ON d.device_id = x.device_id{labels}
        {_where(where)}
        GROUP BY 1 ORDER BY count DESC, key LIMIT %(limit)s"""


async def topk(conn: AsyncConnection, by: str, filters: Filters, k: int
               ) -> list[dict[str, Any]]:
    return await _rows(conn, _topk_sql(by, filters.present()), {**filters.params(), "limit": k})


@lru_cache(maxsize=64)
def _histogram_sql(present: tuple[str, ...]) -> str:
    where = ["r.ts >= %(start)s", "r.ts < %(end)s",
             "r.metric_id = (SELECT metric_id FROM telemetry.metrics WHERE metric = %(metric)s)"]
    if "device_id" in present:
        where.append("r.device_id = %(device_id)s")
    where += _device_scope("r.device_id", present)
    # Equal-width bins over [min, max] of the selection; the maximum falls in the last bin.
    return f"""
        WITH v AS (SELECT r.value FROM telemetry.readings r{_where(where)}),
        span AS (SELECT min(value) AS lo, max(value) AS hi, count(*) AS n FROM v),
        binned AS (
            SELECT CASE WHEN span.hi > span.lo
                        THEN least(width_bucket(v.value, span.lo, span.hi, %(bins)s::int),
                                   %(bins)s::int)
                        ELSE 1 END AS bin, count(*) AS count
            FROM v, span GROUP BY 1
        )
        SELECT b AS bin,
               span.lo + (span.hi - span.lo) * (b - 1) / %(bins)s::int AS lower,
               span.lo + (span.hi - span.lo) * b / %(bins)s::int AS upper,
               coalesce(binned.count, 0) AS count
        FROM span CROSS JOIN generate_series(1, %(bins)s::int) AS b
        LEFT JOIN binned ON binned.bin = b
        WHERE span.n > 0
        ORDER BY b"""


async def histogram(conn: AsyncConnection, filters: Filters, bins: int
                    ) -> list[dict[str, Any]]:
    return await _rows(conn, _histogram_sql(filters.present()),
                       {**filters.params(), "bins": bins})
