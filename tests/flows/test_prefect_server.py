"""prefect.yaml against a real Prefect server: `prefect deploy --all` to a process work pool, then
a worker runs a deployment run created through the Prefect client, and it leaves its artifact.

Everything runs as separate processes, as in production: `prefect server start` on a free
loopback port (its own PREFECT_HOME and SQLite file), the CLI, and `prefect worker start
--run-once`, whose flow-run subprocess reaches this test's database through DATABASE_URL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.settings import PROJECT_ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))
START = datetime(2026, 11, 20, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process and its children (it leads its own session). A worker answers SIGTERM by
    interrupting its flow-run subprocess and may keep going, hence the SIGKILL fallback."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def prefect_yaml() -> list[dict]:
    return yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A `prefect server start` of its own; yields the environment that points at it."""
    port = free_port()
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        # Deployment schedules are registered but create no runs: the every-minute micro-batch
        # would otherwise race the run under test for the worker's single poll.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail("prefect server exited:\n" + (tmp_path / "server.log").read_text())
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server not healthy in 90 s:\n"
                            + (tmp_path / "server.log").read_text())
            time.sleep(0.5)
        yield env
    finally:
        stop(server)
        log.close()


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([PREFECT, *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_final(client: SyncPrefectClient, run_id: UUID, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state.type.value
        time.sleep(1)
    return "TIMEOUT"


def test_deploy_all_and_a_worker_runs_micro_batch_with_its_artifact(prefect_server, db,
                                                                      tmp_path):
    # The worker's flow-run subprocess inherits this environment: the test's database,
    # reports and dbt target directories, and the deploy directory for the {{ $PWD }} pull step.
    env = {**prefect_server, "PWD": str(PROJECT_ROOT), "DATABASE_URL": db,
           "TELEMETRY_REPORTS_DIR": os.environ["TELEMETRY_REPORTS_DIR"],
           "TELEMETRY_DBT_TARGET_DIR": os.environ["TELEMETRY_DBT_TARGET_DIR"]}
    cli(env, "work-pool", "create", "local", "--type", "process")
    cli(env, "--no-prompt", "deploy", "--all", timeout=240)

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        registered = {d.name: d for d in client.read_deployments()}
        expected = prefect_yaml()
        assert set(registered) == {d["name"] for d in expected}
        for spec in expected:
            got = registered[spec["name"]]
            assert got.entrypoint == spec["entrypoint"]
            assert got.work_pool_name == "local"
            assert sorted((s.schedule.cron, s.schedule.timezone, s.active)
                          for s in got.schedules) == sorted(
                (s["cron"], s["timezone"], True) for s in spec.get("schedules", []))
        assert registered["micro-batch"].concurrency_options.collision_strategy == "CANCEL_NEW"

        # The parameter forms' limits hold on the server: a bad value makes no run.
        with pytest.raises(Exception, match="keep_days"):
            client.create_flow_run_from_deployment(registered["retention"].id,
                                                   parameters={"params": {"keep_days": 0}})

        run = client.create_flow_run_from_deployment(registered["micro-batch"].id, parameters={
            "window": {"start": START.isoformat(), "end": "2026-11-20T00:10:00+00:00"},
            "fleet": {"sites": 1, "zones_per_site": 1, "devices_per_zone": 2}})
        worker_log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "local", "--run-once"],
                                  env=env, cwd=PROJECT_ROOT, stdout=worker_log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            final = wait_final(client, run.id, timeout=180)
        finally:
            stop(worker)
            worker_log.close()
        assert final == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]

        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        assert [a.key for a in artifacts] == ["micro-batch"]
        assert "rows received / loaded" in artifacts[0].data

    with psycopg.connect(db) as conn:
        windows = conn.execute("SELECT window_start, window_end FROM telemetry.batches").fetchall()
    assert windows == [(START, datetime(2026, 11, 20, 0, 10, tzinfo=UTC))]
