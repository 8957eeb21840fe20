"""Detection flows: train (nightly), score (after loads, or over a range)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from pydantic import BaseModel, Field, model_validator

from core.ingest import SIMULATOR_STREAM, Window, chunks, floor_time
from flows import artifacts, dask_runner, drift, progress, tasks

LATE_REACH = timedelta(hours=2)  # windows this far back are re-scored (late data)
MAX_CATCH_UP = timedelta(days=2)  # one run scores at most this much


class TrainParams(BaseModel):
    days: float = Field(7, gt=0, le=90, description="days of history to learn baselines from")
    end: datetime | None = Field(
        None, description="default: the loaded data's watermark minus the late-data reach "
        "(train on settled data only)")
    reason: str = Field("scheduled", max_length=200)
    rebaseline: bool = Field(
        True, description="when a metric drifted in each of the last "
        "TELEMETRY_DRIFT_PERSIST_RUNS drift runs, learn from the drifted period only (its new "
        "normal)")


class ScoreParams(BaseModel):
    start: datetime | None = Field(None, description="default: the scoring watermark")
    end: datetime | None = Field(None, description="default: the loaded data's watermark")
    chunk_minutes: int = Field(60, ge=5, le=24 * 60)
    shards: int = Field(1, ge=1, le=64, description="device shards scored in parallel")
    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="where shard tasks run: threads of the flow's process, or Dask "
        "worker processes (a LocalCluster of dask_workers, or the cluster at "
        "TELEMETRY_DASK_ADDRESS); see docs/SCALING.md")
    dask_workers: int = Field(2, ge=1, le=64, description="LocalCluster worker processes")

    @model_validator(mode="after")
    def _ordered(self) -> ScoreParams:
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class ScoreRunSummary(BaseModel):
    window_start: datetime | None = None
    window_end: datetime | None = None
    points: int = 0
    anomalies: int = 0
    by_severity: dict[str, int] = {}
    alerts_opened: int = 0
    alerts_fired: int = 0
    alerts_resolved: int = 0
    data_alerts_opened: int = 0
    open_alerts: int = 0
    seconds: dict[str, float] = {}
    skipped: str | None = None
    runner: str | None = None  # where the shard tasks ran


@flow(name="train")
def train(params: TrainParams = TrainParams()) -> dict[str, int]:
    """Fit every detector on the last `days` of loaded history (anomalies excluded) and
    register a new model version of each."""
    end = params.end
    if end is None:
        loaded_to = tasks.read_watermark(SIMULATOR_STREAM)
        if loaded_to is None:
            raise ValueError("nothing loaded yet: run a backfill first (telemetry backfill)")
        end = loaded_to - LATE_REACH  # rows stamped later may still arrive
    end = floor_time(end, timedelta(hours=1))
    start, reason = end - timedelta(days=params.days), params.reason
    if params.rebaseline:
        start, reason = _rebaseline(start, end, reason)
    summary = tasks.train_models(start, end, reason)
    get_run_logger().info("trained %s on %d rows (%d excluded as anomalies) from %s to %s",
                          summary.versions, summary.rows, summary.excluded, start, end)
    return summary.versions


def _rebaseline(start: datetime, end: datetime, reason: str) -> tuple[datetime, str]:
    """Persistent drift moves the training window's start to where the drift began."""
    change = drift.rebaseline(drift.persistent_drift(end), start, end)
    if change is None:
        return start, reason
    get_run_logger().info("%s: training from %s instead of %s", change[1], change[0], start)
    return change


def score_range(window: Window, chunk: timedelta, shards: int) -> ScoreRunSummary:
    """Score a window in chunks; shards of one chunk run concurrently."""
    out = ScoreRunSummary(window_start=window.start, window_end=window.end)
    pieces = list(chunks(window, chunk))
    for i, piece in enumerate(pieces, 1):
        futures = [tasks.score_window.submit(piece, shard, shards) for shard in range(shards)]
        for result in (f.result() for f in futures):
            out.points += result.points
            out.anomalies += result.anomalies
            out.alerts_opened += result.alerts_opened
            out.alerts_fired += result.alerts_fired
            out.alerts_resolved += result.alerts_resolved
            out.data_alerts_opened += result.data_alerts_opened
            out.open_alerts = result.open_alerts
            for k, v in result.by_severity.items():
                out.by_severity[k] = out.by_severity.get(k, 0) + v
            for k, v in result.seconds.items():
                out.seconds[k] = round(out.seconds.get(k, 0.0) + v, 3)
        if shards > 1:
            tasks.mark_scored(piece.end)
        progress.report(i, len(pieces), f"scored {piece}")
    return out


