"""Retention: drop daily partitions of telemetry.readings older than a horizon, and delete the
rows derived from them (stored scores, quality results) past the same horizon.

Partitions are made by telemetry.ensure_partitions (migration 0001) and named
readings_pYYYYMMDD for the UTC day [YYYY-MM-DD, +1 day). Dropping one is a catalog operation,
whatever its size; it briefly needs an exclusive lock on telemetry.readings, so each drop runs
in its own short transaction under a lock timeout: behind a long reader it gives up (and the
next run drops it) instead of queueing every loader and API query behind itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

PARTITION_RE = re.compile(r"^readings_p(\d{8})$")
DEFAULT_LOCK_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class Partition:
    name: str
    day: date  # the UTC day it holds

    @property
    def end(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time(), UTC)


def cutoff(as_of: datetime, keep_days: int) -> datetime:
    """Midnight UTC `keep_days` days before as_of's day: rows stamped earlier expire. Whole
    days, so a partition either expires entirely or not at all."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1 (today's data is never expired)")
    as_of = as_of.astimezone(UTC) if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    return datetime.combine(as_of.date() - timedelta(days=keep_days), time(), UTC)


def partitions(conn: psycopg.Connection) -> list[Partition]:
    """The daily partitions of telemetry.readings, oldest first (the default one excluded)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'telemetry.readings'::regclass").fetchall()
    found = []
    for (name,) in rows:
        match = PARTITION_RE.match(name)
        if match:
            found.append(Partition(name, datetime.strptime(match[1], "%Y%m%d").date()))
    return sorted(found, key=lambda p: p.day)


def expired_partitions(conn: psycopg.Connection, before: datetime) -> list[Partition]:
    """Partitions whose whole day lies before `before`."""
    return [p for p in partitions(conn) if p.end <= before]


def _autocommit(conn: psycopg.Connection) -> None:
    # On a connection already inside a transaction, conn.transaction() is only a savepoint:
    # locks would be held, and deletes left uncommitted, until the caller's commit.
    if not conn.autocommit:
        raise ValueError("retention steps need an autocommit connection (one commit each)")


def drop_partition(conn: psycopg.Connection, partition: Partition,
                   lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> int:
    """Drop one partition in its own transaction; returns the rows it held. Raises
    psycopg.errors.LockNotAvailable when the lock is not granted within the timeout."""
    _autocommit(conn)
    if not PARTITION_RE.match(partition.name):  # never drop anything but a daily partition
        raise ValueError(f"not a readings partition: {partition.name}")
    table = sql.Identifier("telemetry", partition.name)
    with conn.transaction():
        if conn.execute("SELECT to_regclass(%s)", (f"telemetry.{partition.name}",)
                        ).fetchone()[0] is None:
            return 0  # already gone (a retry after a drop whose reply was lost)
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout_ms)))
        # Take the exclusive lock first: the count then sees every row the drop removes.
        conn.execute(sql.SQL("LOCK TABLE telemetry.readings, {} IN ACCESS EXCLUSIVE MODE")
                     .format(table))
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return int(rows)


def delete_default_rows(conn: psycopg.Connection, before: datetime) -> int:
    """Rows before `before` in the default partition (days that had no partition of their own
    when loaded); without this they would outlive every horizon."""
    _autocommit(conn)
    with conn.transaction():
        return conn.execute("DELETE FROM telemetry.readings_default WHERE ts < %s",
                            (before,)).rowcount


def delete_scores(conn: psycopg.Connection, before: datetime) -> int:
    """Stored scores of readings before `before` (indexed on ts; nothing references them).
    Alerts keep their own peak score and time, so older alerts still read whole."""
    _autocommit(conn)
    with conn.transaction():
        return conn.execute("DELETE FROM telemetry.scores WHERE ts < %s", (before,)).rowcount


def delete_quality_results(conn: psycopg.Connection, before: datetime) -> int:
    """Quality results about data before `before`: the validated window ended by then (a
    result without a window goes by when it was validated)."""
    _autocommit(conn)
    with conn.transaction():
        return conn.execute(
            "DELETE FROM telemetry.quality_results"
            " WHERE coalesce(window_end, validated_at) <= %s", (before,)).rowcount
