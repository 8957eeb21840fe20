"""Real PostgreSQL for every test: DATABASE_URL's server when set, else the embedded one.

Each test that asks for `db` gets its own database, cloned from a migrated template, and the
process environment points at it (settings and engines are re-read), so tests never see each
other's rows and can run under xdist.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core import db as core_db
from core import migrate
from core.settings import PROJECT_ROOT

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return core_db.normalize_url(url)
    os.environ.pop("TELEMETRY_DATABASE_URL", None)
    core_db.reset_caches()
    return core_db.database_url()  # starts the embedded server under .data/pg


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return _server_url()


def _admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str, worker_id: str) -> Iterator[str]:
    name = f"tpl_{worker_id}_{os.getpid()}"
    _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}"')
    _admin(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = core_db.with_dbname(pg_admin_url, name)
    migrate.upgrade(url=url)
    yield name
    _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def worker_dbt_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt-target")


@pytest.fixture
def db(
    pg_admin_url: str,
    template_db: str,
    worker_dbt_target: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A fresh, migrated database of its own (and a reports directory); returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = core_db.with_dbname(pg_admin_url, name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TELEMETRY_DBT_TARGET_DIR", str(worker_dbt_target))
    monkeypatch.setenv("TELEMETRY_REPORTS_DIR", str(tmp_path / "reports-out"))
    core_db.reset_caches()
    try:
        yield url
    finally:
        core_db.reset_caches()
        monkeypatch.undo()
        _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server per test process (flows run against it, as in production)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def pytest_report_header() -> str:
    where = os.environ.get("DATABASE_URL") or f"embedded ({PROJECT_ROOT / '.data' / 'pg'})"
    return f"database server: {where}"


CHROMIUM = Path(os.environ.get("TELEMETRY_TEST_CHROMIUM", "/usr/bin/chromium"))  # Debian's


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; skips only where it is missing or cannot start."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (see STACK.md)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), timeout=20_000,
                args=["--headless", "--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # any launch failure means no browser here, not a page bug
            pytest.skip(f"{CHROMIUM} cannot launch: {str(exc).splitlines()[0]}")
        yield browser
        browser.close()
    finally:
        playwright.stop()
