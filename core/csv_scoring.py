"""Score any CSV of timestamped numeric columns with the detectors (pure logic + file I/O).

    frame, ts_col, value_cols = load_csv(path, timestamp_col=None, columns=None)
    scored = score_frame(frame, ts_col, value_cols, detector="auto")
    write_csv(scored, out_path)

The frame keeps every input cell as its original TEXT (pyarrow-backed strings), so the output
file has the input's rows and columns unchanged, in the input's order ("007" stays "007", "66"
does not become "66.0"), plus:
  anomaly_score   to_unit_interval(normalized score) in [0, 1]: 0.5 = the alarm threshold,
                  monotone in the raw score; 0 where there is no verdict (warm-up rows, gaps);
  is_anomaly      1 where the normalized score >= 1.0 (anomaly_score >= 0.5), else 0;
  anomaly_column  (2+ value columns) the column with the highest score in that row ("" if none).

Causal: rows are scored in timestamp order (a stable sort, so ties keep file order; an unsorted
file is sorted for scoring and written back in its own order), and a row's score uses only rows
at or before it. The one exception is fitted state, learned once from the first `train_rows`
rows (in timestamp order): the rolling detectors' std floor and the PCA model. Rows inside that
prefix are scored with state that has seen the whole prefix (PCA scores them in-sample). The
default prefix is a fixed count, not a fraction of the file, so appending rows to a file of at
least that many rows never changes the scores of the rows already there.

Detectors (`detector=`):
  auto     = fusion (below). PCA is not chosen automatically: it standardizes with the
           training mean/std, so a trend or a level change after the training rows makes every
           later row "anomalous"; use it for stationary multi-metric data.
  fusion   per column, max(RollingZScore, RobustZScore) normalized scores; across columns, the
           max (Fusion's fused score with no static limits). Rolling finds spikes and the onset
           of level changes; robust (median/MAD) also finds a spike right after another one,
           which a mean/std window misses (the first spike inflates the std), and keeps flagging
           a level change until its trailing median catches up (about window/2 rows).
  rolling, robust   one of the two alone.
  pca      PCADetector (SPE + Hotelling T2) over all value columns, fitted on the first
           train_rows complete rows; rows with a gap in any column get no verdict.

Defaults and why (for arbitrary real data, not the simulator the suite was tuned on):
  window 60 rows (min 30 valid rows for a verdict): rows, not time; irregular sampling is
  treated as ordered samples. |z| threshold 5 for both z-scores, std/MAD floored at 1.0 x the
  series' noise level (std of first differences / sqrt 2, the suite's floor): measured false
  alarm rates of max(rolling, robust) with these settings (200k points each): Gaussian noise
  <0.01%, Student-t(5) 0.17%, AR(1) phi=0.9 0.09%, quantized noise 0.00%; threshold 4 gives
  0.01% / 0.42% / 0.47% / 0.01%: real data is heavy-tailed and autocorrelated, so 5. (The
  suite's 8 was tuned for alerting on a 10 s simulator fleet.) PCA: the detector's own
  quantile 0.995 of training SPE and T2. train_rows: min(rows, 1,000) for the z-scores (the
  floor is one noise level per column; 1,000 differences estimate it within ~2%), min(rows,
  10,000) for PCA (a 0.995 quantile needs many rows).
Fewer rows than the window: scored anyway (a note says so); rows before the 30th valid value of
a column get no verdict from that column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import PCADetector, RobustZScore, RollingZScore, alarm, to_unit_interval

try:  # pyarrow reads and writes ~10x faster than pandas' C engine and keeps the cells' text
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
except ImportError:  # pragma: no cover - the pandas fallback
    pa = pc = pa_csv = None

TIMESTAMP_NAMES = ("ts", "timestamp", "time", "date", "datetime")
OUTPUT_COLUMNS = ("anomaly_score", "is_anomaly", "anomaly_column")
DETECTORS = ("auto", "rolling", "robust", "pca", "fusion")
DEFAULT_WINDOW = 60
Z_THRESHOLD = 5.0
PCA_QUANTILE = 0.995
FLOOR_FRACTION = 1.0
Z_TRAIN_ROWS = 1_000
PCA_TRAIN_ROWS = 10_000
MISSING = ("", "na", "n/a", "nan", "null", "none", "#n/a", "-nan")  # empty cells (lowercase)
_SNIFF = 200  # values looked at to auto-detect a timestamp column


class CsvInputError(ValueError):
    """A problem with the input file or the options: one line naming it and what to do."""


@dataclass
class ScoringInfo:
    """What score_frame did; scored.attrs["scoring"] holds it as a (JSON-safe) dict."""

    detector: str
    description: str
    rows: int
    columns: list[str]
    train_rows: int
    window: int
    threshold: float
    anomalies: int
    notes: list[str] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------
def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise CsvInputError(f"{path} is empty: expected a header row and data rows") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvInputError(f"cannot read the header of {path}: {exc}") from exc


def _read_text(path: Path) -> pd.DataFrame:
    """Every cell as its original text (empty cells are ""), columns in file order."""
    names = _header(path)
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise CsvInputError(f"duplicate column names in {path}: {', '.join(dupes)}; rename them")
    if pa_csv is None:  # pragma: no cover
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    opts = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(path, convert_options=opts,
                                read_options=pa_csv.ReadOptions(block_size=1 << 24))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise CsvInputError(f"cannot parse {path} as CSV: {first}") from exc
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _is_missing(text: pd.Series) -> np.ndarray:
    if pc is not None and isinstance(text.dtype, pd.ArrowDtype):
        arr = pc.utf8_lower(pc.utf8_trim_whitespace(pa.array(text)))
        return pc.is_in(arr, value_set=pa.array(MISSING)).to_numpy(zero_copy_only=False)
    return text.str.strip().str.lower().isin(MISSING).to_numpy()


def _first_bad(text: pd.Series, bad: np.ndarray) -> tuple[str, int]:
    """(the first bad cell's text, its 1-based data row number) for a boolean mask."""
    i = int(np.argmax(bad))
    return str(text.iloc[i]), i + 1


def _where(row: int) -> str:
    return f"row {row} (line {row + 1} of the file)"


def parse_numbers(text: pd.Series, name: str) -> np.ndarray:
    """float64 values of a text column; empty/NA cells are NaN; CsvInputError on the first
    cell that is not a number."""
    missing = _is_missing(text)
    if pc is not None and isinstance(text.dtype, pd.ArrowDtype):
        arr = pc.utf8_trim_whitespace(pa.array(text))
        arr = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), arr)
        try:
            out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            return np.asarray(out, dtype=np.float64)
        except pa.ArrowInvalid:
            pass  # locate the bad cell below
    values = pd.to_numeric(text.astype(object).where(~missing, None).str.strip(),
                           errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~missing
    if bad.any():
        value, row = _first_bad(text, bad)
        raise CsvInputError(f"column {name!r} is not numeric: {value!r} at {_where(row)}; fix "
                            "the value, or leave the cell empty for a gap")
    return values


def _datetimes(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ns since the epoch in UTC, ok mask) for a text column; naive times are UTC."""
    if pc is not None and isinstance(text.dtype, pd.ArrowDtype):
        arr = pc.utf8_trim_whitespace(pa.array(text))
        for typ in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
            try:  # fast path: ISO 8601, one style per file
                ns = pc.cast(pc.cast(arr, typ), pa.int64()).to_numpy(zero_copy_only=False)
                return ns.astype(np.int64), np.ones(len(ns), dtype=bool)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    obj = text.astype(object).str.strip()
    parsed = pd.to_datetime(obj, errors="coerce", utc=True, format="mixed")
    ok = parsed.notna().to_numpy()
    ns = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return ns, ok


def _looks_like_times(text: pd.Series) -> bool:
    sample = text[~_is_missing(text)].head(_SNIFF)
    if sample.empty or not np.isnan(_try_numbers(sample)).all():
        return False  # numbers (or empty) are values, not timestamps
    return bool(_datetimes(sample.astype(object))[1].all())


def _try_numbers(text: pd.Series) -> np.ndarray:
    return pd.to_numeric(text.astype(object).str.strip(), errors="coerce").to_numpy(np.float64)


def timestamp_key(text: pd.Series, name: str) -> np.ndarray:
    """A sort key per row: ns since the epoch (UTC) for date/times, the number itself for a
    numeric timestamp column (e.g. epoch seconds). CsvInputError names the first bad cell."""
    missing = _is_missing(text)
    if missing.any():
        _, row = _first_bad(text, missing)
        raise CsvInputError(f"timestamp column {name!r} is empty at {_where(row)}; every row "
                            "needs a timestamp")
    numbers = _try_numbers(text.head(_SNIFF))
    if not np.isnan(numbers).any():
        try:
            return parse_numbers(text, name)
        except CsvInputError:
            pass  # mostly numbers but not all: fall through to date parsing and its error
    ns, ok = _datetimes(text)
    if not ok.all():
        value, row = _first_bad(text, ~ok)
        raise CsvInputError(f"cannot parse timestamp {value!r} in column {name!r} at "
                            f"{_where(row)}; use ISO 8601 (2024-01-31T12:00:00Z) or pass "
                            "--timestamp-col for another column")
    return ns


def load_csv(
    path: str | Path, timestamp_col: str | None = None, columns: list[str] | None = None
) -> tuple[pd.DataFrame, str, list[str]]:
    """Read a CSV and check it: (frame of the cells' text, timestamp column, value columns).

    timestamp_col None: the first column named ts/timestamp/time/date/datetime (any case), else
    the first column whose values parse as date/times. columns None: every other column whose
    non-empty cells are all numbers (at least one). Raises CsvInputError with one line that
    names the problem (missing file or column, a non-numeric value or bad timestamp with its
    row number, no numeric column).
    """
    path = Path(path)
    if not path.is_file():
        raise CsvInputError(f"file not found: {path}")
    frame = _read_text(path)
    available = ", ".join(map(str, frame.columns))
    if len(frame) == 0:
        raise CsvInputError(f"{path} has a header but no data rows")
    clash = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    if clash:
        raise CsvInputError(f"{path} already has output column(s) {', '.join(clash)}; rename "
                            "or drop them (is this an output file?)")

    if timestamp_col is not None:
        if timestamp_col not in frame.columns:
            raise CsvInputError(f"timestamp column {timestamp_col!r} not found; available "
                                f"columns: {available}")
        ts_col = timestamp_col
    else:
        named = [c for c in frame.columns if str(c).strip().lower() in TIMESTAMP_NAMES]
        candidates = named or [c for c in frame.columns if _looks_like_times(frame[c])]
        if not candidates:
            raise CsvInputError("no timestamp column found (none named "
                                f"{'/'.join(TIMESTAMP_NAMES)} and none parses as dates); pass "
                                f"--timestamp-col NAME; available columns: {available}")
        ts_col = candidates[0]
    timestamp_key(frame[ts_col], ts_col)  # validate now: a clear error before any scoring

    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise CsvInputError(f"column(s) {', '.join(map(repr, missing))} not found; "
                                f"available columns: {available}")
        if ts_col in columns:
            raise CsvInputError(f"{ts_col!r} is the timestamp column; it cannot also be scored")
        value_cols = list(dict.fromkeys(columns))
        for c in value_cols:
            if np.isnan(parse_numbers(frame[c], c)).all():
                raise CsvInputError(f"column {c!r} has no values (every cell is empty)")
    else:
        value_cols = []
        for c in frame.columns:
            if c == ts_col:
                continue
            try:
                values = parse_numbers(frame[c], c)
            except CsvInputError:
                continue
            if not np.isnan(values).all():
                value_cols.append(c)
        if not value_cols:
            raise CsvInputError(f"no numeric column to score in {path} (timestamp column "
                                f"{ts_col!r}; available columns: {available}); pass --columns "
                                "with columns whose cells are numbers")
    return frame, ts_col, value_cols


# -- scoring ----------------------------------------------------------------------------------
def default_train_rows(detector: str, rows: int) -> int:
    """The fitting prefix: a fixed count (see the module docstring), at most the file."""
    return min(rows, PCA_TRAIN_ROWS if detector == "pca" else Z_TRAIN_ROWS)


def _z_scores(x: np.ndarray, kinds: tuple[str, ...], train: int, window: int,
              threshold: float) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for kind in kinds:
        cls = RollingZScore if kind == "rolling" else RobustZScore
        det = cls(window=window, threshold=threshold, floor_fraction=FLOOR_FRACTION)
        s = det.fit(x[:train]).decision_function(x)
        out = np.fmax(out, s)  # NaN only where both have no verdict
    return out


def _argmax_column(scores: np.ndarray, names: list[str]) -> pd.Series:
    """Per row the name of the highest-scoring column, "" where no column has a score."""
    none = np.isnan(scores).all(axis=1)
    idx = np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
    idx[none] = len(names)
    labels = [str(n) for n in names] + [""]
    if pa is not None:
        arr = pa.array(labels).take(pa.array(idx))
        return pd.Series(pd.arrays.ArrowExtensionArray(arr))
    return pd.Series(np.array(labels, dtype=object)[idx])  # pragma: no cover


def score_frame(
    frame: pd.DataFrame,
    ts_col: str,
    value_cols: list[str],
    detector: str = "auto",
    train_rows: int | None = None,
    window: int = DEFAULT_WINDOW,
    threshold: float | None = None,
) -> pd.DataFrame:
    """frame plus anomaly_score, is_anomaly (and anomaly_column for 2+ columns), rows in the
    frame's order; scored causally in timestamp order. `threshold`: |z| alarm for the z-score
    detectors (default 5), the training quantile of SPE/T2 for pca (default 0.995). What was
    done is in result.attrs["scoring"] (ScoringInfo as a dict)."""
    if detector not in DETECTORS:
        raise CsvInputError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    kind = "fusion" if detector == "auto" else detector
    n, k = len(frame), len(value_cols)
    notes: list[str] = []
    if window < 2:
        raise CsvInputError(f"--window must be at least 2 (got {window})")
    if kind == "pca":
        threshold = PCA_QUANTILE if threshold is None else float(threshold)
        if not 0.5 < threshold < 1:
            raise CsvInputError(f"--threshold for pca is a training quantile in (0.5, 1), "
                                f"got {threshold:g}")
        if k < 2:
            raise CsvInputError("--detector pca needs at least 2 value columns; use "
                                "--detector auto for a single column")
    else:
        threshold = Z_THRESHOLD if threshold is None else float(threshold)
        if not threshold > 0 or not math.isfinite(threshold):
            raise CsvInputError(f"--threshold must be a positive |z|, got {threshold:g}")
    if train_rows is None:
        train = default_train_rows(kind, n)
    elif train_rows < 2:
        raise CsvInputError(f"--train-rows must be at least 2 (got {train_rows})")
    else:
        train = min(int(train_rows), n)
    if n < window and kind != "pca":
        notes.append(f"only {n} rows, fewer than the window of {window}: scored anyway; a column "
                     f"gets verdicts from its {window // 2 + 1}th valid value on")

    key = timestamp_key(frame[ts_col], ts_col)
    order = np.argsort(key, kind="stable")
    if not (np.diff(order) == 1).all():
        notes.append("rows were not in timestamp order: scored in timestamp order, written back "
                     "in the file's order")
    x = np.column_stack([parse_numbers(frame[c], c) for c in value_cols])[order]

    if kind == "pca":
        pca = PCADetector(quantile=threshold)
        try:
            pca.fit(pd.DataFrame(x[:train], columns=[str(c) for c in value_cols]))
        except ValueError as exc:
            raise CsvInputError(f"cannot fit pca on the first {train} rows ({exc}); raise "
                                "--train-rows or fill the gaps") from exc
        score = pca.decision_function(x)
        per_col = pca.contributions(x)
        description = (f"pca (SPE + T2 over {k} columns, quantile {threshold:g}, fitted on the "
                       f"first {train} rows, which are scored in-sample)")
    else:
        kinds = ("rolling", "robust") if kind == "fusion" else (kind,)
        per_col = _z_scores(x, kinds, train, window, threshold)
        # Fusion's fused score with no static limits is the max of the detector scores; taking
        # it directly skips Fusion's per-row severity/reason strings (~2.4 s per 1M x 4).
        with np.errstate(invalid="ignore"):
            score = np.full(n, np.nan)
            some = ~np.isnan(per_col).all(axis=1)
            score[some] = np.nanmax(per_col[some], axis=1)
        description = (f"{kind}: {' + '.join(kinds)} z-score per column (max), window {window}"
                       f" rows, |z| threshold {threshold:g}, floor {FLOOR_FRACTION:g} x noise "
                       f"fitted on the first {train} rows")

    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    unit = to_unit_interval(np.nan_to_num(score, nan=0.0))
    unit = np.floor(unit * 1e6) / 1e6  # 6 decimals, rounded down: >= 0.5 exactly when alarmed
    is_anomaly = alarm(score)
    out = frame.copy()
    out["anomaly_score"] = unit[inverse]
    out["is_anomaly"] = is_anomaly[inverse]
    if k > 1:
        out["anomaly_column"] = _argmax_column(per_col[inverse], value_cols).to_numpy()
    out.attrs["scoring"] = asdict(ScoringInfo(
        detector=kind, description=description, rows=n, columns=[str(c) for c in value_cols],
        train_rows=train, window=window, threshold=threshold,
        anomalies=int(is_anomaly.sum()), notes=notes))
    return out


def top_anomalies(scored: pd.DataFrame, ts_col: str, n: int = 5) -> pd.DataFrame:
    """The n highest-scoring anomalous rows: row (1-based), timestamp, column, score."""
    hits = scored.index[scored["is_anomaly"].to_numpy() == 1]
    sub = scored.loc[hits]
    sub = sub.iloc[np.argsort(-sub["anomaly_score"].to_numpy(), kind="stable")[:n]]
    column = (sub["anomaly_column"].astype(str) if "anomaly_column" in sub
              else pd.Series(scored.attrs["scoring"]["columns"][0], index=sub.index))
    return pd.DataFrame({"row": scored.index.get_indexer(sub.index) + 1,
                         "timestamp": sub[ts_col].astype(str).to_numpy(),
                         "column": column.to_numpy(),
                         "score": sub["anomaly_score"].to_numpy()})


# -- writing ----------------------------------------------------------------------------------
_NEEDS_QUOTES = r'[",\r\n]'


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the frame as CSV (no index). Text cells are written as read, quoted only when a
    cell of the file needs quotes (a comma, quote or newline)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CsvInputError(f"output directory {path.parent} does not exist")
    if pa_csv is None:  # pragma: no cover
        frame.to_csv(path, index=False)
        return path
    table = pa.Table.from_pandas(frame, preserve_index=False)
    names = [str(c) for c in frame.columns]
    quote = any(any(ch in name for ch in ',"\r\n') for name in names) or any(
        pc.any(pc.match_substring_regex(col, _NEEDS_QUOTES)).as_py()
        for col in table.columns if pa.types.is_string(col.type))
    with path.open("wb") as fh:
        if quote:
            pa_csv.write_csv(table, fh, pa_csv.WriteOptions(quoting_style="needed"))
        else:
            fh.write((",".join(names) + "\n").encode())
            pa_csv.write_csv(table, fh, pa_csv.WriteOptions(include_header=False,
                                                            quoting_style="none"))
    return path
