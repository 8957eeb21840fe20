"""Operations: /health (process up), /ready (database reachable, migrations at head),
/metrics (Prometheus exposition)."""

from __future__ import annotations

from functools import lru_cache

from alembic.script import ScriptDirectory
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from api import metrics, queries
from api.deps import Config, Conn
from api.responses import FastJSONResponse
from core.migrate import alembic_config

router = APIRouter(tags=["operations"])


@lru_cache(maxsize=1)
def _head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/db")).get_current_head()


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (no database access)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "database down or not migrated"}})
async def ready(conn: Conn) -> Response:
    """The database answers and its schema is at the migrations' head."""
    current = await queries.schema_revision(conn)
    head = _head_revision()
    body = {"database": "ok", "revision": current, "head": head}
    if current != head:
        return FastJSONResponse({**body, "status": "migrations pending: telemetry db upgrade"},
                                status_code=503)
    return FastJSONResponse({**body, "status": "ready"})


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(conn: Conn, config: Config) -> Response:
    """Prometheus text format; gauges are read from the database at scrape time."""
    open_by_severity, active = await queries.metric_gauges(conn, config.dbt_schema)
    for severity in ("low", "medium", "high", "critical"):
        metrics.ALERTS_OPEN.labels(severity).set(open_by_severity.get(severity, 0))
    metrics.ACTIVE_DEVICES.set(active)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
