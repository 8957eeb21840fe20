"""Property-based run over the whole OpenAPI document of `create_app()` (schemathesis):
generated requests, valid and invalid, to every operation over a small real database. Every
response is checked against the document with CHECKS: no 5xx (not_a_server_error), status code
documented (status_code_conformance), content type documented (content_type_conformance), body
valid against the documented schema (response_schema_conformance).

- Operations without `security` (every GET, and POST /api/v1/graphql): MAX_EXAMPLES each.
- Operations that need the bearer token (POST /readings, /detect, /alerts/{id}/ack,
  /alerts/{id}/resolve, /runs): WRITE_EXAMPLES each, sent with `Authorization: Bearer <token>`
  (api/deps.py: HTTPBearer) so the generated bodies reach the handlers. Then a few generated
  requests each (UNAUTHENTICATED_EXAMPLES) with a wrong token and with none must get the
  documented 401, and with no token configured on the server the documented 403.
- POST /api/v1/runs starts flows. In-process runs would run real flows (simulation, dbt,
  training) in background threads, for as long as they take; here the API runs in Prefect mode
  against the test Prefect server (prefect_harness), where every flow has a deployment and no
  worker polls: a run is created and stays scheduled, nothing executes.
- POST /api/v1/detect appends anomalies to a log: pointed at a temporary file.
- Excluded: GET /api/v1/alerts/stream, an endless server-sent-event stream (it ends only when
  the client disconnects), so there is no complete response to check; tests/api/test_stream.py
  covers it.
- GraphQL: the document describes the HTTP envelope of /api/v1/graphql (checked here with the
  rest); generated queries from the GraphQL schema have a test of their own.

Bounded and repeatable: examples per operation plus schemathesis' coverage phase (boundary and
missing values), no shrinking, derandomized. About two minutes under `-n 2` on 2 cores.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from graphql.language import ast as graphql_nodes
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from api.routes import graphql as graphql_routes
from api.routes import run_trigger
from core import db as core_db
from core import ingest
from core.dbt_runner import run_dbt
from core.settings import get_settings
from simulator import FleetConfig, simulate

START = datetime(2026, 11, 16, 8, tzinfo=UTC)
END = START + timedelta(hours=3)
FLEET = FleetConfig(sites=1, zones_per_site=2, devices_per_zone=1)
MAX_EXAMPLES = 50
WRITE_EXAMPLES = 30
UNAUTHENTICATED_EXAMPLES = 5
GRAPHQL_EXAMPLES = 80
TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUNS = "/api/v1/runs"
GRAPHQL = "/api/v1/graphql"
STREAM = "/api/v1/alerts/stream"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
BOUNDED = settings(deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))


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
               tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TestClient]:
    name = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    _admin(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = core_db.with_dbname(pg_admin_url, name)
    scratch = tmp_path_factory.mktemp("fuzz")
    reports = scratch / "reports"
    reports.mkdir()
    (reports / "fleet.html").write_text("<p>fleet</p>")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", url)
        env.setenv("TELEMETRY_DBT_TARGET_DIR", str(worker_dbt_target))
        env.setenv("TELEMETRY_REPORTS_DIR", str(reports))
        env.setenv("TELEMETRY_DATA_DIR", str(scratch / "data"))
        env.setenv("TELEMETRY_ANOMALY_LOG_PATH", str(scratch / "anomalies.jsonl"))
        env.setenv("TELEMETRY_API_TOKEN", TOKEN)
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


@pytest.fixture(scope="module")
def flow_deployments(app_client: TestClient, prefect_harness: None) -> Iterator[None]:
    """POST /runs in Prefect mode, against the test Prefect server, where every flow the API
    knows has a deployment `<flow>/<flow>` and no worker runs them. The deployments and their
    runs are deleted afterwards: other tests on this server count runs and expect a deployment
    to be missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = [run_trigger._flow(name).to_deployment(name=name).apply()
           for name in run_trigger.FLOWS]
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("TELEMETRY_API_RUN_MODE", "prefect")
            get_settings.cache_clear()
            yield
    finally:
        get_settings.cache_clear()
        with get_client(sync_client=True) as prefect:
            ours = DeploymentFilter(id=DeploymentFilterId(any_=ids))
            while runs := prefect.read_flow_runs(deployment_filter=ours):
                for run in runs:
                    prefect.delete_flow_run(run.id)
            for deployment_id in ids:
                prefect.delete_deployment(deployment_id)


