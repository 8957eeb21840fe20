"""Quality report: Great Expectations results per suite over time (telemetry.quality_results)
and the loader's quarantine by rule over time, with example rows (telemetry.quarantine).

    write_quality_report(reports_dir, start=None, end=None, run_id=None) -> Path

Results are placed in time by the start of the window they validated (validation time when a
result has no window); quarantined rows by their batch's reference time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from core import db, report_store
from reports import catalog, figures, ranges
from reports.publish import publish
from reports.render import (
    MISSING,
    PageMeta,
    badge,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_ts,
    page_meta,
    render,
    table,
)

DEFAULT_HOURS = 24.0
MAX_FAILURES = 20
EXAMPLES_PER_RULE = 3
RULE_COLORS = {"null_value": "#6b7280", "unknown_metric": "#9333ea", "unknown_device": "#0891b2",
               "impossible_value": "#dc2626", "future_timestamp": "#f59e0b",
               "conflicting_duplicate": "#2563eb"}
_BUCKETS = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
            timedelta(hours=3), timedelta(hours=6), timedelta(days=1))


@dataclass
class QualityData:
    bucket: timedelta
    summary: pd.DataFrame  # report_store.quality_summary
    timeline: pd.DataFrame  # report_store.quality_timeline
    failing: pd.DataFrame  # report_store.failing_expectations
    failures: pd.DataFrame  # report_store.latest_failures
    quarantine_timeline: pd.DataFrame
    quarantine_rules: pd.DataFrame
    quarantine_examples: pd.DataFrame


def bucket_for(start: datetime, end: datetime, bars: int = 48) -> timedelta:
    """The smallest of a few round bucket sizes that gives at most ~`bars` bars."""
    span = pd.Timestamp(end) - pd.Timestamp(start)
    return next((b for b in _BUCKETS if span / b <= bars), _BUCKETS[-1])


def _bucket_axis(fig: go.Figure, start: datetime | None, end: datetime | None) -> None:
    """The report's whole range on the x axis, so quiet stretches show as gaps."""
    if start is not None and end is not None:
        fig.update_xaxes(range=[pd.Timestamp(t).tz_convert("UTC").tz_localize(None)
                                for t in (start, end)])
    fig.update_xaxes(tickformat="%H:%M\n%b %d", hoverformat="%b %d %H:%M")


def _bar_x(values: pd.Series, bucket: timedelta) -> pd.Series:
    """Bars centred on their bucket (a bucket's label is its start)."""
    return pd.to_datetime(values, utc=True).dt.tz_localize(None) + bucket / 2


def suite_figure(timeline: pd.DataFrame, suite: str, bucket: timedelta,
                 start: datetime | None, end: datetime | None) -> go.Figure:
    """Failed expectations per bucket of one suite, stacked by severity, with the number of
    expectations evaluated as a line on the same scale."""
    f = timeline[timeline["suite"] == suite]
    fig = go.Figure()
    width = bucket.total_seconds() * 1000 * 0.85
    for severity, color in (("error", figures.SEVERITY_COLORS["high"]),
                            ("warning", figures.SEVERITY_COLORS["medium"])):
        part = f[f["severity"] == severity]
        if part.empty:
            continue
        fig.add_bar(x=_bar_x(part["bucket"], bucket), y=part["failed"], width=width,
                    name=f"failed ({severity})", marker_color=color,
                    hovertemplate="%{x|%b %d %H:%M}: %{y} failed<extra>" + severity + "</extra>")
    evaluated = f.groupby("bucket", as_index=False)["evaluated"].sum()
    fig.add_scatter(x=_bar_x(evaluated["bucket"], bucket), y=evaluated["evaluated"],
                    mode="lines+markers", name="evaluated", line={"color": "#9ca3af",
                                                                  "width": 1, "dash": "dot"},
                    marker={"size": 4}, hovertemplate="%{y} evaluated<extra></extra>")
    fig.update_layout(barmode="stack", bargap=0.1)
    fig.update_yaxes(title_text=f"expectations per {_bucket_name(bucket)}", rangemode="tozero")
    _bucket_axis(fig, start, end)
    return figures.styled(fig, 280, f"Suite {suite}")


