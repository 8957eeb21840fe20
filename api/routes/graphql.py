"""GraphQL at /api/v1/graphql (read-only): readings, anomalies and alerts with the REST
filters, through the same page functions as REST (same SQL, defaults, limits and errors).

Field names are the REST ones (snake_case), so a client can move between the two."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import orjson
import strawberry
from cross_web import HTTPException as StrawberryHTTPException  # what strawberry answers
from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from graphql import GraphQLError
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, Info

from api.deps import Conn
from api.pagination import INT4_MAX, MAX_TEXT, FilterError, app_settings, make_filters
from api.responses import OPTIONS
from api.routes.alerts import alerts_page
from api.routes.anomalies import anomalies_page
from api.routes.readings import readings_page
from core.settings import Settings


@strawberry.enum
class Severity(Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


@strawberry.enum
class AlertState(Enum):
    open = "open"
    pending = "pending"
    firing = "firing"
    resolved = "resolved"


@strawberry.enum
class Order(Enum):
    asc = "asc"
    desc = "desc"


@strawberry.type
class Reading:
    device_id: int
    metric_id: int
    metric: str
    ts: datetime
    value: float
    batch_id: int


@strawberry.type
class Anomaly:
    device_id: int
    metric: str
    ts: datetime
    value: float | None
    baseline_mean: float | None
    std_dev: float | None
    score: float
    severity: str | None
    detector: str
    reason: str | None
    model_id: int | None


@strawberry.type
class Alert:
    alert_id: int
    kind: str
    device_id: int | None
    device_name: str | None
    site: str | None
    zone: str | None
    metric: str
    state: str
    severity: str
    opened_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_seen_at: datetime
    peak_score: float | None
    reason: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    resolved_by: str | None
    resolve_note: str | None
    drifted: bool


@strawberry.type
class ReadingPage:
    items: list[Reading]
    next_cursor: str | None


@strawberry.type
class AnomalyPage:
    items: list[Anomaly]
    next_cursor: str | None


@strawberry.type
class AlertPage:
    items: list[Alert]
    next_cursor: str | None


def _typed(cls: type, page: dict[str, Any], page_cls: type) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    return page_cls(items=[cls(**{n: row[n] for n in names}) for row in page["items"]],
                    next_cursor=page["next_cursor"])


def _limit(info: Info, limit: int) -> int:
    config: Settings = info.context["config"]
    if not 1 <= limit <= config.api_page_max:
        raise FilterError("limit", f"between 1 and {config.api_page_max}", limit)
    return limit


def _text(field: str, value: str | None) -> str | None:
    if value is not None and (len(value) > MAX_TEXT or "\x00" in value):
        raise FilterError(field, f"at most {MAX_TEXT} characters, no NUL", value)
    return value


def _device(device_id: int | None) -> int | None:
    if device_id is not None and not 0 <= device_id <= INT4_MAX:
        raise FilterError("device_id", "not a device id", device_id)
    return device_id


From = Annotated[datetime | None, strawberry.argument(name="from")]
To = Annotated[datetime | None, strawberry.argument(name="to")]


def _refusals(resolver: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A refused filter becomes an error with extensions.code BAD_USER_INPUT (and the field),
    so a client can tell its own mistakes from the server's."""

    @functools.wraps(resolver)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await resolver(*args, **kwargs)
        except FilterError as exc:
            raise GraphQLError(str(exc), extensions={"code": "BAD_USER_INPUT",
                                                     "field": exc.field}) from None
        except HTTPException as exc:
            raise GraphQLError(str(exc.detail), extensions={
                "code": "UNAVAILABLE" if exc.status_code == 503 else "ERROR"}) from None

    return wrapped


