"""Simulated batches into the database: readings, their labels and faults in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from core import db, loader, store
from simulator import FleetConfig, SimulatedBatch, build_fleet

SIMULATOR_STREAM = "simulator"


@dataclass(frozen=True)
class Window:
    """A half-open event window [start, end) in UTC."""

    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M}"


def floor_time(when: datetime, step: timedelta) -> datetime:
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor(pd.Timedelta(step)).to_pydatetime()


def chunks(window: Window, size: timedelta) -> Iterator[Window]:
    """Bounded pieces of a window, aligned to multiples of `size` (so re-runs cut alike)."""
    start = window.start
    while start < window.end:
        edge = floor_time(start, size) + size
        end = min(edge, window.end)
        yield Window(start, end)
        start = end


def register_fleet(config: FleetConfig) -> int:
    with db.transaction() as conn:
        return store.upsert_devices(conn, build_fleet(config))


def watermark(stream: str = SIMULATOR_STREAM) -> datetime | None:
    with db.connect() as conn:
        return store.get_watermark(conn, stream)


def load_simulated(batch: SimulatedBatch, window: Window, source: str = "simulator",
                   stream: str = SIMULATOR_STREAM) -> loader.BatchResult:
    """Labels, faults and readings of one simulated window, all or nothing.

    The simulated batch arrived at the window's end, so that is its reference time."""
    with db.transaction() as conn:
        store.insert_labels(conn, batch.labels)
        store.insert_faults(conn, batch.faults)
        return loader.load_readings(
            batch.readings, source=source, stream=stream, window_start=window.start,
            window_end=window.end, reference_time=window.end, conn=conn,
        )
