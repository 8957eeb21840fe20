"""The spine's flows: simulate-and-load, build-kpis, micro-batch and backfill."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from core import locks, quality
from core.dbt_runner import DbtRun
from core.ingest import SIMULATOR_STREAM, Window, chunks, floor_time
from flows import artifacts, progress, tasks
from flows.detection import ScoreParams, ScoreRunSummary, score_loaded
from flows.params import BackfillParams, FleetParams, WindowParams

DEFAULT_FIRST_WINDOW = timedelta(minutes=15)  # a stream with no watermark starts this far back
LATE_ARRIVAL_REACH = timedelta(hours=2)  # rows arriving in a window may be stamped this early


class LoadSummary(BaseModel):
    window_start: datetime | None = None
    window_end: datetime | None = None
    chunks: int = 0
    batch_ids: list[int] = []
    rows_received: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    quarantined_by_rule: dict[str, int] = {}
    labels: int = 0
    faults: int = 0
    seconds: dict[str, float] = {}
    remaining_gap_hours: float = 0.0
    quality: dict[str, int] = {}  # raw batches per status: passed / warning / error
    quality_failed: dict[str, int] = {}  # failed expectation -> batches
    quality_alerts_changed: int = 0  # data alerts raised or resolved by the raw-batch checks


class QualityBrief(BaseModel):
    """One suite's validation in a run."""

    status: str = "passed"
    targets: int = 0
    failed: dict[str, int] = {}
    alerts_raised: int = 0
    alerts_resolved: int = 0

    @classmethod
    def of(cls, summary: quality.QualitySummary) -> QualityBrief:
        return cls(status=summary.status, targets=summary.targets, failed=summary.failed,
                   alerts_raised=summary.alerts_raised, alerts_resolved=summary.alerts_resolved)


class RunSummary(BaseModel):
    load: LoadSummary
    score: ScoreRunSummary | None = None
    dbt_models: int = 0
    dbt_tests: int = 0
    quality: dict[str, QualityBrief] = {}  # suite -> brief (kpi, scores; raw is in load)
    seconds: dict[str, float] = {}
    skipped: str | None = None  # why the run did nothing (another micro-batch held the lock)


def _dbt_counts(run: DbtRun) -> dict[str, int]:
    kinds = Counter(r.unique_id.split(".", 1)[0] for r in run.results)
    return {"dbt_models": kinds["model"], "dbt_tests": kinds["test"]}


def _load_rows(load: LoadSummary) -> list[tuple[str, object]]:
    rules = ", ".join(f"{k} {v:,}" for k, v in load.quarantined_by_rule.items()) or "none"
    failed = ", ".join(f"{k} ({v})" for k, v in load.quality_failed.items()) or "none"
    marks = ", ".join(f"{k} {v}" for k, v in load.quality.items())
    window = (f"{load.window_start:%Y-%m-%d %H:%M} to {load.window_end:%Y-%m-%d %H:%M}"
              if load.window_start else "-")
    return [
        ("window (UTC)", window),
        ("batches", f"{len(load.batch_ids)} ({marks})"),
        ("rows received / loaded", f"{load.rows_received:,} / {load.rows_loaded:,}"),
        ("duplicates skipped", f"{load.rows_duplicate:,}"),
        ("quarantined", f"{load.rows_quarantined:,} ({rules})"),
        ("failed expectations (raw batches)", failed),
        ("gap left for the next run (h)", load.remaining_gap_hours),
    ]


def _run_rows(summary: RunSummary) -> list[tuple[str, object]]:
    rows = _load_rows(summary.load)
    rows.append(("dbt", f"{summary.dbt_models} models, {summary.dbt_tests} tests"))
    for suite, brief in summary.quality.items():
        failed = ", ".join(f"{k} ({v})" for k, v in brief.failed.items()) or "none failed"
        rows.append((f"quality: {suite}", f"{brief.status}, {brief.targets} targets, {failed}"))
    scored = summary.score
    if scored is not None:
        rows.append(("scoring", scored.skipped or (
            f"{scored.points:,} points, {scored.anomalies:,} anomalous; alerts fired "
            f"{scored.alerts_fired}, resolved {scored.alerts_resolved}, "
            f"open {scored.open_alerts}")))
    rows.append(("seconds", ", ".join(f"{k} {v}" for k, v in summary.seconds.items())))
    return rows


def _now() -> datetime:
    return datetime.now(UTC)


