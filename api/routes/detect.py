"""POST /api/v1/detect: online moving average +- k sigma for one series (core.online).

A request locks its series' row, scores the points after the series' last one, saves the
advanced state and the anomalies in one transaction, then appends the anomalies to the
JSON-lines log. The state lives in the database, so scoring continues across restarts and
across API processes.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.deps import Config, Conn, WriteAccess
from api.ingest_models import (
    DetectRequest,
    DetectResult,
    DetectScore,
    Refusal,
    body_schema,
    read_model,
)
from core import online, online_store
from core.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["detection"])
_log_lock = threading.Lock()


def anomaly_log_path(config: Settings) -> Path:
    return config.anomaly_log_path or Path(config.data_dir) / "anomalies.jsonl"


def _append(path: Path, lines: bytes) -> None:
    """One write per request, in append mode: lines from concurrent requests (or processes)
    do not interleave."""
    with _log_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            out.write(lines)


def _stamps(request: DetectRequest) -> list[datetime]:
    """Point times; points without one get the arrival time, a microsecond apart, in order."""
    now = datetime.now(UTC)
    return [p.ts.astimezone(UTC) if p.ts else now + timedelta(microseconds=i)
            for i, p in enumerate(request.points)]


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@router.post(
    "/detect", response_model=DetectResult, dependencies=[WriteAccess],
    openapi_extra={"requestBody": body_schema(DetectRequest)},
    responses={401: {"description": "missing or wrong token"},
               403: {"description": "writes disabled (no token configured)"},
               409: {"description": "the series exists with another window"},
               413: {"description": "too many points"},
               422: {"model": Refusal, "description": "invalid points"}})
async def detect(http: Request, conn: Conn, config: Config) -> Any:
    """Score points of one series against its trailing window: returns mean, std_dev, z and
    is_anomaly per point. Points at or before the series' last scored point are skipped.
    Body: DetectRequest."""
    request = await read_model(http, DetectRequest, config.api_max_body_bytes)
    if len(request.points) > config.detect_max_points:
        raise HTTPException(413, f"{len(request.points)} points; at most "
                            f"{config.detect_max_points} per request")
    stamps = _stamps(request)
    if any(b <= a for a, b in pairwise(stamps)):
        raise HTTPException(422, "points must be in strictly increasing ts order")
    window = request.window or config.detect_window
    k = request.k or config.detect_k
    key = request.key
    async with conn.transaction():
        row = await online_store.lock_series(conn, key, window, online.default_min_periods(window),
                                             request.device_id, request.metric)
        if request.window is not None and row["window_size"] != request.window:
            raise HTTPException(409, f"series {key!r} has window {row['window_size']}; a "
                                "window is fixed when a series is first scored")
        state = online.SeriesState(window=row["window_size"], min_periods=row["min_periods"],
                                   recent=tuple(row["recent"]), last_ts=row["last_ts"],
                                   n_seen=row["n_seen"])
        fresh = [i for i, ts in enumerate(stamps) if state.last_ts is None or ts > state.last_ts]
        values = np.array([request.points[i].value for i in fresh], dtype=np.float64)
        scores, state = online.score(state, values, k, stamps[fresh[-1]] if fresh else None)
        found = np.flatnonzero(scores.is_anomaly).tolist()
        anomalies = [(key, stamps[fresh[j]], float(values[j]), float(scores.mean[j]),
                      float(scores.std_dev[j]), float(scores.z[j]), k, state.window)
                     for j in found]
        await online_store.insert_anomalies(conn, anomalies)
        await online_store.save_series(conn, key, list(state.recent), state.last_ts,
                                       state.n_seen, len(anomalies))
    if anomalies:
        metrics.ANOMALIES_DETECTED.inc(len(anomalies))
        detected_at = datetime.now(UTC)
        lines = b"".join(orjson.dumps({
            "series": key, "device_id": row["device_id"], "metric": row["metric"], "ts": ts,
            "value": value, "mean": mean, "std_dev": std, "z": z, "k": k_, "window": w,
            "detected_at": detected_at}, option=orjson.OPT_UTC_Z) + b"\n"
            for _, ts, value, mean, std, z, k_, w in anomalies)
        try:
            await run_in_threadpool(_append, anomaly_log_path(config), lines)
        except OSError:  # the table has them; a full disk must not fail a committed request
            log.exception("could not append %d anomalies to %s", len(anomalies),
                          anomaly_log_path(config))
    by_point = dict(zip(fresh, range(len(fresh)), strict=True))
    out = []
    for i, (point, ts) in enumerate(zip(request.points, stamps, strict=True)):
        j = by_point.get(i)
        if j is None:
            out.append(DetectScore(ts=ts, value=point.value, mean=None, std_dev=None, z=None,
                                   lower=None, upper=None, is_anomaly=False, skipped=True))
            continue
        mean, std = _number(scores.mean[j]), _number(scores.std_dev[j])
        out.append(DetectScore(
            ts=ts, value=point.value, mean=mean, std_dev=std, z=_number(scores.z[j]),
            lower=None if mean is None or std is None else mean - k * std,
            upper=None if mean is None or std is None else mean + k * std,
            is_anomaly=bool(scores.is_anomaly[j])))
    return DetectResult(series=key, window=state.window, min_periods=state.min_periods, k=k,
                        n_seen=state.n_seen, anomalies=len(anomalies), scores=out)
