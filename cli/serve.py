"""`telemetry serve` (`make serve`): the whole stack on loopback, supervised; one Ctrl-C stops it.

The supervisor checks the database and applies the migrations (without DATABASE_URL it starts
the embedded server and holds it open: that server stops when the last process that opened it
exits), then starts and watches these children:

  prefect-server  `prefect server start` (API and UI) on 127.0.0.1:4200
  work-pool       `prefect work-pool create local --type process` (only when it is missing)
  deploy          `prefect --no-prompt deploy --all` from the repo root (prefect.yaml)
  worker          `prefect worker start --pool local`: executes the scheduled and requested runs
  api             `telemetry api` (uvicorn: REST API and dashboard) on 127.0.0.1:8000

Each child leads its own process group, carries a session marker in its environment and writes
its output to data_dir/logs/<name>.log; data_dir/serve.json lists the PIDs. On SIGINT, SIGTERM
or SIGHUP the worker, the API and any flow run the worker started (those lead sessions of their
own, so only the marker finds them) get SIGTERM first and the Prefect server last, so runs can
still report their final state; whatever is left after the grace period gets SIGKILL. A second
Ctrl-C kills at once. If a child dies on its own, the rest are stopped and the exit code is 1.

Prefect's metadata stays in its own SQLite file under PREFECT_HOME (data_dir/prefect, the home
the CLI's one-off runs use too, so their history shows in the same UI). The pipeline's
PostgreSQL database then holds only the pipeline's tables (Alembic's migrations, per-test
database clones and `telemetry db url` stay simple), and the Prefect server never depends on
the embedded server, which answers only on a socket and only while someone holds it open. One
server process writes that file, which is what SQLite handles well. To keep Prefect in
PostgreSQL anyway, set PREFECT_API_DATABASE_CONNECTION_URL (postgresql+asyncpg://, a database
of its own).

docker-compose.yml runs the same commands with the same variables; tests/test_compose.py holds
the two together through the constants below.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from core.settings import PROJECT_ROOT, get_settings

console = Console(highlight=False, soft_wrap=True)

POOL = "local"
HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
# The commands docker-compose.yml runs too (tests/test_compose.py checks they stay the same).
POOL_CREATE_ARGS = ("work-pool", "create", POOL, "--type", "process")
DEPLOY_ARGS = ("--no-prompt", "deploy", "--all")
WORKER_ARGS = ("worker", "start", "--pool", POOL)
# Variables the supervisor sets for its children; the compose services set the same names.
CHILD_ENV_NAMES = ("DATABASE_URL", "PREFECT_API_URL", "PREFECT_HOME",
                   "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_LEVEL",
                   "TELEMETRY_PREFECT_UI_URL")
# Every process started from the supervisor inherits this variable: the shutdown sweep (and the
# smoke test) find escaped descendants by it, e.g. flow runs that lead their own session.
SESSION_ENV = "TELEMETRY_SERVE_SESSION"
SERVER, WORK_POOL, DEPLOY, WORKER, API = "prefect-server", "work-pool", "deploy", "worker", "api"


def server_args(host: str, port: int) -> tuple[str, ...]:
    return ("server", "start", "--host", host, "--port", str(port))


class StopRequested(Exception):
    """A signal asked the supervisor to stop."""


class ChildFailed(Exception):
    """A child exited on its own (or a one-shot step failed)."""

    def __init__(self, name: str, returncode: int | None, log: Path, why: str = "") -> None:
        self.name, self.returncode, self.log = name, returncode, log
        if not why and returncode is not None and returncode < 0:
            why = f"{name} was killed by {signal.Signals(-returncode).name}"
        super().__init__(why or f"{name} exited with code {returncode}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    one_shot: bool = False  # a step expected to exit 0 (deploy), not a service

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None or _group_alive(self.proc.pid)


@dataclass
class Supervisor:
    """Children in process groups of their own, watched together and stopped together."""

    logs_dir: Path
    env: dict[str, str]
    grace: float = 15.0
    cwd: Path = PROJECT_ROOT
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    on_change: Callable[[Supervisor], None] | None = None
    children: dict[str, Child] = field(default_factory=dict)
    stop_signal: int | None = None
    force: bool = False

    # -- signals --------------------------------------------------------------------------
    def handle_signals(self) -> Callable[[], None]:
        """Install the stop handlers; returns a function that restores the previous ones.

        Install them before the first spawn: a child starts with the default disposition of a
        handled signal, whereas an ignored SIGINT (a supervisor started with `&`) would be
        inherited, and a Prefect worker that ignores SIGINT never stops on SIGTERM either."""
        signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.getsignal(s) for s in signums}
        for s in signums:
            signal.signal(s, self._on_signal)

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return restore

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is not None:
            self.force = True  # a second Ctrl-C: no more waiting
        self.stop_signal = signum

    # -- starting and watching ------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], *, one_shot: bool = False) -> Child:
        log = self.logs_dir / f"{name}.log"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            out.write(f"\n=== {stamp} telemetry serve: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, process_group=0,
                env={**self.env, SESSION_ENV: self.session})
        child = Child(name, proc, log, one_shot)
        self.children[name] = child
        if self.on_change:
            self.on_change(self)
        return child

    def check(self) -> None:
        """Raise StopRequested after a signal, ChildFailed when a child exited on its own."""
        if self.stop_signal is not None:
            raise StopRequested
        for child in self.children.values():
            code = child.proc.poll()
            if code is None or (child.one_shot and code == 0):
                continue
            raise ChildFailed(child.name, code, child.log)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float,
                 log: Path | None = None) -> float:
        """Poll `ready` until true while watching the children; returns the seconds taken."""
        started = time.monotonic()
        while True:
            self.check()
            if ready():
                self.check()  # a one-shot step that has just exited non-zero is not ready
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ChildFailed(what, None, log or self.logs_dir,
                                  f"{what} not ready after {timeout:.0f} s")
            time.sleep(0.25)

    def run_step(self, name: str, argv: list[str], timeout: float) -> float:
        """A one-shot child: wait for it to exit 0 (watching the others meanwhile)."""
        child = self.spawn(name, argv, one_shot=True)
        return self.wait_for(name, lambda: child.proc.poll() is not None, timeout, child.log)

    def watch(self, interval: float = 0.5) -> None:
        """Until a signal (StopRequested) or a dead child (ChildFailed)."""
        while True:
            self.check()
            time.sleep(interval)

    # -- stopping -------------------------------------------------------------------------
    def stop_all(self, last: tuple[str, ...] = (SERVER,)) -> None:
        """SIGTERM everything but `last` (and escaped descendants), then `last`; SIGKILL
        whatever outlives the grace period. Returns when every process is gone."""
        first = [c for name, c in self.children.items() if name not in last]
        then = [self.children[name] for name in last if name in self.children]
        for group in (first, then):
            self._terminate(group, sweep=group is first)
        self._kill(list(self.children.values()))

    def _terminate(self, group: list[Child], sweep: bool) -> None:
        for child in group:
            if child.alive:
                _signal_group(child.proc.pid, signal.SIGTERM)
        if sweep:
            for pid in self.strays():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not self.force:
            for child in group:
                child.proc.poll()  # reap the leader
            if not any(c.alive for c in group) and not (sweep and self.strays()):
                return
            time.sleep(0.1)
        self._kill(group)

    def _kill(self, group: list[Child]) -> None:
        for child in group:
            if child.alive:
                console.print(f"[yellow]{child.name} still running: SIGKILL[/]")
                _signal_group(child.proc.pid, signal.SIGKILL)
        for pid in self.strays():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for child in group:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)

    def strays(self) -> list[int]:
        """Live processes carrying this session's marker outside the children's groups."""
        groups = {c.proc.pid for c in self.children.values()}
        return [pid for pid in marked_pids(self.session) if _pgid(pid) not in groups]

    def pids(self) -> dict[str, int]:
        return {name: c.proc.pid for name, c in self.children.items()}


def marked_pids(session: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries SESSION_ENV=session (Linux)."""
    needle = f"{SESSION_ENV}={session}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(pid)
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _group_alive(pgid: int) -> bool:
    """Any live member in the process group? Zombies do not count: an orphan waits a moment
    for init to reap it, and os.killpg(pgid, 0) still finds it meanwhile."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _executable(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise typer.BadParameter(f"{name} is not installed (run make setup)")
    return found


def _http_ok(url: str, method: str = "GET") -> bool:
    try:
        return httpx.request(method, url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind: connections in TIME_WAIT from a previous run do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _display_url(url: str) -> str:
    if "host=/" in url:
        return f"embedded PostgreSQL ({url.split('host=', 1)[1].split('&')[0]})"
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if at and ":" in auth:
        return f"{scheme}{sep}{auth.split(':', 1)[0]}:***@{host}"
    return url


@contextlib.contextmanager
def _single_instance(data_dir: Path) -> Iterator[None]:
    """One `telemetry serve` per data directory (a lock released when the process dies)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "serve.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print(f"[red]telemetry serve is already running for {data_dir}[/] "
                          f"(see {data_dir / 'serve.json'})")
            raise typer.Exit(1) from None
        yield


