"""Stages against PostgreSQL, each beside the server's raw limit measured in the same run.

In one scratch database, in order:
  P1 (clean readings, ~rows): the idempotent loader and its re-run against plain COPY into an
     unindexed and into a keyed table; dbt's full KPI build against one hand-written date_bin
     GROUP BY; the scoring read against COPY binary into numpy; then training on P1 (setup).
  P2 (the simulator with its faults, ~rows): end to end, simulate -> load -> dbt -> score ->
     alerts, against the sum of the stage references; then a one-minute dbt incremental
     against dbt's fixed start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from bench.compute_stages import fleet_window
from bench.results import StageResult

T = TypeVar("T")
COPY_ROW = np.dtype([  # a binary COPY row of (device_id, metric_id, ts, value)
    ("ncols", ">i2"),
    ("l_device", ">i4"), ("device_id", ">i4"),
    ("l_metric", ">i4"), ("metric_id", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_value", ">i4"), ("value", ">f8"),
])
KPI_SELECT = ["--select", "+fct_kpi_15m", "+fct_kpi_1h"]  # the 3 grains (5m, 15m, 1h)
KPI_SQL = (
    "CREATE TEMP TABLE ref_kpi_5m AS SELECT device_id, metric_id,"
    " date_bin('5 minutes', ts, timestamptz '2000-01-01') AS window_start, count(*) AS n,"
    " avg(value) AS mean, min(value) AS min, max(value) AS max, stddev_samp(value) AS std"
    " FROM telemetry.readings WHERE ts >= %s AND ts < %s GROUP BY 1, 2, 3"
)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


@dataclass
class Refs:
    """Reference seconds per reading, kept to sum into the end-to-end reference."""

    per_row: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float, rows: int) -> None:
        self.per_row[name] = seconds / rows


def batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for i in range(0, len(frame), size):
        yield frame.iloc[i: i + size]


def _copy_into(table: str, frame: pd.DataFrame, batch_rows: int, tick: Callable[[int], None]
               ) -> float:
    """COPY binary in `batch_rows` pieces, one commit each (as the loader commits each batch);
    the payloads are built before the clock starts, so this is the server's part alone."""
    from core import db
    from core.copy_binary import readings_buffer

    payloads = [readings_buffer(part, 1) for part in batches(frame, batch_rows)]
    with db.connect() as conn:
        t = time.perf_counter()
        for payload, part in zip(payloads, batches(frame, batch_rows), strict=True):
            with conn.cursor().copy(f"COPY {table} (device_id, metric_id, ts, value, batch_id)"
                                    " FROM STDIN (FORMAT binary)") as cp:
                cp.write(payload)
            conn.commit()
            tick(len(part))
        return time.perf_counter() - t


def load_stages(frame: pd.DataFrame, batch_rows: int, reference_time: datetime,
                progress: Any, refs: Refs) -> list[StageResult]:
    from core import db, loader

    n = len(frame)

    def load(label: str) -> tuple[int, float]:
        task = progress.add_task(label, total=n)
        loaded, t = 0, time.perf_counter()
        for part in batches(frame, batch_rows):
            loaded += loader.load_readings(part, source="backfill", stream="bench",
                                           reference_time=reference_time).rows_loaded
            progress.advance(task, len(part))
        progress.remove_task(task)
        return loaded, time.perf_counter() - t

    loaded, first = load("load (first)")
    duplicate_loaded, rerun = load("load (re-run)")
    if loaded != n or duplicate_loaded:
        raise RuntimeError(f"load stage: {loaded:,} of {n:,} loaded, {duplicate_loaded:,} on the"
                           " re-run: the loader is not idempotent on clean input")
    with db.connect() as conn:
        conn.execute("CREATE TABLE bench_unindexed (LIKE telemetry.readings INCLUDING DEFAULTS)")
        conn.execute("CREATE TABLE bench_keyed (LIKE telemetry.readings INCLUDING ALL)")
        conn.commit()
    ref = {}
    for table in ("bench_unindexed", "bench_keyed"):
        task = progress.add_task(f"COPY into {table}", total=n)
        ref[table] = _copy_into(table, frame, batch_rows, lambda k, t=task: progress.advance(t, k))
        progress.remove_task(task)
    with db.connect() as conn:
        conn.execute("DROP TABLE bench_unindexed, bench_keyed")
        conn.commit()
    refs.add("load", ref["bench_keyed"], n)
    unindexed_rate = n / ref["bench_unindexed"]
    goal = ">= 500k/s and >= 70% of keyed COPY"
    return [
        StageResult(f"load, idempotent ({batch_rows // 1000}k batches)", n, first,
                    "COPY binary into a keyed table", ref["bench_keyed"], goal=goal,
                    extra={"unindexed_copy_rows_per_s": round(unindexed_rate)},
                    ).judge(lambda r: r.rate >= 500e3 and (r.ratio or 0) >= 0.7),
        StageResult("load re-run (all duplicate)", n, rerun,
                    "COPY binary into a keyed table", ref["bench_keyed"],
                    goal="nothing loaded twice"),
        StageResult("  (reference) COPY into an unindexed table", n, ref["bench_unindexed"],
                    goal="the server's write limit"),
    ]


