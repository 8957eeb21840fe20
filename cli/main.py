"""`telemetry`: the command line over the pipeline's flows and database.

It sits on top: nothing in flows/ or api/ imports it.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.env import apply_defaults
from cli.evaluate import evaluate, set_store
from cli.load_csv import load_csv
from cli.report import report_app
from cli.score_csv import score_csv
from cli.serve import serve
from cli.stream import simulate

app = typer.Typer(
    help="Device-telemetry pipeline: simulate a fleet, load it into PostgreSQL, build KPIs.",
    no_args_is_help=True, add_completion=False,
)
db_app = typer.Typer(help="Database: migrations and connection.", no_args_is_help=True)
app.add_typer(db_app, name="db")
alerts_app = typer.Typer(help="Alerts: list, acknowledge, resolve.", no_args_is_help=False,
                         invoke_without_command=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(report_app, name="report")
console = Console()

def _store_evaluation(rows) -> str:
    from core import db, detection_store

    with db.transaction() as conn:
        count = detection_store.save_evaluation(conn, rows)
    return f"telemetry.evaluations ({count} rows, run_id {rows['run_id'].iloc[0]})"


set_store(_store_evaluation)
app.command("evaluate")(evaluate)
app.command("score-csv")(score_csv)
app.command("load-csv")(load_csv)
app.command("simulate")(simulate)
app.command("serve")(serve)

FLOWS = ("micro-batch", "simulate-and-load", "build-kpis", "backfill", "train", "score",
         "drift-report", "report", "hourly-rollup", "nightly", "retention")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                               help="Show Prefect and dbt logs.")] = False
         ) -> None:
    apply_defaults(verbose)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Alembic revision")] = "head"
               ) -> None:
    """Apply schema migrations (creates the embedded server on first use)."""
    from core import migrate

    t = time.perf_counter()
    migrate.upgrade(revision)
    console.print(f"[green]database at {revision}[/] ({time.perf_counter() - t:.1f}s)")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (DATABASE_URL, or the embedded server's socket URL)."""
    from core import db

    console.print(db.database_url())


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)


@app.command()
def backfill(
    days: Annotated[float, typer.Option(help="Days of history to simulate and load.")] = 1,
    end: Annotated[datetime | None, typer.Option(
        help="End of the range (UTC); default the start of today.")] = None,
    chunk_minutes: Annotated[int, typer.Option(help="Chunk size (minutes).")] = 180,
) -> None:
    """Simulate and load N days of history in chunks, then build the KPIs."""
    t = time.perf_counter()
    summary = _run_backfill(days, end, chunk_minutes)
    _print_summary(summary, "backfill", time.perf_counter() - t)


def _run_backfill(days: float, end: datetime | None, chunk_minutes: int):
    from flows import progress
    from flows.params import BackfillParams
    from flows.pipeline import backfill as backfill_flow

    params = BackfillParams(days=days, end=end, chunk_minutes=chunk_minutes)
    with _progress() as bar:
        task = bar.add_task("backfill", total=None, info="starting Prefect…")
        stop = progress.listen(lambda done, total, msg: bar.update(
            task, completed=done, total=total, info=msg))
        try:
            summary = backfill_flow(params=params)
        finally:
            stop()
    return summary


