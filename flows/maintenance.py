"""Maintenance flows: hourly-rollup (KPI catch-up, quality summary), retention (old partitions
and what was derived from them) and nightly (drift -> train -> evaluate-lite -> retention)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from core import db, locks, report_store
from core import retention as retention_sql
from core.ingest import SIMULATOR_STREAM, Window
from core.settings import get_settings
from flows import artifacts, tasks
from flows.detection import EvaluateParams, TrainParams, evaluate, train
from flows.drift import DriftParams, drift_report
from flows.pipeline import QualityBrief

IO_RETRIES = tasks.IO_RETRIES


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# hourly-rollup


class RollupParams(BaseModel):
    horizon_minutes: int | None = Field(
        None, ge=5, le=7 * 24 * 60, description="KPI windows this far before the loaded "
        "watermark are rebuilt and validated again; default TELEMETRY_LATE_HORIZON_MINUTES")
    quality_report: bool = Field(
        True, description="also write the quality HTML report (last day) and link it")
    lock_wait_seconds: float = Field(
        120, ge=0, le=3600, description="wait this long for a running micro-batch (its dbt "
        "build writes the same KPI tables); then skip, the next hourly run rebuilds")


class SuiteQuality(BaseModel):
    """One suite's validations over a period (from telemetry.quality_results)."""

    targets: int = 0
    evaluated: int = 0
    failed_errors: int = 0
    failed_warnings: int = 0
    failed: dict[str, int] = {}  # expectation -> failures


class RollupSummary(BaseModel):
    window_start: datetime | None = None
    window_end: datetime | None = None
    dbt_models: int = 0
    dbt_tests: int = 0
    kpi: QualityBrief | None = None
    last_hour: dict[str, SuiteQuality] = {}
    last_day: dict[str, SuiteQuality] = {}
    report: Path | None = None
    seconds: dict[str, float] = {}
    skipped: str | None = None


@task(name="quality-overview", task_run_name="quality overview {start:%Y-%m-%d %H:%M}-"
      "{end:%Y-%m-%d %H:%M}", **IO_RETRIES)
def quality_overview(start: datetime, end: datetime) -> dict[str, SuiteQuality]:
    """Per suite, the targets validated and expectations failed in [start, end) (placed by the
    validated window's start, as the quality report places them)."""
    with db.connect() as conn:
        totals = report_store.quality_summary(conn, start, end)
        failing = report_store.failing_expectations(conn, start, end)
    out = {r.suite: SuiteQuality(targets=int(r.targets), evaluated=int(r.evaluated),
                                 failed_errors=int(r.failed_errors),
                                 failed_warnings=int(r.failed_warnings))
           for r in totals.itertuples(index=False)}
    for r in failing.itertuples(index=False):
        suite = out.setdefault(r.suite, SuiteQuality())
        suite.failed[r.expectation] = suite.failed.get(r.expectation, 0) + int(r.failures)
    return out


@task(name="quality-report", task_run_name="quality report, last {hours:g} h",
      cache_policy=NO_CACHE)
def write_quality_report(hours: float, run_id: str) -> Path:
    from reports.quality_report import write_quality_report as write

    return write(get_settings().reports_dir, run_id=run_id, hours=hours)


def _quality_rows(label: str, suites: dict[str, SuiteQuality]) -> list[tuple[str, Any]]:
    if not suites:
        return [(f"quality, {label}", "nothing validated")]
    rows = []
    for name, q in sorted(suites.items()):
        failed = ", ".join(f"{k} ({v})" for k, v in q.failed.items()) or "none failed"
        rows.append((f"quality, {label}: {name}",
                     f"{q.targets} targets, {q.evaluated} expectations; failed: "
                     f"{q.failed_errors} errors, {q.failed_warnings} warnings ({failed})"))
    return rows


def _failed_counts(suites: dict[str, SuiteQuality]) -> dict[str, int]:
    return {name: q.failed_errors + q.failed_warnings for name, q in suites.items()}


