"""PostgreSQL advisory locks: at most one holder of a named lock across every process and host
that uses the same database.

A Prefect deployment concurrency limit only covers runs of that deployment; a micro-batch can
also start from the CLI, the API or a second deployment. The database is the one thing they all
share, so the guard lives there. The lock is session-level on a dedicated autocommit connection:
it is held while that connection lives and PostgreSQL drops it when the connection ends, so a
killed run cannot leave it behind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core import db


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a name (PostgreSQL's bigint advisory-lock key space).

    Python's hash() is salted per process, so it cannot be shared between processes."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"telemetry-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


def micro_batch_lock_name(stream: str) -> str:
    return f"micro-batch:{stream}"


@dataclass
class Lease:
    """The outcome of asking for a lock: `acquired` says whether this caller holds it."""

    name: str
    key: int
    acquired: bool
    waited_seconds: float
    holder: dict[str, Any] | None = None  # who held it when we gave up (pid, since, app)

    def describe_holder(self) -> str:
        if not self.holder:
            return "another session"
        since = self.holder.get("since")
        return (f"pid {self.holder.get('pid')}"
                + (f" ({self.holder['application']})" if self.holder.get("application") else "")
                + (f" since {since:%Y-%m-%d %H:%M:%S} UTC" if isinstance(since, datetime)
                   else ""))


@contextmanager
def advisory_lock(name: str, wait_seconds: float = 0.0, poll_seconds: float = 0.25,
                  url: str | None = None) -> Iterator[Lease]:
    """Try to take the lock `name`, retrying for up to `wait_seconds`; yield a Lease either
    way (the caller decides what to do when it is not acquired). Released on exit.

    Polling pg_try_advisory_lock rather than blocking in pg_advisory_lock keeps the wait
    bounded without a statement timeout, and never queues behind a stuck holder."""
    key = lock_key(name)
    conn = psycopg.connect(url or db.database_url(), autocommit=True,
                           application_name=f"telemetry lock {name}"[:63])
    acquired = False
    started = time.monotonic()
    try:
        deadline = started + max(wait_seconds, 0.0)
        while True:
            acquired = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
            left = deadline - time.monotonic()
            if acquired or left <= 0:
                break
            time.sleep(min(poll_seconds, left))
        lease = Lease(name, key, acquired, round(time.monotonic() - started, 3))
        if not acquired:
            lease.holder = _holder(conn, key)
        yield lease
    finally:
        if acquired:
            # Closing the session would release it too; unlocking first makes the release
            # immediate even if close() is slow, and a broken connection is already released.
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        conn.close()


def _lock_ids(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def _holder(conn: psycopg.Connection, key: int) -> dict[str, Any] | None:
    classid, objid = _lock_ids(key)
    row = conn.execute(
        "SELECT l.pid, a.application_name, a.backend_start, a.client_addr::text"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.classid::bigint = %s AND l.objid::bigint = %s"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " LIMIT 1", (classid, objid)).fetchone()
    if row is None:
        return None
    # The holder's connection is opened just before it takes the lock: its session start is
    # when the holder began (PostgreSQL does not record when a lock was granted).
    return {"pid": row[0], "application": row[1], "since": row[2], "client": row[3]}


def holder(name: str, url: str | None = None) -> dict[str, Any] | None:
    """Who holds the lock `name` now (pid, application, since, client), or None."""
    with psycopg.connect(url or db.database_url(), autocommit=True) as conn:
        return _holder(conn, lock_key(name))
