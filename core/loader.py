"""The one way readings enter the database: validate, COPY, insert, ledger — all or nothing.

Re-running a batch changes nothing: rows already stored are counted as duplicates, the same
rejected row is quarantined once (fingerprint), and only the batch ledger records the re-run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from core import db, locks, online_store, rules, store
from core.copy_binary import READING_COPY_COLUMNS, readings_chunks
from core.settings import get_settings

log = logging.getLogger(__name__)

SOURCES = ("simulator", "api", "csv", "backfill")
INTERRUPTED = ("interrupted: the loading process ended before the batch committed, so none of"
               " it was kept; load the batch again")


@dataclass
class BatchResult:
    batch_id: int
    rows_received: int
    rows_loaded: int
    rows_duplicate: int
    rows_quarantined: int
    quarantined_by_rule: dict[str, int]
    load_path: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.timings_ms.values()) / 1000


def fetch_registry(conn: psycopg.Connection) -> rules.Registry:
    device_ids = np.array(
        [r[0] for r in conn.execute("SELECT device_id FROM telemetry.devices ORDER BY 1")],
        dtype=np.int64,
    )
    metrics = {
        r[0]: rules.MetricLimits(*r)
        for r in conn.execute(
            "SELECT metric_id, metric, unit, hard_min, hard_max FROM telemetry.metrics"
        )
    }
    return rules.Registry(device_ids=device_ids, metrics=metrics)


_partition_days: set[tuple[str, object]] = set()
_PARTITION_LOCK = locks.lock_key("telemetry.ensure_partitions")


def ensure_partitions(first: pd.Timestamp, last: pd.Timestamp) -> None:
    """Daily partitions for the rows' days plus the configured days ahead.

    DDL runs on its own connection, so a caller's open transaction stays short and clean."""
    ahead = get_settings().partitions_ahead_days
    days = pd.date_range(first.normalize(), last.normalize() + pd.Timedelta(days=ahead), freq="D")
    key = db.database_url()
    todo = [d.date() for d in days if (key, d.date()) not in _partition_days]
    if not todo:
        return
    with db.connect(autocommit=True) as conn, conn.transaction():
        # One session at a time: two creating the same new day at once deadlock (each holds a
        # lock on the default partition the other's CREATE TABLE ... PARTITION OF needs).
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        conn.execute("SELECT telemetry.ensure_partitions(%s, %s)", (min(todo), max(todo)))
    _partition_days.update((key, d) for d in todo)


def _copy(conn: psycopg.Connection, table: sql.Composable, rows: pd.DataFrame,
          batch_id: int) -> None:
    stmt = sql.SQL("COPY {} {} FROM STDIN (FORMAT binary)").format(
        table, sql.SQL(READING_COPY_COLUMNS)
    )
    with conn.cursor().copy(stmt) as copy:
        for piece in readings_chunks(rows, batch_id):
            copy.write(piece)


def _fresh_mask(conn: psycopg.Connection, frame: pd.DataFrame) -> np.ndarray:
    """Rows newer than every stored reading of their series (in the batch's time range).

    Such rows cannot collide with stored ones, so they may be COPied straight in. One
    primary-key probe per series, each pruned to the batch's partitions."""
    key = (frame["device_id"].to_numpy(np.int64) << 16) | frame["metric_id"].to_numpy(np.int64)
    series = np.unique(key)
    newest = conn.execute(
        """
        SELECT k.key, last.ts
        FROM unnest(%(keys)s::bigint[]) AS k(key)
        CROSS JOIN LATERAL (
            SELECT r.ts FROM telemetry.readings r
            WHERE r.device_id = (k.key >> 16)::int AND r.metric_id = (k.key & 65535)::smallint
              AND r.ts >= %(lo)s AND r.ts <= %(hi)s
            ORDER BY r.ts DESC LIMIT 1
        ) AS last
        """,
        {"keys": series.tolist(), "lo": frame["ts"].min(), "hi": frame["ts"].max()},
    ).fetchall()
    if not newest:
        return np.ones(len(frame), dtype=bool)
    stored_keys = np.array([r[0] for r in newest], dtype=np.int64)
    order = np.argsort(stored_keys)
    stored_keys = stored_keys[order]
    stored_ts = pd.to_datetime([newest[i][1] for i in order], utc=True).to_numpy("datetime64[ns]")
    pos = np.clip(np.searchsorted(stored_keys, key), 0, len(stored_keys) - 1)
    has_stored = stored_keys[pos] == key
    ts = frame["ts"].to_numpy("datetime64[ns]")
    return ~has_stored | (ts > stored_ts[pos])


