"""Read a CSV file as text cells, keeping every good line and naming every bad one.

    text = read_text(path)            # delimiter sniffed from the header line
    text.frame                        # every cell as its original text ("" when empty)
    text.lines                        # the file line each frame row came from (1-based)
    text.rejected                     # lines that could not be rows, each with a reason

Shared by `score-csv` and `load-csv`: a bad line (wrong number of fields, an unclosed quote,
bytes that are not UTF-8, a line longer than `max_line_bytes`) never stops the file; it is
rejected with its line number and the rest is read. A UTF-8 byte order mark is skipped.

Two paths, one result. The fast one (pyarrow, ~10x pandas) reads files whose lines are all
well formed; it is tried only when a newline scan shows no blank and no oversize line, so that
row i is line i + 2. Anything it refuses goes to the tolerant one (the stdlib csv module, line
by line), which is slower but says which line is wrong and why.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
except ImportError:  # pragma: no cover - the tolerant path reads everything
    pa = pa_csv = None

MAX_LINE_BYTES = 1 << 20  # no reading, nor any sane row of numbers, is a megabyte long
DELIMITERS = (",", ";", "\t", "|")
MALFORMED_LINE = "malformed_line"
OVERSIZE_LINE = "oversize_line"
NOT_UTF8 = "not_utf8"
_BOM = b"\xef\xbb\xbf"


class CsvFileError(ValueError):
    """The file as a whole is unusable (missing, empty, no header): one line saying why."""


@dataclass(frozen=True)
class RejectedLine:
    line: int  # 1-based, the first line of the rejected text
    rule: str
    reason: str
    text: str = ""  # its start (at most SHOWN characters), to recognise it


SHOWN = 200


def _start(raw: bytes) -> str:
    return raw[:SHOWN * 4].decode("utf-8", errors="replace")[:SHOWN].rstrip("\r\n")


@dataclass
class CsvText:
    frame: pd.DataFrame
    lines: np.ndarray  # int64, one per frame row
    delimiter: str
    rejected: list[RejectedLine] = field(default_factory=list)


def delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter,
                                                                        repr(delimiter))


def sniff_delimiter(header: str) -> str:
    """The candidate that splits the header into the most fields (a comma on a tie or when
    none occurs: a one-column file)."""
    counts = {d: len(next(csv.reader([header], delimiter=d))) for d in DELIMITERS}
    best = max(counts.values())
    return "," if counts[","] == best else max(counts, key=lambda d: counts[d])


def _first_line(data: bytes, path: Path) -> str:
    end = data.find(b"\n")
    head = data[: end if end >= 0 else len(data)].rstrip(b"\r")
    if len(head) > MAX_LINE_BYTES:
        raise CsvFileError(f"the header line of {path} is {len(head):,} bytes long; is this a "
                           "CSV file?")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"the header of {path} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start}); save the file as UTF-8") from None


def read_text(path: str | Path, delimiter: str | None = None,
              max_line_bytes: int = MAX_LINE_BYTES) -> CsvText:
    path = Path(path)
    if not path.is_file():
        raise CsvFileError(f"file not found: {path}")
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data.strip():
        raise CsvFileError(f"{path} is empty: expected a header row and data rows")
    header_line = _first_line(data, path)
    if delimiter is None:
        delimiter = sniff_delimiter(header_line)
    elif len(delimiter) != 1:
        raise CsvFileError(f"the delimiter must be one character, not {delimiter!r}")
    names = next(csv.reader([header_line], delimiter=delimiter), [])
    if not any(n.strip() for n in names):
        raise CsvFileError(f"the first line of {path} is empty: expected a header row")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise CsvFileError(f"duplicate column names in {path}: {', '.join(dupes)}; rename them")
    lines = _plain_lines(data, max_line_bytes) if pa_csv is not None else 0
    if lines:
        fast = _read_fast(data, names, delimiter)
        if fast is not None and len(fast) == lines - 1:  # else a quoted value spans lines
            return CsvText(fast, np.arange(2, len(fast) + 2, dtype=np.int64), delimiter)
    return _read_tolerant(data, names, delimiter, max_line_bytes)


def _plain_lines(data: bytes, max_line_bytes: int) -> int:
    """The number of lines, or 0 when a line is blank or longer than the limit (pyarrow skips
    blank lines, so its row i would not be line i + 2) or a quote is left open."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    ends = np.append(newlines, len(data))
    lengths = np.diff(ends, prepend=-1) - 1  # without the newline itself
    if data.endswith(b"\n"):
        ends, lengths = ends[:-1], lengths[:-1]  # the empty "line" after the final newline
    cr_only = (lengths == 1) & (np.frombuffer(data, dtype=np.uint8)[ends - 1] == 13)
    blank = (lengths == 0) | cr_only
    # an odd number of quotes leaves one open: pyarrow would close it at the end of the file
    plain = (lengths.size and not blank.any() and lengths.max() <= max_line_bytes
             and data.count(b'"') % 2 == 0)
    return int(lengths.size) if plain else 0