def resolve_window(params: WindowParams, stream: str, interval_s: int) -> tuple[Window, float]:
    """[watermark, now) by default, capped to max_catch_up_hours; returns the gap left over."""
    step = timedelta(seconds=interval_s)
    end = params.end or floor_time(_now(), step)
    start = params.start or tasks.read_watermark(stream) or (end - DEFAULT_FIRST_WINDOW)
    cap = start + timedelta(hours=params.max_catch_up_hours)
    remaining = max((end - cap).total_seconds() / 3600, 0.0)
    return Window(start, min(end, cap)), remaining


def _simulate_and_load(fleet: FleetParams, window: Window, chunk: timedelta,
                       source: str) -> LoadSummary:
    logger = get_run_logger()
    config = fleet.config()
    tasks.register_fleet(config)
    pieces = list(chunks(window, chunk))
    summary = LoadSummary(window_start=window.start, window_end=window.end, chunks=len(pieces))
    by_rule: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    run_id = tasks.flow_run_id()
    sim_s = load_s = check_s = 0.0
    for i, piece in enumerate(pieces, 1):
        t = time.perf_counter()
        batch = tasks.simulate_window(config, piece)
        sim_s += time.perf_counter() - t
        t = time.perf_counter()
        result = tasks.load_window(batch, piece, source)
        load_s += time.perf_counter() - t
        summary.batch_ids.append(result.batch_id)
        summary.rows_received += result.rows_received
        summary.rows_loaded += result.rows_loaded
        summary.rows_duplicate += result.rows_duplicate
        summary.rows_quarantined += result.rows_quarantined
        summary.labels += len(batch.labels)
        summary.faults += len(batch.faults)
        by_rule.update(result.quarantined_by_rule)
        t = time.perf_counter()
        checked = tasks.validate_raw_batch(batch.readings, piece, result.batch_id, run_id)
        check_s += time.perf_counter() - t
        statuses[checked.status] += 1
        summary.quality_alerts_changed += checked.alerts_raised + checked.alerts_resolved
        failed.update(checked.failed)
        progress.report(i, len(pieces), f"{piece}: {result.rows_loaded:,} loaded")
    summary.quarantined_by_rule = dict(by_rule.most_common())
    summary.quality, summary.quality_failed = dict(statuses), dict(failed)
    summary.seconds = {"simulate": round(sim_s, 2), "load": round(load_s, 2),
                       "validate_raw": round(check_s, 2)}
    logger.info(
        "%s: %d chunks, %d received, %d loaded, %d duplicate, %d quarantined %s;"
        " raw batches %s, failed expectations %s",
        window, len(pieces), summary.rows_received, summary.rows_loaded,
        summary.rows_duplicate, summary.rows_quarantined, dict(by_rule), dict(statuses),
        dict(failed) or "none",
    )
    return summary


@flow(name="simulate-and-load")
def simulate_and_load(
    window: WindowParams = WindowParams(), fleet: FleetParams = FleetParams()
) -> LoadSummary:
    """Simulate the fleet over a window (default: since the watermark up to now) and load it."""
    return load_new_window(window, fleet)


def load_new_window(window: WindowParams, fleet: FleetParams) -> LoadSummary:
    """simulate-and-load's body, inside the calling flow run (the micro-batch calls it)."""
    interval = fleet.resolved()["interval_seconds"]
    resolved, remaining = resolve_window(window, SIMULATOR_STREAM, interval)
    summary = _simulate_and_load(fleet, resolved, timedelta(minutes=window.chunk_minutes),
                                 "simulator")
    summary.remaining_gap_hours = round(remaining, 3)
    return summary


@flow(name="build-kpis")
def build_kpis(full_refresh: bool = False) -> RunSummary:
    """Build the KPI marts with dbt (incremental, with the late-data lookback)."""
    t = time.perf_counter()
    run = tasks.build_kpis(full_refresh=full_refresh)
    return RunSummary(load=LoadSummary(), **_dbt_counts(run),
                      seconds={"dbt": round(time.perf_counter() - t, 2)})


@flow(name="micro-batch")
def micro_batch(
    window: WindowParams = WindowParams(), fleet: FleetParams = FleetParams(),
    lock_wait_seconds: Annotated[float, Field(
        ge=0, le=300, description="wait this long for a running micro-batch to finish; "
        "0 = skip at once (the next scheduled run catches up from the watermark)")] = 0,
) -> RunSummary:
    """Simulate and load what arrived since the watermark, rebuild the KPIs it touched, then
    score the new readings and update alerts (once models are trained).

    One micro-batch per stream at a time, whoever starts it (schedule, CLI, API): the window
    comes from the watermark, so two overlapping runs would load and score the same window.
    A PostgreSQL advisory lock guards everything from reading the watermark to scoring."""
    name = locks.micro_batch_lock_name(SIMULATOR_STREAM)
    with locks.advisory_lock(name, wait_seconds=lock_wait_seconds) as lease:
        if not lease.acquired:
            return _skip_micro_batch(lease)
        return _micro_batch(window, fleet)


