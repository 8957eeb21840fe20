"""Great Expectations results: one row per expectation per validated target."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api import queries
from api.deps import Conn
from api.pagination import (
    MAX_TEXT,
    TEXT,
    From,
    PageParams,
    To,
    decode_cursor,
    make_filters,
    page_of,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import Page, QualityResult, documented

router = APIRouter(prefix="/api/v1", tags=["quality"])


@router.get("/quality", response_model=None, responses=documented(Page[QualityResult]))
async def list_quality(
    conn: Conn, page: PageParams,
    suite: Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description=(
        "raw_batch, kpi or scores."))] = None,
    severity: Annotated[Literal["warning", "error"] | None, Query()] = None,
    success: Annotated[bool | None, Query(description="false = failed expectations.")] = None,
    batch_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    start: From = None, end: To = None,
) -> FastJSONResponse:
    """Results validated in [from, to), newest first."""
    times = make_filters(start=start, end=end)
    filters = {"suite": suite, "severity": severity, "success": success, "batch_id": batch_id,
               "start": times.start, "end": times.end}
    after = decode_cursor(page.cursor, "i")
    rows = await queries.quality(conn, filters, page.limit, after)
    return respond(page_of(rows, page.limit, ("result_id",)))
