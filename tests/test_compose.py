"""docker-compose.yml and the Dockerfile, without a Docker engine: the Compose specification's
schema (check-jsonschema's vendored copy), `docker-compose config` where it is installed, and
what neither checks: depends_on targets, the app image, loopback-only ports, and the same
commands and variable names as `make serve` (cli/serve.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cli import serve
from core.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
APP_SERVICES = {"prefect-server", "worker", "api"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_compose_specification_schema_accepts_it_and_would_refuse_a_mistake(tmp_path):
    done = check_jsonschema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy",
                                                  "condition: when_ready", 1))
    assert check_jsonschema(broken).returncode != 0  # the check is not vacuous


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_it_where_installed():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    done = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                          text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_four_services_depend_on_existing_healthy_services(services):
    assert set(services) == {"postgres", *APP_SERVICES}
    for name, service in services.items():
        for target, how in (service.get("depends_on") or {}).items():
            assert target in services and target != name, (name, target)
            assert how["condition"] in {"service_healthy", "service_started",
                                        "service_completed_successfully"}
            if how["condition"] == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), target
    assert services["worker"]["depends_on"].keys() == {"prefect-server", "api"}
    assert services["api"]["depends_on"].keys() == {"postgres"}


def test_postgres_has_a_healthcheck_and_a_named_volume(compose, services):
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    named = {v.split(":", 1)[0] for s in services.values() for v in s.get("volumes", [])
             if not v.startswith((".", "/"))}
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert named == set(compose["volumes"])  # every named volume is declared, none unused


def test_app_services_run_the_image_built_from_this_dockerfile(services):
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == "telemetry-pipeline:latest", name
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "pip install -c constraints.txt -r /tmp/requirements.txt" in text
    assert "[dev]" not in text and "optional-dependencies" not in text  # no dev extras
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".data", "reports/out", "dbt/target", "bench/out", ".git", ".env"} <= ignored


def test_every_runtime_dependency_of_the_image_is_pinned_in_constraints():
    """The image installs pyproject's dependencies under constraints.txt: their whole closure
    (as installed in this venv from the same file) must be pinned there, at those versions."""
    pins = dict(line.split("==", 1) for line in
                (PROJECT_ROOT / "constraints.txt").read_text().split() if "==" in line)
    pins = {canonicalize_name(k): v for k, v in pins.items()}
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    todo = [(Requirement(r), "") for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        assert pins.get(name) == metadata.version(req.name), f"{name} is not pinned"
        for wanted in ("", *sorted(req.extras)):
            key = f"{name}[{wanted}]"
            if key not in seen:
                seen.add(key)
                todo += [(Requirement(r), wanted)
                         for r in metadata.requires(req.name) or []]
    assert len({k.split("[")[0] for k in seen}) > 50  # the closure, not just the top level


def _published(service: dict) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def test_ports_are_published_on_loopback_only(services):
    published = {name: _published(s) for name, s in services.items()}
    assert published["api"] and published["prefect-server"]
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), (name, port)


def _env(service: dict) -> dict[str, str | None]:
    return service.get("environment") or {}


def test_the_same_commands_as_make_serve(services):
    server = services["prefect-server"]["command"]
    assert server == ["prefect", *serve.server_args("0.0.0.0", 4200)]
    assert "127.0.0.1:${TELEMETRY_PREFECT_PORT:-4200}:4200" in _published(
        services["prefect-server"])
    worker = " ".join(services["worker"]["command"])
    steps = [" ".join(("prefect", *args)) for args in
             (serve.POOL_CREATE_ARGS, serve.DEPLOY_ARGS, serve.WORKER_ARGS)]
    positions = [worker.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), worker
    api = " ".join(services["api"]["command"])
    assert api.index("telemetry db upgrade") < api.index("telemetry api --host 0.0.0.0")


def test_the_same_variables_as_make_serve(services):
    dockerfile_env = set(re.findall(r"^\s+(?:ENV )?([A-Z_]+)=", DOCKERFILE.read_text(), re.M))
    compose_env = {k for s in services.values() for k in _env(s)}
    assert set(serve.CHILD_ENV_NAMES) <= compose_env | dockerfile_env
    for name in ("worker", "api"):
        env = _env(services[name])
        assert env["DATABASE_URL"].endswith("@postgres:5432/telemetry")
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert _env(services["prefect-server"])["PREFECT_HOME"] == "/data/prefect"
    assert _env(services["api"])["TELEMETRY_PREFECT_UI_URL"] == \
        "http://127.0.0.1:${TELEMETRY_PREFECT_PORT:-4200}"
    # The host's port variables are make serve's: TELEMETRY_API_PORT and --prefect-port's.
    assert "127.0.0.1:${TELEMETRY_API_PORT:-8000}:8000" in _published(services["api"])
    # Every TELEMETRY_* name passed in is a real setting (a typo would be silently ignored).
    from core.settings import Settings

    known = {f"TELEMETRY_{f.upper()}" for f in Settings.model_fields}
    passed = {k for s in services.values() for k in _env(s) if k.startswith("TELEMETRY_")}
    assert passed <= known, passed - known


def test_the_api_token_comes_from_the_host_and_is_unset_otherwise(services):
    # No value: Compose passes the host's variable, or leaves it unset, and unset refuses
    # writes. A default such as ${TELEMETRY_API_TOKEN:-} would set an empty token instead.
    env = _env(services["api"])
    assert "TELEMETRY_API_TOKEN" in env and env["TELEMETRY_API_TOKEN"] is None
    assert "${TELEMETRY_API_TOKEN" not in COMPOSE.read_text()
    assert [n for n, s in services.items() if "TELEMETRY_API_TOKEN" in _env(s)] == ["api"]
