"""The batch ledger: every load (simulated, backfilled, posted, CSV), newest first."""

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
from api.schemas import Page, Run, documented

router = APIRouter(prefix="/api/v1", tags=["runs"])


@router.get("/runs", response_model=None, responses=documented(Page[Run]))
async def list_runs(
    conn: Conn, page: PageParams,
    source: Annotated[Literal["simulator", "api", "csv", "backfill"] | None, Query()] = None,
    stream: Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT)] = None,
    status: Annotated[Literal["running", "succeeded", "failed"] | None, Query(
        description="running: still loading, or not yet seen to have been interrupted.")] = None,
    quality: Annotated[Literal["passed", "warning", "error"] | None, Query(
        description="The batch's data-quality verdict.")] = None,
    start: From = None, end: To = None,
) -> FastJSONResponse:
    """Batches started in [from, to): rows received, loaded, duplicate and quarantined,
    status, quality verdict and seconds per stage."""
    times = make_filters(start=start, end=end)
    filters = {"source": source, "stream": stream, "status": status, "quality": quality,
               "start": times.start, "end": times.end}
    after = decode_cursor(page.cursor, "i")
    rows = await queries.runs(conn, filters, page.limit, after)
    return respond(page_of(rows, page.limit, ("batch_id",)))
