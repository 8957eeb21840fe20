"""index.html: every report in the catalog with its time range, run, generated time and
summary, newest first. Rebuilt after every report is written."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from reports import catalog
from reports.render import (
    MISSING,
    PageMeta,
    fmt_range,
    fmt_ts,
    page_meta,
    render,
    table,
    write_atomic,
)

INDEX = "index.html"


def build_index_html(meta: PageMeta, entries: list[catalog.ReportEntry]) -> str:
    """The index page (pure: entries in, HTML out). Links are relative to the index."""
    rows = pd.DataFrame([{
        "report": Markup('<a href="{}">{}</a>').format(
            Path(os.path.relpath(e.path, Path(meta.filename).parent)).as_posix(), e.title),
        "kind": e.name,
        "time range": fmt_range(e.range_start, e.range_end),
        "run": Markup("<code>{}</code>").format(e.run_id or MISSING),
        "generated": fmt_ts(e.generated_at),
        "summary": e.summary,
    } for e in entries], columns=["report", "kind", "time range", "run", "generated", "summary"])
    return render("index.html", meta, figures=False,
                  reports=table(rows, formats={c: lambda v: v for c in ("report", "run")},
                                empty="No reports yet: run `telemetry report all`."),
                  count=len(entries))


def write_index_report(reports_dir: Path, run_id: str | None = None) -> Path:
    """(Re)build index.html from the catalog (not itself recorded in it)."""
    entries = catalog.entries(reports_dir)
    meta = page_meta(reports_dir, "index", "Telemetry reports", run_id or catalog.cli_run_id(),
                     filename=INDEX)
    path = reports_dir / INDEX
    write_atomic(path, build_index_html(meta, entries))
    return path