def _send(client: TestClient, case: Any, headers: dict[str, str | None] | None = None) -> Any:
    """The generated request through the app's client (a header given as None is left out);
    the response, checked against the document."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    sent = {k: v for k, v in {**kwargs["headers"], **(headers or {})}.items() if v is not None}
    if "json" in kwargs:
        body = json.dumps(kwargs["json"], allow_nan=False).encode()
    else:
        body = kwargs.get("data")
    client.cookies.clear()
    response = client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                              headers=sent, cookies=kwargs.get("cookies"), content=body)
    case.validate_response(response, checks=CHECKS, headers=sent)
    return response


def _needs_token(ctx: Any) -> bool:
    return bool(ctx.operation.definition.raw.get("security"))


# The document needs no database (no lifespan runs here).
DOCUMENT = create_app().openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path=STREAM)
# Without the token: generated requests only, no coverage-phase probes (other methods, other
# content types), which the router answers before authentication, with 405 or 415.
without_token = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}}})).include(_needs_token)


@schema.exclude(_needs_token).parametrize()
@settings(BOUNDED, max_examples=MAX_EXAMPLES)
def test_open_operations_conform(case, app_client):
    _send(app_client, case)


@schema.include(_needs_token).exclude(path=RUNS).parametrize()
@settings(BOUNDED, max_examples=WRITE_EXAMPLES)
def test_writes_conform(case, app_client):
    _send(app_client, case, AUTH)


@schema.include(method="POST", path=RUNS).parametrize()
@settings(BOUNDED, max_examples=WRITE_EXAMPLES)
def test_run_triggers_conform(case, app_client, flow_deployments):
    _send(app_client, case, AUTH)


@without_token.parametrize()
@settings(BOUNDED, max_examples=UNAUTHENTICATED_EXAMPLES)
def test_writes_need_the_token(case, app_client):
    # a generated bearer token (never the server's), then none at all: 401
    for headers in ({}, {"Authorization": None}):
        response = _send(app_client, case, headers)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
    # a server without a token refuses every write, even with the old token: 403
    with pytest.MonkeyPatch.context() as env:
        env.delenv("TELEMETRY_API_TOKEN")
        get_settings.cache_clear()
        try:
            response = _send(app_client, case, AUTH)
        finally:
            get_settings.cache_clear()
    assert response.status_code == 403, response.text


def test_every_write_needs_the_token():
    """The split above follows the document: only GraphQL (read-only) takes a body without it."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert method == "get" or operation.get("security") or path == GRAPHQL, \
                f"{method.upper()} {path} is documented without the bearer token"


# GraphQL: generated queries (valid and broken) over the same database.
schemathesis.graphql.scalar("DateTime", st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, None])).map(lambda d: graphql_nodes.StringValueNode(
        value=d.isoformat())))
graphql_schema = schemathesis.graphql.from_file(str(graphql_routes.schema))


@graphql_schema.parametrize()
@settings(BOUNDED, max_examples=GRAPHQL_EXAMPLES)
def test_graphql_has_no_server_errors(case, app_client):
    kwargs = case.as_transport_kwargs(base_url=f"http://testserver{GRAPHQL}")
    response = app_client.request("POST", f"http://testserver{GRAPHQL}",
                                  json=kwargs["json"])
    # schemathesis counts every resolver error as the server's; here a resolver error must be
    # a refused argument (BAD_USER_INPUT), and the rest query validation (no path).
    assert response.status_code in (200, 400), response.text
    for error in response.json().get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert "path" not in error or code == "BAD_USER_INPUT", response.text
