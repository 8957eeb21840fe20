"""Run the dbt project (dbt/) in-process against the resolved database.

`run_dbt(["build", "--select", "tag:kpi"])` points dbt's committed profiles.yml at the same
database as everything else (DATABASE_URL or the embedded server) through TELEMETRY_DBT_*
variables, passes settings.late_horizon_minutes as a var, and returns a `DbtRun`; a failed run
or a failed connection raises `DbtError`. No Prefect here: flows wrap this in a task.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.db import conninfo_params
from core.settings import get_settings

log = logging.getLogger(__name__)

# Node statuses that make a run fail (RunStatus / TestStatus values).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})

_lock = threading.Lock()  # dbt keeps global state: one invocation per process at a time


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str | None = None
    rows_affected: int | None = None
    failures: int | None = None  # failing rows of a test
    execution_time: float = 0.0
    failures_table: str | None = None  # where a store_failures test kept its failing rows

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class DbtRun:
    args: list[str]
    success: bool
    results: list[NodeResult] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.results if r.failed]

    def result(self, name: str) -> NodeResult:
        """The result of a node by unique_id or by its last dotted part (model name)."""
        for r in self.results:
            if name in (r.unique_id, r.unique_id.rsplit(".", 1)[-1]):
                return r
        raise KeyError(name)


class DbtError(RuntimeError):
    """dbt failed: nodes errored or failed, or it could not run at all (e.g. no connection)."""

    def __init__(self, message: str, run: DbtRun | None = None) -> None:
        super().__init__(message)
        self.run = run

    @property
    def failed(self) -> list[NodeResult]:
        return self.run.failed if self.run else []


def dbt_env() -> dict[str, str]:
    """The TELEMETRY_DBT_* variables profiles.yml reads, for the resolved database."""
    settings = get_settings()
    params = conninfo_params()
    return {
        "TELEMETRY_DBT_HOST": params.get("host") or "localhost",
        "TELEMETRY_DBT_PORT": params.get("port") or "5432",
        "TELEMETRY_DBT_USER": params.get("user") or "postgres",
        "TELEMETRY_DBT_PASSWORD": params.get("password") or "",
        "TELEMETRY_DBT_DBNAME": params.get("dbname") or "postgres",
        "TELEMETRY_DBT_SCHEMA": settings.dbt_schema,
        "TELEMETRY_DBT_THREADS": str(settings.dbt_threads),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _node_result(item: Any) -> NodeResult:
    adapter_response = getattr(item, "adapter_response", None) or {}
    rows = adapter_response.get("rows_affected") if isinstance(adapter_response, dict) else None
    node = item.node
    stored = node.resource_type == "test" and getattr(node.config, "store_failures", False)
    return NodeResult(
        unique_id=item.node.unique_id,
        status=str(getattr(item.status, "value", item.status)),
        message=item.message,
        rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
        failures=item.failures,
        execution_time=float(item.execution_time or 0.0),
        failures_table=getattr(node, "relation_name", None) if stored else None,
    )


def _describe(failures: list[NodeResult]) -> str:
    lines = []
    for r in failures:
        line = f"  {r.unique_id}: {r.status}: {(r.message or '').strip()}"
        if r.failures and r.failures_table:
            line += f"; the failing rows: select * from {r.failures_table}"
        lines.append(line)
    return "\n".join(lines)


def _split_vars(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """`args` without `--vars X` / `--vars=X`, and X parsed (YAML, as dbt reads it)."""
    import yaml

    rest: list[str] = []
    found: dict[str, Any] = {}
    it = iter(args)
    for arg in it:
        if arg == "--vars" or arg.startswith("--vars="):
            text = arg.partition("=")[2] if "=" in arg else next(it, "")
            parsed = yaml.safe_load(text) or {}
            if not isinstance(parsed, dict):
                raise DbtError(f"--vars must be a YAML mapping, e.g. '{{test_all_rows: true}}',"
                               f" not {text!r}")
            found.update(parsed)
        else:
            rest.append(arg)
    return rest, found


def run_dbt(args: list[str], *, vars: dict[str, Any] | None = None,
            rebuild_from: datetime | None = None, quiet: bool = True) -> DbtRun:
    """Invoke dbt (e.g. `["build", "--select", "tag:kpi"]`) in this process.

    `vars`, and a `--vars` in `args` (the CLI passes dbt's own), are merged over the defaults
    (late_horizon_minutes from settings): dbt takes one --vars. `rebuild_from` moves the
    incremental marts' lookback back to that time (macros/kpi.sql), like var('rebuild_from'),
    but through an environment variable: a change of --vars makes dbt re-parse the whole
    project (~0.5 s), and the micro-batch's bound changes every minute. Raises DbtError when
    dbt fails, with the failing nodes and their messages.
    """
    from dbt.cli.main import dbtRunner  # heavy import: only when dbt actually runs

    settings = get_settings()
    project_dir = Path(settings.dbt_project_dir).resolve()
    target_dir = Path(settings.dbt_target_dir).resolve()
    args, given_vars = _split_vars(args)
    all_vars = {"late_horizon_minutes": settings.late_horizon_minutes, **given_vars,
                **(vars or {})}
    argv = [
        *args,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(target_dir / "logs"),
        "--vars",
        json.dumps(all_vars, sort_keys=True),
    ]
    if quiet:
        argv[:0] = ["--quiet", "--no-use-colors"]  # errors are still printed
    env = {**dbt_env(),
           "TELEMETRY_DBT_REBUILD_FROM": rebuild_from.isoformat() if rebuild_from else ""}

    started = time.perf_counter()
    with _lock, _environ(env):
        res = dbtRunner().invoke(argv)
    elapsed = time.perf_counter() - started

    items = getattr(res.result, "results", None) or []  # RunExecutionResult for run/build/test
    results = [_node_result(i) for i in items if getattr(i, "node", None) is not None]
    run = DbtRun(list(args), bool(res.success), results, elapsed)
    log.info("dbt %s: success=%s in %.2fs", " ".join(args), run.success, elapsed)

    if res.exception is not None:
        where = (
            f"{env['TELEMETRY_DBT_HOST']}:{env['TELEMETRY_DBT_PORT']}/{env['TELEMETRY_DBT_DBNAME']}"
        )
        raise DbtError(
            f"dbt {' '.join(args)} could not run ({where}): "
            f"{type(res.exception).__name__}: {res.exception}",
            run,
        ) from res.exception
    if not run.success or run.failed:
        failed = run.failed
        detail = _describe(failed) if failed else "  (no failing node reported)"
        raise DbtError(f"dbt {' '.join(args)} failed ({len(failed)} nodes):\n{detail}", run)
    return run