def _rebuild(summary: RollupSummary, params: RollupParams, loaded_to: datetime,
             run_id: str) -> None:
    """dbt from the start of the late-data horizon, then the KPI suite over those windows."""
    horizon = timedelta(minutes=params.horizon_minutes or get_settings().late_horizon_minutes)
    window = Window(loaded_to - horizon, loaded_to)
    summary.window_start, summary.window_end = window.start, window.end
    t = time.perf_counter()
    run = tasks.build_kpis(rebuild_from=window.start)
    summary.seconds["dbt"] = round(time.perf_counter() - t, 2)
    kinds = Counter(r.unique_id.split(".", 1)[0] for r in run.results)
    summary.dbt_models, summary.dbt_tests = kinds["model"], kinds["test"]
    t = time.perf_counter()
    summary.kpi = QualityBrief.of(tasks.validate_kpis(window, run_id))
    summary.seconds["validate_kpis"] = round(time.perf_counter() - t, 2)


@flow(name="hourly-rollup")
def hourly_rollup(params: RollupParams = RollupParams()) -> RollupSummary:
    """Rebuild the KPI windows of the late-data horizon with dbt (late rows the micro-batches
    loaded after their window was built), validate them again, and summarize data quality:
    failed expectations per suite in the last hour and day of data."""
    logger = get_run_logger()
    run_id = tasks.flow_run_id()
    summary = RollupSummary()
    # Two dbt builds of the same incremental models at once (this and a micro-batch's) could
    # delete and insert the same windows concurrently: take the micro-batch's lock.
    with locks.advisory_lock(locks.micro_batch_lock_name(SIMULATOR_STREAM),
                             wait_seconds=params.lock_wait_seconds) as lease:
        loaded_to = tasks.read_watermark(SIMULATOR_STREAM)
        if not lease.acquired:
            summary.skipped = (f"a micro-batch held the lock {lease.name} "
                               f"({lease.describe_holder()}) for {lease.waited_seconds:g}s;"
                               " the next hourly run rebuilds")
        elif loaded_to is None:
            summary.skipped = "nothing loaded yet"
        else:
            _rebuild(summary, params, loaded_to, run_id)
    end = loaded_to or _now()
    t = time.perf_counter()
    summary.last_hour = quality_overview(end - timedelta(hours=1), end)
    summary.last_day = quality_overview(end - timedelta(days=1), end)
    summary.seconds["overview"] = round(time.perf_counter() - t, 2)
    reports: dict[str, Path] = {}
    if params.quality_report and loaded_to is not None:
        t = time.perf_counter()
        summary.report = reports["quality"] = write_quality_report(24, run_id)
        summary.seconds["report"] = round(time.perf_counter() - t, 2)
    kpi = summary.kpi
    rebuilt = (f"{summary.window_start:%Y-%m-%d %H:%M}-{summary.window_end:%Y-%m-%d %H:%M}"
               if summary.window_start else f"skipped ({summary.skipped})")
    logger.info(
        "hourly-rollup %s: dbt %d models / %d tests, kpi quality %s (%d targets, failed %s);"
        " failed expectations per suite last hour %s, last day %s; seconds %s",
        rebuilt, summary.dbt_models, summary.dbt_tests, kpi.status if kpi else "-",
        kpi.targets if kpi else 0, (kpi.failed if kpi else {}) or "none",
        _failed_counts(summary.last_hour), _failed_counts(summary.last_day), summary.seconds)
    rows: list[tuple[str, Any]] = [
        ("rebuilt KPI windows (UTC)", f"{summary.window_start:%Y-%m-%d %H:%M} to "
         f"{summary.window_end:%Y-%m-%d %H:%M}" if summary.window_start else summary.skipped),
        ("dbt", f"{summary.dbt_models} models, {summary.dbt_tests} tests")]
    if kpi is not None:
        failed = ", ".join(f"{k} ({v})" for k, v in kpi.failed.items()) or "none failed"
        rows.append(("KPI validation", f"{kpi.status}, {kpi.targets} targets, {failed}"))
    rows += _quality_rows(f"last hour to {end:%Y-%m-%d %H:%M}", summary.last_hour)
    rows += _quality_rows("last day", summary.last_day)
    rows.append(("seconds", ", ".join(f"{k} {v}" for k, v in summary.seconds.items())))
    artifacts.publish("hourly-rollup", "Hourly rollup: KPI catch-up and data quality", rows,
                      reports)
    return summary


# ---------------------------------------------------------------------------------------------
# retention


