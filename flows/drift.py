"""Drift flow (nightly and ad hoc): the last day of KPIs against a trailing clean week, per
metric (and per site), with Evidently. HTML under <reports>/drift, results in
telemetry.drift_results, drifted metrics flagged on alerts; the train flow re-baselines when
drift persists (persistent_drift, rebaseline)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from core import db, drift_store
from core.drift_store import ALL_SITES
from core.ingest import SIMULATOR_STREAM, floor_time
from core.settings import get_settings
from flows import tasks
from reports import catalog, drift

# Readings stamped this far before the loaded watermark may still arrive (as in flows.detection).
LATE_REACH = timedelta(hours=2)
REPORT_NAME = "drift-evidently"
IO_RETRIES = tasks.IO_RETRIES


class DriftParams(BaseModel):
    current_end: datetime | None = Field(
        None, description="end of the tested period (exclusive); default: the start of today "
        "(UTC), capped to the loaded data's watermark minus the late-data reach, floored to "
        "the day")
    current_days: float | None = Field(
        None, gt=0, le=30, description="default TELEMETRY_DRIFT_CURRENT_DAYS (1)")
    reference_days: float | None = Field(
        None, gt=0, le=90, description="the clean period before the current one; default "
        "TELEMETRY_DRIFT_REFERENCE_DAYS (7: every day type)")
    per_site: bool = Field(False, description="also compare each site on its own")
    threshold: float = Field(
        drift.THRESHOLD, gt=0, le=10,
        description="drift when the distance reaches this many reference standard deviations")


class MetricDrift(BaseModel):
    site: str
    metric: str
    method: str
    statistic: float | None
    threshold: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None
    current_mean: float | None


class DriftSummary(BaseModel):
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    current_start: datetime | None = None
    current_end: datetime | None = None
    results: list[MetricDrift] = []
    drifted: dict[str, list[str]] = {}  # site ('all' = the fleet) -> drifted metrics
    report_paths: list[str] = []  # relative to the reports directory
    alerts_flagged: int = 0
    skipped: dict[str, str] = {}  # site -> why it has no verdict
    seconds: dict[str, float] = {}


@dataclass
class SiteDrift:
    site: str
    table: pd.DataFrame | None = None
    report_path: str | None = None
    skipped: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def resolve_periods(params: DriftParams, loaded_to: datetime | None,
                    now: datetime) -> drift.Periods | None:
    """The reference and current periods; None when nothing is loaded to default from. The
    default end is a day boundary, so nightly runs test whole days and re-runs hit the same
    stored rows."""
    settings = get_settings()
    if params.current_end is not None:  # aligned to the KPI windows; a naive time is UTC
        end = floor_time(params.current_end, timedelta(minutes=5))
    elif loaded_to is None:
        return None
    else:
        end = floor_time(min(now, loaded_to - LATE_REACH), timedelta(days=1))
    return drift.Periods.ending(end, params.current_days or settings.drift_current_days,
                                params.reference_days or settings.drift_reference_days)


@task(name="drift-read", **IO_RETRIES)
def read_frames(periods: drift.Periods) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KPIs of both periods, and the intervals the reference must leave out."""
    with db.connect() as conn:
        kpis = drift_store.read_kpis(conn, periods.reference_start, periods.current_end,
                                     drift.METRICS)
        windows = drift_store.exclusion_windows(conn, *periods.reference)
    return kpis, windows


def report_file(site: str, periods: drift.Periods) -> str:
    """The HTML's path relative to the reports directory: one per site and current period."""
    return (f"drift/{site}_{periods.current_start:%Y%m%dT%H%MZ}"
            f"_{periods.current_end:%Y%m%dT%H%MZ}.html")


@task(name="drift-compare", task_run_name="drift {site}", cache_policy=NO_CACHE)
def compare_site(kpis: pd.DataFrame, windows: pd.DataFrame, periods: drift.Periods, site: str,
                 threshold: float, reports_dir: Path) -> SiteDrift:
    """One site's (or the fleet's) verdict and its Evidently HTML; a period too thin for a
    verdict comes back as skipped, with the reason."""
    frame = kpis if site == ALL_SITES else kpis[kpis["site"] == site]
    reference, current = periods.split(frame)
    try:
        result = drift.compare(drift.exclude_windows(reference, windows), current,
                               threshold=threshold)
    except drift.InsufficientDataError as error:
        return SiteDrift(site, skipped=str(error))
    path = report_file(site, periods)
    drift.save_html(result.snapshot, reports_dir / path)
    return SiteDrift(site, result.table, path)


