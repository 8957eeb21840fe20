"""JSON via orjson: datetimes, numpy scalars and non-string keys serialized in Rust."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


class FastJSONResponse(JSONResponse):
    """A JSONResponse (so OpenAPI documents the models' schemas, not `type: string`) rendered
    by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=OPTIONS)