def quarantine_figure(timeline: pd.DataFrame, bucket: timedelta, start: datetime | None,
                      end: datetime | None) -> go.Figure:
    fig = go.Figure()
    width = bucket.total_seconds() * 1000 * 0.85
    for i, (rule, part) in enumerate(timeline.groupby("rule", sort=True)):
        fig.add_bar(x=_bar_x(part["bucket"], bucket), y=part["rows"], name=rule, width=width,
                    marker_color=RULE_COLORS.get(rule, figures.SERIES[i % len(figures.SERIES)]),
                    hovertemplate="%{x|%b %d %H:%M}: %{y} rows<extra>" + rule + "</extra>")
    fig.update_layout(barmode="stack", bargap=0.1)
    fig.update_yaxes(title_text=f"rows per {_bucket_name(bucket)}", rangemode="tozero")
    _bucket_axis(fig, start, end)
    return figures.styled(fig, 300, "Quarantined rows by rule")


def _bucket_name(bucket: timedelta) -> str:
    minutes = int(bucket.total_seconds() // 60)
    if minutes % 1440 == 0:
        return "day" if minutes == 1440 else f"{minutes // 1440} days"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} h"
    return f"{minutes} min"


def _json(value: Any, limit: int = 3) -> Markup:
    """A JSON value in a small scrolling block: a list (of sample rows) one compact item per
    line, the first `limit` of them."""
    if value is None or (isinstance(value, list | dict) and not value):
        return Markup(MISSING)
    items = value if isinstance(value, list) else [value]
    lines = [json.dumps(v, default=str, ensure_ascii=False, separators=(", ", ": "))
             for v in items[:limit]]
    if len(items) > limit:
        lines.append(f"… {len(items) - limit} more")
    return Markup("<pre>{}</pre>").format("\n".join(lines))


def summary_table(summary: pd.DataFrame) -> Markup:
    rows = summary.assign(passed=1 - summary["failed"] / summary["evaluated"])[
        ["suite", "targets", "evaluated", "failed", "failed_errors", "failed_warnings",
         "passed", "last_validated_at"]]
    return table(rows, headers={"failed_errors": "errors", "failed_warnings": "warnings",
                                "passed": "pass rate", "last_validated_at": "last validated"},
                 numeric=("targets", "evaluated", "failed", "failed_errors",
                          "failed_warnings", "passed"),
                 formats={"passed": fmt_pct, "last_validated_at": fmt_ts, "targets": fmt_int,
                          "evaluated": fmt_int, "failed": fmt_int, "failed_errors": fmt_int,
                          "failed_warnings": fmt_int}, css="compact")


def failing_table(failing: pd.DataFrame) -> Markup:
    return table(failing, headers={"column_name": "column", "unexpected_rows": "unexpected rows",
                                   "last_failed_at": "last failed (validated)"},
                 numeric=("failures", "evaluated", "unexpected_rows"),
                 formats={"severity": badge, "last_failed_at": fmt_ts,
                          "unexpected_rows": fmt_int})


def failures_table(failures: pd.DataFrame) -> Markup:
    if failures["observed"].isna().all():  # row-level expectations observe nothing else
        failures = failures.drop(columns="observed")
    rows = failures.assign(window=[
        f"{fmt_ts(a)} → {fmt_ts(b)}" if pd.notna(a) else fmt_ts(v) for a, b, v in
        zip(failures["window_start"], failures["window_end"], failures["validated_at"],
            strict=True)])[["suite", "target", "window", "expectation", "column_name",
                            "severity", "unexpected_count", "unexpected_percent",
                            "unexpected_sample", *(["observed"] if "observed" in failures
                                                   else [])]]
    return table(rows, headers={"column_name": "column", "unexpected_count": "unexpected",
                                "unexpected_percent": "%", "unexpected_sample": "sample rows"},
                 numeric=("unexpected_count", "unexpected_percent"),
                 formats={"severity": badge, "unexpected_count": fmt_int,
                          "unexpected_percent": lambda v: fmt_num(v, 2),
                          "unexpected_sample": _json, "observed": lambda v: _json(v, 5)})


