"""Readings back out of PostgreSQL, fast: binary COPY parsed straight into numpy."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import psycopg

from core import db
from core.copy_binary import PG_EPOCH_US

_HEADER_BYTES = 11 + 4 + 4  # signature, flags, header extension length
_ROW = np.dtype([
    ("ncols", ">i2"),
    ("l_device", ">i4"), ("device_id", ">i4"),
    ("l_metric", ">i4"), ("metric_id", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_value", ">i4"), ("value", ">f8"),
])


def _parse(payload: bytes | bytearray) -> pd.DataFrame:
    body = memoryview(payload)[_HEADER_BYTES: len(payload) - 2]  # header and -1 trailer
    rows = np.frombuffer(body, dtype=_ROW)
    ts_us = rows["ts"].astype(np.int64) + PG_EPOCH_US
    return pd.DataFrame({
        "device_id": rows["device_id"].astype(np.int32),
        "metric_id": rows["metric_id"].astype(np.int16),
        "ts": pd.to_datetime(ts_us, unit="us", utc=True),
        "value": rows["value"].astype(np.float64),
    })


def read_readings(start: datetime, end: datetime, *, shard: int = 0, shards: int = 1,
                  conn: psycopg.Connection | None = None) -> pd.DataFrame:
    """Readings with ts in [start, end), ordered by device, metric and time.

    `shard`/`shards` partition devices (device_id % shards == shard) so n workers can read
    and score disjoint parts of the fleet."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard}")
    query = (
        "COPY (SELECT device_id, metric_id, ts, value FROM telemetry.readings"
        " WHERE ts >= {start} AND ts < {end} AND device_id % {shards} = {shard}"
        " ORDER BY device_id, metric_id, ts) TO STDOUT (FORMAT binary)"
    )
    own = conn is None
    conn = conn or db.connect()
    try:
        stmt = psycopg.sql.SQL(query).format(
            start=psycopg.sql.Literal(start), end=psycopg.sql.Literal(end),
            shards=psycopg.sql.Literal(shards), shard=psycopg.sql.Literal(shard))
        buffer = bytearray()
        with conn.cursor().copy(stmt) as copy:
            for chunk in copy:
                buffer += chunk
        return _parse(buffer)
    finally:
        if own:
            conn.close()
