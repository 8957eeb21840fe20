"""The reports' shared layout: page metadata, Jinja rendering, tables, value formats and the
atomic file write. Pure apart from `page_meta` (which looks at the reports directory to know
which nav links lead somewhere) and `write_atomic`.

Every page extends templates/base.html: title, time range, run, generated time, a nav bar of
relative links to the other reports, inline CSS, and the plotly.js bundle inlined once when
the page has figures, so a file opens anywhere with no network.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).resolve().parent / "templates"
MISSING = "\u2013"  # an en dash: shown for a missing value


@dataclass(frozen=True)
class ReportKind:
    name: str  # the catalog name
    filename: str
    label: str  # nav text


# Fixed file names: pages link to each other by these, and each build replaces its file (a
# report per run would keep a 4 MB plotly bundle per micro-batch).
KINDS: tuple[ReportKind, ...] = (
    ReportKind("index", "index.html", "Index"),
    ReportKind("alerts", "alerts.html", "Alerts"),
    ReportKind("fleet", "fleet.html", "Fleet"),
    ReportKind("quality", "quality.html", "Quality"),
    ReportKind("evaluation", "evaluation.html", "Evaluation"),
    ReportKind("drift", "drift-summary.html", "Drift"),
)
BY_NAME = {k.name: k for k in KINDS}


@dataclass(frozen=True)
class NavLink:
    label: str
    href: str
    current: bool
    exists: bool


@dataclass(frozen=True)
class PageMeta:
    name: str
    title: str
    filename: str
    run_id: str
    start: datetime | None = None
    end: datetime | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    nav: tuple[NavLink, ...] = ()


def page_meta(reports_dir: Path, name: str, title: str, run_id: str,
              start: datetime | None = None, end: datetime | None = None,
              filename: str | None = None) -> PageMeta:
    """Metadata of a page about to be written to reports_dir (nav links relative to it)."""
    filename = filename or BY_NAME[name].filename
    here = (reports_dir / filename).parent
    nav = tuple(
        NavLink(kind.label, Path(os.path.relpath(reports_dir / kind.filename, here)).as_posix(),
                kind.name == name, kind.name == name or (reports_dir / kind.filename).is_file())
        for kind in KINDS)
    return PageMeta(name, title, filename, run_id, start, end, nav=nav)


# ---------------------------------------------------------------------------------------------
# Value formats (also Jinja filters). All times are UTC; pages say so once in the header.

def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_ts(value: Any, seconds: bool | None = None) -> str:
    """2026-11-19 18:30 (or 18:30:10 when the time has seconds); never microseconds."""
    if _missing(value):
        return MISSING
    ts = pd.Timestamp(value)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    if seconds is None:
        seconds = ts.second != 0 or ts.microsecond != 0
    return ts.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_duration(seconds: Any) -> str:
    if _missing(seconds):
        return MISSING
    if isinstance(seconds, pd.Timedelta):
        seconds = seconds.total_seconds()
    s = float(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def fmt_range(start: Any, end: Any) -> str:
    if _missing(start) and _missing(end):
        return MISSING
    span = ""
    if not _missing(start) and not _missing(end):
        span = f" ({fmt_duration((pd.Timestamp(end) - pd.Timestamp(start)).total_seconds())})"
    return f"{fmt_ts(start)} → {fmt_ts(end)} UTC{span}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    return MISSING if _missing(value) else f"{100 * float(value):.{digits}f}%"


def fmt_num(value: Any, digits: int = 2) -> str:
    if _missing(value):
        return MISSING
    x = float(value)
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 1000 or not math.isfinite(x):
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def fmt_fixed(value: Any, digits: int = 2) -> str:
    """Always `digits` decimals (columns of ratios line up: 1.00 next to 0.58)."""
    return MISSING if _missing(value) else f"{float(value):.{digits}f}"


def fmt_int(value: Any) -> str:
    return MISSING if _missing(value) else f"{int(value):,}"


# ---------------------------------------------------------------------------------------------
# Tables.

Formatter = Callable[[Any], str | Markup]


def table(frame: pd.DataFrame, formats: Mapping[str, Formatter] | None = None,
          headers: Mapping[str, str] | None = None, numeric: tuple[str, ...] = (),
          empty: str = "Nothing to show.", css: str = "", nowrap: tuple[str, ...] = ()
          ) -> Markup:
    """An HTML table of `frame` (every column shown, in order): cells formatted by `formats`
    (a formatter may return Markup, e.g. a badge), escaped otherwise; `numeric` columns are
    right-aligned; `nowrap` columns (and timestamps) do not wrap; `headers` renames columns."""
    if frame.empty:
        return Markup('<p class="empty">{}</p>').format(empty)
    formats = formats or {}
    headers = headers or {}
    names = {c: " ".join(name for name, on in (
        ("num", c in numeric), ("nw", c in nowrap or formats.get(c) is fmt_ts)) if on)
        for c in frame.columns}
    classes = {c: f' class="{n}"' if n else "" for c, n in names.items()}
    head = "".join(f"<th{classes[c]}>{escape(headers.get(c, c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False, name=None):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            fmt = formats.get(column)
            text = fmt(value) if fmt else (MISSING if _missing(value) else str(value))
            cells.append(f"<td{classes[column]}>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f'<table class="data {css}"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(rows)}</tbody></table>')


def badge(text: Any, kind: str | None = None) -> Markup:
    """A coloured label, e.g. a severity (class sev-<text>) or a state."""
    value = MISSING if _missing(text) else str(text)
    return Markup('<span class="badge {}">{}</span>').format(kind or f"sev-{value}", value)


# ---------------------------------------------------------------------------------------------
# Rendering and writing.

@lru_cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ts=fmt_ts, duration=fmt_duration, pct=fmt_pct, num=fmt_num, fixed=fmt_fixed,
                       int=fmt_int, badge=badge)
    env.globals.update(fmt_range=fmt_range)
    return env


@lru_cache
def plotly_bundle() -> Markup:
    """plotly.js, inlined once per page that has figures (the offline bundle: no CDN)."""
    from plotly.offline import get_plotlyjs

    # "</script" never occurs in the minified bundle, but an inlined script must not end early.
    return Markup(get_plotlyjs().replace("</script", "<\\/script"))


def render(template: str, meta: PageMeta, *, figures: bool = True, **context: Any) -> str:
    """A full page from templates/<template> (which extends base.html)."""
    return _environment().get_template(template).render(
        meta=meta, plotly_js=plotly_bundle() if figures else None, **context)


class ReportWriteError(OSError):
    """A report file could not be written (disk full, permissions, a file where the directory
    should be). Only the report is affected: the data stages commit before reports."""


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a report; on a
    disk or permission error, no partial file is left and the error says what to do."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        blocked = path.parent.exists() and not path.parent.is_dir()
        why = f"{path.parent} is a file, not a directory" if blocked else (exc.strerror or exc)
        error = ReportWriteError(
            f"could not write the report {path}: {why}. Readings, KPIs, scores and alerts are"
            " stored; fix TELEMETRY_REPORTS_DIR (free space, permissions), then"
            " `telemetry report` writes the reports again")
        error.errno = exc.errno
        raise error from exc
