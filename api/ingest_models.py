"""Request and response shapes of the write endpoints: readings, detect, alert actions, runs.

POST /readings does not parse its body through these models (one bad row must not refuse the
batch, and per-row pydantic costs most of the ingest budget; see api/ingest_parse.py); the
reading models here describe the wire format for OpenAPI and clients.

The other write endpoints read their bodies with `read_model`: clients do send NaN and
Infinity, and FastAPI's own 422 handler fails (500) serializing such an input back.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from typing import Any, Literal, TypeVar

import orjson
from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SERIES_PATTERN = r"^[A-Za-z0-9_.:/@+-]{1,200}$"


class ReadingIn(BaseModel):
    """One reading as a device sends it."""

    device_id: int = Field(ge=-(2**31), lt=2**31, description="A registered device.")
    metric: str = Field(description="co2, temperature, humidity or occupancy.")
    ts: datetime = Field(description="ISO 8601 with a UTC offset, e.g. 2026-11-20T10:00:00Z.")
    value: float | None = Field(description="A finite number in the metric's possible range.")
    unit: str | None = Field(None, description="If sent, must be the metric's unit (e.g. ppm).")
    metadata: dict[str, Any] | None = Field(
        None, description="Free-form device data; validated as an object, not stored.")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI requestBody for a model the route reads itself (nested models inlined)."""
    schema = model.model_json_schema()
    return {"content": {"application/json": {"schema": _inline(schema, schema.pop("$defs", {}))}},
            "required": True}


def reading_batch_schema() -> dict[str, Any]:
    """The POST /readings body for OpenAPI."""
    item = ReadingIn.model_json_schema()
    return {"content": {"application/json": {"schema": {
        "title": "ReadingBatch", "type": "object", "required": ["readings"],
        "properties": {"readings": {"type": "array", "minItems": 1, "items": item,
                                    "description": "At most TELEMETRY_API_MAX_BATCH readings;"
                                    " a bare JSON array of readings is accepted too."}},
    }}}, "required": True}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes even without a Content-Length (chunked uploads);
    gzip bodies are inflated under the same limit."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes: send smaller batches")
        parts.append(chunk)
    body = b"".join(parts)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflate = zlib.decompressobj(wbits=31)
        try:
            body = inflate.decompress(body, limit + 1)
        except zlib.error as exc:
            raise HTTPException(422, f"the gzip body is corrupt: {exc}") from None
        if len(body) > limit or inflate.unconsumed_tail:
            raise HTTPException(413, f"inflated body over {limit} bytes: send smaller batches")
    return body


def loads(body: bytes) -> Any:
    """orjson, or the stdlib parser for what orjson refuses (NaN, Infinity, 1e400)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise HTTPException(422, f"the body is not JSON: {str(exc)[:200]}") from None


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The body as `model`; 422 lists the errors without echoing inputs."""
    data = loads(await read_body(request, limit))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_input=False,
                                            include_context=False)) from None


class Rejection(BaseModel):
    index: int = Field(description="Position of the reading in the request.")
    field: str = Field(description="The field at fault (`row` when the reading is not an "
                       "object).")
    rule: str
    reason: str


class IngestResult(BaseModel):
    batch_id: int = Field(description="The batch ledger row (telemetry.batches).")
    received: int
    loaded: int = Field(description="New readings stored.")
    duplicate: int = Field(description="Readings already stored (a re-sent batch): unchanged.")
    rejected: int = Field(description="Readings refused and kept in quarantine.")
    rejections: list[Rejection]
    seconds: float


class DetectPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: datetime | None = Field(
        None, description="Event time with a UTC offset; default: arrival time.")
    value: float = Field(allow_inf_nan=False, ge=-1e100, le=1e100,
                         description="Finite; |value| <= 1e100 (squares must stay finite).")


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series: str | None = Field(
        None, pattern=SERIES_PATTERN,
        description="Any key of the series; default `<device_id>:<metric>`.")
    device_id: int | None = Field(None, ge=-(2**31), lt=2**31)
    metric: str | None = Field(None, max_length=100)
    window: int | None = Field(
        None, ge=2, le=10_000, description="Fixed when the series is first seen; default "
        "TELEMETRY_DETECT_WINDOW.")
    k: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False,
                            description="Anomaly at |z| >= k; default TELEMETRY_DETECT_K.")
    points: list[DetectPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _keyed(self) -> DetectRequest:
        if self.series is None and (self.device_id is None or self.metric is None):
            raise ValueError("give `series`, or both `device_id` and `metric`")
        for point in self.points:
            if point.ts is not None and point.ts.tzinfo is None:
                raise ValueError("point timestamps need a UTC offset (e.g. ...Z)")
        return self

    @property
    def key(self) -> str:
        return self.series or f"{self.device_id}:{self.metric}"


class DetectScore(BaseModel):
    ts: datetime
    value: float
    mean: float | None = Field(description="Trailing mean of the window before the point.")
    std_dev: float | None = Field(description="The trailing std z is divided by (floored).")
    z: float | None
    lower: float | None = Field(description="mean - k * std_dev")
    upper: float | None = Field(description="mean + k * std_dev")
    is_anomaly: bool
    skipped: bool = Field(False, description="At or before the series' last point: ignored.")


class DetectResult(BaseModel):
    series: str
    window: int
    min_periods: int
    k: float
    n_seen: int = Field(description="Points this series has scored, all requests together.")
    anomalies: int
    scores: list[DetectScore]


class Refusal(BaseModel):
    """A refused write: `detail` is a message or, for a body that does not validate, the list
    of its errors (`type`, `loc`, `msg`), as FastAPI lists a bad path or query parameter's."""

    detail: str | list[dict[str, Any]]


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200, pattern=r"\S", description="Who acts.")
    note: str | None = Field(None, max_length=2000, description="Why, or what was done.")


FlowName = Literal["micro-batch", "simulate-and-load", "build-kpis", "backfill", "train",
                   "score", "drift-report", "report"]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow: FlowName
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The flow's parameters, as in the Prefect UI form, "
        "e.g. {\"window\": {\"start\": ..., \"end\": ...}} for simulate-and-load.")


class RunView(BaseModel):
    run_id: str
    flow: str
    mode: Literal["prefect", "in-process"]
    state: str = Field(description="scheduled, running, completed or failed (Prefect's state "
                       "name in prefect mode).")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    prefect_flow_run_id: str | None = None
    error: str | None = None
    result: Any = None
    status_url: str
