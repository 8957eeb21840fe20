"""The live dashboard at `/` and its static files (not API: left out of the OpenAPI schema).

Everything the page loads comes from this process: its own files in api/static/ and plotly.js
from the installed plotly package, so it works without a network. The page's settings travel in
a data attribute of <body>, which keeps the Content-Security-Policy free of inline scripts.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, Response

from api.deps import Config

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Plain names only: no separators, no leading dot, so nothing outside STATIC_DIR is reachable.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}  # not .html: the page is only served (filled in) at /
# Plotly draws with inline styles; everything else is this origin only.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _plotly_js() -> tuple[bytes, bytes, str]:
    """plotly.js of the installed package (4.5 MB), plain and gzipped, with its ETag."""
    from plotly.offline import get_plotlyjs

    body = get_plotlyjs().encode()
    return body, gzip.compress(body, 6), '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _page(config: dict[str, object]) -> str:
    template = (STATIC_DIR / "dashboard.html").read_text()
    return template.replace("{{config}}", html.escape(json.dumps(config), quote=True))


@router.get("/", response_class=HTMLResponse)
async def dashboard(config: Config) -> HTMLResponse:
    page = _page({"api": "/api/v1", "prefect_ui_url": config.prefect_ui_url,
                  "refresh_seconds": 30, "page_max": config.api_page_max,
                  "writes_enabled": config.api_token is not None})
    return HTMLResponse(page, headers={"Content-Security-Policy": _CSP,
                                       "Cache-Control": "no-cache"})


@router.get("/static/plotly.min.js")
async def plotly_js(request: Request) -> Response:
    body, zipped, etag = await run_in_threadpool(_plotly_js)  # the first call compresses: 0.5 s
    headers = {"Cache-Control": "public, max-age=86400", "ETag": etag,
               "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(zipped, media_type=_MEDIA_TYPES[".js"],
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type=_MEDIA_TYPES[".js"], headers=headers)


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not _SAFE_NAME.match(name) or path.suffix not in _MEDIA_TYPES or not path.is_file():
        raise HTTPException(404, "no such file")
    # no-cache = revalidate each load (FileResponse sends ETag/Last-Modified), so an upgraded
    # page never runs against a stale script.
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})
