"""`telemetry report ...`: build the self-contained HTML reports (reports/) into a directory.

cli/main.py registers this sub-app: `app.add_typer(report_app, name="report")`. With no command,
`telemetry report` builds them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

report_app = typer.Typer(help="Self-contained HTML reports: alerts, fleet, quality, evaluation,"
                              " drift, and an index of them.", invoke_without_command=True)
console = Console()

Out = Annotated[Path | None, typer.Option(
    "--out", help="Reports directory (default: TELEMETRY_REPORTS_DIR, reports/out).")]
Since = Annotated[datetime | None, typer.Option(
    help="Range start (UTC); default: --hours before --until.")]
Until = Annotated[datetime | None, typer.Option(
    help="Range end (UTC); default: the newest loaded or scored data.")]
Hours = Annotated[float, typer.Option(min=0.1, help="Range length when --since is not given.")]


def _out(out: Path | None) -> Path:
    from core.settings import get_settings

    return (out or get_settings().reports_dir).resolve()


def _run_id() -> str:
    from reports.catalog import cli_run_id

    return cli_run_id()


def _build(what: str, build: Callable[[], Path]) -> Path:
    t = time.perf_counter()
    path = build()
    size = path.stat().st_size / 1e6
    console.print(f"[green]{what}[/] {path} [dim]({size:.1f} MB, "
                  f"{time.perf_counter() - t:.1f}s)[/]", soft_wrap=True)
    return path


@report_app.callback()
def report_main(ctx: typer.Context) -> None:
    """Build HTML reports; without a command, build all of them."""
    if ctx.invoked_subcommand is None:
        build_all(out=None, since=None, until=None, hours=24.0)


@report_app.command("all")
def build_all(out: Out = None, since: Since = None, until: Until = None,
              hours: Hours = 24.0) -> None:
    """Every report over the same range (evaluation from the stored backtest), then the index."""
    from reports.alert_report import write_alert_report
    from reports.drift_summary import write_drift_summary_report
    from reports.evaluation_report import write_evaluation_report_from_db
    from reports.fleet_report import write_fleet_report
    from reports.quality_report import write_quality_report

    directory, run_id = _out(out), _run_id()
    _build("alerts", lambda: write_alert_report(directory, since, until, run_id, hours=hours))
    _build("fleet", lambda: write_fleet_report(directory, since, until, run_id, hours=hours))
    _build("quality", lambda: write_quality_report(directory, since, until, run_id,
                                                   hours=hours))
    _build("evaluation", lambda: write_evaluation_report_from_db(directory, run_id))
    _build("drift", lambda: write_drift_summary_report(directory, run_id))
    _index(directory, run_id)


def _index(directory: Path, run_id: str) -> None:
    from reports.index import write_index_report

    path = write_index_report(directory, run_id)
    console.print(f"[bold]index[/] {path}", soft_wrap=True)


@report_app.command("alerts")
def alerts(out: Out = None, since: Since = None, until: Until = None, hours: Hours = 24.0,
           max_plots: Annotated[int, typer.Option(
               min=0, max=200, help="Device alerts plotted (most severe first).")] = 20) -> None:
    """Open and recent alerts by severity, the worst plotted against the detector's band."""
    from reports.alert_report import write_alert_report

    directory = _out(out)
    _build("alerts", lambda: write_alert_report(directory, since, until, _run_id(), hours=hours,
                                                max_plots=max_plots))


@report_app.command("fleet")
def fleet(out: Out = None, since: Since = None, until: Until = None,
          hours: Hours = 24.0) -> None:
    """KPI health and alerts per site/zone and hour, worst devices, completeness."""
    from reports.fleet_report import write_fleet_report

    directory = _out(out)
    _build("fleet", lambda: write_fleet_report(directory, since, until, _run_id(), hours=hours))


@report_app.command("quality")
def quality(out: Out = None, since: Since = None, until: Until = None,
            hours: Hours = 24.0) -> None:
    """Great Expectations results per suite over time; quarantine by rule with examples."""
    from reports.quality_report import write_quality_report

    directory = _out(out)
    _build("quality", lambda: write_quality_report(directory, since, until, _run_id(),
                                                   hours=hours))


@report_app.command("evaluation")
def evaluation(
    out: Out = None,
    run: Annotated[str | None, typer.Option(
        help="Backtest run_id in telemetry.evaluations (default: the newest).")] = None,
    backtest: Annotated[bool, typer.Option(
        "--backtest", help="Run a fresh backtest (nothing stored) and include example plots"
        " of missed events and false alarms.")] = False,
    days: Annotated[float, typer.Option(help="--backtest: simulated test days.")] = 2,
    train_days: Annotated[float, typer.Option(help="--backtest: training days.")] = 2,
    seed: Annotated[int, typer.Option(help="--backtest: fleet seed (2 = evaluation).")] = 2,
    sites: Annotated[int, typer.Option(help="--backtest: sites.")] = 1,
    zones: Annotated[int, typer.Option(help="--backtest: zones per site.")] = 3,
    devices: Annotated[int, typer.Option(help="--backtest: devices per zone.")] = 2,
) -> None:
    """Backtest scores per anomaly type and detector; --backtest adds example plots."""
    from reports import evaluation_report

    directory, run_id = _out(out), _run_id()
    if not backtest:
        _build("evaluation", lambda: evaluation_report.write_evaluation_report_from_db(
            directory, run_id, evaluation_run=run))
        return
    from core.backtest import run_backtest
    from simulator import FleetConfig

    config = FleetConfig(seed=seed, sites=sites, zones_per_site=zones, devices_per_zone=devices)
    with console.status(f"backtest: {config.n_devices} devices, {train_days:g} + {days:g} days"):
        result = run_backtest(config, train_days=train_days, test_days=days, keep_alerts=True)
    _build("evaluation", lambda: evaluation_report.write_evaluation_report(
        directory, result, config, run_id))


@report_app.command("drift")
def drift(out: Out = None) -> None:
    """Drift per metric and site from telemetry.drift_results, linking the Evidently report."""
    from reports.drift_summary import write_drift_summary_report

    directory = _out(out)
    _build("drift", lambda: write_drift_summary_report(directory, _run_id()))


@report_app.command("index")
def index(out: Out = None) -> None:
    """Rebuild index.html from the reports directory's catalog."""
    _index(_out(out), _run_id())