def rules_table(rules: pd.DataFrame) -> Markup:
    return table(rules, headers={"last_batch_at": "last batch"},
                 numeric=("rows", "devices", "batches"),
                 formats={"rows": fmt_int, "devices": fmt_int, "batches": fmt_int,
                          "last_batch_at": fmt_ts}, css="compact")


def examples_table(examples: pd.DataFrame) -> Markup:
    rows = examples[["rule", "reason", "device_id", "metric_id", "ts", "value", "raw",
                     "batch_id"]]
    return table(rows, headers={"device_id": "device", "metric_id": "metric id",
                                "raw": "raw payload", "batch_id": "batch"},
                 numeric=("device_id", "metric_id", "value", "batch_id"),
                 formats={"ts": fmt_ts, "raw": lambda v: _json(v), "value": fmt_num,
                          "device_id": fmt_int, "metric_id": fmt_int})


def summary_line(data: QualityData) -> str:
    s = data.summary
    if s.empty and data.quarantine_rules.empty:
        return "no quality results or quarantined rows in range"
    failed = int(s["failed"].sum()) if len(s) else 0
    evaluated = int(s["evaluated"].sum()) if len(s) else 0
    rows = int(data.quarantine_rules["rows"].sum()) if len(data.quarantine_rules) else 0
    return (f"{failed} of {evaluated} expectations failed in {len(s)} suites; "
            f"{rows} rows quarantined")


def build_quality_html(meta: PageMeta, data: QualityData) -> str:
    """The quality page (pure: data in, HTML out)."""
    start, end = meta.start, meta.end
    suites = list(data.summary["suite"]) if len(data.summary) else []
    suite_figs = [figures.to_html(suite_figure(data.timeline, s, data.bucket, start, end))
                  for s in suites]
    quarantine = None
    if len(data.quarantine_timeline):
        quarantine = figures.to_html(
            quarantine_figure(data.quarantine_timeline, data.bucket, start, end))
    return render(
        "quality.html", meta, figures=bool(suite_figs or quarantine),
        has_results=bool(suites), summary=summary_table(data.summary) if suites else None,
        suite_figures=suite_figs, bucket=_bucket_name(data.bucket),
        failing=failing_table(data.failing),
        failures=failures_table(data.failures) if len(data.failures) else None,
        max_failures=MAX_FAILURES, quarantine=quarantine,
        rules=rules_table(data.quarantine_rules),
        examples=examples_table(data.quarantine_examples) if len(data.quarantine_examples)
        else None, per_rule=EXAMPLES_PER_RULE)


def collect(start: datetime, end: datetime) -> QualityData:
    bucket = bucket_for(start, end)
    with db.connect() as conn:
        return QualityData(
            bucket=bucket,
            summary=report_store.quality_summary(conn, start, end),
            timeline=report_store.quality_timeline(conn, start, end, bucket),
            failing=report_store.failing_expectations(conn, start, end),
            failures=report_store.latest_failures(conn, start, end, MAX_FAILURES),
            quarantine_timeline=report_store.quarantine_timeline(conn, start, end, bucket),
            quarantine_rules=report_store.quarantine_rules(conn, start, end),
            quarantine_examples=report_store.quarantine_examples(conn, start, end,
                                                                 EXAMPLES_PER_RULE))


def write_quality_report(reports_dir: Path, start: datetime | None = None,
                         end: datetime | None = None, run_id: str | None = None, *,
                         hours: float = DEFAULT_HOURS) -> Path:
    """Build quality.html for [start, end) (default: the `hours` before the newest data) and
    record it; returns its path."""
    with db.connect() as conn:
        start, end = ranges.resolve(conn, start, end, hours, align="5min")
    data = collect(start, end)
    meta = page_meta(reports_dir, "quality", "Data quality report",
                     run_id or catalog.cli_run_id(), start, end)
    return publish(reports_dir, meta, build_quality_html(meta, data), summary_line(data))
