"""Validate raw batches, KPI windows and scores with the GX suites in expectations/, store the
results, mark batches, and keep fleet-level data alerts in step with the expectations.

A failed expectation is a result, never an exception: the caller's flow goes on. Errors raise a
data alert per (suite, expectation) that stays open until newer data passes it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import psycopg

from core import db, quality_store
from core.settings import get_settings
from expectations import suites
from expectations.validate import Outcome, SuiteResult, run_suite

KPI_MODELS = ("fct_kpi_5m", "fct_kpi_15m", "fct_kpi_1h")
# KPI and score results are kept per 6 hours of data: GX costs ~0.1 s per run whatever the
# rows, so hourly targets made validation the slowest stage of a backfill.
BUCKET = timedelta(hours=6)


@dataclass
class QualitySummary:
    suite: str
    targets: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # passed/warning/error -> targets
    failed: dict[str, int] = field(default_factory=dict)  # expectation -> targets it failed
    alerts_raised: int = 0
    alerts_resolved: int = 0
    seconds: float = 0.0

    def add(self, result: SuiteResult) -> None:
        self.targets += 1
        self.statuses[result.status] = self.statuses.get(result.status, 0) + 1
        for o in result.failed():
            self.failed[o.expectation] = self.failed.get(o.expectation, 0) + 1
        self.seconds = round(self.seconds + result.seconds, 3)

    @property
    def status(self) -> str:
        return next((s for s in ("error", "warning") if self.statuses.get(s)), "passed")


def tolerances() -> suites.Tolerances:
    s = get_settings()
    return suites.Tolerances(s.quality_tolerance, s.quality_row_count_tolerance,
                             s.future_tolerance_seconds)


def buckets(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Whole buckets overlapping [start, end): a bucket keeps its name while it fills up."""
    first = pd.Timestamp(start).tz_convert("UTC").floor(BUCKET)
    last = pd.Timestamp(end).tz_convert("UTC")
    for lo in pd.date_range(first, last, freq=BUCKET, inclusive="left"):
        yield lo.to_pydatetime(), (lo + BUCKET).to_pydatetime()


def _fmt(ts: datetime) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _reason(suite: str, o: Outcome, target: str) -> str:
    share = f"{o.unexpected_percent:.2f}% of " if o.unexpected_percent is not None else ""
    rows = f"{o.unexpected_count:,} of {o.element_count:,} rows" if o.element_count else ""
    what = o.message or (f"{share}{rows}".strip() or f"observed {o.observed}")
    return f"{suite}: {o.expectation} failed on {target} ({what})"


def _record(conn: psycopg.Connection, result: SuiteResult, target: str, batch_id: int | None,
            start: datetime | None, end: datetime, run_id: str, summary: QualitySummary) -> None:
    """Store a target's results and bring its quality alerts up to date."""
    quality_store.save_results(conn, result, target, batch_id, start, end, run_id)
    for o in result.outcomes:
        key = f"{quality_store.QUALITY_ALERT_PREFIX}{result.suite}:{o.expectation}"
        if not o.success and o.severity == "error":
            details = {"suite": result.suite, "target": target, "batch_id": batch_id,
                       "unexpected_count": o.unexpected_count, "sample": o.sample[:5]}
            summary.alerts_raised += quality_store.raise_quality_alert(
                conn, key, end, _reason(result.suite, o, target), o.unexpected_percent, details)
        elif o.success:
            summary.alerts_resolved += quality_store.resolve_quality_alert(
                conn, key, end, f"passed on {target}")
    summary.add(result)


def _registry(conn: psycopg.Connection) -> suites.RegistryParams:
    devices, metrics = quality_store.registry(conn)
    return suites.RegistryParams.from_registry(devices, metrics)


def validate_raw_batch(readings: pd.DataFrame, window_start: datetime, window_end: datetime,
                       reference_time: datetime, batch_id: int, stream: str,
                       run_id: str) -> QualitySummary:
    """The batch as received (before the loader's rules), so every fault is counted; marks
    the batch with the worst failed severity."""
    summary = QualitySummary(suites.RAW_BATCH)
    target = f"{stream} [{_fmt(window_start)}, {_fmt(window_end)})"
    with db.transaction() as conn:
        registry = _registry(conn)
        suite = suites.raw_batch_suite(registry, window_start, window_end, reference_time,
                                       tolerances())
        result = run_suite(suites.raw_batch_frame(readings, registry), suite,
                           suites.KEY_COLUMNS[suites.RAW_BATCH])
        _record(conn, result, target, batch_id, window_start, window_end, run_id, summary)
        quality_store.mark_batch(conn, batch_id, result.status)
    return summary


def validate_kpis(start: datetime, end: datetime, run_id: str) -> QualitySummary:
    """The KPI marts' complete windows in [start, end), one target per bucket holding every
    grain (GX's fixed cost per run dominates small frames, so grains share a run)."""
    summary = QualitySummary(suites.KPI)
    suite = suites.kpi_suite(tolerances())
    schema = get_settings().dbt_schema
    with db.transaction() as conn:
        for lo, hi in buckets(start, end):
            rows = quality_store.kpi_rows(conn, schema, KPI_MODELS, lo, min(hi, end))
            if rows.empty:
                continue
            result = run_suite(suites.kpi_frame(rows), suite, suites.KEY_COLUMNS[suites.KPI])
            _record(conn, result, f"kpi [{_fmt(lo)}, {_fmt(hi)})", None, lo, min(hi, end),
                    run_id, summary)
    return summary


def validate_scores(start: datetime, end: datetime, run_id: str) -> QualitySummary:
    """Stored scores in [start, end), one target per bucket."""
    summary = QualitySummary(suites.SCORES)
    suite = suites.scores_suite()
    with db.transaction() as conn:
        for lo, hi in buckets(start, end):
            rows = quality_store.score_rows(conn, lo, min(hi, end))
            if rows.empty:
                continue
            result = run_suite(rows, suite, suites.KEY_COLUMNS[suites.SCORES])
            _record(conn, result, f"scores [{_fmt(lo)}, {_fmt(hi)})", None, lo, min(hi, end),
                    run_id, summary)
    return summary
