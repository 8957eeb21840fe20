"""Readings as JSON-like rows (dicts of device_id, metric, ts, value, unit?, metadata?) into
the loader's frame, column by column: POST /readings bodies (api/ingest_parse.py decodes them)
and `load-csv` rows (core/csv_readings.py types their cells) go through the same rules.

Each field is checked as a whole column: one type probe decides the common case, and only
columns that fail it are looked at per element.
Rows refused here never reach the loader; the loader's own rules (unknown device, impossible
value, future timestamp, duplicates, ...) judge the rest. The first rule a row breaks wins.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from core import rules

MALFORMED_ROW = "malformed_row"
MISSING_FIELD = "missing_field"
INVALID_TYPE = "invalid_type"
INVALID_TIMESTAMP = "invalid_timestamp"
STALE_TIMESTAMP = "stale_timestamp"
UNIT_MISMATCH = "unit_mismatch"
API_RULES = (MALFORMED_ROW, MISSING_FIELD, INVALID_TYPE, INVALID_TIMESTAMP, STALE_TIMESTAMP,
             rules.UNKNOWN_METRIC, UNIT_MISMATCH, rules.UNKNOWN_DEVICE, rules.IMPOSSIBLE_VALUE)
# The field each loader rule is about, for the per-row report.
LOADER_FIELDS = {rules.NULL_VALUE: "value", rules.UNKNOWN_METRIC: "metric",
                 rules.UNKNOWN_DEVICE: "device_id", rules.IMPOSSIBLE_VALUE: "value",
                 rules.FUTURE_TIMESTAMP: "ts", rules.CONFLICTING_DUPLICATE: "value"}

_MISSING = object()
_INT32 = (-(2**31), 2**31 - 1)
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)\Z")
_SAFE = re.compile(r"[\w.:+-]{1,40}")


@dataclass
class Refusal:
    index: int
    field: str
    rule: str
    reason: str


@dataclass
class ParsedBatch:
    """The loader's frame (device_id, metric_id, ts, value), the request position of each of
    its rows, and the rows refused before it."""

    rows: list[Any]
    frame: pd.DataFrame
    positions: npt.NDArray[np.int64]
    refused: list[Refusal] = field(default_factory=list)


def _shown(value: Any) -> str:
    """A value for a reason: echoed only when short and plain (reasons end up in HTML pages
    and logs; the raw payload is kept in quarantine anyway)."""
    if isinstance(value, str):
        return f"'{value}'" if _SAFE.fullmatch(value) else f"a {len(value)}-character string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)[:40]
    return f"a JSON {type(value).__name__.replace('dict', 'object').replace('list', 'array')}"


class _Verdicts:
    """Per row: 0 = fine so far, else 1 + index of the first API rule it broke."""

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, dtype=np.int8)
        self.field: dict[int, str] = {}
        self.reason: dict[int, str] = {}

    def flag(self, mask: npt.NDArray[np.bool_], rule: str, name: str, why: Any) -> None:
        hit = np.flatnonzero(mask & (self.code == 0))
        if not hit.size:
            return
        self.code[hit] = API_RULES.index(rule) + 1
        for i in hit.tolist():  # refusals are rare: a loop for their sentences is fine
            self.field[i], self.reason[i] = name, why(i) if callable(why) else why


def _column(objs: list[dict[str, Any]], name: str) -> list[Any]:
    return [r.get(name, _MISSING) for r in objs]


def _each(col: list[Any], clean: set[type], test: Any) -> npt.NDArray[np.bool_]:
    """test(x) per element, unless one probe of the column's types (C speed) says every
    element is of a `clean` type."""
    if set(map(type, col)) <= clean:
        return np.ones(len(col), bool)
    return np.array([test(x) for x in col], dtype=bool)


def _absent(col: list[Any]) -> npt.NDArray[np.bool_]:
    kinds = set(map(type, col))
    if type(None) not in kinds and object not in kinds:  # object: the _MISSING sentinel
        return np.zeros(len(col), bool)
    return np.array([x is None or x is _MISSING for x in col], dtype=bool)


def _optional(col: list[Any], kind: type) -> npt.NDArray[np.bool_]:
    """Absent, or of `kind`."""
    return _each(col, {kind, object, type(None)},
                 lambda x: x is None or x is _MISSING or type(x) is kind)


def _ints(col: list[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Integers (bools and floats are not); returns values (0 where not) and the in-range mask."""
    if set(map(type, col)) == {int}:
        try:
            values = np.array(col, dtype=np.int64)
            return values, (values >= _INT32[0]) & (values <= _INT32[1])
        except OverflowError:
            pass
    ok = np.array([type(v) is int and _INT32[0] <= v <= _INT32[1] for v in col], dtype=bool)
    return np.array([v if o else 0 for v, o in zip(col, ok, strict=True)], np.int64), ok