@task(name="drift-catalog", cache_policy=NO_CACHE)
def record_report(outcome: SiteDrift, periods: drift.Periods, reports_dir: Path,
                  run_id: str) -> None:
    assert outcome.table is not None and outcome.report_path is not None
    drifted = outcome.table.loc[outcome.table["drifted"], "metric"].tolist()
    scope = "the fleet" if outcome.site == ALL_SITES else outcome.site
    catalog.record(reports_dir, catalog.ReportEntry(
        name=REPORT_NAME,
        title=f"Drift of {scope}: {_span(*periods.current)} vs the previous "
              f"{_days(periods.reference)} (clean)",
        path=outcome.report_path,
        generated_at=catalog.now_iso(),
        range_start=periods.current_start.isoformat(),
        range_end=periods.current_end.isoformat(),
        run_id=run_id,
        summary=f"{len(drifted)} of {len(outcome.table)} metrics drifted"
                + (f": {', '.join(drifted)}" if drifted else ""),
    ))


@task(name="drift-store", **IO_RETRIES)
def store_results(outcomes: list[SiteDrift], periods: drift.Periods, run_id: str) -> int:
    """Save every verdict and flag the alerts on drifted metrics, in one transaction; returns
    the alerts newly flagged."""
    with db.transaction() as conn:
        for outcome in outcomes:
            drift_store.save_results(conn, outcome.table, site=outcome.site,
                                     reference=periods.reference, current=periods.current,
                                     run_id=run_id, report_path=outcome.report_path)
        pairs = [(metric, o.site) for o in outcomes
                 for metric in o.table.loc[o.table["drifted"], "metric"]]
        return drift_store.flag_alerts(conn, pairs, *periods.current)


@task(name="persistent-drift", **IO_RETRIES)
def persistent_drift(until: datetime, runs: int | None = None) -> pd.DataFrame:
    """(site, metric) drifted in each of their last `runs` (default
    TELEMETRY_DRIFT_PERSIST_RUNS) drift runs whose current period ended by `until`."""
    with db.connect() as conn:
        return drift_store.persistent_drift(conn, runs or get_settings().drift_persist_runs,
                                            until)


def rebaseline(streaks: pd.DataFrame, start: datetime, end: datetime
               ) -> tuple[datetime, str] | None:
    """The training window's new start and the reason, when persistent drift (streaks as
    persistent_drift returns them) began after `start`: train on the drifted period only, the
    'new normal'. With several streaks the newest start wins, so every drifted metric is past
    its change. None when the window already lies inside the drift (or nothing drifted)."""
    if streaks.empty:
        return None
    since = floor_time(pd.to_datetime(streaks["since"], utc=True).max(), timedelta(hours=1))
    if since <= start or since >= end:
        return None
    parts = [f"{r.metric} drifted ({'all sites' if r.site == ALL_SITES else r.site}) in "
             f"{r.runs} consecutive drift runs since {pd.Timestamp(r.since):%Y-%m-%d}"
             for r in streaks.itertuples(index=False)]
    return since, "rebaseline: " + "; ".join(parts)


def _span(start: datetime, end: datetime) -> str:
    """A whole UTC day by its date, anything else as [start, end)."""
    if end - start == timedelta(days=1) and start == floor_time(start, timedelta(days=1)):
        return f"{start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def _days(period: tuple[datetime, datetime]) -> str:
    days = (period[1] - period[0]) / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


