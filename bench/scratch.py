"""A scratch database on the configured server for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from core import db, migrate


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create and migrate `<prefix>_<pid>`, point DATABASE_URL at it, drop it at the end."""
    admin = db.database_url()
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = db.with_dbname(admin, name)
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    db.reset_caches()
    try:
        migrate.upgrade(url=url)
        yield url
    finally:
        db.reset_caches()
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
