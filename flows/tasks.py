"""Prefect tasks: each wraps one library function; only I/O tasks retry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import dbt_runner, ingest, loader, quality, scoring
from core.ingest import Window
from core.settings import get_settings
from simulator import FleetConfig, SimulatedBatch, simulate

# Inputs are large frames: hashing them for Prefect's default cache key would cost more than
# the work, and every task here must run again when asked to.
IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "cache_policy": NO_CACHE}


@task(name="register-fleet", **IO_RETRIES)
def register_fleet(config: FleetConfig) -> int:
    return ingest.register_fleet(config)


@task(name="read-watermark", **IO_RETRIES)
def read_watermark(stream: str) -> datetime | None:
    return ingest.watermark(stream)


@task(name="simulate", task_run_name="simulate {window}", cache_policy=NO_CACHE)
def simulate_window(config: FleetConfig, window: Window) -> SimulatedBatch:
    return simulate(config, window.start, window.end)


@task(name="load", task_run_name="load {window}", **IO_RETRIES)
def load_window(batch: SimulatedBatch, window: Window, source: str) -> loader.BatchResult:
    return ingest.load_simulated(batch, window, source=source)


def flow_run_id() -> str:
    """What quality results and reports name as the run that wrote them."""
    from prefect.runtime import flow_run

    return f"prefect:{flow_run.id}" if flow_run.id else "prefect:local"


@task(name="validate-raw-batch", task_run_name="validate batch {batch_id} ({window})",
      **IO_RETRIES)
def validate_raw_batch(readings: pd.DataFrame, window: Window, batch_id: int,
                       run_id: str) -> quality.QualitySummary:
    return quality.validate_raw_batch(readings, window.start, window.end, window.end, batch_id,
                                      ingest.SIMULATOR_STREAM, run_id)


@task(name="validate-kpis", task_run_name="validate KPIs {window}", **IO_RETRIES)
def validate_kpis(window: Window, run_id: str) -> quality.QualitySummary:
    return quality.validate_kpis(window.start, window.end, run_id)


@task(name="validate-scores", task_run_name="validate scores {window}", **IO_RETRIES)
def validate_scores(window: Window, run_id: str) -> quality.QualitySummary:
    return quality.validate_scores(window.start, window.end, run_id)


@task(name="dbt-build", **IO_RETRIES)
def build_kpis(rebuild_from: datetime | None = None, full_refresh: bool = False
               ) -> dbt_runner.DbtRun:
    """dbt build; windows from `rebuild_from` on are rebuilt even when older than the
    late-data horizon (a backfill of older history)."""
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    return dbt_runner.run_dbt(args, rebuild_from=rebuild_from)


@task(name="train", task_run_name="train {start:%Y-%m-%d %H:%M}-{end:%Y-%m-%d %H:%M}",
      **IO_RETRIES)
def train_models(start: datetime, end: datetime, reason: str) -> scoring.TrainSummary:
    return scoring.train_models(start, end, reason=reason)


@task(name="score", task_run_name="score {window} shard {shard}/{shards}", **IO_RETRIES)
def score_window(window: Window, shard: int = 0, shards: int = 1) -> scoring.ScoreSummary:
    return scoring.score_window(window.start, window.end, shard=shard, shards=shards)


@task(name="has-models", **IO_RETRIES)
def has_models() -> bool:
    return scoring.has_models()


@task(name="trained-until", **IO_RETRIES)
def trained_until() -> datetime | None:
    return scoring.trained_until()


@task(name="backtest", cache_policy=NO_CACHE)
def run_backtest(params: dict) -> tuple[pd.DataFrame, Path]:
    """Simulate, fit, score and evaluate (pure), store the rows, write the evaluation report."""
    from core import backtest, db, detection_store
    from reports.evaluation_report import write_evaluation_report
    from simulator import FleetConfig

    config = FleetConfig(seed=params["seed"], sites=params["sites"],
                         zones_per_site=params["zones_per_site"],
                         devices_per_zone=params["devices_per_zone"])
    result = backtest.run_backtest(config, train_days=params["train_days"],
                                   test_days=params["days"], keep_alerts=True)
    with db.transaction() as conn:
        detection_store.save_evaluation(conn, result.table)
    path = write_evaluation_report(get_settings().reports_dir, result, config, flow_run_id())
    return result.table, path


@task(name="alert-report", task_run_name="alert report up to {end:%Y-%m-%d %H:%M}",
      cache_policy=NO_CACHE)
def write_alert_report(end: datetime, run_id: str) -> Path:
    from reports.alert_report import write_alert_report as write

    return write(get_settings().reports_dir, end=end, run_id=run_id)


def alert_report_behind() -> bool:  # not a task: one small query, asked most minutes
    from reports.alert_report import report_is_behind

    return report_is_behind(get_settings().reports_dir)


@task(name="mark-scored", **IO_RETRIES)
def mark_scored(end: datetime) -> None:
    scoring.mark_scored(end)
