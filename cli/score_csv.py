"""`telemetry score-csv`: score any CSV of timestamped numeric columns (core/csv_scoring.py).

The command function is plain typer; cli/main.py registers it
(`app.command("score-csv")(score_csv)`). Until then:

    .venv/bin/python -m cli.score_csv data.csv -o scored.csv
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.csv_scoring import (
    DEFAULT_WINDOW,
    CsvInputError,
    ScoringInfo,
    load_csv,
    rejected_path,
    score_frame,
    top_anomalies,
    write_csv,
    write_rejected,
)
from core.csv_text import delimiter_name

console = Console()


def score_csv(
    path: Annotated[Path, typer.Argument(
        metavar="IN.csv", help="Input CSV: a header row, a timestamp column, numeric columns.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="OUT.csv",
        help="Where to write the input plus anomaly_score, is_anomaly (, anomaly_column).")],
    detector: Annotated[str, typer.Option(
        help="auto (= fusion) | fusion (max of rolling and robust z-scores per column, max "
             "over columns) | rolling | robust | pca (SPE + T2 across 2+ columns).")] = "auto",
    timestamp_col: Annotated[str | None, typer.Option(
        help="Timestamp column. Default: a column named ts/timestamp/time/date/datetime, else "
             "the first column that parses as date/times.")] = None,
    columns: Annotated[str | None, typer.Option(
        help="Comma-separated columns to score. Default: every numeric column.")] = None,
    train_rows: Annotated[int | None, typer.Option(
        help="Fit on the first N rows (in time order): the z-scores' noise floor, or the PCA "
             "model. Default min(rows, 1000); pca min(rows, 10000).")] = None,
    window: Annotated[int, typer.Option(
        help="Trailing window in rows (not time) of the rolling/robust z-scores.")
    ] = DEFAULT_WINDOW,
    threshold: Annotated[float | None, typer.Option(
        help="Alarm threshold: |z| for rolling/robust/fusion (default 5); the training "
             "quantile of SPE and T2 for pca (default 0.995).")] = None,
    delimiter: Annotated[str | None, typer.Option(
        help="Field delimiter. Default: sniffed from the header line (comma, semicolon, tab "
             "or pipe).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit with status 1 when any line or cell was rejected (the output "
        "and OUT.rejected.csv are still written).")] = False,
) -> None:
    """Score a CSV for anomalies, causally, and write it back with the scores.

    Every input row and column is written unchanged, in the input's order, plus anomaly_score
    (0-1, monotone in the detector score; 0.5 = the alarm threshold; 0 = no verdict: the first
    ~window/2 rows of a column, gaps), is_anomaly (1 = score at or over the threshold) and, for
    2+ columns, anomaly_column (the column with the highest score in the row).

    Causal, no look-ahead: rows are scored in timestamp order and a row's score uses only rows
    at or before it. An unsorted file is sorted for scoring (stable: ties keep file order) and
    written back in its original order. Exception: fitted state (the z-scores' std floor, the
    PCA model) is learned from the first --train-rows rows, so those rows are scored with state
    that has seen the whole prefix (PCA scores them in-sample). With the default fixed-size
    prefix, appending rows to a file never changes earlier rows' scores once the file is longer
    than the prefix.

    Empty cells are gaps (no verdict for that column at that row). Sampling need not be
    regular: windows count rows. Fewer rows than the window: scored anyway, with a note.

    Bad input never stops the file: a line that is not a row (wrong field count, unclosed
    quote, not UTF-8, over 1 MiB) or a row without a usable timestamp is left out; a cell that
    is not a usable number (text, infinite, beyond +/-1e100) is scored as a gap. Each is listed
    with its line, column, rule and reason in OUT.rejected.csv (written only when there are
    any), and counted in the summary.
    """
    started = time.perf_counter()
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        frame, ts_col, value_cols, rejected, used_delimiter = load_csv(
            path, timestamp_col, cols, delimiter)
        t_read = time.perf_counter()
        scored = score_frame(frame, ts_col, value_cols, detector=detector,
                             train_rows=train_rows, window=window, threshold=threshold)
        t_score = time.perf_counter()
        write_csv(scored, output)
        rejects = rejected_path(output)
        if len(rejected):
            write_rejected(rejected, rejects)
        else:
            rejects.unlink(missing_ok=True)  # a stale one from an earlier run would mislead
        t_write = time.perf_counter()
    except CsvInputError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc

    info = ScoringInfo(**scored.attrs["scoring"])
    for note in info.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    skipped = [str(c) for c in frame.columns if c != ts_col and c not in value_cols]
    pct = 100.0 * info.anomalies / info.rows if info.rows else 0.0
    if used_delimiter != ",":
        console.print(f"delimiter: {delimiter_name(used_delimiter)}")
    console.print(f"{info.rows:,} rows, timestamp column {escape(str(ts_col))!r}, scored "
                  f"{len(value_cols)} column(s): {escape(', '.join(map(str, value_cols)))}"
                  + (f" (not scored: {escape(', '.join(skipped))})" if skipped else ""),
                  soft_wrap=True)
    console.print(f"detector {escape(info.description)}", soft_wrap=True)
    console.print(f"anomalies: [bold]{info.anomalies:,}[/] ({pct:.2f}% of rows)")
    top = top_anomalies(scored, ts_col, 5)
    if len(top):
        table = Table(title="top anomalies")
        for name in ("line", "timestamp", "column", "anomaly_score"):
            table.add_column(name, justify="right" if name in ("line", "anomaly_score")
                             else "left")
        for r in top.itertuples(index=False):
            table.add_row(str(r.line), escape(r.timestamp), escape(str(r.column)),
                          f"{r.score:.4f}")
        console.print(table)
    if len(rejected):
        lines = rejected["line"].nunique()
        by_rule = ", ".join(f"{rule} {n:,}" for rule, n in
                            rejected["rule"].value_counts().sort_index().items())
        first = rejected.iloc[0]
        console.print(f"[yellow]rejected:[/] {len(rejected):,} on {lines:,} line(s) "
                      f"({escape(by_rule)}); first, line {first.line}: "
                      f"{escape(str(first.reason))}. All of them: {escape(str(rejects))}",
                      soft_wrap=True)
    console.print(f"[green]written[/] {escape(str(output))} in {t_write - started:.1f}s (read "
                  f"{t_read - started:.1f}s, score {t_score - t_read:.1f}s, write "
                  f"{t_write - t_score:.1f}s)", soft_wrap=True)
    if strict and len(rejected):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(score_csv)
