"""Prefect tasks: each wraps one library function; only I/O tasks retry."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from core import dbt_runner, ingest, loader
from core.ingest import Window
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


@task(name="dbt-build", **IO_RETRIES)
def build_kpis(rebuild_from: datetime | None = None, full_refresh: bool = False
               ) -> dbt_runner.DbtRun:
    """dbt build; windows from `rebuild_from` on are rebuilt even when older than the
    late-data horizon (a backfill of older history)."""
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    vars = {"rebuild_from": rebuild_from.isoformat()} if rebuild_from else None
    return dbt_runner.run_dbt(args, vars=vars)
