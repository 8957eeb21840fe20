"""`telemetry load-csv`: load a CSV of readings through the loader (core/csv_load.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.csv_readings import DEFAULT_BATCH_ROWS
from core.csv_text import CsvFileError, delimiter_name

console = Console()
SHOWN_REJECTIONS = 10


def rejected_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejected.csv")


def load_csv(
    path: Annotated[Path, typer.Argument(
        metavar="READINGS.csv", help="A header row with device_id, metric, ts, value (and "
        "optionally unit), then one reading per line.")],
    batch_rows: Annotated[int, typer.Option(
        help="Rows per batch: each batch commits whole or not at all.")] = DEFAULT_BATCH_ROWS,
    max_age_days: Annotated[int | None, typer.Option(
        help="Refuse readings older than this many days (stale_timestamp). Default "
             "TELEMETRY_API_MAX_READING_AGE_DAYS (30).", min=1, max=36_500)] = None,
    delimiter: Annotated[str | None, typer.Option(
        help="Field delimiter. Default: sniffed from the header line (comma, semicolon, tab "
             "or pipe).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit with status 1 when any line was rejected (the good rows are "
        "loaded all the same).")] = False,
) -> None:
    """Load a CSV of readings into PostgreSQL, with the same rules as POST /readings.

    ts is ISO 8601 with a UTC offset (2026-11-20T10:00:00Z); metric a registered name (co2,
    temperature, ...); value a number. Bad input never stops the file: each bad row or line is
    quarantined (telemetry.quarantine) with the rule it broke and a reason, listed in
    READINGS.rejected.csv beside the file (line, field, rule, reason), and counted; the good
    rows are loaded. Loading the same file again changes nothing (rows count as duplicates).
    Every data line is accounted for: received = loaded + duplicate + quarantined.
    """
    from core import csv_load, migrate

    migrate.upgrade()
    progress = Progress(TextColumn("[bold]load-csv"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    try:
        with progress:
            task = progress.add_task("rows", total=None)
            result = csv_load.load_csv_file(
                path, batch_rows=batch_rows, max_age_days=max_age_days, delimiter=delimiter,
                on_batch=lambda done, total: progress.update(task, completed=done, total=total))
    except CsvFileError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc

    if result.delimiter != ",":
        console.print(f"delimiter: {delimiter_name(result.delimiter)}")
    if result.ignored_columns:
        console.print(f"ignored column(s): {escape(', '.join(result.ignored_columns))}",
                      soft_wrap=True)
    batches = result.batch_ids
    console.print(
        f"{result.received:,} data lines: [bold]{result.loaded:,} loaded[/], "
        f"{result.duplicate:,} duplicate, {result.quarantined:,} quarantined in "
        + (f"batch {batches[0]}" if len(batches) == 1 else f"batches {batches[0]}-{batches[-1]}")
        + f" ({result.seconds:.1f}s)",
        soft_wrap=True)
    rejects = rejected_path(path)
    if len(result.rejected):
        by_rule = ", ".join(f"{rule} {n:,}" for rule, n in result.by_rule.items())
        console.print(f"[yellow]quarantined by rule:[/] {escape(by_rule)}", soft_wrap=True)
        table = Table(title=f"first {min(SHOWN_REJECTIONS, len(result.rejected))} rejected")
        for name in ("line", "field", "rule", "reason"):
            table.add_column(name, justify="right" if name == "line" else "left")
        for r in result.rejected.head(SHOWN_REJECTIONS).itertuples(index=False):
            table.add_row(str(r.line), escape(r.field), escape(r.rule), escape(r.reason))
        console.print(table)
        try:
            result.rejected.to_csv(rejects, index=False)
            console.print(f"all rejected lines: {escape(str(rejects))}; in the database: "
                          "telemetry.quarantine (`telemetry status` counts them by rule)",
                          soft_wrap=True)
        except OSError as exc:
            console.print(f"[yellow]could not write {escape(str(rejects))} ({exc}); the "
                          "rejected rows are in telemetry.quarantine[/]", soft_wrap=True)
    else:
        rejects.unlink(missing_ok=True)  # a stale one from an earlier run would mislead
    console.print("next: `telemetry run build-kpis` builds the KPIs over the new rows")
    if strict and result.quarantined:
        raise typer.Exit(1)
