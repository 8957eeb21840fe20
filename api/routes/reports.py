"""The HTML reports: their catalog, and the files themselves, served only from inside the
reports directory (no `..`, no absolute paths, no symlinks leading out, .html only)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, HTTPException
from starlette.responses import FileResponse

from api.pagination import AppConfig, respond
from api.responses import FastJSONResponse
from api.schemas import Page, Report, documented
from reports import catalog

router = APIRouter(prefix="/api/v1", tags=["reports"])

PREFIX = "/api/v1/reports/"
# Reports inline their scripts (plotly) and open offline; they need no network access, so
# they get none, and cannot post forms or be framed by other sites.
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
           "Content-Security-Policy": "connect-src 'none'; form-action 'none'; "
                                      "base-uri 'none'; frame-ancestors 'self'"}


def report_file(reports_dir: Path, name: str) -> Path | None:
    """The file `name` names inside reports_dir, or None when it is not a report there."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    try:
        root = reports_dir.resolve()
        target = (root / name).resolve(strict=True)  # follows symlinks: checked below
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(root) or target.suffix.lower() != ".html":
        return None
    return target if target.is_file() else None


@router.get("/reports", response_model=None, responses=documented(Page[Report]))
async def list_reports(config: AppConfig) -> FastJSONResponse:
    """Reports written by `telemetry report` and the flows, newest first."""
    items = [{"name": e.name, "title": e.title, "url": PREFIX + quote(e.path), "path": e.path,
              "generated_at": e.generated_at, "range_start": e.range_start,
              "range_end": e.range_end, "run_id": e.run_id, "summary": e.summary}
             for e in catalog.entries(config.reports_dir)]
    return respond({"items": items, "next_cursor": None})


@router.get("/reports/{name:path}", response_class=FileResponse,
            responses={200: {"content": {"text/html": {}}},
                       404: {"description": "no such report"}})
async def get_report(name: str, config: AppConfig) -> FileResponse:
    """One report's HTML (relative links between reports work from here)."""
    path = report_file(config.reports_dir, name)
    if path is None:
        raise HTTPException(404, "no such report")
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=HEADERS)
