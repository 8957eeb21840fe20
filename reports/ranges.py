"""The time range a report covers when the caller gives none."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import psycopg

from core import report_store


def resolve(conn: psycopg.Connection, start: datetime | None, end: datetime | None,
            hours: float, align: str | None = None) -> tuple[datetime, datetime]:
    """[end - hours, end), end defaulting to the newest watermark (else now), so a simulated
    history in the past still gets a report of its last day. A default start is clipped to the
    oldest loaded window (hours before it would read as a silent fleet). `align` (a pandas
    frequency, e.g. "5min") floors start and end to whole windows of the KPI marts."""
    stop = pd.Timestamp(end or report_store.data_end(conn) or pd.Timestamp.now(tz="UTC"))
    stop = stop.tz_localize("UTC") if stop.tzinfo is None else stop.tz_convert("UTC")
    if start is not None:
        first = pd.Timestamp(start)
    else:
        first = stop - pd.Timedelta(hours=hours)
        loaded = report_store.data_start(conn)
        first = max(first, pd.Timestamp(loaded)) if loaded is not None else first
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    if align:
        first, stop = first.floor(align), stop.floor(align)
    if first >= stop:
        raise ValueError(f"empty report range: {first} to {stop}")
    return first.to_pydatetime(), stop.to_pydatetime()
