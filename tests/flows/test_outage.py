"""A micro-batch through a database outage: every connection of the test (loader, dbt, checks)
goes through a proxy it cuts when dbt starts and restores a second later (tests/pg_proxy.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from core import db as core_db
from core import dbt_runner
from core.settings import get_settings
from flows import pipeline
from flows.params import BackfillParams, FleetParams, WindowParams
from tests.pg_proxy import pg_proxy

END = datetime(2026, 11, 20, tzinfo=UTC)
SMALL = FleetParams(sites=1, zones_per_site=1, devices_per_zone=2)


def kpis_match_raw(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    """Every 5-minute window of the stored readings has exactly its KPI row, and no other."""
    raw = conn.execute(
        "SELECT device_id, metric_id, date_bin('5 minutes', ts, timestamptz '2000-01-01'),"
        " count(*) FROM telemetry.readings WHERE ts >= %s AND ts < %s GROUP BY 1, 2, 3"
        " ORDER BY 1, 2, 3", (start, end)).fetchall()
    kpis = conn.execute(
        "SELECT device_id, metric_id, window_start, reading_count FROM analytics.fct_kpi_5m"
        " WHERE window_start >= %s AND window_start < %s ORDER BY 1, 2, 3",
        (start, end)).fetchall()
    assert raw and kpis == raw


@pytest.fixture
def through_proxy(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    with pg_proxy(db) as proxy:
        monkeypatch.setenv("DATABASE_URL", proxy.url_for(conninfo_to_dict(db)["dbname"]))
        core_db.reset_caches()
        get_settings.cache_clear()
        yield proxy
    core_db.reset_caches()


@pytest.mark.usefixtures("prefect_harness")
def test_a_database_outage_mid_micro_batch_is_retried_and_no_window_is_lost_or_doubled(
        db, through_proxy, monkeypatch):
    pipeline.backfill(params=BackfillParams(days=1 / 24, end=END, chunk_minutes=60),
                      fleet=SMALL)
    real_run_dbt = dbt_runner.run_dbt
    outages: list[datetime] = []

    def cut_when_dbt_starts(*args, **kwargs):
        if not outages:  # the first dbt call of the micro-batch meets a dead database
            outages.append(datetime.now(UTC))
            through_proxy.cut()
            threading.Timer(1.0, through_proxy.restore).start()
        return real_run_dbt(*args, **kwargs)

    monkeypatch.setattr(dbt_runner, "run_dbt", cut_when_dbt_starts)
    first = END + timedelta(minutes=5)
    run = pipeline.micro_batch(window=WindowParams(end=first), fleet=SMALL)
    assert outages and run.load.rows_loaded > 0  # the dbt task failed, retried, went on
    monkeypatch.setattr(dbt_runner, "run_dbt", real_run_dbt)
    pipeline.micro_batch(window=WindowParams(end=first + timedelta(minutes=5)), fleet=SMALL)

    with psycopg.connect(db) as conn:
        kpis_match_raw(conn, END - timedelta(hours=1), first + timedelta(minutes=5))
        statuses = [r[0] for r in conn.execute("SELECT status FROM telemetry.batches")]
        loads_of_the_window = conn.execute(
            "SELECT count(*) FROM telemetry.batches WHERE window_end = %s", (first,)
        ).fetchone()[0]
    assert set(statuses) == {"succeeded"} and loads_of_the_window == 1  # the load ran once
