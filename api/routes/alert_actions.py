"""People acting on alerts (POST /alerts/{id}/ack, /resolve) and the live feed of alert changes
(GET /alerts/stream, server-sent events).

Acknowledging and resolving go through core.alerting, the same alert machine the scoring flow
drives, so the machine's memory and the alert row change together; the answer is the alert as
GET /alerts/{alert_id} returns it.

The stream polls telemetry.alerts by updated_at. updated_at is the writing transaction's
start time, so a long transaction can commit a change stamped before changes already sent:
each poll re-reads a lookback window and sends what it has not sent yet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Header, HTTPException, Path, Request
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api import queries
from api.deps import Config, Conn, WriteAccess
from api.ingest_models import AlertAction, Refusal, body_schema, read_model
from api.responses import OPTIONS
from api.schemas import AlertDetail, documented
from core import alerting, online_store
from core.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]
LOOKBACK = timedelta(minutes=2)  # longer than a scoring transaction is expected to run
RETRY_MS = 3000
_streams_lock = threading.Lock()


def open_streams(app: Any) -> int:
    """Alert streams this app is serving now (tests check that a disconnect ends one)."""
    return getattr(app.state, "open_streams", 0)


def _count_stream(app: Any, delta: int) -> None:
    # Per app, not per process: a stream of another app in the process (a test's, ending
    # late on its own event loop) must not move this one's count. Under a lock: servers in
    # several threads may share an app, and `+=` is not atomic.
    with _streams_lock:
        app.state.open_streams = open_streams(app) + delta


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **documented(AlertDetail),
    401: {"description": "missing or wrong token"},
    403: {"description": "writes disabled (no token configured)"},
    404: {"description": "no such alert"},
    409: {"description": "the alert is not open (already resolved)"},
    422: {"model": Refusal, "description": "a bad alert_id, or a body that is not JSON or not"
          " an AlertAction"},
}


async def _act(request: Request, conn: Any, config: Settings, alert_id: int,
               action: Any) -> dict[str, Any]:
    body = await read_model(request, AlertAction, config.api_max_body_bytes)
    try:
        await run_in_threadpool(action, alert_id, body.by.strip(), body.note)
    except alerting.AlertNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except alerting.AlertClosedError as exc:
        raise HTTPException(409, str(exc)) from None
    row = await queries.alert(conn, alert_id)
    assert row is not None
    return row


@router.post("/alerts/{alert_id}/ack", response_model=None, dependencies=[WriteAccess],
             openapi_extra={"requestBody": body_schema(AlertAction)},
             responses=_ACTION_RESPONSES)
async def acknowledge(alert_id: AlertId, request: Request, conn: Conn, config: Config) -> Any:
    """Acknowledge an open alert: it stays open; who (`by`) and why (`note`) are recorded."""
    return await _act(request, conn, config, alert_id, alerting.acknowledge_alert)


@router.post("/alerts/{alert_id}/resolve", response_model=None,
             dependencies=[WriteAccess], openapi_extra={"requestBody": body_schema(AlertAction)},
             responses=_ACTION_RESPONSES)
async def resolve(alert_id: AlertId, request: Request, conn: Conn, config: Config) -> Any:
    """Resolve an open alert by hand (a cooldown starts before its key can alert again)."""
    return await _act(request, conn, config, alert_id, alerting.resolve_alert)


def _event_id(updated_at: datetime, alert_id: int) -> str:
    return f"{int(updated_at.timestamp() * 1_000_000)}:{alert_id}"


def _cursor(last_event_id: str | None) -> tuple[int, int] | None:
    """(microseconds, alert_id) from a Last-Event-ID; None when absent or not ours."""
    try:
        micros, alert_id = (last_event_id or "").split(":")
        return int(micros), int(alert_id)
    except ValueError:
        return None


def _event(row: dict[str, Any]) -> bytes:
    payload = {k: v for k, v in row.items() if k != "updated_at"}
    return (f"id: {_event_id(row['updated_at'], row['alert_id'])}\nevent: alert\n"
            f"data: ").encode() + orjson.dumps(payload, option=OPTIONS) + b"\n\n"


class _Feed:
    """What the stream has sent: alert_id -> updated_at, within the lookback window."""

    def __init__(self, after: tuple[int, int] | None) -> None:
        self.after = after  # a resumed stream sends what is newer than its Last-Event-ID
        self.sent: dict[int, datetime] = {}
        self.high: datetime | None = None

    def since(self, db_now: datetime) -> datetime:
        return (self.high or db_now) - LOOKBACK

    def take(self, rows: list[dict[str, Any]], prime: bool) -> list[dict[str, Any]]:
        """Rows not sent yet. Priming (a fresh stream) only remembers what already exists."""
        out = []
        for row in rows:
            key, stamp = row["alert_id"], row["updated_at"]
            self.high = max(self.high or stamp, stamp)
            if self.sent.get(key) == stamp:
                continue
            self.sent[key] = stamp
            micros = int(stamp.timestamp() * 1_000_000)
            if prime and (self.after is None or (micros, key) <= self.after):
                continue
            out.append(row)
        if self.high is not None:
            floor = self.high - LOOKBACK
            self.sent = {k: v for k, v in self.sent.items() if v >= floor}
        return out


async def _poll(request: Request, feed: _Feed, prime: bool) -> list[dict[str, Any]]:
    try:
        async with request.app.state.pool.connection() as conn:
            now = await online_store.database_now(conn)
            rows = await online_store.alerts_changed_since(conn, feed.since(now))
    except (psycopg.OperationalError, PoolTimeout):
        log.warning("alert stream: database unavailable, retrying")
        return []
    return feed.take(rows, prime)


async def _events(request: Request, config: Settings, after: tuple[int, int] | None
                  ) -> AsyncIterator[bytes]:
    _count_stream(request.app, 1)
    try:
        # A resumed stream starts after its Last-Event-ID, a fresh one from what exists now:
        # read before the first byte, so a change a client makes after seeing it is sent.
        feed = _Feed(after)
        if after is not None:
            feed.high = datetime.fromtimestamp(after[0] / 1_000_000, tz=UTC)
        missed = await _poll(request, feed, prime=True)
        yield f"retry: {RETRY_MS}\n: alert changes as they happen\n\n".encode()
        for row in missed:
            yield _event(row)
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            await asyncio.sleep(config.sse_poll_seconds)
            rows = await _poll(request, feed, prime=False)
            for row in rows:
                yield _event(row)
            if rows:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= config.sse_heartbeat_seconds:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
    finally:
        _count_stream(request.app, -1)


@router.get("/alerts/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: alert` per created or changed alert"}})
async def alert_stream(request: Request, config: Config,
                       last_event_id: Annotated[str | None, Header()] = None
                       ) -> StreamingResponse:
    """Server-sent events: one `event: alert` (the alert as GET /alerts/{id} returns it)
    whenever an alert is created or changes. Reconnecting with Last-Event-ID resumes after
    that event; comment lines are heartbeats."""
    return StreamingResponse(_events(request, config, _cursor(last_event_id)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
