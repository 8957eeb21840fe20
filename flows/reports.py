"""The `report` flow: every HTML report over one range, the index, and an artifact linking them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, model_validator

from core.settings import get_settings
from flows import artifacts, tasks


class ReportParams(BaseModel):
    hours: float = Field(24, gt=0, le=24 * 31, description="range length when `since` is unset")
    since: datetime | None = Field(None, description="range start (UTC)")
    until: datetime | None = Field(None, description="range end; default: the newest data")

    @model_validator(mode="after")
    def _ordered(self) -> ReportParams:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class ReportSummary(BaseModel):
    reports_dir: Path
    index: Path
    files: dict[str, Path] = {}


@task(name="write-report", task_run_name="write {name} report", cache_policy=NO_CACHE)
def write(name: str, build: Callable[[], Path]) -> Path:
    """Report files only: a disk or permission error fails this task with its message."""
    return build()


@flow(name="report")
def report(params: ReportParams = ReportParams()) -> ReportSummary:
    """Write the alert, fleet, quality, evaluation and drift reports and the index (offline,
    self-contained HTML under TELEMETRY_REPORTS_DIR)."""
    from reports.alert_report import write_alert_report
    from reports.drift_summary import write_drift_summary_report
    from reports.evaluation_report import write_evaluation_report_from_db
    from reports.fleet_report import write_fleet_report
    from reports.index import write_index_report
    from reports.quality_report import write_quality_report

    out, run_id = get_settings().reports_dir, tasks.flow_run_id()
    span = (params.since, params.until, run_id)
    builders: dict[str, Callable[[], Path]] = {
        "alerts": lambda: write_alert_report(out, *span, hours=params.hours),
        "fleet": lambda: write_fleet_report(out, *span, hours=params.hours),
        "quality": lambda: write_quality_report(out, *span, hours=params.hours),
        "evaluation": lambda: write_evaluation_report_from_db(out, run_id),
        "drift": lambda: write_drift_summary_report(out, run_id),
    }
    files = {name: write(name, build) for name, build in builders.items()}
    index = write("index", lambda: write_index_report(out, run_id))
    artifacts.publish("reports", "Reports", [
        ("directory", f"`{out}`"), ("index", index.resolve().as_uri())], files)
    get_run_logger().info("reports written to %s: %s", out, ", ".join(files))
    return ReportSummary(reports_dir=out, index=index, files=files)
