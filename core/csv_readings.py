"""CSV cells into the rows core.reading_parse judges (pure: no database).

A readings CSV has the columns device_id, metric, ts, value and optionally unit, in any order;
other columns are ignored (and named). Each cell becomes what a JSON client would have sent:
device_id an integer when it is one, value a float when it parses as one (NaN and infinities
included: the rules refuse them with their own reasons), an empty cell an absent field, and
anything else its text, so that `device_id = abc` is refused as "device_id must be an integer,
not 'abc'", in the same words as POST /readings.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

try:  # as in core/csv_text.py: without pyarrow, cells are plain strings
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover
    pa = pc = None

DEFAULT_BATCH_ROWS = 50_000  # rows per loader batch (each commits whole)
REQUIRED = ("device_id", "metric", "ts", "value")
OPTIONAL = ("unit",)
_INTEGER = re.compile(r"[+-]?\d+")


def missing_columns(columns: list[str]) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def ignored_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in REQUIRED + OPTIONAL]


def _text(cell: str) -> str | None:
    cell = cell.strip()
    return cell or None


def _integer(cell: str) -> int | str | None:
    cell = cell.strip()
    if not cell:
        return None
    return int(cell) if _INTEGER.fullmatch(cell) else cell


def _number(cell: str) -> float | str | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _values(column: pd.Series, kind: str) -> list[Any]:
    """The column's cells as `kind` ("int", "float" or "text"; empty -> None). A whole column
    converts at C speed through pyarrow when every cell is of the kind; otherwise (a bad cell
    somewhere) cell by cell, keeping the text of cells that are not."""
    convert = {"int": _integer, "float": _number, "text": _text}[kind]
    if pa is None or not isinstance(column.dtype, pd.ArrowDtype):
        return [convert(c) for c in column.tolist()]
    cells = pc.utf8_trim_whitespace(pa.array(column))
    if kind == "text":
        return [c or None for c in cells.to_pylist()]
    nulled = pc.if_else(pc.equal(cells, ""), pa.scalar(None, pa.string()), cells)
    try:
        return pc.cast(nulled, pa.int64() if kind == "int" else pa.float64()).to_pylist()
    except (pa.ArrowInvalid, OverflowError):
        return [convert(c) for c in cells.to_pylist()]


def typed_rows(frame: pd.DataFrame, lines: np.ndarray) -> list[dict[str, Any]]:
    """One dict per row: the typed fields (absent where the cell is empty) and `line`, the
    file line the row came from (kept in the quarantine payload, to find the row again)."""
    columns = {"device_id": _values(frame["device_id"], "int"),
               "metric": _values(frame["metric"], "text"),
               "ts": _values(frame["ts"], "text"),
               "value": _values(frame["value"], "float")}
    if "unit" in frame.columns:
        columns["unit"] = _values(frame["unit"], "text")
    names = list(columns)
    out = []
    for line, values in zip(lines.tolist(), zip(*columns.values(), strict=True), strict=True):
        row: dict[str, Any] = {k: v for k, v in zip(names, values, strict=True) if v is not None}
        row["line"] = line
        out.append(row)
    return out