def _read_fast(data: bytes, names: list[str], delimiter: str) -> pd.DataFrame | None:
    opts = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(pa.py_buffer(data), convert_options=opts,
                                read_options=pa_csv.ReadOptions(block_size=1 << 24),
                                parse_options=pa_csv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None  # the tolerant path says which line and why
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _read_tolerant(data: bytes, names: list[str], delimiter: str,
                   max_line_bytes: int) -> CsvText:
    rejected: list[RejectedLine] = []
    handed: list[int] = [0]  # numbers of the physical lines handed to the csv reader
    texts: dict[int, bytes] = {}  # line number -> its bytes, for rejected rows' text

    def physical() -> Iterator[str]:
        for number, raw in enumerate(data.splitlines(keepends=True), start=1):
            texts[number] = raw
            if len(raw.rstrip(b"\r\n")) > max_line_bytes:
                rejected.append(RejectedLine(number, OVERSIZE_LINE, (
                    f"line {number} is {len(raw):,} bytes, over the {max_line_bytes:,}-byte "
                    "limit for one row; it was not read (a missing line break or a runaway "
                    "field?)"), _start(raw)))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                rejected.append(RejectedLine(number, NOT_UTF8, (
                    f"line {number} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                    "save the file as UTF-8"), _start(raw)))
                continue
            handed.append(number)
            yield text

    csv.field_size_limit(max(max_line_bytes, csv.field_size_limit()))
    # strict: a quote left open at the end of the file is an error, not a field that silently
    # swallowed every line after it
    reader = csv.reader(physical(), delimiter=delimiter, strict=True)
    next(reader)  # the header, already read
    rows: list[list[str]] = []
    lines: list[int] = []
    width = len(names)
    while True:
        seen = len(handed)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            start, end = handed[min(seen, len(handed) - 1)], handed[-1]
            span = f"line {start}" if end <= start else f"lines {start}-{end}"
            rejected.append(RejectedLine(start, MALFORMED_LINE, (
                f"{span} could not be read as CSV ({exc}); check the quotes on line {start}"),
                _start(texts.get(start, b""))))
            continue
        if not fields:
            continue  # a blank line holds no data
        start = handed[seen]
        if len(fields) != width:
            hint = (f"the header has {width}; a truncated row, or a row written with another "
                    f"delimiter than the header's {delimiter_name(delimiter)}?")
            rejected.append(RejectedLine(start, MALFORMED_LINE, (
                f"line {start} has {len(fields)} field(s), {hint}"), _start(texts[start])))
            continue
        rows.append(fields)
        lines.append(start)
    rejected.sort(key=lambda r: r.line)
    frame = pd.DataFrame(rows, columns=names, dtype=object) if rows else pd.DataFrame(
        {n: pd.Series([], dtype=object) for n in names})
    if pa is not None:
        frame = frame.astype(pd.ArrowDtype(pa.string()))
    return CsvText(frame, np.array(lines, dtype=np.int64), delimiter, rejected)
