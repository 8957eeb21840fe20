"""`telemetry serve`: the supervisor's stop logic on stand-in children, then a bounded smoke test
of the real stack (Prefect server and UI, deployments, worker, API) started and stopped by one
SIGINT with no process left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from cli import serve
from core.settings import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live processes of a session (stat field 6), zombies aside."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(stat.parent.name))
    return found


def group_gone(pgid: int, timeout: float = 5) -> bool:
    """os.killpg(pgid, 0) raises ProcessLookupError once no member is left, zombies included
    (init reaps killed orphans a moment later, hence the wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def kill_everything(sid: int | None, session: str | None) -> None:
    """Test cleanup whatever happened: the supervisor's session and every marked process."""
    pids = (session_pids(sid) if sid else []) + (serve.marked_pids(session) if session else [])
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[serve.Supervisor]:
    sup = serve.Supervisor(tmp_path / "logs", dict(os.environ), grace=1.0, cwd=tmp_path)
    try:
        yield sup
    finally:
        for child in sup.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
        kill_everything(None, sup.session)


def test_a_child_that_dies_is_named_and_the_rest_are_stopped(supervisor):
    steady = supervisor.spawn("steady", ["sleep", "60"])
    supervisor.spawn("flaky", ["sh", "-c", "echo boom; exit 3"])
    with pytest.raises(serve.ChildFailed, match="flaky exited with code 3") as failed:
        supervisor.watch(interval=0.05)
    assert failed.value.log.read_text().rstrip().endswith("boom")
    supervisor.stop_all()
    assert steady.proc.returncode == -signal.SIGTERM


def test_a_one_shot_step_may_exit_zero_but_not_fail(supervisor):
    assert supervisor.run_step("ok", ["true"], timeout=10) < 10
    with pytest.raises(serve.ChildFailed, match="bad exited with code 1"):
        supervisor.run_step("bad", ["false"], timeout=10)


def test_stop_kills_what_ignores_sigterm_and_descendants_in_other_sessions(supervisor):
    # `trap "" TERM` is inherited by the sleep; `setsid` puts one sleep in a session of its
    # own, outside the group, as a Prefect worker does with its flow runs.
    stubborn = supervisor.spawn("stubborn", ["sh", "-c", 'trap "" TERM; sleep 60 & wait'])
    escaper = supervisor.spawn("escaper", ["sh", "-c", "setsid sleep 60 & exec sleep 60"])
    deadline = time.monotonic() + 10
    # Until setsid() has run, the forked sleep is still in the escaper's group: wait for both.
    while (len(serve.marked_pids(supervisor.session)) < 4 or not supervisor.strays()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisor.strays(), "the setsid sleep should be outside every child's group"
    started = time.monotonic()
    supervisor.stop_all(last=("stubborn",))
    took = time.monotonic() - started
    assert 1.0 <= took < 5, took  # one grace period, then SIGKILL
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert escaper.proc.returncode == -signal.SIGTERM
    assert serve.marked_pids(supervisor.session) == []
    for child in (stubborn, escaper):
        assert group_gone(child.proc.pid)


def _command() -> list[str]:
    """`telemetry serve` once cli/main.py registers it; the module itself until then."""
    from cli.main import app

    registered = any((c.name or getattr(c.callback, "__name__", "")) == "serve"
                     for c in app.registered_commands)
    if registered:
        return [str(Path(sys.executable).with_name("telemetry")), "serve"]
    return [sys.executable, "-m", "cli.serve"]


def test_serve_starts_the_stack_and_one_sigint_stops_every_process(db, tmp_path):
    api_port, prefect_port = free_port(), free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "DATABASE_URL": db,
        "TELEMETRY_DATA_DIR": str(data),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The every-minute micro-batch would start runs on a busy 2-core machine; what the
        # worker does with a run is tests/flows/test_prefect_server.py's subject.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    })
    out = tmp_path / "serve.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*_command(), "--api-port", str(api_port), "--prefect-port", str(prefect_port),
             "--grace", "10", "--startup-timeout", "150"],
            cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    state_file, session = data / "serve.json", None
    try:
        state = wait_ready(proc, state_file, out, timeout=160)
        session = state["session"]
        check_the_stack(state, api_port, prefect_port, proc.pid, data)

        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out.read_text()
        stop_seconds = time.monotonic() - started
        for name, pid in state["children"].items():
            assert group_gone(pid), name  # the child's whole process group
            assert (data / "logs" / f"{name}.log").stat().st_size > 0
        assert serve.marked_pids(session) == []
        assert session_pids(proc.pid) == []
        assert not state_file.exists()
        for port in (api_port, prefect_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        assert "all stopped" in out.read_text()
        assert stop_seconds < 30, stop_seconds
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        kill_everything(proc.pid, session)


def wait_ready(proc: subprocess.Popen, state_file: Path, out: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}:\n{out.read_text()}")
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(state_file.read_text())
            if state.get("ready"):
                return state
        time.sleep(0.5)
    pytest.fail(f"serve not ready in {timeout:.0f} s:\n{out.read_text()}")


def check_the_stack(state: dict, api_port: int, prefect_port: int, sid: int, data: Path
                    ) -> None:
    api, prefect = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prefect_port}"
    assert state["urls"] == {"api": api, "prefect": prefect}
    assert {"prefect-server", "deploy", "worker", "api"} <= set(state["children"])
    for name in ("prefect-server", "worker", "api"):  # the one-shot steps are done
        pid = state["children"][name]
        assert os.getpgid(pid) == pid and os.getsid(pid) == sid  # a group of its own

    assert httpx.get(f"{api}/health", timeout=5).status_code == 200
    assert httpx.get(f"{api}/ready", timeout=5).status_code == 200  # the migrated test DB
    assert prefect in httpx.get(f"{api}/", timeout=5).text  # the dashboard links the UI
    assert httpx.get(f"{prefect}/api/health", timeout=5).json() is True
    assert httpx.get(f"{prefect}/", timeout=10).status_code == 200  # the UI
    assert (data / "prefect" / "prefect.db").is_file()  # Prefect's SQLite under PREFECT_HOME

    deployments = httpx.post(f"{prefect}/api/deployments/filter", json={"limit": 200},
                             timeout=10).json()
    expected = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
    assert sorted(d["name"] for d in deployments) == sorted(d["name"] for d in expected)
    assert {d["work_pool_name"] for d in deployments} == {serve.POOL}
    pool = httpx.get(f"{prefect}/api/work_pools/{serve.POOL}", timeout=5).json()
    assert pool["type"] == "process" and pool["status"] == "READY"  # the worker's heartbeat
