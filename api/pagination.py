"""Query parameters shared by the read endpoints: filters, pages and opaque cursors.

A filter that cannot be right (from after to, a range too long, a cursor from elsewhere) is a
`FilterError` naming its field; REST turns it into the same 422 FastAPI gives for a bad type,
GraphQL into an error on the field, so both APIs refuse the same inputs the same way.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from api.responses import FastJSONResponse
from core.settings import Settings, get_settings

# Text filters: no NUL (PostgreSQL text cannot hold it) and a sane length; anything else is a
# plain bound value that simply matches nothing.
TEXT = r"^[^\x00]*$"
MAX_TEXT = 200
INT4_MAX = 2**31 - 1

Severity = Literal["low", "medium", "high", "critical"]
AlertState = Literal["open", "pending", "firing", "resolved"]
Order = Literal["asc", "desc"]


class FilterError(RequestValidationError):
    """A bad value of one query parameter: FastAPI answers 422 in its own error format."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__([{"type": "value_error", "loc": ("query", field), "msg": message,
                           "input": value}])
        self.field, self.problem = field, message

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class MartsNotBuilt(HTTPException):
    """The dbt marts a query reads do not exist yet (a fresh database before its first run)."""

    def __init__(self) -> None:
        super().__init__(503, "the KPI marts are not built yet: run `telemetry dbt build` or"
                         " wait for the first micro-batch", headers={"Retry-After": "60"})


@dataclass(frozen=True, slots=True)
class Filters:
    site: str | None = None
    zone: str | None = None
    device_id: int | None = None
    metric: str | None = None
    severity: str | None = None
    state: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def present(self) -> tuple[str, ...]:
        """Names of the filters that are set: the shape of the SQL (cached per shape)."""
        return tuple(name for name in self.__slots__ if getattr(self, name) is not None)

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def utc(value: datetime | None, field: str = "from") -> datetime | None:
    """In UTC; times without an offset are read as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise FilterError(field, "out of range", value.isoformat()) from None


def make_filters(*, site: str | None = None, zone: str | None = None,
                 device_id: int | None = None, metric: str | None = None,
                 severity: str | None = None, state: str | None = None,
                 start: datetime | None = None, end: datetime | None = None) -> Filters:
    start, end = utc(start, "from"), utc(end, "to")
    if start is not None and end is not None and start >= end:
        raise FilterError("to", "must be later than from", end.isoformat())
    return Filters(site, zone, device_id, metric, severity, state, start, end)


def bounded(filters: Filters, default_end: datetime | None, default_span: timedelta,
            max_span: timedelta) -> Filters:
    """A time range of at most `max_span`: missing ends default to [end - default_span, end),
    where end defaults to `default_end` (the newest data, so a history in the past still
    answers)."""
    end = filters.end
    if end is None:
        if filters.start is not None:
            end = _plus(filters.start, default_span)
        elif default_end is None:
            raise ValueError("bounded() needs default_end when neither from nor to is given")
        else:
            end = default_end
    start = filters.start or _plus(end, -default_span)
    if start >= end:
        raise FilterError("from", "must be earlier than to", start.isoformat())
    if end - start > max_span:
        raise FilterError("from", f"the range from..to is at most {_describe(max_span)}",
                          start.isoformat())
    return replace(filters, start=start, end=end)


def _plus(when: datetime, span: timedelta) -> datetime:
    try:
        return when + span
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if span > timedelta(0) else \
            datetime.min.replace(tzinfo=UTC)


def _describe(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"


# ---------------------------------------------------------------------------------------------
# Cursors: the last row's sort key, as base64url JSON. Kinds: "t" time, "i" int, "s" text.

def encode_cursor(values: tuple[Any, ...]) -> str:
    raw = orjson.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, kinds: str) -> tuple[Any, ...] | None:
    if not cursor:  # absent or `cursor=`: the first page
        return None
    bad = FilterError("cursor", "not a cursor of this list: pass next_cursor unchanged", cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise bad
    out: list[Any] = []
    for kind, value in zip(kinds, values, strict=True):
        if kind == "t" and isinstance(value, str):
            try:
                out.append(utc(datetime.fromisoformat(value), "cursor"))
                continue
            except ValueError:
                raise bad from None
        int_ok = kind == "i" and type(value) is int and -(2**63) <= value < 2**63
        text_ok = kind == "s" and isinstance(value, str) and "\x00" not in value
        if not (int_ok or text_ok):
            raise bad
        out.append(value)
    return tuple(out)


def app_settings(request: Request) -> Settings:
    """The app's settings (create_app's), without deps.settings' worker-thread hop."""
    return getattr(request.app.state, "settings", None) or get_settings()


async def _settings(request: Request) -> Settings:
    return app_settings(request)


AppConfig = Annotated[Settings, Depends(_settings)]


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    cursor: str | None


async def page(  # async: FastAPI runs sync dependencies in a worker thread
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100_000, description=(
        "Rows per page (at most the server's TELEMETRY_API_PAGE_MAX, 1000 by default)."))] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, pattern=TEXT, description=(
        "next_cursor of the previous page, unchanged."))] = None,
) -> Page:
    if limit > app_settings(request).api_page_max:
        raise FilterError("limit", f"at most {app_settings(request).api_page_max}", limit)
    return Page(limit, cursor)


PageParams = Annotated[Page, Depends(page)]


def next_cursor(rows: list[dict[str, Any]], limit: int, keys: tuple[str, ...]) -> str | None:
    """Queries fetch limit + 1 rows: the extra one says another page exists (and is dropped)."""
    if len(rows) <= limit:
        return None
    del rows[limit:]
    last = rows[-1]
    return encode_cursor(tuple(last[k] for k in keys))


def page_of(rows: list[dict[str, Any]], limit: int, keys: tuple[str, ...]) -> dict[str, Any]:
    cursor = next_cursor(rows, limit, keys)
    return {"items": rows, "next_cursor": cursor}


def respond(content: Any) -> FastJSONResponse:
    """Rows as they are, straight to orjson (no per-row pydantic pass: see api/schemas.py)."""
    return FastJSONResponse(content)


# Common query parameters, declared once so every endpoint documents them alike.
Site = Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description="Site name.")]
Zone = Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description="Zone name.")]
DeviceId = Annotated[int | None, Query(ge=0, le=INT4_MAX, description="Device id.")]
Metric = Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description=(
    "Metric name (co2, temperature, humidity, occupancy; alerts and anomalies also 'multi', "
    "data alerts 'quality:...')."))]
SeverityQ = Annotated[Severity | None, Query(description="Alert or anomaly severity.")]
From = Annotated[datetime | None, Query(alias="from", description=(
    "Start, inclusive (ISO 8601; no offset = UTC)."))]
To = Annotated[datetime | None, Query(alias="to", description=(
    "End, exclusive (ISO 8601; no offset = UTC)."))]