def dbt_startup() -> float:
    """Seconds of a dbt invocation that builds one view: dbt's fixed cost per run, once the
    process has parsed the project (the first invocation, not timed, parses it)."""
    from core.dbt_runner import run_dbt

    run_dbt(["run", "--select", "stg_metrics"])
    return timed(lambda: run_dbt(["run", "--select", "stg_metrics"]))[1]


def dbt_full_stage(start: datetime, end: datetime, rows: int, refs: Refs) -> StageResult:
    from core import db
    from core.dbt_runner import run_dbt

    startup = dbt_startup()
    run, seconds = timed(lambda: run_dbt(["run", "--full-refresh", *KPI_SELECT]))
    with db.connect() as conn:
        conn.execute("SET jit = off")  # as dbt's profile runs it; see PERF-NOTES
        _, ref = timed(lambda: conn.execute(KPI_SQL, (start, end)))
        conn.rollback()
    refs.add("dbt", ref, rows)
    return StageResult("dbt KPI build, 3 grains, full", rows, seconds,
                       "one hand-written date_bin GROUP BY (5 min)", ref,
                       goal="10M readings <= 10 s",
                       extra={"models": len(run.results), "dbt_startup_seconds": round(startup, 3)},
                       # dbt's start-up is paid once per build, the rest grows with the rows
                       ).judge(lambda r: startup + (r.seconds - startup) * 10e6 / r.rows <= 10)


def read_stage(start: datetime, end: datetime, refs: Refs) -> StageResult:
    from core import db
    from core.readback import read_readings

    frame, seconds = timed(lambda: read_readings(start, end))

    def raw() -> int:
        with db.connect() as conn:
            buffer = bytearray()
            with conn.cursor().copy(
                    "COPY (SELECT device_id, metric_id, ts, value FROM telemetry.readings"
                    " WHERE ts >= %s AND ts < %s) TO STDOUT (FORMAT binary)", (start, end)) as cp:
                while chunk := cp.read():
                    buffer += chunk
        return len(np.frombuffer(memoryview(buffer)[19:-2], dtype=COPY_ROW))

    ref_rows, ref = timed(raw)
    if ref_rows != len(frame):
        raise RuntimeError(f"read stage: {len(frame):,} rows read, the reference read {ref_rows:,}")
    refs.add("read", ref, len(frame))
    return StageResult("read for scoring (ordered, into pandas)", len(frame), seconds,
                       "COPY binary into numpy, unordered", ref,
                       goal=">= 1.5M rows/s").judge(lambda r: r.rate >= 1.5e6)


