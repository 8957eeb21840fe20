"""Raw readings over a bounded time range (the KPI marts answer longer ranges)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from psycopg import AsyncConnection

from api import queries
from api.deps import Conn
from api.pagination import (
    DeviceId,
    Filters,
    From,
    Metric,
    PageParams,
    Site,
    To,
    Zone,
    bounded,
    decode_cursor,
    make_filters,
    page_of,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import Page, Reading, documented

router = APIRouter(prefix="/api/v1", tags=["readings"])

DEFAULT_SPAN = timedelta(hours=1)
MAX_SPAN = timedelta(hours=24)


async def readings_page(conn: AsyncConnection, filters: Filters, limit: int,
                        cursor: str | None) -> dict[str, Any]:
    """Shared by REST and GraphQL."""
    after = decode_cursor(cursor, "iit")
    newest = None
    if filters.start is None and filters.end is None:
        newest = await queries.data_end(conn)
        if newest is None:
            return {"items": [], "next_cursor": None}
    filters = bounded(filters, newest, DEFAULT_SPAN, MAX_SPAN)
    rows = await queries.readings(conn, filters, limit, after)
    return page_of(rows, limit, queries.READING_KEY)


@router.get("/readings", response_model=None, responses=documented(Page[Reading]))
async def list_readings(conn: Conn, page: PageParams, device_id: DeviceId = None,
                        metric: Metric = None, site: Site = None, zone: Zone = None,
                        start: From = None, end: To = None) -> FastJSONResponse:
    """Readings in [from, to), at most 24 hours, ordered by device, metric and time. Without
    from/to: the last hour of loaded data; with one of them: one hour from or to it."""
    filters = make_filters(device_id=device_id, metric=metric, site=site, zone=zone,
                           start=start, end=end)
    return respond(await readings_page(conn, filters, page.limit, page.cursor))