def _dask_description() -> str:
    """The Dask cluster this flow run's tasks go to (address and worker count)."""
    context = FlowRunContext.get()
    client = getattr(context.task_runner, "client", None) if context else None
    if client is None:  # not a Dask runner (score_shards called on its own)
        return type(context.task_runner).__name__ if context else "none"
    return f"dask {client.scheduler.address}, {len(client.nthreads())} workers"


@flow(name="score-shards")
def score_shards(start: datetime, end: datetime, chunk_minutes: int,
                 shards: int) -> ScoreRunSummary:
    """The score flow's shard loop under this run's task runner (Dask: see flows/dask_runner)."""
    summary = score_range(Window(start, end), timedelta(minutes=chunk_minutes), shards)
    summary.runner = _dask_description()
    return summary


@flow(name="score")
def score(params: ScoreParams = ScoreParams()) -> ScoreRunSummary:
    """Score loaded readings (default: from the scoring watermark, minus the late-data reach,
    to the loaded data's watermark) and update alerts."""
    return score_loaded(params)


def score_loaded(params: ScoreParams) -> ScoreRunSummary:
    """The score flow's body, inside the calling flow run (the micro-batch calls it)."""
    if not tasks.has_models():
        get_run_logger().warning("no trained models yet: run the train flow first")
        return ScoreRunSummary(skipped="no trained models: run `telemetry run train`")
    end = params.end or tasks.read_watermark(SIMULATOR_STREAM)
    if end is None:
        return ScoreRunSummary(skipped="nothing loaded yet")
    start = params.start
    if start is None:
        scored_to = tasks.read_watermark("score")
        trained_to = tasks.trained_until()
        # Re-score the late-data reach, but never the models' own training window.
        start = max(scored_to - LATE_REACH, trained_to) if scored_to else trained_to
        start = max(start, end - MAX_CATCH_UP)
    if start >= end:
        return ScoreRunSummary(skipped="nothing new to score")
    if params.task_runner == "dask":
        # Prefect 3 fixes a flow's task runner before the run starts, so the shard loop runs in
        # a child flow given the Dask runner for this run only (with_options copies the flow).
        runner = dask_runner.task_runner(params.dask_workers)
        with dask_runner.shared_prefect_api():
            summary = score_shards.with_options(task_runner=runner)(
                start, end, params.chunk_minutes, params.shards)
    else:
        summary = score_range(Window(start, end), timedelta(minutes=params.chunk_minutes),
                              params.shards)
        summary.runner = "threads"
    get_run_logger().info("scored %s: %d points, %d anomalies, alerts %d fired / %d resolved,"
                          " %d open (%s)", Window(start, end), summary.points, summary.anomalies,
                          summary.alerts_fired, summary.alerts_resolved, summary.open_alerts,
                          summary.runner)
    return summary


class EvaluateParams(BaseModel):
    days: float = Field(7, gt=0, le=31, description="simulated test days")
    train_days: float = Field(7, gt=0, le=31)
    seed: int = Field(2, ge=0, description="2 = the evaluation seed (1 is the tuning seed)")
    sites: int = Field(3, ge=1, le=20)
    zones_per_site: int = Field(5, ge=1, le=20)
    devices_per_zone: int = Field(3, ge=1, le=20)


@flow(name="evaluate")
def evaluate(params: EvaluateParams = EvaluateParams()) -> dict[str, float]:
    """Backtest the detector suite on a simulated labeled fleet; store per-detector and
    per-anomaly-type scores in telemetry.evaluations; return the fused overall figures."""
    table, report = tasks.run_backtest(params.model_dump())
    fused = table[(table["detector"] == "fused") & (table["anomaly_type"] == "all")].iloc[0]
    get_run_logger().info("evaluation %s: fused F1 %.3f, recall %.3f, precision %.3f, "
                          "%.3f false alarms per device-day", fused["run_id"], fused["f1"],
                          fused["recall"], fused["precision"],
                          fused["false_alarms_per_device_day"])
    artifacts.publish("evaluate", "Evaluation (backtest)", [
        ("run", fused["run_id"]), ("fused F1", f"{fused['f1']:.3f}"),
        ("recall / precision", f"{fused['recall']:.3f} / {fused['precision']:.3f}"),
        ("false alarms per device-day", f"{fused['false_alarms_per_device_day']:.3f}")],
        {"evaluation": report})
    return {k: float(fused[k]) for k in ("f1", "recall", "precision",
                                         "false_alarms_per_device_day")}
