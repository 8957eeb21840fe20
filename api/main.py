"""The FastAPI app: `create_app()` (uvicorn --factory api.main:create_app).

The lifespan opens one async connection pool (without waiting for the database, so /health
answers while it is down); every module in api/routes/ adds its router; database outages
become 503s, oversized bodies 413s.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics, routes
from api.responses import FastJSONResponse
from core import db
from core.settings import Settings, get_settings

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


class LimitsAndTiming:
    """Refuse bodies declared larger than the limit (413) and time every request by route.

    Plain ASGI: Starlette's BaseHTTPMiddleware cost ~0.2 ms a request (a third of a
    small page's budget)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            response = FastJSONResponse({"detail": f"request body over {self.max_body_bytes}"
                                         " bytes: send smaller batches"}, status_code=413)
            await response(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Settings = app.state.settings
    # UTC sessions: "Z" times whatever the server's timezone setting says.
    session = {"autocommit": True, "options": "-c timezone=UTC"}
    pool = AsyncConnectionPool(db.database_url(), min_size=1, max_size=config.api_pool_size,
                               timeout=5.0, open=False, kwargs=session)
    await pool.open(wait=False)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


def _include_routes(app: FastAPI) -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(routes.__path__)):
        router = importlib.import_module(f"{routes.__name__}.{module}").router
        app.include_router(router)


def create_app(settings: Settings | None = None) -> FastAPI:
    config = settings or get_settings()
    app = FastAPI(title="telemetry-pipeline API", version="1",
                  description="Device telemetry: readings, KPIs, anomalies, alerts, quality, "
                  "drift and reports. Writes need `Authorization: Bearer <TELEMETRY_API_TOKEN>`.",
                  default_response_class=FastJSONResponse, lifespan=lifespan,
                  # FastAPI's native OpenTelemetry cost ~17% of a small page's CPU here, and
                  # /metrics already covers the API; TELEMETRY_API_OPENTELEMETRY=true turns it on.
                  telemetry={"tracing": config.api_opentelemetry,
                             "metrics": config.api_opentelemetry,
                             "logs": config.api_opentelemetry})
    app.state.settings = config
    if config.api_cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.api_cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization",
                                                                         "Content-Type"])

    app.add_middleware(LimitsAndTiming, max_body_bytes=config.api_max_body_bytes)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> FastJSONResponse:
        # the operator's side of a 503: which request, and the driver's or the pool's reason
        # (first line only: no query text; psycopg's messages carry no password)
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        log.warning("503 for %s %s: %s: %s", request.method, request.url.path,
                    type(exc).__name__, reason)
        return FastJSONResponse({"detail": "database unavailable, try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> FastJSONResponse:
        # orjson writes NaN/inf in echoed input as null; Starlette's JSON refuses them (a 500).
        return FastJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    _include_routes(app)
    return app
