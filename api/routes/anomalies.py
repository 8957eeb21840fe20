"""Anomalies: scored points at or above their detector's threshold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg import AsyncConnection

from api import queries
from api.deps import Conn
from api.pagination import (
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
from api.schemas import Anomaly, Page, documented

router = APIRouter(prefix="/api/v1", tags=["anomalies"])


async def anomalies_page(conn: AsyncConnection, filters: Filters, limit: int,
                         cursor: str | None, order: str = "desc") -> dict[str, Any]:
    """Shared by REST and GraphQL."""
    after = decode_cursor(cursor, "tiss")
    rows = await queries.anomalies(conn, filters, limit, after, desc=order == "desc")
    return page_of(rows, limit, queries.ANOMALY_KEY)


@router.get("/anomalies", response_model=None, responses=documented(Page[Anomaly]))
async def list_anomalies(
    conn: Conn, page: PageParams, device_id: DeviceId = None, metric: Metric = None,
    site: Site = None, zone: Zone = None, severity: SeverityQ = None, start: From = None,
    end: To = None, order: Annotated[Order, Query(description="By time.")] = "desc",
) -> FastJSONResponse:
    """Anomalous points (score >= 1, the detector's threshold) with value, baseline mean and
    standard deviation, score, severity and detector; newest first by default."""
    filters = make_filters(device_id=device_id, metric=metric, site=site, zone=zone,
                           severity=severity, start=start, end=end)
    return respond(await anomalies_page(conn, filters, page.limit, page.cursor, order))