def _load_direct(conn: psycopg.Connection, rows: pd.DataFrame, batch_id: int) -> bool:
    """COPY straight into readings when nothing can collide; False if something did."""
    try:
        with conn.transaction():  # a savepoint: a collision undoes only this COPY
            _copy(conn, sql.SQL("telemetry.readings"), rows, batch_id)
        return True
    except psycopg.errors.UniqueViolation:
        return False


def _load_staged(conn: psycopg.Connection, rows: pd.DataFrame, batch_id: int
                 ) -> tuple[int, int]:
    """Stage, insert what is new, quarantine keys stored earlier with another value.

    Returns (rows loaded, conflicting rows)."""
    conn.execute(
        "CREATE TEMP TABLE reading_stage (device_id integer, metric_id smallint, "
        "ts timestamptz, value double precision, batch_id bigint) ON COMMIT DROP"
    )
    _copy(conn, sql.SQL("reading_stage"), rows, batch_id)
    # A conflicting key "updates" the stored row to its own value: that is how RETURNING can
    # name the (rare) conflicts without joining the whole batch against stored readings. A row
    # returned with another batch's id is such a conflict (in-batch repeats were removed).
    loaded, conflicts = conn.execute(
        """
        WITH upsert AS (
            INSERT INTO telemetry.readings AS r (device_id, metric_id, ts, value, batch_id)
            SELECT device_id, metric_id, ts, value, batch_id FROM reading_stage
            ON CONFLICT (device_id, metric_id, ts) DO UPDATE SET value = r.value
            WHERE r.value IS DISTINCT FROM EXCLUDED.value
            RETURNING r.device_id, r.metric_id, r.ts, r.value AS stored_value,
                      r.batch_id AS stored_batch, r.batch_id = %(batch)s AS inserted
        ), conflicted AS MATERIALIZED (
            SELECT * FROM upsert WHERE NOT inserted
        ), clash AS (
            SELECT s.device_id, s.metric_id, s.ts, s.value, c.stored_value, c.stored_batch,
                   m.metric,
                   jsonb_build_object('device_id', s.device_id, 'metric_id', s.metric_id,
                                      'ts', s.ts, 'value', s.value) AS raw
            FROM conflicted c
            JOIN reading_stage s USING (device_id, metric_id, ts)
            LEFT JOIN telemetry.metrics m ON m.metric_id = s.metric_id
        ), quarantined AS (
            INSERT INTO telemetry.quarantine
                (batch_id, rule, reason, device_id, metric_id, ts, value, raw, fingerprint)
            SELECT %(batch)s, 'conflicting_duplicate',
                   format('a reading for device %%s, %%s, %%s was already loaded with value %%s '
                          'by batch %%s; the stored value was kept and this value %%s was not',
                          device_id, coalesce(metric, metric_id::text),
                          to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                          stored_value, stored_batch, value),
                   device_id, metric_id, ts, value, raw,
                   md5('conflicting_duplicate' || raw::text)
            FROM clash
            ON CONFLICT (fingerprint) DO NOTHING
        )
        SELECT (SELECT count(*) FROM upsert WHERE inserted), (SELECT count(*) FROM clash)
        """,
        {"batch": batch_id},
    ).fetchone()
    return loaded, conflicts


def _fingerprint(rule: str, raw: dict) -> str:
    return hashlib.md5((rule + json.dumps(raw, sort_keys=True)).encode()).hexdigest()


