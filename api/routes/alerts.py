"""Alerts: the list (newest first) and one alert. Acknowledge/resolve and the live stream are
in alert_actions.py (registered first, so /alerts/stream is not read as an alert id)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from psycopg import AsyncConnection

from api import queries
from api.deps import Conn
from api.pagination import (
    AlertState,
    DeviceId,
    Filters,
    From,
    Metric,
    Order,
    PageParams,
    SeverityQ,
    Site,
    To,
    Zone,
    decode_cursor,
    make_filters,
    page_of,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import Alert, AlertDetail, Page, documented

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Kind = Literal["device", "data"]


async def alerts_page(conn: AsyncConnection, filters: Filters, limit: int, cursor: str | None,
                      order: str = "desc", kind: str | None = None) -> dict[str, Any]:
    """Shared by REST and GraphQL."""
    after = decode_cursor(cursor, "i")
    rows = await queries.alerts(conn, filters, limit, after, desc=order == "desc", kind=kind)
    return page_of(rows, limit, queries.ALERT_KEY)


@router.get("/alerts", response_model=None, responses=documented(Page[Alert]))
async def list_alerts(
    conn: Conn, page: PageParams,
    state: Annotated[AlertState | None, Query(description="open = pending or firing.")] = None,
    severity: SeverityQ = None, device_id: DeviceId = None, metric: Metric = None,
    site: Site = None, zone: Zone = None,
    kind: Annotated[Kind | None, Query(description="device, or data (quality checks).")] = None,
    start: From = None, end: To = None,
    order: Annotated[Order, Query(description="By alert id (creation order).")] = "desc",
) -> FastJSONResponse:
    """Alerts opened in [from, to), newest first by default."""
    filters = make_filters(state=state, severity=severity, device_id=device_id, metric=metric,
                           site=site, zone=zone, start=start, end=end)
    return respond(await alerts_page(conn, filters, page.limit, page.cursor, order, kind))


@router.get("/alerts/{alert_id}", response_model=None,
            responses={**documented(AlertDetail), 404: {"description": "no such alert"}})
async def get_alert(conn: Conn, alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
                    ) -> FastJSONResponse:
    """One alert, with its peak time, the detectors that fired and their contributions."""
    alert = await queries.alert(conn, alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return respond(alert)
