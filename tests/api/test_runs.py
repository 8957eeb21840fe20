"""POST /api/v1/runs: in-process runs in a background thread, and runs of Prefect deployments."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from api.routes import run_trigger

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
END = datetime(2026, 11, 20, tzinfo=UTC)
TINY = {"window": {"start": (END - timedelta(minutes=10)).isoformat(), "end": END.isoformat()},
        "fleet": {"sites": 1, "zones_per_site": 1, "devices_per_zone": 2}}


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_API_RUN_MODE", "in-process")


def wait_for(client, run_id: str, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = client.get(f"/api/v1/runs/{run_id}").json()
        if view["state"] not in ("scheduled", "running"):
            return view
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {view['state']} after {seconds}s")


@pytest.mark.usefixtures("prefect_harness", "in_process")
def test_an_in_process_run_returns_its_id_at_once_and_completes(client, conn):
    response = client.post("/api/v1/runs", json={"flow": "simulate-and-load",
                                                 "parameters": TINY}, headers=AUTH)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["mode"] == "in-process" and started["state"] in ("scheduled", "running")
    assert response.headers["Location"] == started["status_url"]
    done = wait_for(client, started["run_id"])
    assert done["state"] == "completed", done["error"]
    assert done["prefect_flow_run_id"] and done["finished_at"] >= done["started_at"]
    stored = conn.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0]
    assert done["result"]["rows_loaded"] == stored > 0


@pytest.mark.usefixtures("in_process")
@pytest.mark.parametrize(("payload", "status", "words"), [
    ({"flow": "nightly-magic"}, 422, "flow"),
    ({"flow": "build-kpis", "parameters": {"full_refresh": "perhaps"}}, 422, "full_refresh"),
    ({"flow": "build-kpis", "parameters": {"nope": 1}}, 422, "nope"),
    ({"flow": "simulate-and-load", "parameters": {"window": {
        "start": END.isoformat(), "end": (END - timedelta(hours=1)).isoformat()}}}, 422,
     "start must be before end"),
    ({"flow": "build-kpis", "extra": 1}, 422, "extra"),
])
def test_bad_runs_are_refused_before_anything_starts(client, payload, status, words):
    response = client.post("/api/v1/runs", json=payload, headers=AUTH)
    assert response.status_code == status
    assert words in str(response.json()["detail"])
    assert not client.app.state.runs.runs


def test_runs_need_the_token_and_unknown_runs_are_404(client):
    assert client.post("/api/v1/runs", json={"flow": "build-kpis"}).status_code == 401
    assert client.get("/api/v1/runs/not-a-run").status_code == 404


class _Blocking:
    """A stand-in flow that runs until released (counts runs, keeps parameters)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[dict] = []

    def validate_parameters(self, parameters: dict) -> dict:
        return parameters

    def __call__(self, return_state: bool = False, **parameters):
        self.calls.append(parameters)
        self.release.wait(30)
        raise RuntimeError("the flow broke")


@pytest.mark.usefixtures("in_process")
def test_in_process_runs_are_limited_and_failures_are_reported(client, monkeypatch):
    fake = _Blocking()
    monkeypatch.setattr(run_trigger, "_flow", lambda name: fake)
    limit = client.app.state.runs.limit
    ids = [client.post("/api/v1/runs", json={"flow": "build-kpis"}, headers=AUTH)
           .json()["run_id"] for _ in range(limit)]
    refused = client.post("/api/v1/runs", json={"flow": "build-kpis"}, headers=AUTH)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    fake.release.set()
    for run_id in ids:
        view = wait_for(client, run_id, 10)
        assert view["state"] == "failed" and "the flow broke" in view["error"]
    assert client.post("/api/v1/runs", json={"flow": "build-kpis"},
                       headers=AUTH).status_code == 202


@pytest.mark.usefixtures("prefect_harness")
def test_with_a_prefect_server_a_run_of_the_deployment_is_created(client, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.pipeline import build_kpis

    monkeypatch.setenv("TELEMETRY_API_RUN_MODE", "prefect")
    build_kpis.to_deployment(name="build-kpis").apply()
    response = client.post("/api/v1/runs", json={"flow": "build-kpis",
                                                 "parameters": {"full_refresh": True}},
                           headers=AUTH)
    assert response.status_code == 202, response.text
    view = response.json()
    assert view["mode"] == "prefect" and view["run_id"] == view["prefect_flow_run_id"]
    status = client.get(view["status_url"]).json()
    assert status["flow"] == "build-kpis" and status["state"] == "scheduled"
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(view["run_id"])
    assert flow_run.parameters == {"full_refresh": True} and "api" in flow_run.tags
    missing = client.post("/api/v1/runs", json={"flow": "drift-report"}, headers=AUTH)
    assert missing.status_code == 409 and "prefect deploy" in missing.json()["detail"]