@app.command("run")
def run_flow(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(FLOWS)}")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="key=value for the flow's window/params (e.g. -p chunk_minutes=30)"
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full summary as JSON.")
                       ] = False,
) -> None:
    """Run one flow now, in-process (ephemeral Prefect unless PREFECT_API_URL is set)."""
    from flows import detection, pipeline
    from flows.params import BackfillParams, WindowParams

    values = dict(p.split("=", 1) for p in (param or []))
    t = time.perf_counter()
    if name == "micro-batch":
        summary = pipeline.micro_batch(window=WindowParams(**values))
    elif name == "simulate-and-load":
        summary = pipeline.simulate_and_load(window=WindowParams(**values))
    elif name == "build-kpis":
        summary = pipeline.build_kpis(full_refresh=values.get("full_refresh") == "true")
    elif name == "backfill":
        summary = pipeline.backfill(params=BackfillParams(**values))
    elif name == "train":
        versions = detection.train(detection.TrainParams(**values))
        console.print(f"[green]trained[/] {versions} in {time.perf_counter() - t:.1f}s; next: "
                      "[bold]telemetry run score[/]")
        return
    elif name == "score":
        summary = detection.score(detection.ScoreParams(**values))
    elif name == "drift-report":
        from flows.drift import DriftParams, drift_report

        summary = drift_report(DriftParams(**values))
    elif name == "report":
        from flows.reports import ReportParams, report

        summary = report(ReportParams(**values))
    elif name in ("hourly-rollup", "nightly", "retention"):
        from flows import maintenance

        flow_fn, params_cls = {
            "hourly-rollup": (maintenance.hourly_rollup, maintenance.RollupParams),
            "nightly": (maintenance.nightly, maintenance.NightlyParams),
            "retention": (maintenance.retention, maintenance.RetentionParams),
        }[name]
        summary = flow_fn(params_cls(**values))
    else:
        raise typer.BadParameter(f"unknown flow {name!r}; choose from {', '.join(FLOWS)}")
    if as_json:
        console.print_json(summary.model_dump_json())
    else:
        _print_summary(summary, name, time.perf_counter() - t)


def _print_summary(summary, name: str, seconds: float) -> None:
    """A short account of a flow run and where to look next."""
    from flows.pipeline import LoadSummary

    if isinstance(getattr(summary, "skipped", None), str) and not hasattr(summary, "points"):
        console.print(f"[yellow]{name} skipped[/]: {summary.skipped}")
    load = summary if isinstance(summary, LoadSummary) else getattr(summary, "load", None)
    if load is not None and load.window_start:
        rules = ", ".join(f"{k} {v:,}" for k, v in load.quarantined_by_rule.items())
        console.print(
            f"{load.window_start:%Y-%m-%d %H:%M} - {load.window_end:%Y-%m-%d %H:%M} UTC in "
            f"{load.chunks} chunks: {load.rows_received:,} received, {load.rows_loaded:,} "
            f"loaded, {load.rows_duplicate:,} duplicate, {load.rows_quarantined:,} quarantined"
            + (f" ({rules})" if rules else "")
            + f"; {load.labels} anomaly labels, {load.faults} data faults"
        )
        if load.remaining_gap_hours:
            console.print(f"[yellow]{load.remaining_gap_hours:.1f} h of the gap remain[/]: the "
                          "next run continues from the new watermark")
    if getattr(summary, "dbt_models", 0):
        console.print(f"dbt: {summary.dbt_models} models built, {summary.dbt_tests} tests passed")
    scored = summary if hasattr(summary, "points") else getattr(summary, "score", None)
    if scored is not None:
        if scored.skipped:
            console.print(f"scoring skipped: {scored.skipped}")
        else:
            sev = ", ".join(f"{k} {v:,}" for k, v in scored.by_severity.items())
            console.print(f"scored {scored.window_start:%Y-%m-%d %H:%M} - "
                          f"{scored.window_end:%Y-%m-%d %H:%M} UTC: {scored.points:,} points, "
                          f"{scored.anomalies:,} anomalies"
                          + (f" ({sev})" if sev else "") + f"; alerts {scored.alerts_fired} "
                          f"fired, {scored.alerts_resolved} resolved, {scored.open_alerts} open")
    if load is not None and load.quality:
        failed = ", ".join(f"{k} ({v})" for k, v in load.quality_failed.items())
        console.print("quality of raw batches: " + ", ".join(
            f"{k} {v}" for k, v in load.quality.items()) + (f"; failed: {failed}" if failed
                                                            else "") + " (telemetry quality)")
    for suite, brief in (getattr(summary, "quality", None) or {}).items():
        failed = ", ".join(f"{k} ({v})" for k, v in brief.failed.items())
        console.print(f"quality of {suite}: {brief.status} over {brief.targets} 6-hour buckets"
                      + (f"; failed: {failed}" if failed else ""))
    if hasattr(summary, "drifted"):
        for site, metrics in summary.drifted.items():
            console.print(f"drift ({site}): " + (", ".join(metrics) or "none"))
        for site, why in summary.skipped.items():
            console.print(f"[yellow]drift ({site}) skipped[/]: {why}")
    index = getattr(summary, "index", None)
    if index is not None:
        console.print(f"reports: {index}", soft_wrap=True)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in getattr(summary, "seconds", {}).items())
    console.print(f"[green]{name} finished[/] in {seconds:.1f}s"
                  + (f" ({stages})" if stages else "") + "; next: [bold]telemetry status[/]"
                  + (", [bold]telemetry alerts[/]" if scored is not None else ""))