class RetentionParams(BaseModel):
    keep_days: int = Field(
        30, ge=1, le=3650, description="keep this many whole UTC days before today (and today);"
        " older daily partitions of telemetry.readings are dropped")
    as_of: datetime | None = Field(None, description="the 'today' the horizon counts from; "
                                   "default: now (UTC)")
    derived: bool = Field(True, description="also delete stored scores and quality results "
                          "about data past the horizon")
    dry_run: bool = Field(False, description="list what would go, change nothing")
    lock_timeout_seconds: float = Field(
        5, gt=0, le=300, description="give up on a partition (the next run drops it) when its "
        "exclusive lock is not granted within this time")


class RetentionSummary(BaseModel):
    keep_days: int
    cutoff: datetime  # rows stamped before this expired
    dry_run: bool = False
    expired: list[str] = []  # partitions past the horizon
    dropped: dict[str, int] = {}  # partition -> rows it held
    not_dropped: dict[str, str] = {}  # partition -> why (lock not granted in time)
    default_rows: int = 0
    scores: int = 0
    quality_results: int = 0
    seconds: dict[str, float] = {}

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())


def _connect() -> psycopg.Connection:
    return db.connect(autocommit=True)  # each retention step commits on its own


@task(name="expired-partitions", task_run_name="partitions before {before:%Y-%m-%d}",
      **IO_RETRIES)
def expired_partitions(before: datetime) -> list[retention_sql.Partition]:
    with _connect() as conn:
        return retention_sql.expired_partitions(conn, before)


@task(name="drop-partition", task_run_name="drop {partition.name}", **IO_RETRIES)
def drop_partition(partition: retention_sql.Partition, lock_timeout_ms: int) -> int | None:
    """Rows the partition held, or None when its lock was not granted in time (not an error:
    a long query was reading it; retrying at once would only wait again)."""
    with _connect() as conn:
        try:
            return retention_sql.drop_partition(conn, partition, lock_timeout_ms)
        except psycopg.errors.LockNotAvailable:
            return None


@task(name="delete-expired", task_run_name="delete {what} before {before:%Y-%m-%d}",
      **IO_RETRIES)
def delete_expired(what: str, before: datetime) -> int:
    steps: dict[str, Callable[[psycopg.Connection, datetime], int]] = {
        "default-partition rows": retention_sql.delete_default_rows,
        "scores": retention_sql.delete_scores,
        "quality results": retention_sql.delete_quality_results,
    }
    with _connect() as conn:
        return steps[what](conn, before)