def _write_state(path: Path, state: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8000))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _prepare_database() -> str:
    """Reach the database (starting the embedded server, which this process then holds open)
    and migrate it; returns the URL the children get as DATABASE_URL."""
    import psycopg

    from core import db, migrate

    url = db.database_url()
    try:
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        console.print(f"[red]database unreachable[/] ({_display_url(url)}): {exc}")
        raise typer.Exit(1) from exc
    started = time.perf_counter()
    migrate.upgrade()
    console.print(f"database: {_display_url(url)}, migrations at head "
                  f"({time.perf_counter() - started:.1f} s)")
    return url


def serve(
    api_port: Annotated[int | None, typer.Option(
        help="API and dashboard port; default TELEMETRY_API_PORT (8000).")] = None,
    prefect_port: Annotated[int, typer.Option(
        envvar="TELEMETRY_PREFECT_PORT", help="Prefect server (API and UI) port.")
    ] = DEFAULT_PREFECT_PORT,
    worker: Annotated[bool, typer.Option(
        "--worker/--no-worker", help="Run a worker for the deployments' runs.")] = True,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the API and dashboard.")
                   ] = True,
    deploy: Annotated[bool, typer.Option(
        "--deploy/--no-deploy", help="Register prefect.yaml's deployments first.")] = True,
    log_level: Annotated[str, typer.Option(
        help="PREFECT_LOGGING_LEVEL for the children's logs.")] = "INFO",
    grace: Annotated[float, typer.Option(
        min=0, help="Seconds the children get to stop before SIGKILL.")] = 15.0,
    startup_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds the whole start-up may take.")] = 300.0,
) -> None:
    """Prefect server + UI, deployments, a worker and the API on 127.0.0.1; Ctrl-C stops all.

    Uses the same database as every other command (DATABASE_URL, else the embedded server,
    migrated first). Prefect keeps its own metadata in SQLite under PREFECT_HOME
    (TELEMETRY_DATA_DIR/prefect): the pipeline's database holds only the pipeline's tables, and
    Prefect never depends on the embedded server. Logs: TELEMETRY_DATA_DIR/logs/<process>.log;
    PIDs: TELEMETRY_DATA_DIR/serve.json."""
    from cli.env import apply_defaults

    apply_defaults()  # idempotent: sets PREFECT_HOME when `telemetry`'s callback did not
    settings = get_settings()
    data_dir = Path(settings.data_dir).resolve()
    api_port = api_port or settings.api_port
    busy = [p for p, wanted in ((prefect_port, True), (api_port, api)) if wanted
            and not _port_free(p)]
    if busy:
        console.print(f"[red]port {', '.join(map(str, busy))} on {HOST} is in use[/]: another "
                      "server? (--prefect-port, --api-port)")
        raise typer.Exit(2)
    with _single_instance(data_dir):
        code = _serve(data_dir, settings.reports_dir, api_port, prefect_port, worker=worker,
                      api=api, deploy=deploy, log_level=log_level, grace=grace,
                      startup_timeout=startup_timeout)
    raise typer.Exit(code)


