"""The API through a real database outage: the test's connections go through a proxy it cuts
(tests/pg_proxy.py), so the server drops them as it would on a crash or a network cut."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from api.main import create_app
from core import db as core_db
from core import ingest
from core.settings import get_settings
from tests.api.conftest import TOKEN
from tests.api.test_ingest import FLEET, body, post, valid_rows
from tests.pg_proxy import pg_proxy

BOUND = 15.0  # seconds any answer during the outage may take: an answer, never a hang


def timed(call):
    started = time.monotonic()
    response = call()
    took = time.monotonic() - started
    assert took < BOUND, f"took {took:.1f} s"
    return response


def test_during_an_outage_health_answers_reads_and_writes_get_503_and_all_works_after(
        db, monkeypatch, caplog):
    ingest.register_fleet(FLEET)
    with pg_proxy(db) as proxy:
        monkeypatch.setenv("DATABASE_URL", proxy.url_for(conninfo_to_dict(db)["dbname"]))
        monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
        core_db.reset_caches()
        get_settings.cache_clear()
        now = datetime.now(UTC)
        with TestClient(create_app()) as client:
            assert client.get("/ready").status_code == 200
            before = post(client, body(valid_rows(4, now)))
            assert before.status_code == 200 and before.json()["loaded"] == 4

            proxy.cut()
            assert timed(lambda: client.get("/health")).status_code == 200
            for path in ("/ready", "/api/v1/alerts", "/api/v1/runs", "/api/v1/devices"):
                response = timed(lambda p=path: client.get(p))
                assert response.status_code == 503, (path, response.text)
                assert response.headers["Retry-After"] and "database" in response.json()["detail"]
            held = body(valid_rows(6, now, metric="humidity"))  # the client keeps these
            refused = timed(lambda: post(client, held))
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            # the operator sees each 503 and its cause in the log
            said = [r.getMessage() for r in caplog.records if r.name == "api.main"]
            assert any(m.startswith("503 for GET /api/v1/devices: ") for m in said), said
            assert any(m.startswith("503 for POST /api/v1/readings: ") for m in said), said

            proxy.restore()
            deadline = time.monotonic() + BOUND
            while (ready := client.get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.2)
            again = post(client, held)
            assert again.status_code == 200 and again.json()["loaded"] == 6
            assert client.get("/api/v1/runs").status_code == 200
    with psycopg.connect(db) as conn:  # nothing lost, nothing twice
        assert conn.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0] == 10
        statuses = [r[0] for r in conn.execute(
            "SELECT status FROM telemetry.batches ORDER BY batch_id")]
    assert statuses.count("succeeded") == 2 and "running" not in statuses


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    core_db.reset_caches()
