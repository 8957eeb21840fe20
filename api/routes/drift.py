"""Drift results (Evidently) per tested period, site and metric."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import queries
from api.deps import Conn
from api.pagination import (
    MAX_TEXT,
    TEXT,
    From,
    Metric,
    PageParams,
    To,
    decode_cursor,
    make_filters,
    page_of,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import DriftResult, Page, documented

router = APIRouter(prefix="/api/v1", tags=["drift"])


@router.get("/drift", response_model=None, responses=documented(Page[DriftResult]))
async def list_drift(
    conn: Conn, page: PageParams,
    site: Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description=(
        "A site, or 'all' for the whole fleet."))] = None,
    metric: Metric = None,
    drifted: Annotated[bool | None, Query()] = None,
    start: From = None, end: To = None,
) -> FastJSONResponse:
    """Results whose tested period overlaps [from, to), newest first."""
    times = make_filters(start=start, end=end)
    filters = {"site": site, "metric": metric, "drifted": drifted, "start": times.start,
               "end": times.end}
    after = decode_cursor(page.cursor, "i")
    rows = await queries.drift(conn, filters, page.limit, after)
    return respond(page_of(rows, page.limit, ("drift_id",)))
