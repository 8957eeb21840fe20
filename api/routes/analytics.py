"""Dataset analytics, computed in SQL and bounded: a per-metric summary from the hourly KPI
mart, top-k groups by anomalous points, and a histogram of raw values."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api import queries
from api.deps import Conn
from api.pagination import (
    MAX_TEXT,
    TEXT,
    AppConfig,
    DeviceId,
    From,
    Metric,
    SeverityQ,
    Site,
    To,
    Zone,
    bounded,
    make_filters,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import Bin, MetricSummary, Page, TopK, documented

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

HISTOGRAM_DEFAULT = timedelta(hours=24)
HISTOGRAM_MAX = timedelta(days=7)


@router.get("/summary", response_model=None, responses=documented(Page[MetricSummary]))
async def summary(conn: Conn, config: AppConfig, site: Site = None, zone: Zone = None,
                  device_id: DeviceId = None, metric: Metric = None, start: From = None,
                  end: To = None) -> FastJSONResponse:
    """Per metric over the hourly windows starting in [from, to): devices, windows, readings,
    pooled mean and standard deviation, min, max, breaches, completeness, first and last
    window."""
    filters = make_filters(site=site, zone=zone, device_id=device_id, metric=metric,
                           start=start, end=end)
    rows = await queries.summary(conn, config.dbt_schema, filters)
    return respond({"items": rows, "next_cursor": None})


@router.get("/topk", response_model=None, responses=documented(Page[TopK]))
async def topk(
    conn: Conn,
    by: Annotated[Literal["device", "site", "zone", "anomaly_type"], Query(description=(
        "Group anomalous points by device, site, zone (site/zone) or the simulator's "
        "anomaly type of the label covering them ('unlabeled' when none)."))],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    site: Site = None, zone: Zone = None, device_id: DeviceId = None, metric: Metric = None,
    severity: SeverityQ = None, start: From = None, end: To = None,
) -> FastJSONResponse:
    """The k groups with the most anomalous points in [from, to)."""
    filters = make_filters(site=site, zone=zone, device_id=device_id, metric=metric,
                           severity=severity, start=start, end=end)
    rows = await queries.topk(conn, by, filters, k)
    return respond({"items": rows, "next_cursor": None})


@router.get("/histogram", response_model=None, responses=documented(Page[Bin]))
async def histogram(
    conn: Conn,
    metric: Annotated[str, Query(max_length=MAX_TEXT, pattern=TEXT, description="Metric name.")],
    bins: Annotated[int, Query(ge=1, le=200)] = 20,
    site: Site = None, zone: Zone = None, device_id: DeviceId = None, start: From = None,
    end: To = None,
) -> FastJSONResponse:
    """Equal-width histogram of raw reading values over [min, max] in [from, to) (at most 7
    days; without from/to the last 24 hours of loaded data)."""
    filters = make_filters(site=site, zone=zone, device_id=device_id, metric=metric,
                           start=start, end=end)
    newest = None
    if filters.start is None and filters.end is None:
        newest = await queries.data_end(conn)
        if newest is None:
            return respond({"items": [], "next_cursor": None})
    filters = bounded(filters, newest, HISTOGRAM_DEFAULT, HISTOGRAM_MAX)
    rows = await queries.histogram(conn, filters, bins)
    return respond({"items": rows, "next_cursor": None})