def end_to_end(start: datetime, end: datetime, progress: Any, refs: Refs,
               chunk: timedelta) -> list[StageResult]:
    """P2: simulate -> load -> dbt -> score -> alerts, in backfill-sized chunks."""
    from core import ingest, scoring
    from core.dbt_runner import run_dbt
    from simulator import FleetConfig, simulate

    config = FleetConfig()
    pieces = list(ingest.chunks(ingest.Window(start, end), chunk))
    task = progress.add_task("end to end: simulate + load", total=len(pieces))
    split = {"simulate": 0.0, "load": 0.0}
    received = 0
    started = time.perf_counter()
    for piece in pieces:
        batch, s = timed(lambda p=piece: simulate(config, p.start, p.end))
        _, ls = timed(lambda p=piece, b=batch: ingest.load_simulated(b, p))
        split["simulate"] += s
        split["load"] += ls
        received += len(batch.readings)
        progress.advance(task)
    progress.remove_task(task)
    _, split["dbt"] = timed(lambda: run_dbt(["run", *KPI_SELECT]))
    summary, split["score"] = timed(lambda: scoring.score_window(start, end))
    scoring.mark_scored(end)
    seconds = time.perf_counter() - started
    ref = sum(refs.per_row.values()) * received
    return [
        StageResult("end to end (simulate > load > dbt > score)", received, seconds,
                    "sum of the stage references", ref, goal="10M readings < 60 s",
                    extra={"split_seconds": {k: round(v, 2) for k, v in split.items()},
                           "alerts_opened": summary.alerts_opened,
                           "anomalies": summary.anomalies},
                    ).judge(lambda r: r.seconds < 60 * r.rows / 10e6),
        StageResult("  score + alerts from the database", summary.points, split["score"],
                    goal="state the figure", extra={"split": summary.seconds}),
    ]


def dbt_incremental_stage(at: datetime) -> StageResult:
    """One more minute loaded, then the incremental build (its default 2-hour late reach)."""
    from core import ingest
    from core.dbt_runner import run_dbt
    from simulator import FleetConfig, simulate

    window = ingest.Window(at, at + timedelta(minutes=1))
    batch = simulate(FleetConfig(), window.start, window.end)
    ingest.load_simulated(batch, window)
    startup = dbt_startup()
    _, seconds = timed(lambda: run_dbt(["run", *KPI_SELECT]))
    return StageResult("dbt KPI build, incremental, one minute", len(batch.readings), seconds,
                       "dbt's fixed start-up (one view)", startup,
                       goal="<= 1 s beyond dbt's start-up",
                       extra={"beyond_startup_seconds": round(seconds - startup, 3)},
                       ).judge(lambda r: r.seconds - startup <= 1.0)


def micro_batch_stage(at: datetime) -> StageResult:
    """The micro-batch flow for one minute of the default fleet under Prefect, twice (the first
    pays Prefect's and dbt's first-run costs); the second is the figure."""
    from flows.params import FleetParams, WindowParams
    from flows.pipeline import micro_batch

    runs = []
    for k in range(2):
        start = at + timedelta(minutes=k)
        run, s = timed(lambda a=start: micro_batch(
            window=WindowParams(start=a, end=a + timedelta(minutes=1)), fleet=FleetParams()))
        runs.append((run, s))
    (_, warm), (run, steady) = runs
    return StageResult("micro-batch flow, 1 min of the default fleet", run.load.rows_received,
                       steady, goal="<= 5 s wall with Prefect and dbt",
                       extra={"first_run_seconds": round(warm, 2), "split": run.seconds},
                       ).judge(lambda r: r.seconds <= 5.0)


def database_stages(rows: int, batch_rows: int, progress: Any, flows: bool,
                    day0: datetime, refs: Refs) -> list[StageResult]:
    from core import ingest, scoring
    from simulator import simulate_clean

    config, p1_start, p1_end = fleet_window(rows, day0)
    p2_end = p1_end + (p1_end - p1_start)
    ingest.register_fleet(config)
    frame = simulate_clean(config, p1_start, p1_end).readings
    frame = frame[(frame["ts"] >= p1_start) & (frame["ts"] < p1_end)]  # P1's own event times
    frame = frame[["device_id", "metric_id", "ts", "value"]].reset_index(drop=True)
    results = load_stages(frame, batch_rows, p2_end, progress, refs)
    task = progress.add_task("dbt full, read, train", total=3)
    results.append(dbt_full_stage(p1_start, p1_end, len(frame), refs))
    progress.advance(task)
    results.append(read_stage(p1_start, p1_end, refs))
    progress.advance(task)
    trained, train_s = timed(lambda: scoring.train_models(p1_start, p1_end))
    results.append(StageResult("  train on P1 (setup)", trained.rows, train_s,
                               goal="state the figure"))
    progress.remove_task(task)
    results += end_to_end(p1_end, p2_end, progress, refs, timedelta(hours=6))
    results.append(dbt_incremental_stage(p2_end))
    if flows:
        results.append(micro_batch_stage(p2_end + timedelta(minutes=1)))
    return results
