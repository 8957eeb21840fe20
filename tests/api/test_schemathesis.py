"""Property-based run over the OpenAPI document (schemathesis): generated requests, valid and
invalid, to every read endpoint of an app over a small real database never get a 5xx.

Bounded: MAX_EXAMPLES per operation, no shrinking; about a minute on the 2-core machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from graphql.language import ast as graphql_nodes
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from api.main import create_app
from api.routes import graphql as graphql_routes
from core import db as core_db
from core import ingest
from core.dbt_runner import run_dbt
from core.settings import get_settings
from simulator import FleetConfig, simulate

START = datetime(2026, 11, 16, 8, tzinfo=UTC)
END = START + timedelta(hours=3)
FLEET = FleetConfig(sites=1, zones_per_site=2, devices_per_zone=1)
MAX_EXAMPLES = 80


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _rows(conn: psycopg.Connection) -> None:
    """One of everything the detection, quality and drift stages write."""
    model_id = conn.execute(
        "INSERT INTO telemetry.models (detector, version, params, train_start, train_end,"
        " row_count, state) VALUES ('rolling_z', 1, '{}', %s, %s, 10, '{}')"
        " RETURNING model_id", (START, END)).fetchone()[0]
    conn.execute(
        "INSERT INTO telemetry.scores (detector, device_id, metric, ts, model_id, value,"
        " baseline_mean, baseline_std, score, is_anomaly, severity, reason)"
        " VALUES ('fused', 1, 'co2', %s, %s, 1500, 600, 40, 5.2, true, 'critical', 'spike')",
        (START + timedelta(hours=1), model_id))
    conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
        " fired_at, last_seen_at, peak_score) VALUES ('device', 1, 'co2', 'firing', 'critical',"
        " %s, %s, %s, 5.2)", (START + timedelta(hours=1),) * 3)
    conn.execute(
        "INSERT INTO telemetry.evaluations (run_id, detector, anomaly_type, seed, days, devices,"
        " events, detected, f1) VALUES ('r', 'rolling_z', 'all', 1, 7, 2, 3, 2, 0.8)")
    conn.execute(
        "INSERT INTO telemetry.quality_results (suite, target, expectation, expectation_type,"
        " severity, success, run_id) VALUES ('kpi', 't', 'e', 'x', 'error', false, 'q')")
    conn.execute(
        "INSERT INTO telemetry.drift_results (run_id, reference_start, reference_end,"
        " current_start, current_end, metric, method, drifted, reference_rows, current_rows)"
        " VALUES ('d', %s, %s, %s, %s, 'co2', 'wasserstein', true, 10, 10)",
        (START - timedelta(days=7), START, START, END))


@pytest.fixture(scope="module")
def app_client(pg_admin_url: str, template_db: str, worker_dbt_target: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    name = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    _admin(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = core_db.with_dbname(pg_admin_url, name)
    reports = tmp_path_factory.mktemp("fuzz-reports")
    (reports / "fleet.html").write_text("<p>fleet</p>")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", url)
        env.setenv("TELEMETRY_DBT_TARGET_DIR", str(worker_dbt_target))
        env.setenv("TELEMETRY_REPORTS_DIR", str(reports))
        env.delenv("TELEMETRY_API_TOKEN", raising=False)
        core_db.reset_caches()
        get_settings.cache_clear()
        try:
            ingest.register_fleet(FLEET)
            for piece in ingest.chunks(ingest.Window(START, END), timedelta(hours=1)):
                ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)
            run_dbt(["build"])
            with psycopg.connect(url, autocommit=True) as conn:
                _rows(conn)
            with TestClient(create_app(), raise_server_exceptions=False) as client:
                yield client
        finally:
            core_db.reset_caches()
            get_settings.cache_clear()
            _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The document needs no database (no lifespan runs here); only the read API: GraphQL has
# its own tests (its POST takes a body the document does not describe), the write routes
# theirs.
schema = schemathesis.openapi.from_dict(create_app().openapi()).include(
    method="GET").exclude(path_regex=r"graphql|/alerts/stream")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, app_client):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    response = app_client.request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"),
        headers=kwargs.get("headers"), cookies=kwargs.get("cookies"),
        content=kwargs.get("data") if isinstance(kwargs.get("data"), bytes) else None)
    case.validate_response(response, checks=[not_a_server_error])


# GraphQL: generated queries (valid and broken) over the same database.
schemathesis.graphql.scalar("DateTime", st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, None])).map(lambda d: graphql_nodes.StringValueNode(
        value=d.isoformat())))
graphql_schema = schemathesis.graphql.from_file(str(graphql_routes.schema))


@graphql_schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_graphql_has_no_server_errors(case, app_client):
    kwargs = case.as_transport_kwargs(base_url="http://testserver/api/v1/graphql")
    response = app_client.request("POST", "http://testserver/api/v1/graphql",
                                  json=kwargs["json"])
    # schemathesis counts every resolver error as the server's; here a resolver error must be
    # a refused argument (BAD_USER_INPUT), and the rest query validation (no path).
    assert response.status_code in (200, 400), response.text
    for error in response.json().get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert "path" not in error or code == "BAD_USER_INPUT", response.text