def _serve(data_dir: Path, reports_dir: Path, api_port: int, prefect_port: int, *, worker: bool,
           api: bool, deploy: bool, log_level: str, grace: float, startup_timeout: float
           ) -> int:
    url = _prepare_database()
    prefect_home = Path(os.environ["PREFECT_HOME"]).resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    prefect_url = f"http://{HOST}:{prefect_port}"
    api_url = f"http://{HOST}:{api_port}"
    env = {**os.environ,
           "DATABASE_URL": url,
           "PREFECT_HOME": str(prefect_home),
           "PREFECT_API_URL": f"{prefect_url}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get(
               "PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
           "PREFECT_LOGGING_LEVEL": log_level.upper(),
           "TELEMETRY_PREFECT_UI_URL": os.environ.get("TELEMETRY_PREFECT_UI_URL", prefect_url),
           # prefect.yaml's pull step reads {{ $PWD }}: the repo root, wherever serve started.
           "PWD": str(PROJECT_ROOT)}
    if not worker:
        # Nobody would pick up a deployment run: the API's POST /runs runs flows itself.
        env.setdefault("TELEMETRY_API_RUN_MODE", "in-process")
    state_file = data_dir / "serve.json"
    logs_dir = data_dir / "logs"
    state: dict[str, object] = {"pid": os.getpid(), "ready": False,
                                "urls": {"prefect": prefect_url}}

    def save(sup: Supervisor) -> None:
        _write_state(state_file, {**state, "session": sup.session, "children": sup.pids()})

    sup = Supervisor(logs_dir, env, grace=grace, on_change=save)
    restore = sup.handle_signals()
    prefect = _executable("prefect")
    deadline = time.monotonic() + startup_timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    console.print(f"logs: {logs_dir}/<process>.log")
    code = 0
    try:
        server = sup.spawn(SERVER, [prefect, *server_args(HOST, prefect_port)])
        if api:
            # The API needs no Prefect server to start: both come up at once.
            api_child = sup.spawn(API, [_executable("telemetry"), "api", "--host", HOST,
                                        "--port", str(api_port)])
        took = sup.wait_for(SERVER, lambda: _http_ok(f"{prefect_url}/api/health"), left(),
                            server.log)
        console.print(f"prefect server: healthy in {took:.1f} s")
        if not _http_ok(f"{prefect_url}/api/work_pools/{POOL}"):
            sup.run_step(WORK_POOL, [prefect, *POOL_CREATE_ARGS], left())
        if deploy:
            deploying = sup.spawn(DEPLOY, [prefect, *DEPLOY_ARGS], one_shot=True)
        if worker:
            sup.spawn(WORKER, [prefect, *WORKER_ARGS])
        if deploy:
            took = sup.wait_for(DEPLOY, lambda: deploying.proc.poll() is not None, left(),
                                deploying.log)
            console.print(f"deployments: {_deployments(prefect_url)} registered in {took:.1f} s")
        if worker:
            sup.wait_for(WORKER, lambda: _pool_ready(prefect_url), left(),
                         sup.children[WORKER].log)
            console.print(f"worker: polling work pool {POOL!r}")
        if api:
            sup.wait_for(API, lambda: _http_ok(f"{api_url}/health"), left(), api_child.log)
            state["urls"] = {"prefect": prefect_url, "api": api_url}
        state["ready"] = True
        save(sup)
        _banner(api_url if api else None, prefect_url, reports_dir, logs_dir, sup)
        sup.watch()
    except StopRequested:
        console.print(f"\n{signal.Signals(sup.stop_signal or signal.SIGINT).name}: stopping…")
    except ChildFailed as exc:
        code = 1
        console.print(f"[red]{exc}[/]; stopping the rest. Last lines of {exc.log}:")
        if exc.log.is_file():
            console.print(_tail(exc.log), markup=False, soft_wrap=True)
    finally:
        started = time.monotonic()
        sup.stop_all()
        restore()
        state_file.unlink(missing_ok=True)
    console.print(f"all stopped in {time.monotonic() - started:.1f} s")
    return code