def _age(delta) -> str:
    """A timedelta as h:mm:ss (days when long), without microseconds."""
    return str(delta).split(".")[0] if delta is not None else "-"


def _status_flow_runs(limit: int = 50) -> dict | str:
    """The newest started flow run of each flow on the Prefect server (flow name -> run), or
    why there is nothing to show. Only asks a configured server: an ephemeral one would start a
    temporary server just to find it empty."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return ("not shown: PREFECT_API_URL is not set (runs of `telemetry run` go to a"
                " temporary server)")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    try:
        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC,
                                                     limit=limit) if r.start_time]
            ids = list({r.flow_id for r in runs})
            names = {f.id: f.name for f in client.read_flows(
                flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))} if ids else {}
    except Exception as exc:  # status must still show the database's side
        return f"Prefect API at {url} unreachable: {type(exc).__name__}: {exc}"
    latest: dict = {}
    for run in runs:
        latest.setdefault(names.get(run.flow_id, str(run.flow_id)), run)
    return latest


@app.command()
def status() -> None:
    """Watermarks and lag, the last flow runs, the micro-batch lock, the last batches,
    quarantine by rule, table and KPI row counts, partitions, models and open alerts."""
    from datetime import UTC

    from core import db, detection_store, locks, retention, store
    from core.ingest import SIMULATOR_STREAM
    from core.settings import get_settings

    with db.connect() as conn:
        models = detection_store.latest_models(conn)
        open_alerts = detection_store.open_alerts_by_severity(conn)
        marks = store.watermarks(conn)
        batches = store.recent_batches(conn, 8)
        rules = store.quarantine_by_rule(conn)
        counts = store.table_counts(conn)
        kpis = store.kpi_counts(conn, get_settings().dbt_schema)
        partitions = retention.partitions(conn)
    lock_name = locks.micro_batch_lock_name(SIMULATOR_STREAM)
    holder = locks.holder(lock_name)
    now = datetime.now(UTC)
    t = Table(title="watermarks", caption="lag: now - high water; moved: since it last advanced")
    for col in ("stream", "high water (UTC)", "lag", "moved", "last batch"):
        t.add_column(col)
    for m in marks:
        t.add_row(m["stream"], f"{m['high_water']:%Y-%m-%d %H:%M:%S}", _age(m["lag"]),
                  f"{_age(now - m['updated_at'])} ago", str(m["batch_id"]))
    console.print(t)
    runs = _status_flow_runs()
    if isinstance(runs, str):
        console.print(f"last flow runs: {runs}")
    else:
        t = Table(title="last flow runs (Prefect)")
        for col in ("flow", "run", "state", "started (UTC)", "ago", "took"):
            t.add_column(col)
        for flow_name, run in sorted(runs.items()):
            state = run.state.name if run.state else "-"
            colour = {"Completed": "green", "Failed": "red", "Crashed": "red"}.get(state)
            t.add_row(flow_name, run.name, f"[{colour}]{state}[/]" if colour else state,
                      f"{run.start_time:%Y-%m-%d %H:%M:%S}", _age(now - run.start_time),
                      f"{run.estimated_run_time.total_seconds():.1f}s")
        console.print(t if runs else "last flow runs: none yet")
    console.print(f"micro-batch lock ({lock_name}): " + (
        f"held by pid {holder['pid']} ({holder['application']}) since "
        f"{holder['since']:%Y-%m-%d %H:%M:%S} UTC" if holder else "free"))
    t = Table(title="last batches")
    for col in ("id", "source", "window", "received", "loaded", "dup", "quar.", "status", "took"):
        t.add_column(col)
    for b in batches:
        window = (f"{b['window_start']:%m-%d %H:%M} "
                  f"+{(b['window_end'] - b['window_start']).total_seconds() / 60:.0f}m"
                  if b["window_start"] and b["window_end"] else "-")
        t.add_row(str(b["batch_id"]), b["source"], window, f"{b['rows_received']:,}",
                  f"{b['rows_loaded']:,}", f"{b['rows_duplicate']:,}",
                  f"{b['rows_quarantined']:,}",
                  "ok" if b["status"] == "succeeded" else f"[red]{b['status']}: {b['error']}[/]",
                  f"{b['took'].total_seconds():.2f}s")
    console.print(t)
    console.print("tables: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    console.print("readings partitions: " + (
        f"{len(partitions)} daily, {partitions[0].day} to {partitions[-1].day}"
        " (retention drops old ones nightly)" if partitions else "none yet"))
    console.print("KPI marts: " + (", ".join(f"{k} {v:,}" for k, v in kpis.items())
                                   or "not built yet (telemetry run build-kpis)"))
    console.print("quarantine by rule: " + (", ".join(f"{k} {v:,}" for k, v in rules.items())
                                            or "empty"))
    console.print("models: " + (", ".join(
        f"{name} v{m['version']} ({m['train_start']:%m-%d}..{m['train_end']:%m-%d %H:%M})"
        for name, m in models.items()) or "none trained yet (telemetry run train)"))
    total = sum(open_alerts.values())
    console.print(f"open alerts: {total}" + (" (" + ", ".join(
        f"{k} {v}" for k, v in open_alerts.items()) + ")" if total else "")
        + " (telemetry alerts)")


@app.command()
def demo(
    days: Annotated[float, typer.Option(help="Days of history to simulate.")] = 1,
    detect: Annotated[bool, typer.Option(
        help="Train the detectors on the backfilled history, then catch up to now with "
             "micro-batches that score and raise alerts.")] = True,
) -> None:
    """From nothing: migrate, backfill a simulated day for the default fleet, build KPIs,
    train the detectors on it, catch up to now (scored, with alerts), and print a summary.
    Running it again loads and trains nothing new."""
    from core import db, detection_store, migrate, store
    from core.settings import get_settings

    stages: dict[str, float] = {}
    t = time.perf_counter()
    url = db.database_url()
    stages["database"] = time.perf_counter() - t
    t = time.perf_counter()
    migrate.upgrade()
    stages["migrate"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = _run_backfill(days, None, 180)
    stages["backfill (incl. Prefect start)"] = time.perf_counter() - t
    load = summary.load
    scored = None
    if detect:
        from flows import detection, pipeline

        t = time.perf_counter()
        # The backfilled day, minus the late-data reach (settled data): the same window on
        # every run, so a second demo reuses the models instead of training new versions.
        detection.train(detection.TrainParams(days=days,
                                              end=load.window_end - detection.LATE_REACH))
        stages["train"] = time.perf_counter() - t
        t = time.perf_counter()
        caught_up = pipeline.micro_batch()
        scored = caught_up.score
        stages["catch up to now (micro-batch)"] = time.perf_counter() - t
    from flows.drift import DriftParams, drift_report
    from flows.reports import report

    t = time.perf_counter()
    drift = drift_report(DriftParams())
    stages["drift"] = time.perf_counter() - t
    t = time.perf_counter()
    reports = report()
    stages["reports"] = time.perf_counter() - t
    with db.connect() as conn:
        kpis = store.kpi_counts(conn, get_settings().dbt_schema)
        counts = store.table_counts(conn)
        open_alerts = detection_store.open_alerts_by_severity(conn)
    t = Table(title=f"demo: {load.window_start:%Y-%m-%d %H:%M} - {load.window_end:%Y-%m-%d %H:%M}"
                    " UTC", show_header=False)
    t.add_row("database", url if "host=/" not in url else f"embedded ({url.split('host=')[1]})")
    t.add_row("rows received / loaded", f"{load.rows_received:,} / {load.rows_loaded:,}")
    t.add_row("duplicates skipped", f"{load.rows_duplicate:,}")
    t.add_row("quarantined", f"{load.rows_quarantined:,} " + (
        "(" + ", ".join(f"{k}: {v:,}" for k, v in load.quarantined_by_rule.items()) + ")"
        if load.quarantined_by_rule else ""))
    t.add_row("labeled anomalies (this run / stored)", f"{load.labels:,} / "
              f"{counts['anomaly_labels']:,}")
    t.add_row("injected data faults (this run / stored)", f"{load.faults:,} / "
              f"{counts['data_faults']:,}")
    t.add_row("KPI rows", ", ".join(f"{k}: {v:,}" for k, v in kpis.items()))
    t.add_row("dbt", f"{summary.dbt_models} models, {summary.dbt_tests} tests passed")
    t.add_row("data quality (raw batches)", ", ".join(
        f"{k} {v}" for k, v in load.quality.items()) + (" - failed: " + ", ".join(
            f"{k} ({v})" for k, v in load.quality_failed.items()) if load.quality_failed else ""))
    settings = get_settings()
    week = settings.drift_reference_days + settings.drift_current_days
    t.add_row("drift", "; ".join(f"{site}: {', '.join(m) or 'none drifted'}"
                                 for site, m in drift.drifted.items())
              or (f"not judged: it needs {week:g} days loaded (telemetry backfill --days "
                  f"{week + 1:g}, then telemetry run drift-report)" if days < week
                  else "not judged: " + "; ".join(drift.skipped.values())[:200]))
    if scored is not None and not scored.skipped:
        t.add_row("scored by the catch-up", f"{scored.points:,} points, {scored.anomalies:,} "
                  "anomalous (" + ", ".join(f"{k} {v:,}" for k, v in scored.by_severity.items())
                  + ")")
        t.add_row("alerts", f"{scored.alerts_fired} fired, {scored.data_alerts_opened} "
                  "missing-data; open now: " + (", ".join(
                      f"{k} {v}" for k, v in open_alerts.items()) or "none"))
    secs = {**{k: round(v, 2) for k, v in stages.items()}, **summary.seconds}
    t.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    console.print(t)
    console.print(f"[bold]reports:[/] {reports.index}", soft_wrap=True)
    console.print(
        "next: [bold]telemetry alerts[/] (open alerts) · [bold]telemetry status[/] "
        "(watermarks, batches, quarantine, models) · [bold]telemetry run micro-batch[/] "
        "(catch up to now) · [bold]telemetry evaluate[/] (backtest against labels) · "
        "[bold]psql \"$(telemetry db url)\"[/] then "
        "SELECT * FROM analytics.fct_kpi_15m LIMIT 10;"
    )


@app.command("api")
def serve_api(
    host: Annotated[str | None, typer.Option(help="default TELEMETRY_API_HOST (127.0.0.1)")
                    ] = None,
    port: Annotated[int | None, typer.Option(help="default TELEMETRY_API_PORT (8000)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the REST API and the dashboard (uvicorn). Writes need TELEMETRY_API_TOKEN."""
    import uvicorn

    from core.settings import get_settings

    settings = get_settings()
    host, port = host or settings.api_host, port or settings.api_port
    console.print(f"dashboard http://{host}:{port}/ · API docs http://{host}:{port}/docs · "
                  f"metrics http://{host}:{port}/metrics" + (
                      "" if settings.api_token else
                      " · [yellow]writes disabled: set TELEMETRY_API_TOKEN[/]"), soft_wrap=True)
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command("quality")
def quality_results(
    suite: Annotated[str | None, typer.Option(help="raw_batch, kpi or scores.")] = None,
    failed: Annotated[bool, typer.Option("--failed/--all", help="Only failed expectations.")
                      ] = True,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 30,
) -> None:
    """Great Expectations results, newest first: failed expectations by default."""
    from core import db, quality_store

    with db.connect() as conn:
        rows = quality_store.results(conn, suite, limit=2000)
    rows = [r for r in rows if not (failed and r["success"])][:limit]
    if not rows:
        console.print("no failed expectations" if failed else "no quality results yet")
        return
    t = Table(title="data quality" + (" (failed)" if failed else ""))
    for col in ("target", "expectation", "severity", "unexpected"):
        t.add_column(col)
    for r in rows:
        pct = r["unexpected_percent"]
        share = f"{r['unexpected_count'] or 0:,} ({pct:.2f}%)" if pct is not None else "-"
        t.add_row(r["target"], r["expectation"],
                  r["severity"] if not r["success"] else "passed", share)
    console.print(t)
    console.print("the whole picture: [bold]telemetry report quality[/] (HTML)")