@flow(name="retention")
def retention(params: RetentionParams = RetentionParams()) -> RetentionSummary:
    """Drop the daily partitions of telemetry.readings older than keep_days (whole days), delete
    expired rows of the default partition and, unless derived=false, the stored scores and
    quality results about that data. Batches, quarantine, labels and alerts are kept."""
    logger = get_run_logger()
    before = retention_sql.cutoff(params.as_of or _now(), params.keep_days)
    summary = RetentionSummary(keep_days=params.keep_days, cutoff=before,
                               dry_run=params.dry_run)
    t = time.perf_counter()
    expired = expired_partitions(before)
    summary.expired = [p.name for p in expired]
    if not params.dry_run:
        for partition in expired:
            rows = drop_partition(partition, int(params.lock_timeout_seconds * 1000))
            if rows is None:
                summary.not_dropped[partition.name] = (
                    f"lock not granted within {params.lock_timeout_seconds:g}s")
            else:
                summary.dropped[partition.name] = rows
        summary.seconds["partitions"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        summary.default_rows = delete_expired("default-partition rows", before)
        if params.derived:
            summary.scores = delete_expired("scores", before)
            summary.quality_results = delete_expired("quality results", before)
        summary.seconds["delete"] = round(time.perf_counter() - t, 2)
    logger.info(
        "retention before %s (keep %d days)%s: %d partitions expired, %d dropped (%d rows),"
        " %d left for the next run%s; deleted %d default-partition rows, %d scores,"
        " %d quality results; seconds %s", f"{before:%Y-%m-%d}", params.keep_days,
        " [dry run]" if params.dry_run else "", len(expired), len(summary.dropped),
        summary.rows_dropped, len(summary.not_dropped),
        f" {summary.not_dropped}" if summary.not_dropped else "", summary.default_rows,
        summary.scores, summary.quality_results, summary.seconds)
    artifacts.publish("retention", "Retention" + (" (dry run)" if params.dry_run else ""), [
        ("cutoff (UTC)", f"{before:%Y-%m-%d %H:%M} (keep {params.keep_days} days)"),
        ("expired partitions", ", ".join(summary.expired) or "none"),
        ("dropped", ", ".join(f"{k} ({v:,} rows)" for k, v in summary.dropped.items())
         or "none"),
        ("left for the next run", ", ".join(f"{k}: {v}" for k, v in
                                            summary.not_dropped.items()) or "none"),
        ("deleted rows", f"default partition {summary.default_rows:,}, scores "
         f"{summary.scores:,}, quality results {summary.quality_results:,}"),
        ("seconds", ", ".join(f"{k} {v}" for k, v in summary.seconds.items()))])
    return summary


# ---------------------------------------------------------------------------------------------
# nightly


def _lite_evaluation() -> EvaluateParams:
    # Small enough to run in well under a minute every night; `evaluate` runs the full one.
    return EvaluateParams(days=1, train_days=3, sites=1, zones_per_site=2, devices_per_zone=3)


class NightlyParams(BaseModel):
    drift: DriftParams = Field(default_factory=DriftParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(
        default_factory=_lite_evaluation, description="evaluate-lite: a small backtest")
    retention: RetentionParams = Field(default_factory=RetentionParams)


class StepOutcome(BaseModel):
    status: str  # completed / failed
    detail: str
    seconds: float


class NightlySummary(BaseModel):
    steps: dict[str, StepOutcome] = {}

    @property
    def failed(self) -> list[str]:
        return [name for name, s in self.steps.items() if s.status == "failed"]


def _drift_detail(summary: Any) -> str:
    if not summary.drifted:
        return "no verdict: " + "; ".join(f"{k}: {v}" for k, v in summary.skipped.items())
    return "; ".join(f"{site}: {len(m)} drifted ({', '.join(m) or 'none'})"
                     for site, m in summary.drifted.items()) + (
        f"; {summary.alerts_flagged} alerts flagged")


def _retention_detail(summary: RetentionSummary) -> str:
    return (f"before {summary.cutoff:%Y-%m-%d}: {len(summary.dropped)} partitions dropped "
            f"({summary.rows_dropped:,} rows), {len(summary.not_dropped)} left; "
            f"{summary.scores:,} scores, {summary.quality_results:,} quality results deleted")


@flow(name="nightly")
def nightly(params: NightlyParams = NightlyParams()) -> NightlySummary:
    """Drift report, then training (which reads the night's drift verdicts to re-baseline),
    then evaluate-lite, then retention. A failed step does not stop the later ones (fresh models
    and retention should not wait on a drift report); the run fails at the end if any did."""
    logger = get_run_logger()
    summary = NightlySummary()
    steps: list[tuple[str, Callable[[], str]]] = [
        ("drift-report", lambda: _drift_detail(drift_report(params.drift))),
        ("train", lambda: f"versions {train(params.train)}"),
        ("evaluate", lambda: ", ".join(f"{k} {v:.3f}" for k, v in
                                       evaluate(params.evaluate).items())),
        ("retention", lambda: _retention_detail(retention(params.retention))),
    ]
    for name, step in steps:
        t = time.perf_counter()
        try:
            detail, status = step(), "completed"
        except Exception as exc:  # the child run is marked failed with its traceback
            detail, status = f"{type(exc).__name__}: {exc}", "failed"
            logger.warning("nightly: %s failed: %s", name, detail)
        summary.steps[name] = StepOutcome(status=status, detail=detail,
                                          seconds=round(time.perf_counter() - t, 2))
    logger.info("nightly: %s; seconds %s", "; ".join(
        f"{name} {s.status} ({s.detail})" for name, s in summary.steps.items()),
        {name: s.seconds for name, s in summary.steps.items()})
    artifacts.publish("nightly", "Nightly: drift, train, evaluate-lite, retention", [
        (name, f"**{s.status}** in {s.seconds:g}s: {s.detail}")
        for name, s in summary.steps.items()])
    if summary.failed:
        raise RuntimeError(f"nightly steps failed: {', '.join(summary.failed)}")
    return summary