def _deployments(prefect_url: str) -> str:
    try:
        rows = httpx.post(f"{prefect_url}/api/deployments/filter", json={"limit": 200},
                          timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return "deployments"
    scheduled = sorted(d["name"] for d in rows if d.get("schedules"))
    return f"{len(rows)} ({len(scheduled)} scheduled: {', '.join(scheduled)})"


def _pool_ready(prefect_url: str) -> bool:
    """A worker's heartbeat turns its pool READY."""
    try:
        response = httpx.get(f"{prefect_url}/api/work_pools/{POOL}", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "READY"


def _banner(api_url: str | None, prefect_url: str, reports_dir: Path, logs_dir: Path,
            sup: Supervisor) -> None:
    rows = []
    if api_url:
        rows += [("dashboard", f"{api_url}/"), ("API docs", f"{api_url}/docs")]
    rows += [("Prefect UI", prefect_url),
             ("reports", f"{Path(reports_dir).resolve()}/index.html"),
             ("logs", f"{logs_dir}/{{{','.join(sup.children)}}}.log")]
    console.print("[bold green]telemetry serve is up[/] (pid "
                  f"{os.getpid()}):\n" + "\n".join(f"  {k:<11} {v}" for k, v in rows),
                  soft_wrap=True)
    if api_url and not get_settings().api_token:
        console.print("[yellow]API writes are refused[/]: set TELEMETRY_API_TOKEN to allow them")
    console.print(f"Other commands can use this Prefect server: export PREFECT_API_URL="
                  f"{prefect_url}/api\n[bold]Ctrl-C stops everything.[/]", soft_wrap=True)


if __name__ == "__main__":  # `python -m cli.serve` until `telemetry serve` is registered
    typer.run(serve)
