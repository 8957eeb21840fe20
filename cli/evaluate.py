"""`telemetry evaluate`: the honest backtest of the detector suite (core/backtest.py).

The command function is plain typer; cli/main.py registers it (`app.command()(evaluate)`) and
calls `set_store(fn)` with a function that writes the rows (exactly the telemetry.evaluations
columns) and returns where they went. `evaluate(...)` also returns the frame. Until then:

    .venv/bin/python -m cli.evaluate --seed 2 --days 7 --train-days 7
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

EVALUATION_SEED = 2  # the seed results are reported on; seed 1 is the tuning seed
TABLE_TYPES = ("spike", "level_shift", "drift", "stuck", "dropout", "noise_burst",
               "threshold_breach", "ventilation_failure")
SHORT = {"spike": "spike", "level_shift": "shift", "drift": "drift", "stuck": "stuck",
         "dropout": "dropout", "noise_burst": "noise", "threshold_breach": "breach",
         "ventilation_failure": "vent"}

Store = Callable[[pd.DataFrame], str]  # rows -> where they went (printed)
_store: Store | None = None


def set_store(store: Store | None) -> None:
    """Where `evaluate` stores its rows (e.g. telemetry.evaluations); None = nowhere."""
    global _store
    _store = store


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def result_table(table: pd.DataFrame, title: str) -> Table:
    """Rich table: one row per detector; per anomaly type F1/recall, then overall columns."""
    out = Table(title=title, show_lines=False)
    out.add_column("detector", style="bold")
    types = [t for t in TABLE_TYPES if t in set(table["anomaly_type"])]
    for t in types:
        out.add_column(f"{SHORT[t]}\nF1/rec", justify="right")
    for name in ("F1", "recall", "precision", "FA/dev-day", "median TTD s"):
        out.add_column(name, justify="right")
    for detector, rows in table.groupby("detector", sort=False):
        by_type = rows.set_index("anomaly_type")
        cells = [str(detector)]
        for t in types:
            r = by_type.loc[t] if t in by_type.index else None
            cells.append("-" if r is None else f"{_fmt(r['f1'])}/{_fmt(r['recall'])}")
        a = by_type.loc["all"]
        cells += [_fmt(a["f1"]), _fmt(a["recall"]), _fmt(a["precision"]),
                  _fmt(a["false_alarms_per_device_day"], 3),
                  _fmt(a["median_time_to_detect_s"], 0)]
        out.add_row(*cells)
    return out


def evaluate(
    days: Annotated[float, typer.Option(help="Simulated test days scored and evaluated.")] = 7,
    train_days: Annotated[float, typer.Option(
        help="Days of history the suite is fitted on (labeled anomalies removed).")] = 7,
    seed: Annotated[int, typer.Option(
        help="Fleet seed. 2 = the evaluation seed; 1 = the tuning seed.")] = EVALUATION_SEED,
    sites: Annotated[int, typer.Option(help="Sites in the simulated fleet.")] = 3,
    zones: Annotated[int, typer.Option(help="Zones per site.")] = 5,
    devices: Annotated[int, typer.Option(help="Devices per zone.")] = 3,
    tolerance_minutes: Annotated[float, typer.Option(
        help="An alert matches a label up to this long before its start / after its end.")] = 5,
    csv: Annotated[Path | None, typer.Option(
        help="Also write the result rows (telemetry.evaluations columns) to this CSV.")] = None,
    report: Annotated[bool, typer.Option(
        help="Write the evaluation report (HTML, with example plots of missed events and false"
             " alarms) to the reports directory.")] = True,
) -> pd.DataFrame:
    """Backtest the detector suite on a simulated, labeled fleet and print event-level scores.

    Fits the suite on TRAIN_DAYS of history, scores the next DAYS, turns scores into alerts with
    the production alert policy and compares them with the simulator's labels: per detector
    (fused, each detector alone, two baselines) and anomaly type, recall, F1 (type recall with
    the detector's overall precision), false alarms per device-day and median time to detect.
    Method: docs/EVALUATION.md.
    """
    from datetime import timedelta

    from core.backtest import run_backtest
    from simulator import FleetConfig

    config = FleetConfig(seed=seed, sites=sites, zones_per_site=zones, devices_per_zone=devices)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        result = run_backtest(config, train_days=train_days, test_days=days,
                              tolerance=timedelta(minutes=tolerance_minutes), progress=progress,
                              keep_alerts=report)
    meta = result.metadata
    title = (f"seed {seed}: {meta['devices']} devices, {days:g} test days after {train_days:g} "
             f"training days, {meta['labels']} labeled events, tolerance {tolerance_minutes:g} min")
    console.print(result_table(result.table, title))
    console.print("F1 per type = harmonic mean of the type's recall and the detector's overall "
                  "precision (alerts carry no type). Fused includes the gap (missing-data) alerts.")
    miss = result.breakdown["anomaly_type"]
    missed = miss[miss["n_missed"] > 0]
    if len(missed):
        console.print("fused misses: " + ", ".join(
            f"{k} {int(r.n_missed)}/{int(r.n_labels)}" for k, r in missed.iterrows()))
    console.print(f"run {meta['run_id']} in {sum(result.timings.values()):.0f}s "
                  f"({', '.join(f'{k} {v:.0f}s' for k, v in result.timings.items())})")
    where = []
    if csv is not None:
        frame = result.table.copy()
        for column in ("pointwise", "params"):
            frame[column] = frame[column].map(lambda v: json.dumps(v, default=str))
        frame.to_csv(csv, index=False)
        where.append(str(csv))
    if _store is not None:
        where.append(_store(result.table))
    console.print("results stored in: " + (", ".join(where) if where else
                                           "nowhere (pass --csv, or run `telemetry evaluate`, "
                                           "which stores them in telemetry.evaluations)"))
    if report:
        from core.settings import get_settings
        from reports.evaluation_report import write_evaluation_report

        path = write_evaluation_report(get_settings().reports_dir, result, config)
        console.print(f"report: {path} (all reports: {path.parent / 'index.html'})",
                      soft_wrap=True)
    return result.table


if __name__ == "__main__":
    typer.run(evaluate)
