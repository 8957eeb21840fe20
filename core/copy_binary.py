"""PostgreSQL binary COPY buffers built with numpy (the fastest load path measured here)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds

_READING_ROW = np.dtype([
    ("ncols", ">i2"),
    ("l_device", ">i4"), ("device_id", ">i4"),
    ("l_metric", ">i4"), ("metric_id", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_value", ">i4"), ("value", ">f8"),
    ("l_batch", ">i4"), ("batch_id", ">i8"),
])
READING_COPY_COLUMNS = "(device_id, metric_id, ts, value, batch_id)"


def pg_timestamps(ts: pd.Series) -> np.ndarray:
    """UTC timestamps as PostgreSQL's binary timestamptz: microseconds since 2000-01-01."""
    # asi8: the int64 nanoseconds as stored. to_numpy(dtype=...) boxed every value into a
    # Timestamp for some UTC tz objects (datetime.timezone.utc), 11% of an API ingest.
    # A tz-aware column is already stored as UTC epoch ticks: re-parsing it with to_datetime
    # cost 6% of a bulk load in a profile.
    values = ts.array if isinstance(ts.dtype, pd.DatetimeTZDtype) else (
        pd.to_datetime(ts, utc=True).array)
    ticks = values.asi8
    per_us = _TICKS_PER_US[values.unit]
    unix_us = ticks // per_us if per_us >= 1 else ticks * round(1 / per_us)
    return unix_us - PG_EPOCH_US


_TICKS_PER_US = {"ns": 1000, "us": 1, "ms": 1e-3, "s": 1e-6}


def readings_chunks(frame: pd.DataFrame, batch_id: int, rows_per_chunk: int = 50_000
                    ) -> Iterator[bytes]:
    """The same payload as readings_buffer, in pieces: the server can ingest one piece while
    the next is encoded (two cores, two workers)."""
    n = len(frame)
    device_id = frame["device_id"].to_numpy()
    metric_id = frame["metric_id"].to_numpy()
    ts = pg_timestamps(frame["ts"])
    value = frame["value"].to_numpy(dtype="float64")
    yield _HEADER
    for start in range(0, n, rows_per_chunk):
        end = min(start + rows_per_chunk, n)
        yield _encode(device_id[start:end], metric_id[start:end], ts[start:end],
                      value[start:end], batch_id)
    yield _TRAILER


def _encode(device_id: np.ndarray, metric_id: np.ndarray, ts: np.ndarray, value: np.ndarray,
            batch_id: int) -> bytes:
    rows = np.empty(len(device_id), dtype=_READING_ROW)
    rows["ncols"] = 5
    rows["l_device"], rows["l_metric"], rows["l_ts"] = 4, 2, 8
    rows["l_value"], rows["l_batch"] = 8, 8
    rows["device_id"], rows["metric_id"], rows["ts"], rows["value"] = (
        device_id, metric_id, ts, value)
    rows["batch_id"] = batch_id
    return rows.tobytes()


def readings_buffer(frame: pd.DataFrame, batch_id: int) -> bytes:
    """A binary COPY payload for `READING_COPY_COLUMNS`; frame values must not be null."""
    return b"".join(readings_chunks(frame, batch_id, max(len(frame), 1)))
