"""Dependencies shared by the routes: settings, a pooled database connection, the write token."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from core.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False, description="TELEMETRY_API_TOKEN")


def settings() -> Settings:
    return get_settings()


async def connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection from the app's pool, returned to it after the request."""
    async with request.app.state.pool.connection() as conn:
        yield conn


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    config: Annotated[Settings, Depends(settings)],
) -> None:
    """Write endpoints: the bearer token from settings, compared in constant time. The token
    itself is never logged or echoed."""
    if config.api_token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "writes are disabled: set TELEMETRY_API_TOKEN on the server")
    supplied = credentials.credentials if credentials else ""
    if not secrets.compare_digest(supplied.encode(), config.api_token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


Conn = Annotated[AsyncConnection, Depends(connection)]
Config = Annotated[Settings, Depends(settings)]
WriteAccess = Depends(require_token)