def _skip_micro_batch(lease: locks.Lease) -> RunSummary:
    reason = (f"another micro-batch holds the lock {lease.name} ({lease.describe_holder()});"
              f" waited {lease.waited_seconds:g}s; the next run catches up from the watermark")
    get_run_logger().info("micro-batch skipped: %s", reason)
    artifacts.publish("micro-batch", "Micro-batch (skipped)", [("skipped", reason)])
    return RunSummary(load=LoadSummary(), skipped=reason)


def _micro_batch(window: WindowParams, fleet: FleetParams) -> RunSummary:
    # The load and score flows' bodies run inside this flow run, not as child flow runs: the
    # two child runs cost ~2 s of Prefect API round trips a minute (PERFORMANCE.md); their
    # tasks show under the micro-batch run instead.
    load = load_new_window(window, fleet)
    run_id = tasks.flow_run_id()
    rebuilt = Window(load.window_start - LATE_ARRIVAL_REACH, load.window_end)
    t = time.perf_counter()
    run = tasks.build_kpis(rebuild_from=rebuilt.start)
    seconds = {**load.seconds, "dbt": round(time.perf_counter() - t, 2)}
    t = time.perf_counter()
    checks = {"kpi": QualityBrief.of(tasks.validate_kpis(rebuilt, run_id))}
    seconds["validate_kpis"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    scored = score_loaded(ScoreParams(end=load.window_end))
    seconds["score"] = round(time.perf_counter() - t, 2)
    if scored.window_start and scored.window_end:
        t = time.perf_counter()
        checks["scores"] = QualityBrief.of(tasks.validate_scores(
            Window(scored.window_start, scored.window_end), run_id))
        seconds["validate_scores"] = round(time.perf_counter() - t, 2)
    reports: dict[str, Path] = {}
    changed = (scored.alerts_fired + scored.alerts_resolved + scored.data_alerts_opened
               + load.quality_alerts_changed
               + sum(b.alerts_raised + b.alerts_resolved for b in checks.values()))
    # The alert report is rewritten when alerts changed, or changed since it was last written
    # (a minute whose report failed: disk full, permissions).
    if scored.window_end and (changed or tasks.alert_report_behind()):
        t = time.perf_counter()
        reports["alerts"] = tasks.write_alert_report(scored.window_end, run_id)
        seconds["report"] = round(time.perf_counter() - t, 2)
    summary = RunSummary(load=load, score=scored, **_dbt_counts(run), quality=checks,
                         seconds=seconds)
    get_run_logger().info(
        "micro-batch %s-%s: %d loaded, %d quarantined, dbt %d models / %d tests, "
        "quality raw %s kpi %s, %d anomalies, %d alerts fired, %d open; seconds %s",
        load.window_start, load.window_end, load.rows_loaded, load.rows_quarantined,
        summary.dbt_models, summary.dbt_tests, load.quality, checks["kpi"].status,
        scored.anomalies, scored.alerts_fired, scored.open_alerts, seconds,
    )
    artifacts.publish("micro-batch", "Micro-batch", _run_rows(summary), reports)
    return summary


@flow(name="backfill")
def backfill(
    params: BackfillParams = BackfillParams(), fleet: FleetParams = FleetParams()
) -> RunSummary:
    """Load `days` of history ending at `end` (default: the start of today, UTC) in chunks,
    then build the KPIs. Re-running it loads nothing new."""
    end = params.end or floor_time(_now(), timedelta(days=1))
    window = Window(end - timedelta(days=params.days), end)
    load = _simulate_and_load(fleet, window, timedelta(minutes=params.chunk_minutes),
                              "backfill")
    t = time.perf_counter()
    # Late rows of the first chunk reach back before the window; rebuild from there too.
    rebuilt = Window(window.start - LATE_ARRIVAL_REACH, window.end)
    run = tasks.build_kpis(rebuild_from=rebuilt.start)
    seconds = {**load.seconds, "dbt": round(time.perf_counter() - t, 2)}
    t = time.perf_counter()
    checks = {"kpi": QualityBrief.of(tasks.validate_kpis(rebuilt, tasks.flow_run_id()))}
    seconds["validate_kpis"] = round(time.perf_counter() - t, 2)
    summary = RunSummary(load=load, **_dbt_counts(run), quality=checks, seconds=seconds)
    artifacts.publish("backfill", "Backfill", _run_rows(summary))
    return summary
