"""KPIs per device, metric and window from the dbt marts (5 min, 15 min, 1 h)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api import queries
from api.deps import Conn
from api.pagination import (
    AppConfig,
    DeviceId,
    FilterError,
    Filters,
    From,
    Metric,
    Order,
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
from api.schemas import HeatmapCell, Kpi, Page, documented

router = APIRouter(prefix="/api/v1", tags=["kpis"])


@router.get("/kpis", response_model=None, responses=documented(Page[Kpi]))
async def list_kpis(
    conn: Conn, config: AppConfig, page: PageParams,
    grain: Annotated[Literal["5m", "15m", "1h"], Query(description="Window size.")] = "5m",
    device_id: DeviceId = None, metric: Metric = None, site: Site = None, zone: Zone = None,
    start: From = None, end: To = None,
    order: Annotated[Order, Query(description="By window start.")] = "asc",
) -> FastJSONResponse:
    """KPI windows starting in [from, to), ordered by window start, device and metric."""
    filters = make_filters(device_id=device_id, metric=metric, site=site, zone=zone,
                           start=start, end=end)
    after = decode_cursor(page.cursor, "tii")
    rows = await queries.kpis(conn, config.dbt_schema, grain, filters, page.limit, after,
                              desc=order == "desc")
    return respond(page_of(rows, page.limit, queries.KPI_KEY))


HEATMAP_DEFAULT = timedelta(hours=24)
HEATMAP_MAX = timedelta(days=7)


def _whole_hours(filters: Filters) -> Filters:
    """[from, to) widened to whole UTC hours (the heatmap's cells)."""
    assert filters.start is not None and filters.end is not None
    start = filters.start.replace(minute=0, second=0, microsecond=0)
    end = filters.end.replace(minute=0, second=0, microsecond=0)
    if end < filters.end:
        try:
            end += timedelta(hours=1)
        except OverflowError:
            raise FilterError("to", "out of range", filters.end.isoformat()) from None
    return replace(filters, start=start, end=end)


@router.get("/heatmap", response_model=None, responses=documented(Page[HeatmapCell]))
async def heatmap(conn: Conn, config: AppConfig, page: PageParams, site: Site = None,
                  zone: Zone = None, start: From = None, end: To = None) -> FastJSONResponse:
    """Per site, zone and hour: KPI health, alerts opened and anomalous points. The range is
    widened to whole hours, at most 7 days; without from/to, the 24 hours up to the newest
    KPI window."""
    filters = make_filters(site=site, zone=zone, start=start, end=end)
    after = decode_cursor(page.cursor, "sst")
    newest = None
    if filters.start is None and filters.end is None:
        newest = await queries.kpi_end(conn, config.dbt_schema)
        if newest is None:
            return respond({"items": [], "next_cursor": None})
    filters = _whole_hours(bounded(filters, newest, HEATMAP_DEFAULT, HEATMAP_MAX))
    rows = await queries.heatmap(conn, config.dbt_schema, filters, page.limit, after)
    return respond(page_of(rows, page.limit, queries.HEATMAP_KEY))