def _floats(col: list[Any]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Numbers (absent -> NaN, judged by the loader's null_value rule); bools are not."""
    if set(map(type, col)) <= {float, int}:
        try:
            return np.array(col, dtype=np.float64), np.ones(len(col), bool)
        except OverflowError:
            pass
    values = np.full(len(col), np.nan)
    ok = np.ones(len(col), bool)
    for i, v in enumerate(col):
        if type(v) in (int, float):
            try:
                values[i] = float(v)
            except OverflowError:  # an integer beyond a double: impossible, like 1e400
                values[i] = np.inf if v > 0 else -np.inf
        elif not (v is None or v is _MISSING):
            ok[i] = False
    return values, ok


_PANDAS_RANGE = (np.datetime64(pd.Timestamp.min.ceil("us").asm8, "us"),
                 np.datetime64(pd.Timestamp.max.floor("us").asm8, "us"))


def _zulu_fast(text: list[Any]) -> pd.Series | None:
    """Strings like 2026-11-20T10:00:00.123Z, the common case, through numpy's C parser (10x
    pandas'); None when any string is not of that shape, so pandas judges the column."""
    if not all(x[-1:] == "Z" and x[:1].isdigit() and x[10:11] in ("T", " ") for x in text):
        return None
    joined = "".join(text)  # numpy would also take an offset before the Z; pandas does not
    if "+" in joined or joined.count("-") != 2 * len(text):
        return None
    try:
        stamps = np.array([x[:-1] for x in text], dtype="datetime64[us]")
    except ValueError:
        return None
    if (stamps < _PANDAS_RANGE[0]).any() or (stamps > _PANDAS_RANGE[1]).any():
        return None
    return pd.Series(pd.DatetimeIndex(stamps.astype("datetime64[ns]"), tz="UTC"))


def _timestamps(col: list[Any]) -> tuple[pd.Series, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(UTC timestamps truncated to the microsecond the database keeps, is-a-string mask,
    has-an-offset mask)."""
    is_str = _each(col, {str}, lambda x: type(x) is str)
    if is_str.all():
        fast = _zulu_fast(col)
        if fast is not None:
            return fast, is_str, is_str
    text = col if is_str.all() else [x if ok else None for x, ok in zip(col, is_str, strict=True)]
    offset = np.array([x is not None and x[-1:] in ("Z", "z") for x in text], dtype=bool)
    for i in np.flatnonzero(is_str & ~offset).tolist():
        offset[i] = bool(_OFFSET.search(text[i]))
    parsed = pd.to_datetime(pd.Series(text, dtype=object), utc=True, format="ISO8601",
                            errors="coerce")
    return parsed.dt.floor("us"), is_str, offset


def parse(rows: list[Any], metrics: dict[str, tuple[int, str]], now: pd.Timestamp,
          max_age: pd.Timedelta, stale_hint: str = "older history goes through a backfill"
          ) -> ParsedBatch:
    """Judge every row; `stale_hint` ends the reason of a row older than `max_age` (what the
    sender can do about it)."""
    n = len(rows)
    is_obj = np.array([type(r) is dict for r in rows], dtype=bool)
    objs = rows if is_obj.all() else [r if type(r) is dict else {} for r in rows]
    v = _Verdicts(n)
    v.flag(~is_obj, MALFORMED_ROW, "row",
           lambda i: f"a reading must be a JSON object, not {_shown(rows[i])}")

    cols = {name: _column(objs, name) for name in
            ("device_id", "metric", "ts", "value", "unit", "metadata")}
    for name in ("device_id", "metric", "ts"):
        v.flag(_absent(cols[name]), MISSING_FIELD, name, f"`{name}` is required")

    device, device_ok = _ints(cols["device_id"])
    # orjson reads integers beyond 64 bits as floats: such a number is an id out of range,
    # whichever parser read it, not a fraction.
    v.flag(~_each(cols["device_id"], {int}, lambda x: type(x) is int or (
        type(x) is float and abs(x) >= 2.0**63)), INVALID_TYPE, "device_id",
        lambda i: f"device_id must be an integer, not {_shown(cols['device_id'][i])}")
    v.flag(~_each(cols["metric"], {str}, lambda x: type(x) is str), INVALID_TYPE,
           "metric", lambda i: f"metric must be a name (string), not {_shown(cols['metric'][i])}")
    ts, is_str, has_offset = _timestamps(cols["ts"])
    v.flag(~is_str, INVALID_TYPE, "ts",
           lambda i: f"ts must be an ISO 8601 string, not {_shown(cols['ts'][i])}")
    value, value_ok = _floats(cols["value"])
    v.flag(~value_ok, INVALID_TYPE, "value",
           lambda i: f"value must be a number, not {_shown(cols['value'][i])}")
    unit_col, meta_col = cols["unit"], cols["metadata"]
    v.flag(~_optional(unit_col, str), INVALID_TYPE, "unit",
           lambda i: f"unit must be a string, not {_shown(unit_col[i])}")
    v.flag(~_optional(meta_col, dict), INVALID_TYPE, "metadata",
           lambda i: f"metadata must be a JSON object, not {_shown(meta_col[i])}")

    v.flag(ts.isna().to_numpy() | ~has_offset, INVALID_TIMESTAMP, "ts", lambda i: (
        f"ts {_shown(cols['ts'][i])} is not an ISO 8601 time with a UTC offset "
        "(e.g. 2026-11-20T10:00:00Z) within years 1678-2261"))
    oldest = now - max_age
    v.flag((ts < oldest).to_numpy(dtype=bool), STALE_TIMESTAMP, "ts", lambda i: (
        f"ts {ts.iloc[i]:%Y-%m-%dT%H:%M:%SZ} is more than {max_age.days} days before arrival "
        f"({now:%Y-%m-%dT%H:%M:%SZ}); {stale_hint}"))

    known = {name: mid for name, (mid, _) in metrics.items()}
    metric_id = np.array([known.get(x, -1) if type(x) is str else -1 for x in cols["metric"]],
                         dtype=np.int64)
    v.flag(metric_id < 0, rules.UNKNOWN_METRIC, "metric", lambda i: (
        f"metric {_shown(cols['metric'][i])} is not in the metric registry (known: "
        f"{', '.join(sorted(known))})"))
    if unit_col.count(_MISSING) < n:
        units = np.full(max(known.values()) + 2, None, dtype=object)  # [-1] = unknown metric
        for mid, unit in metrics.values():
            units[mid] = unit
        sent = np.array([x if type(x) is str else None for x in unit_col], dtype=object)
        v.flag((sent != None) & (sent != units[metric_id]), UNIT_MISMATCH, "unit",  # noqa: E711
               lambda i: f"unit {_shown(sent[i])} is not the registry's unit for "
               f"{cols['metric'][i]} ({units[metric_id[i]]}); convert before sending")
    v.flag(~device_ok, rules.UNKNOWN_DEVICE, "device_id", lambda i: (
        f"device_id {_shown(cols['device_id'][i])} is outside the registry's id range"))
    # The loader's rule would say the same, but it cannot keep an infinity in its JSON payload.
    v.flag(np.isinf(value), rules.IMPOSSIBLE_VALUE, "value", lambda i: (
        f"value is {'-' if value[i] < 0 else ''}infinite (or too large for a double); no "
        f"{cols['metric'][i]} reading can be"))

    keep = np.flatnonzero(v.code == 0)
    frame = pd.DataFrame({
        "device_id": device[keep], "metric_id": metric_id[keep],
        "ts": ts.iloc[keep].reset_index(drop=True), "value": value[keep]})
    refused = [Refusal(i, v.field[i], API_RULES[v.code[i] - 1], v.reason[i])
               for i in np.flatnonzero(v.code).tolist()]
    return ParsedBatch(rows=rows, frame=frame, positions=keep, refused=refused)


def _clean(value: Any) -> Any:
    """What PostgreSQL's jsonb refuses: NUL characters, NaN and infinities."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_clean(k): _clean(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_clean(x) for x in value]
    return value


def quarantine_rows(batch: ParsedBatch, metrics: dict[str, tuple[int, str]]
                    ) -> list[tuple[Any, ...]]:
    """Refused rows as quarantine rows: (rule, reason, device_id, metric_id, ts, value, raw,
    fingerprint); typed columns filled where the field itself was usable."""
    out = []
    for r in batch.refused:
        row = batch.rows[r.index]
        try:
            raw = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)  # NaN/inf become null
        except TypeError:  # an integer beyond 64 bits (the stdlib parser keeps those)
            raw = json.dumps(_clean(row), sort_keys=True).encode()
        if b"\\u0000" in raw:
            raw = json.dumps(_clean(row), sort_keys=True).encode()
        got = row if isinstance(row, dict) else {}
        device = got.get("device_id")
        device = device if type(device) is int and _INT32[0] <= device <= _INT32[1] else None
        metric = metrics.get(got.get("metric")) if type(got.get("metric")) is str else None
        value = got.get("value")
        value = float(value) if type(value) in (int, float) and abs(value) < 1e308 else None
        ts = None
        if type(got.get("ts")) is str and _OFFSET.search(got["ts"]):
            stamp = pd.to_datetime(got["ts"], utc=True, format="ISO8601", errors="coerce")
            ts = None if pd.isna(stamp) else stamp.to_pydatetime()
        fingerprint = hashlib.md5(r.rule.encode() + raw).hexdigest()
        out.append((r.rule, r.reason, device, metric[0] if metric else None, ts,
                    value,
                    raw.decode(), fingerprint))
    return out
