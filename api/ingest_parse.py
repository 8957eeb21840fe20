"""POST /readings bodies: decoded once (orjson; the stdlib parser only when orjson refuses,
e.g. NaN or 1e400, so such rows can be refused one by one), then judged row by row by
core.reading_parse (shared with `load-csv`)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from api.ingest_models import loads
from core.reading_parse import LOADER_FIELDS, ParsedBatch, parse, quarantine_rows

__all__ = ["LOADER_FIELDS", "BodyError", "ParsedBatch", "decode", "parse", "quarantine_rows"]

_MISSING = object()


class BodyError(Exception):
    """The request as a whole is unusable (status 413 or 422)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def decode(body: bytes, max_rows: int) -> list[Any]:
    """The list of readings in a body: {"readings": [...]} or a bare array."""
    try:
        data = loads(body)
    except HTTPException as exc:
        raise BodyError(exc.status_code, str(exc.detail)) from None
    rows = data.get("readings", _MISSING) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise BodyError(422, "send {\"readings\": [...]} (or a JSON array of readings)")
    if not rows:
        raise BodyError(422, "`readings` is empty: send at least one reading")
    if len(rows) > max_rows:
        raise BodyError(413, f"{len(rows)} readings in one request; at most {max_rows}: "
                        "send smaller batches")
    return rows
