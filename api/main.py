"""The FastAPI app: `create_app()` (uvicorn --factory api.main:create_app).

The lifespan opens one async connection pool (without waiting for the database, so /health
answers while it is down); every module in api/routes/ adds its router; database outages
become 503s, oversized bodies 413s.
"""

from __future__ import annotations

import importlib
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
from starlette.responses import Response

from api import metrics, routes
from api.responses import FastJSONResponse
from core import db
from core.settings import Settings, get_settings

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Settings = app.state.settings
    pool = AsyncConnectionPool(db.database_url(), min_size=1, max_size=config.api_pool_size,
                               timeout=5.0, open=False, kwargs={"autocommit": True})
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
                  default_response_class=FastJSONResponse, lifespan=lifespan)
    app.state.settings = config
    if config.api_cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.api_cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization",
                                                                         "Content-Type"])

    @app.middleware("http")
    async def limits_and_timing(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.api_max_body_bytes:
            return FastJSONResponse({"detail": f"request body over {config.api_max_body_bytes}"
                                     " bytes: send smaller batches"}, status_code=413)
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUEST_SECONDS.labels(request.method, getattr(route, "path", "unmatched"),
                                       str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> FastJSONResponse:
        return FastJSONResponse({"detail": "database unavailable, try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> FastJSONResponse:
        # orjson writes NaN/inf in echoed input as null; Starlette's JSON refuses them (a 500).
        return FastJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    _include_routes(app)
    return app
