"""POST /api/v1/readings: devices send batches of readings.

Accepted rows go through core.loader.load_readings, once per request, like the pipeline's
batches (idempotent, quarantine, batch ledger, source 'api'). Rows refused before the loader
(not an object, wrong types, bad timestamps, unknown metric names, wrong units) are quarantined
in the same transaction and counted in the same ledger row. The response lists every refused
row with its index, field, rule and reason.

The loader is synchronous, so a request's parsing and loading run in a worker thread on a
connection from a small synchronous pool that lives with the app.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg
from fastapi import APIRouter, FastAPI, HTTPException, Request
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api import ingest_parse, metrics
from api.deps import Config, WriteAccess
from api.ingest_models import (
    IngestResult,
    Refusal,
    Rejection,
    read_body,
    reading_batch_schema,
)
from core import db, loader, online_store
from core.settings import Settings

STREAM = "api"


@dataclass
class _Loader:
    pool: ConnectionPool
    metrics: dict[str, tuple[int, str]] | None = None  # the metric registry, read once


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Settings = app.state.settings
    # Opened without waiting, like the app's async pool: the API starts while the database is
    # down, and requests get 503 until it is back.
    pool = ConnectionPool(db.database_url(), min_size=1, max_size=config.api_pool_size,
                          timeout=5.0, open=False, name="ingest")
    pool.open(wait=False)
    app.state.ingest = _Loader(pool)
    try:
        yield
    finally:
        pool.close()


router = APIRouter(prefix="/api/v1", tags=["ingestion"], lifespan=lifespan)


def _registry(state: _Loader, conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    if state.metrics is None:  # metrics change only with a migration
        state.metrics = online_store.metric_registry(conn)
    return state.metrics


def _loader_rejections(conn: psycopg.Connection, batch: ingest_parse.ParsedBatch,
                       result: loader.BatchResult, reference: pd.Timestamp) -> list[Rejection]:
    """Which rows the loader quarantined (it reports only counts), by request index."""
    explained = loader.explain_quarantined(conn, batch.frame, result, reference.to_pydatetime())
    return [Rejection(index=int(batch.positions[pos]), field=ingest_parse.LOADER_FIELDS[rule],
                      rule=rule, reason=reason)
            for pos, rule, reason in zip(explained["position"], explained["rule"],
                                         explained["reason"], strict=True)]


def _ingest(state: _Loader, config: Settings, body: bytes) -> IngestResult:
    started = time.perf_counter()
    rows = ingest_parse.decode(body, config.api_max_batch)
    reference = pd.Timestamp.now(tz="UTC")
    with state.pool.connection() as conn:
        registry = _registry(state, conn)
        batch = ingest_parse.parse(rows, registry, reference,
                                   pd.Timedelta(days=config.api_max_reading_age_days))
        with conn.transaction():
            result = loader.load_readings(batch.frame, source="api", stream=STREAM,
                                          reference_time=reference.to_pydatetime(),
                                          advance_watermark=False, conn=conn)
            if batch.refused:
                online_store.quarantine_refused(conn, result.batch_id,
                                                ingest_parse.quarantine_rows(batch, registry))
                online_store.add_refused_to_ledger(conn, result.batch_id, len(batch.refused))
            rejections = [Rejection(index=r.index, field=r.field, rule=r.rule, reason=r.reason)
                          for r in batch.refused]
            if result.rows_quarantined:
                rejections += _loader_rejections(conn, batch, result, reference)
    rejections.sort(key=lambda r: r.index)
    seconds = time.perf_counter() - started
    _count(result, batch, seconds)
    return IngestResult(batch_id=result.batch_id, received=len(rows), loaded=result.rows_loaded,
                        duplicate=result.rows_duplicate,
                        rejected=result.rows_quarantined + len(batch.refused),
                        rejections=rejections, seconds=round(seconds, 4))


def _count(result: loader.BatchResult, batch: ingest_parse.ParsedBatch, seconds: float) -> None:
    metrics.READINGS_INGESTED.inc(result.rows_loaded)
    by_rule = Counter(result.quarantined_by_rule) + Counter(r.rule for r in batch.refused)
    for rule, count in by_rule.items():
        metrics.READINGS_REJECTED.labels(rule).inc(count)
    metrics.BATCH_SECONDS.observe(seconds)


@router.post(
    "/readings", response_model=IngestResult, dependencies=[WriteAccess],
    openapi_extra={"requestBody": reading_batch_schema()},
    responses={401: {"description": "missing or wrong token"},
               403: {"description": "writes disabled (no token configured)"},
               413: {"model": Refusal, "description": "body or batch too large"},
               422: {"model": Refusal, "description": "the body is not a JSON list of readings"},
               503: {"description": "database unavailable"}})
async def post_readings(request: Request, config: Config) -> Any:
    """Load a batch of readings: `{"readings": [{"device_id", "metric", "ts", "value",
    "unit"?, "metadata"?}, ...]}`. Accepted rows are stored (re-sent ones count as duplicates
    and change nothing); refused ones are listed with index, field, rule and reason, and kept
    in telemetry.quarantine."""
    body = await read_body(request, config.api_max_body_bytes)
    try:
        return await run_in_threadpool(_ingest, request.app.state.ingest, config, body)
    except ingest_parse.BodyError as exc:
        raise HTTPException(exc.status, exc.detail) from None
