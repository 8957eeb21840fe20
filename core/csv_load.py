"""A readings CSV into the database (`telemetry load-csv`): the loader's batches, source 'csv'.

The file is read once (core/csv_text: bad lines rejected, not fatal), cut into batches of
`batch_rows`, and each batch is judged by the same rules as POST /readings (core/reading_parse)
and loaded by core.loader.load_readings: all of a batch or none of it, idempotent (loading the
file again stores nothing new: its rows count as duplicates, its rejected rows are quarantined
once). Every data line is accounted for in the batch ledger: received = loaded + duplicate +
quarantined, where quarantined includes lines that were not rows at all (wrong field count, not
UTF-8, oversize), each kept in telemetry.quarantine with its rule, reason, file and line.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import csv_readings, db, loader, online_store, reading_parse
from core.csv_text import CsvFileError, RejectedLine, delimiter_name, read_text
from core.settings import get_settings

STREAM = "csv"
REJECTED_COLUMNS = ("line", "field", "rule", "reason")


@dataclass
class CsvLoadResult:
    path: Path
    delimiter: str
    received: int = 0  # data lines: rows plus lines that were not rows
    loaded: int = 0
    duplicate: int = 0
    quarantined: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    batch_ids: list[int] = field(default_factory=list)
    rejected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(REJECTED_COLUMNS)))
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _line_rows(path: Path, lines: list[RejectedLine]) -> list[tuple[Any, ...]]:
    """Lines that were not rows, as quarantine rows (see online_store.quarantine_refused)."""
    out = []
    for r in lines:
        raw = json.dumps({"file": path.name, "line": r.line, "text": r.text}, sort_keys=True)
        fingerprint = hashlib.md5(r.rule.encode() + raw.encode()).hexdigest()
        out.append((r.rule, r.reason, None, None, None, None, raw, fingerprint))
    return out


def load_csv_file(path: str | Path, *, batch_rows: int = csv_readings.DEFAULT_BATCH_ROWS,
                  max_age_days: int | None = None, delimiter: str | None = None,
                  on_batch: Callable[[int, int], None] | None = None) -> CsvLoadResult:
    """Load a readings CSV; on_batch(rows done, rows in all) after each committed batch.

    Raises CsvFileError when the file as a whole cannot be loaded (missing, no header, a
    required column absent); a bad row or line never stops it."""
    started = time.perf_counter()
    path = Path(path)
    if batch_rows < 1:
        raise CsvFileError(f"--batch-rows must be at least 1 (got {batch_rows})")
    text = read_text(path, delimiter)
    columns = [str(c) for c in text.frame.columns]
    missing = csv_readings.missing_columns(columns)
    if missing:
        hint = (f"; the header was split on the {delimiter_name(text.delimiter)}: pass "
                "--delimiter if that is wrong" if len(columns) == 1 else "")
        raise CsvFileError(f"{path} lacks the column(s) {', '.join(missing)} (found: "
                           f"{', '.join(columns)}); a readings CSV has device_id, metric, ts, "
                           f"value and optionally unit{hint}")
    settings = get_settings()
    max_age = pd.Timedelta(days=max_age_days or settings.api_max_reading_age_days)
    hint = "pass --max-age-days to load older history (each day gets a partition)"
    reference = pd.Timestamp.now(tz="UTC")
    result = CsvLoadResult(path, text.delimiter,
                           ignored_columns=csv_readings.ignored_columns(columns))
    frame, n = text.frame, len(text.frame)
    by_rule: Counter[str] = Counter(r.rule for r in text.rejected)
    rejected = [pd.DataFrame({"line": [r.line for r in text.rejected], "field": "line",
                              "rule": [r.rule for r in text.rejected],
                              "reason": [r.reason for r in text.rejected]})]
    # autocommit: each batch's `conn.transaction()` is then a transaction of its own, committed
    # at the end of its block (not a savepoint of one transaction spanning the file)
    with db.connect(autocommit=True) as conn:
        metrics = online_store.metric_registry(conn)
        for start in range(0, max(n, 1), batch_rows):
            lines = text.lines[start:start + batch_rows]
            rows = csv_readings.typed_rows(frame.iloc[start:start + batch_rows], lines)
            parsed = reading_parse.parse(rows, metrics, reference, max_age, stale_hint=hint)
            bad_lines = text.rejected if start == 0 else []
            with conn.transaction():
                batch = loader.load_readings(
                    parsed.frame, source="csv", stream=STREAM,
                    reference_time=reference.to_pydatetime(), advance_watermark=False,
                    conn=conn)
                refused = reading_parse.quarantine_rows(parsed, metrics) + _line_rows(
                    path, bad_lines)
                if refused:
                    online_store.quarantine_refused(conn, batch.batch_id, refused)
                    online_store.add_refused_to_ledger(conn, batch.batch_id, len(refused))
                explained = (loader.explain_quarantined(conn, parsed.frame, batch,
                                                        reference.to_pydatetime())
                             if batch.rows_quarantined else None)
            result.batch_ids.append(batch.batch_id)
            result.received += len(rows) + len(bad_lines)
            result.loaded += batch.rows_loaded
            result.duplicate += batch.rows_duplicate
            result.quarantined += batch.rows_quarantined + len(refused)
            by_rule.update(batch.quarantined_by_rule)
            by_rule.update(r.rule for r in parsed.refused)
            rejected.append(pd.DataFrame({
                "line": [int(lines[r.index]) for r in parsed.refused],
                "field": [r.field for r in parsed.refused],
                "rule": [r.rule for r in parsed.refused],
                "reason": [r.reason for r in parsed.refused]}))
            if explained is not None:
                positions = parsed.positions[explained["position"].to_numpy()]
                rejected.append(pd.DataFrame({
                    "line": lines[positions],
                    "field": [reading_parse.LOADER_FIELDS[r] for r in explained["rule"]],
                    "rule": explained["rule"], "reason": explained["reason"]}))
            if on_batch is not None:
                on_batch(min(start + batch_rows, n), n)
    result.by_rule = dict(sorted(by_rule.items()))
    result.rejected = pd.concat([r for r in rejected if len(r)] or [rejected[0]],
                                ignore_index=True).sort_values("line", kind="stable",
                                                               ignore_index=True)
    result.seconds = time.perf_counter() - started
    return result