@alerts_app.callback()
def alerts_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 30,
) -> None:
    """List open alerts, most severe first (`--all` for resolved ones too)."""
    if ctx.invoked_subcommand:
        return
    from core import alerting

    rows = alerting.list_alerts(open_only=not show_all, limit=limit)
    if not rows:
        console.print("no open alerts" if not show_all else "no alerts yet")
        return
    t = Table(title="alerts")
    for col in ("id", "severity", "state", "device", "metric", "opened (UTC)", "peak", "ack"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["alert_id"]), r["severity"], r["state"],
                  r["device_name"] or ("fleet" if r["device_id"] is None else
                                       str(r["device_id"])), r["metric"],
                  f"{r['opened_at']:%m-%d %H:%M:%S}", f"{r['peak_score'] or 0:.2f}",
                  r["acknowledged_by"] or "")
    console.print(t)
    console.print("act on one: [bold]telemetry alerts ack ID --by NAME[/] or "
                  "[bold]telemetry alerts resolve ID --by NAME --note WHY[/]")


@alerts_app.command("ack")
def alerts_ack(alert_id: int, by: Annotated[str, typer.Option(help="Who acknowledges.")],
               note: Annotated[str | None, typer.Option(help="Why / what next.")] = None
               ) -> None:
    """Acknowledge an open alert (it stays open; who and why are recorded)."""
    from core import alerting

    try:
        alerting.acknowledge_alert(alert_id, by, note)
    except (alerting.AlertNotFoundError, alerting.AlertClosedError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"alert {alert_id} acknowledged by {by}")


@alerts_app.command("resolve")
def alerts_resolve(alert_id: int, by: Annotated[str, typer.Option(help="Who resolves.")],
                   note: Annotated[str | None, typer.Option(help="What was done.")] = None
                   ) -> None:
    """Resolve an open alert by hand (a cooldown starts before it can re-open)."""
    from core import alerting

    try:
        alerting.resolve_alert(alert_id, by, note)
    except (alerting.AlertNotFoundError, alerting.AlertClosedError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"alert {alert_id} resolved by {by}")


@app.command("dbt", context_settings={"allow_extra_args": True,
                                      "ignore_unknown_options": True})
def dbt_passthrough(ctx: typer.Context) -> None:
    """Run dbt against the pipeline's database, e.g. `telemetry dbt build -s fct_kpi_5m`."""
    from core import dbt_runner

    run = dbt_runner.run_dbt(list(ctx.args))
    for r in run.results:
        console.print(f"{r.status:>8}  {r.unique_id}  {r.message or ''}")
    console.print(f"dbt {' '.join(ctx.args)}: {'ok' if run.success else 'FAILED'}")