def _markdown(summary: DriftSummary, threshold: float) -> str:
    lines = [
        f"# Drift of {_span(summary.current_start, summary.current_end)} (UTC)",
        "",
        f"Current {summary.current_start:%Y-%m-%d %H:%M} to {summary.current_end:%Y-%m-%d %H:%M}"
        f" against the clean reference {summary.reference_start:%Y-%m-%d %H:%M} to"
        f" {summary.reference_end:%Y-%m-%d %H:%M}, resampled to the current period's"
        " weekday/weekend x hour mix. Drifted = Evidently's test failed: the normed Wasserstein"
        " distance (statistic, in standard deviations of the matched reference; its mean is"
        f" the reference mean) reached the threshold: {threshold:g} standard deviations of the"
        " whole reference, in the same units.",
        "",
        "| site | metric | method | statistic | threshold | drifted | reference rows |"
        " current rows | reference mean | current mean |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.site} | {r.metric} | {r.method} | {_num(r.statistic)} |"
              f" {_num(r.threshold)} | {'**yes**' if r.drifted else 'no'} | {r.reference_rows} |"
              f" {r.current_rows} | {_num(r.reference_mean)} | {_num(r.current_mean)} |"
              for r in summary.results]
    lines += ["", f"Alerts newly flagged as drifted: {summary.alerts_flagged}", "",
              "Reports (under the reports directory):"]
    lines += [f"- `{path}`" for path in summary.report_paths] or ["- none"]
    if summary.skipped:
        lines += ["", "No verdict:"] + [f"- {site}: {why}" for site, why in
                                         summary.skipped.items()]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _add(summary: DriftSummary, outcome: SiteDrift) -> None:
    table = outcome.table
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    summary.results += [MetricDrift(site=outcome.site, **r) for r in records]
    summary.report_paths.append(outcome.report_path)
    summary.drifted[outcome.site] = table.loc[table["drifted"], "metric"].tolist()


@task(name="drift-summary-page", cache_policy=NO_CACHE)
def write_drift_page(reports_dir: Path, run_id: str) -> Path:
    from reports.drift_summary import write_drift_summary_report

    return write_drift_summary_report(reports_dir, run_id)


@flow(name="drift-report")
def drift_report(params: DriftParams = DriftParams()) -> DriftSummary:
    """Compare the current period's KPIs with a trailing clean reference, per metric for the
    fleet (and each site when per_site); store, report, and flag alerts on drifted metrics."""
    logger = get_run_logger()
    periods = resolve_periods(params, tasks.read_watermark(SIMULATOR_STREAM), _now())
    if periods is None:
        logger.warning("nothing loaded yet: no drift to report")
        return DriftSummary(skipped={ALL_SITES: "nothing loaded yet"})
    summary = DriftSummary(reference_start=periods.reference_start,
                           reference_end=periods.current_start,
                           current_start=periods.current_start, current_end=periods.current_end)
    run_id = f"prefect:{flow_run.id}" if flow_run.id else catalog.cli_run_id()
    reports_dir = get_settings().reports_dir
    clock = time.perf_counter()
    kpis, windows = read_frames(periods)
    summary.seconds["read"] = round(time.perf_counter() - clock, 2)
    sites = [ALL_SITES] + (sorted(kpis["site"].unique()) if params.per_site else [])
    clock = time.perf_counter()
    outcomes = [compare_site(kpis, windows, periods, site, params.threshold, reports_dir)
                for site in sites]
    summary.seconds["compare"] = round(time.perf_counter() - clock, 2)
    judged = [o for o in outcomes if o.table is not None]
    summary.skipped = {o.site: o.skipped for o in outcomes if o.skipped}
    clock = time.perf_counter()
    summary.alerts_flagged = store_results(judged, periods, run_id) if judged else 0
    summary.seconds["store"] = round(time.perf_counter() - clock, 2)
    for outcome in judged:  # catalogued once stored: the index never links unstored verdicts
        record_report(outcome, periods, reports_dir, run_id)
        _add(summary, outcome)
    if judged:  # our summary page (links the Evidently files) and a fresh index
        write_drift_page(reports_dir, run_id)
    create_markdown_artifact(key="drift-report", markdown=_markdown(summary, params.threshold),
                             description=f"Drift of {_span(*periods.current)}")
    _log(logger, summary, len(kpis))
    return summary


def _log(logger: logging.Logger | logging.LoggerAdapter, summary: DriftSummary, rows: int) -> None:
    verdicts = "; ".join(f"{site}: {len(metrics)} drifted ({', '.join(metrics) or 'none'})"
                         for site, metrics in summary.drifted.items()) or "no verdict"
    skipped = f"; skipped {summary.skipped}" if summary.skipped else ""
    logger.info("drift %s vs %s: %s; %d alerts flagged; %d KPI rows; reports %s; seconds %s%s",
                _span(summary.current_start, summary.current_end),
                _span(summary.reference_start, summary.reference_end), verdicts,
                summary.alerts_flagged, rows, summary.report_paths, summary.seconds, skipped)
