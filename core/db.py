"""Connections: DATABASE_URL when set, otherwise an embedded PostgreSQL under data_dir/pg.

Nothing connects at import time; the embedded server starts on first use and stops when the
last process using it exits (its data stays, so the next command reuses it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine

from core.settings import get_settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "telemetry"
_embedded_servers: dict[Path, Any] = {}  # keeps pgserver handles alive for the process


def _start_embedded(pg_dir: Path) -> str:
    """Start (or attach to) the embedded server; return a libpq URI to its `telemetry` DB."""
    server = _embedded_servers.get(pg_dir)
    if server is None:
        if "XDG_RUNTIME_DIR" not in os.environ:  # pgserver warns without one
            run_dir = pg_dir.parent / "run"
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
        import pgserver  # slow import; only when the embedded server is used

        pg_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pg_dir)
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        _embedded_servers[pg_dir] = server
        admin_uri = server.get_uri()
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if not exists:
                # Another process (a test worker) may create it a moment earlier.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase,
                                         psycopg.errors.UniqueViolation):
                    conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server.get_uri(EMBEDDED_DATABASE)


@lru_cache
def database_url() -> str:
    """The libpq URL of the database everything uses."""
    settings = get_settings()
    if settings.database_url:
        return normalize_url(settings.database_url)
    return _start_embedded(Path(settings.data_dir).resolve() / "pg")


def normalize_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs (postgresql+psycopg://) as well as libpq ones."""
    scheme, sep, rest = url.partition("://")
    if sep and "+" in scheme:
        return f"{scheme.split('+', 1)[0]}://{rest}"
    return url


def sqlalchemy_url(url: str | None = None) -> str:
    url = url or database_url()
    if "://" not in url:  # key=value conninfo
        url = params_to_url(conninfo_to_dict(url))
    return "postgresql+psycopg://" + url.partition("://")[2]


def conninfo_params(url: str | None = None) -> dict[str, str]:
    """host/port/user/password/dbname of a URL (the host may be a socket directory)."""
    params = conninfo_to_dict(url or database_url())
    return {k: str(v) for k, v in params.items() if v is not None}


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database, as a URI (socket hosts go in the query string)."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return params_to_url(params)


def params_to_url(params: dict[str, Any]) -> str:
    user = quote(str(params.get("user") or "postgres"), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
    host = str(params.get("host") or "")
    port = params.get("port")
    dbname = quote(str(params.get("dbname") or "postgres"), safe="")
    if host.startswith("/"):
        query = f"?host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgresql://{auth}/{dbname}{query}"
    netloc = host + (f":{port}" if port else "")
    return f"postgresql://{auth}{netloc}/{dbname}"


def connect(autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(database_url(), autocommit=autocommit)


@contextmanager
def transaction() -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error."""
    with connect() as conn, conn.transaction():
        yield conn


@lru_cache
def get_engine() -> Engine:
    return create_engine(sqlalchemy_url(), pool_pre_ping=True)


def reset_caches() -> None:
    """Forget the resolved URL and engine (tests switch databases between cases)."""
    if database_url.cache_info().currsize:
        get_engine.cache_info().currsize and get_engine().dispose()
    get_engine.cache_clear()
    database_url.cache_clear()
    get_settings.cache_clear()