@strawberry.type
class Query:
    @strawberry.field(description="Raw readings in [from, to), at most 24 hours.")
    @_refusals
    async def readings(self, info: Info, device_id: int | None = None,
                       metric: str | None = None, site: str | None = None,
                       zone: str | None = None, start: From = None, end: To = None,
                       limit: int = 100, cursor: str | None = None) -> ReadingPage:
        filters = make_filters(device_id=_device(device_id), metric=_text("metric", metric),
                               site=_text("site", site), zone=_text("zone", zone),
                               start=start, end=end)
        page = await readings_page(info.context["conn"], filters, _limit(info, limit),
                                   _text("cursor", cursor))
        return _typed(Reading, page, ReadingPage)

    @strawberry.field(description="Anomalous points (score >= 1), newest first by default.")
    @_refusals
    async def anomalies(self, info: Info, device_id: int | None = None,
                        metric: str | None = None, site: str | None = None,
                        zone: str | None = None, severity: Severity | None = None,
                        start: From = None, end: To = None, order: Order = Order.desc,
                        limit: int = 100, cursor: str | None = None) -> AnomalyPage:
        filters = make_filters(device_id=_device(device_id), metric=_text("metric", metric),
                               site=_text("site", site), zone=_text("zone", zone),
                               severity=severity.value if severity else None,
                               start=start, end=end)
        page = await anomalies_page(info.context["conn"], filters, _limit(info, limit),
                                    _text("cursor", cursor), order.value)
        return _typed(Anomaly, page, AnomalyPage)

    @strawberry.field(description="Alerts opened in [from, to), newest first by default.")
    @_refusals
    async def alerts(self, info: Info, state: AlertState | None = None,
                     severity: Severity | None = None, device_id: int | None = None,
                     metric: str | None = None, site: str | None = None,
                     zone: str | None = None, start: From = None, end: To = None,
                     order: Order = Order.desc, limit: int = 100,
                     cursor: str | None = None) -> AlertPage:
        filters = make_filters(state=state.value if state else None,
                               severity=severity.value if severity else None,
                               device_id=_device(device_id), metric=_text("metric", metric),
                               site=_text("site", site), zone=_text("zone", zone),
                               start=start, end=end)
        page = await alerts_page(info.context["conn"], filters, _limit(info, limit),
                                 _text("cursor", cursor), order.value)
        return _typed(Alert, page, AlertPage)


def _serialize_time(value: datetime) -> str:
    return orjson.dumps(value, option=OPTIONS)[1:-1].decode()  # exactly as REST writes it


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# Times as REST writes them (orjson: UTC as "Z"), not strawberry's isoformat "+00:00".
DATETIME = strawberry.scalar(name="DateTime", serialize=_serialize_time,
                             parse_value=_parse_time, description="ISO 8601; no offset = UTC.")


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        # A refused filter is the client's error, answered in the response: not logged.
        unexpected = [e for e in errors if (e.extensions or {}).get("code") not in (
            "BAD_USER_INPUT", "UNAVAILABLE")]
        super().process_errors(unexpected, execution_context)


schema = _Schema(query=Query, config=StrawberryConfig(auto_camel_case=False,
                                                     scalar_map={datetime: DATETIME}))


async def _context(request: Request, conn: Conn) -> dict[str, Any]:
    return {"conn": conn, "config": app_settings(request)}


class _Router(GraphQLRouter):
    def decode_json(self, data: str | bytes) -> object:
        # strawberry answers 400 only to a JSONDecodeError and reads fields of any JSON it
        # gets: a body not in UTF-8, nested too deep, or `"text"` or `1` was a 500
        try:
            value = super().decode_json(data)
        except (ValueError, RecursionError):
            raise StrawberryHTTPException(400, "the body is not JSON") from None
        if not isinstance(value, dict | list):
            raise StrawberryHTTPException(400, "the body is not a GraphQL request (an object)")
        return value


router = _Router(schema, prefix="/api/v1/graphql", context_getter=_context, tags=["graphql"])

# What strawberry's routes take and answer, for OpenAPI: strawberry documents neither the body,
# nor the GraphiQL page, nor its 400s (plain text).
_RESULT = {"type": "object", "properties": {
    "data": {"type": ["object", "null"]},
    "errors": {"type": "array", "items": {"type": "object", "required": ["message"]}},
    "extensions": {"type": "object"}}}
_REQUEST = {"type": "object", "required": ["query"], "properties": {
    "query": {"type": "string"}, "variables": {"type": ["object", "null"]},
    "operationName": {"type": ["string", "null"]}}}
_REFUSED = {"description": "no query, a body that is not a GraphQL request, or a query that"
            " cannot run (not parsed, not valid, not a query)",
            "content": {"text/plain": {"schema": {"type": "string"}},
                        "application/json": {"schema": _RESULT}}}
_JSON = {"application/json": {"schema": _RESULT}}
for _route in router.routes:
    if not isinstance(_route, APIRoute):
        continue
    if _route.methods == {"GET"}:
        _route.openapi_extra = {"responses": {"400": _REFUSED, "200": {
            "description": "The result of `?query=`; without one, the GraphiQL page.",
            "content": {**_JSON, "text/html": {}}}}}
    else:
        _route.openapi_extra = {"responses": {"400": _REFUSED, "200": {"content": _JSON}},
                                "requestBody": {"required": True, "content": {
                                    "application/json": {"schema": _REQUEST}}}}