def _quarantine_rejected(conn: psycopg.Connection, rejected: pd.DataFrame, batch_id: int) -> None:
    if rejected.empty:
        return
    rows = []
    ts_text = rejected["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for row, when in zip(rejected.itertuples(index=False), ts_text, strict=True):
        value = None if pd.isna(row.value) else float(row.value)
        ts = None if pd.isna(row.ts) else row.ts.to_pydatetime()
        when = None if pd.isna(row.ts) else when
        # jsonb has no infinity: keep it readable as text in the raw payload
        raw_value = value if value is None or math.isfinite(value) else str(value)
        raw = {"device_id": int(row.device_id), "metric_id": int(row.metric_id),
               "ts": when, "value": raw_value}
        rows.append((batch_id, row.rule, row.reason, raw["device_id"], raw["metric_id"], ts,
                     value, json.dumps(raw), _fingerprint(row.rule, raw)))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.quarantine (batch_id, rule, reason, device_id, metric_id, ts,"
            " value, raw, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (fingerprint) DO NOTHING",
            rows,
        )


def load_readings(
    readings: pd.DataFrame,
    *,
    source: str,
    stream: str,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    reference_time: datetime | None = None,
    advance_watermark: bool = True,
    conn: psycopg.Connection | None = None,
) -> BatchResult:
    """Load one batch of readings (columns device_id, metric_id, ts, value).

    Everything — readings, quarantine rows, ledger, watermark — commits together or not at
    all. `reference_time` is when the batch arrived (default now); timestamps later than it
    plus the tolerance are rejected. Pass `conn` to join a caller's transaction.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    settings = get_settings()
    started = pd.Timestamp.now(tz="UTC")
    reference = pd.Timestamp(reference_time or started)
    reference = reference.tz_localize("UTC") if reference.tzinfo is None else reference
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 1)
        clock = now

    own = conn is None
    conn = conn or db.connect()
    attempt = (source, stream, window_start, window_end, reference, len(readings), started)
    batch_id: int | None = None
    try:
        if own:  # a caller's transaction cannot commit an attempt row on its own
            batch_id = _open_attempt(conn, attempt)
        registry = fetch_registry(conn)
        verdict = rules.check(readings, registry, reference, settings.future_tolerance_seconds)
        clean = verdict.clean
        lap("validate")
        if not clean.empty:
            ensure_partitions(clean["ts"].min(), clean["ts"].max())
        with conn.transaction():
            if batch_id is None:
                batch_id = _insert_batch(conn, attempt, "running")
            conflicts = 0
            loaded, path = 0, "none"
            if not clean.empty:
                # Rows newer than their series' stored rows cannot collide: COPY them straight
                # in. The rest (late rows, re-runs) go through the staged insert.
                fresh = _fresh_mask(conn, clean)
                fresh_rows, other_rows = clean[fresh], clean[~fresh]
                lap("plan")
                if not fresh_rows.empty:
                    if _load_direct(conn, fresh_rows, batch_id):
                        loaded, path = len(fresh_rows), "direct"
                    else:  # a concurrent batch got there first
                        other_rows = clean
                if not other_rows.empty:
                    staged, conflicts = _load_staged(conn, other_rows, batch_id)
                    loaded += staged
                    path = "staged" if path == "none" else "direct+staged"
                lap("copy_insert")
            _quarantine_rejected(conn, verdict.rejected, batch_id)
            by_rule = verdict.rejected["rule"].value_counts().to_dict()
            if conflicts:
                by_rule[rules.CONFLICTING_DUPLICATE] = (
                    by_rule.get(rules.CONFLICTING_DUPLICATE, 0) + conflicts
                )
            quarantined = len(verdict.rejected) + conflicts
            duplicate = verdict.in_batch_duplicates + len(clean) - loaded - conflicts
            if advance_watermark and window_end is not None:
                store.advance_watermark(conn, stream, window_end, batch_id)
            lap("quarantine_ledger")
            _finish_batch(conn, batch_id, loaded, duplicate, quarantined, path, timings)
        if own:
            conn.commit()
    except Exception as exc:
        if own:
            conn.rollback()
        _record_failure(attempt, batch_id if own else None, exc)
        raise
    finally:
        if own:
            conn.close()
    result = BatchResult(batch_id, len(readings), loaded, duplicate, quarantined,
                         {str(k): int(v) for k, v in by_rule.items()}, path, timings)
    log.info("batch %s (%s/%s): %s received, %s loaded, %s duplicate, %s quarantined in %.2fs",
             batch_id, source, stream, result.rows_received, loaded, duplicate, quarantined,
             result.seconds)
    return result


def _open_attempt(conn: psycopg.Connection, attempt: tuple[Any, ...]) -> int:
    """Record this attempt, committed before any of its data: if the process dies mid-batch
    (SIGKILL, power cut) the server rolls the data back and this 'running' row remains, for
    the next load to mark failed. So first: attempts whose session has gone are failed."""
    conn.execute(
        "UPDATE telemetry.batches b SET status = 'failed', backend_pid = NULL,"
        " finished_at = clock_timestamp(), error = %s"
        " WHERE b.status = 'running'"
        " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = b.backend_pid)",
        (INTERRUPTED,))
    batch_id = _insert_batch(conn, attempt, "running", in_this_session=True)
    conn.commit()
    return batch_id


def _insert_batch(conn: psycopg.Connection, attempt: tuple[Any, ...], status: str, *,
                  error: str | None = None, in_this_session: bool = False) -> int:
    """A ledger row for `attempt` (source, stream, window_start, window_end, reference_time,
    rows_received, started_at); `in_this_session` records the session doing the load."""
    return int(conn.execute(
        "INSERT INTO telemetry.batches (source, stream, window_start, window_end,"
        " reference_time, rows_received, started_at, status, error, backend_pid)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " CASE WHEN %s THEN pg_backend_pid() END) RETURNING batch_id",
        (*attempt, status, error, in_this_session)).fetchone()[0])


def _finish_batch(conn: psycopg.Connection, batch_id: int, loaded: int, duplicate: int,
                  quarantined: int, path: str, timings: dict[str, float]) -> None:
    conn.execute(
        "UPDATE telemetry.batches SET status = 'succeeded', backend_pid = NULL,"
        " rows_loaded = %s, rows_duplicate = %s, rows_quarantined = %s, load_path = %s,"
        " timings_ms = %s, finished_at = clock_timestamp() WHERE batch_id = %s",
        (loaded, duplicate, quarantined, path, json.dumps(timings), batch_id),
    )


def _record_failure(attempt: tuple[Any, ...], batch_id: int | None, exc: BaseException) -> None:
    """The batch rolled back; its ledger row says it failed and why (its attempt row when one
    was committed, else a new row), so the attempt stays visible."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with db.connect() as conn:
            if batch_id is not None:
                conn.execute(
                    "UPDATE telemetry.batches SET status = 'failed', backend_pid = NULL,"
                    " error = %s, finished_at = clock_timestamp() WHERE batch_id = %s",
                    (error, batch_id))
            else:
                _insert_batch(conn, attempt, "failed", error=error)
    except psycopg.Error:
        log.exception("could not record the failed batch in the ledger")


def explain_quarantined(conn: psycopg.Connection, readings: pd.DataFrame, result: BatchResult,
                        reference_time: datetime) -> pd.DataFrame:
    """Which rows of a loaded batch were quarantined and why: position (in `readings`), rule,
    reason. The loader reports only counts; the rules are pure and cheap to re-run, and keys
    another batch had stored with another value are looked up."""
    reference = pd.Timestamp(reference_time)
    reference = reference.tz_localize("UTC") if reference.tzinfo is None else reference
    verdict = rules.check(readings, fetch_registry(conn), reference,
                          get_settings().future_tolerance_seconds)
    out = pd.DataFrame({"position": verdict.rejected.index.to_numpy(dtype=np.int64),
                        "rule": verdict.rejected["rule"].to_numpy(dtype=object),
                        "reason": verdict.rejected["reason"].to_numpy(dtype=object)})
    if result.rows_quarantined <= len(out):
        return out
    clean = verdict.clean
    hits = online_store.stored_conflicts(
        conn, result.batch_id, clean["device_id"].tolist(), clean["metric_id"].tolist(),
        [t.to_pydatetime() for t in clean["ts"]], clean["value"].tolist())
    stored = [(int(clean.index[pos]), rules.CONFLICTING_DUPLICATE,
               f"a reading for device {clean.iloc[pos].device_id}, this metric and "
               f"{clean.iloc[pos].ts:%Y-%m-%dT%H:%M:%S.%fZ} was already stored with value "
               f"{value:g} (batch {batch}); the stored value was kept, "
               f"{clean.iloc[pos].value:g} was not")
              for pos, value, batch in hits]
    return pd.concat([out, pd.DataFrame(stored, columns=list(out.columns))], ignore_index=True)
