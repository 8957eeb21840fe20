"""Orchestration: the micro-batch guard (two overlapping runs), catch-up after a gap (every
window exactly once), retention of old partitions, and smoke runs of hourly-rollup and nightly.
Real PostgreSQL, real dbt and a temporary Prefect server."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from prefect.client.orchestration import get_client

from core import locks, retention, store
from core.ingest import SIMULATOR_STREAM
from flows import maintenance, pipeline
from flows.detection import EvaluateParams, TrainParams
from flows.drift import DriftParams
from flows.params import BackfillParams, FleetParams, WindowParams
from simulator import simulate

END = datetime(2026, 11, 20, tzinfo=UTC)
# Clean data (no simulated transport faults): every reading is emitted exactly once, so the
# rows loaded can be compared with one simulation of the whole range.
CLEAN = FleetParams(sites=1, zones_per_site=2, devices_per_zone=2, fault_scale=0)
SMALL = FleetParams(sites=1, zones_per_site=2, devices_per_zone=2)
TINY_EVAL = EvaluateParams(days=0.5, train_days=1, sites=1, zones_per_site=1, devices_per_zone=2)


def ledger(conn: psycopg.Connection) -> list[tuple[datetime, datetime]]:
    return conn.execute("SELECT window_start, window_end FROM telemetry.batches"
                        " WHERE status = 'succeeded' ORDER BY window_start").fetchall()


def assert_no_overlap(windows: list[tuple[datetime, datetime]]) -> None:
    for (_, end), (start, _) in pairwise(windows):
        assert start >= end, f"windows overlap: {windows}"


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run fn in a thread with a copy of this context (Prefect's settings, hence the test
    server's URL, live in context variables that a new thread would not see)."""
    out: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            out["result"] = context.run(fn)
        except BaseException as exc:  # surfaced by the test's assertions
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def lock_sessions(conn: psycopg.Connection, name: str) -> int:
    """Sessions opened by advisory_lock(name): the holder plus any waiter."""
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (f"telemetry lock {name}"[:63],)).fetchone()[0]


def wait_for_lock_sessions(conn: psycopg.Connection, name: str, expected: int) -> None:
    deadline = time.monotonic() + 60
    while lock_sessions(conn, name) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock_sessions(conn, name) == expected


# ---------------------------------------------------------------------------------------------
# the guard


def test_advisory_lock_admits_one_holder_and_waits_a_bounded_time(db):
    name = "micro-batch:test"
    with locks.advisory_lock(name) as first:
        assert first.acquired
        holder = locks.holder(name)
        assert holder is not None and holder["pid"]
        with locks.advisory_lock(name, wait_seconds=0.5, poll_seconds=0.1) as second:
            assert not second.acquired and second.waited_seconds >= 0.5
            assert second.holder is not None and second.holder["pid"] == holder["pid"]
        with locks.advisory_lock("micro-batch:another-stream") as other:
            assert other.acquired  # the key comes from the stream name
    assert locks.holder(name) is None  # released on exit
    with locks.advisory_lock(name) as again:
        assert again.acquired
    assert locks.lock_key(name) == locks.lock_key(name) != locks.lock_key("micro-batch:x")


@pytest.mark.usefixtures("prefect_harness")
def test_overlapping_micro_batches_never_load_a_window_twice(conn, monkeypatch):
    """A holds the lock (paused inside its guarded section, before reading the watermark);
    B (no wait) skips and says why; C (waits) runs once A is done, from A's new watermark.
    Without the lock, C would read the same watermark as A and load an overlapping window."""
    store.advance_watermark(conn, SIMULATOR_STREAM, END)
    name = locks.micro_batch_lock_name(SIMULATOR_STREAM)
    original, calls = pipeline.load_new_window, []
    inside, release = threading.Event(), threading.Event()

    def paused_first(window: WindowParams, fleet: FleetParams):
        calls.append(window)
        if len(calls) == 1:
            inside.set()
            assert release.wait(120)
        return original(window, fleet)

    monkeypatch.setattr(pipeline, "load_new_window", paused_first)
    a, a_out = in_thread(lambda: pipeline.micro_batch(
        window=WindowParams(end=END + timedelta(minutes=30)), fleet=SMALL))
    try:
        assert inside.wait(120), a_out
        b, b_out = in_thread(lambda: pipeline.micro_batch(
            window=WindowParams(end=END + timedelta(minutes=30)), fleet=SMALL))
        b.join(120)
        assert "result" in b_out, b_out
        # A backend leaves pg_stat_activity a moment after its client closes: wait for B's to
        # go, so the count below is A and C, not A and a B that is still exiting.
        wait_for_lock_sessions(conn, name, 1)
        c, c_out = in_thread(lambda: pipeline.micro_batch(
            window=WindowParams(end=END + timedelta(minutes=40)), fleet=SMALL,
            lock_wait_seconds=120))
        wait_for_lock_sessions(conn, name, 2)  # C is polling for the lock A holds
    finally:
        release.set()
    a.join(180)
    c.join(180)
    assert "result" in a_out and "result" in c_out, (a_out, c_out)
    ran_a, skipped_b, ran_c = a_out["result"], b_out["result"], c_out["result"]

    assert skipped_b.skipped and "another micro-batch holds the lock" in skipped_b.skipped
    assert skipped_b.load.batch_ids == [] and len(calls) == 2  # B never reached the load
    assert ran_a.skipped is None and ran_c.skipped is None
    assert (ran_a.load.window_start, ran_a.load.window_end) == (END, END + timedelta(minutes=30))
    assert (ran_c.load.window_start, ran_c.load.window_end) == (
        END + timedelta(minutes=30), END + timedelta(minutes=40))
    windows = ledger(conn)
    assert windows == [(END, END + timedelta(minutes=30)),
                       (END + timedelta(minutes=30), END + timedelta(minutes=40))]
    assert_no_overlap(windows)
    assert locks.holder(name) is None


# ---------------------------------------------------------------------------------------------
# catch-up


@pytest.mark.usefixtures("prefect_harness")
def test_catch_up_after_a_gap_loads_every_window_exactly_once(conn, monkeypatch):
    """Down for 1 h 25 min: scheduled micro-batches (no window given) close the gap in runs of
    at most 1 h, each in 30-minute chunks, and together load exactly the rows one pass over
    the whole gap would."""
    store.advance_watermark(conn, SIMULATOR_STREAM, END)
    now = END + timedelta(hours=1, minutes=25, seconds=7)
    monkeypatch.setattr(pipeline, "_now", lambda: now)
    params = WindowParams(max_catch_up_hours=1, chunk_minutes=30)
    runs = []
    for _ in range(4):  # bounded: the test fails rather than loops
        runs.append(pipeline.micro_batch(window=params, fleet=CLEAN))
        if not runs[-1].load.remaining_gap_hours:
            break
    caught_up = END + timedelta(hours=1, minutes=25)  # floored to the 10 s reading interval
    assert [(r.load.window_start, r.load.window_end) for r in runs] == [
        (END, END + timedelta(hours=1)), (END + timedelta(hours=1), caught_up)]
    assert [r.load.chunks for r in runs] == [2, 1]
    assert runs[0].load.remaining_gap_hours == pytest.approx(25 / 60, abs=1e-3)
    assert store.get_watermark(conn, SIMULATOR_STREAM) == caught_up

    windows = ledger(conn)
    assert windows == [(END, END + timedelta(minutes=30)),
                       (END + timedelta(minutes=30), END + timedelta(hours=1)),
                       (END + timedelta(hours=1), caught_up)]  # contiguous, each window once

    loaded = conn.execute("SELECT device_id, metric_id, ts, value FROM telemetry.readings"
                          " ORDER BY 1, 2, 3").fetchall()
    one_pass = simulate(CLEAN.config(), END, caught_up).readings
    expected = sorted((int(r.device_id), int(r.metric_id), r.ts.to_pydatetime(), r.value)
                      for r in one_pass.itertuples(index=False))
    assert loaded == expected
    assert sum(r.load.rows_duplicate for r in runs) == 0

    # Caught up: the next run's window is empty (the same resolution as micro-batch's).
    again = pipeline.simulate_and_load(window=params, fleet=CLEAN)
    assert again.chunks == 0 and again.rows_loaded == 0 and ledger(conn) == windows


# ---------------------------------------------------------------------------------------------
# retention


def _day(d: datetime) -> str:
    return f"readings_p{d:%Y%m%d}"


def _add_rows(conn: psycopg.Connection, ts: datetime, n: int = 3) -> None:
    conn.execute("INSERT INTO telemetry.readings (device_id, metric_id, ts, value, batch_id)"
                 " SELECT g, 1, %s, 1.0, 0 FROM generate_series(1, %s) g", (ts, n))


@pytest.mark.usefixtures("prefect_harness")
def test_retention_drops_old_partitions_and_derived_rows(conn):
    as_of = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    cutoff = retention.cutoff(as_of, 3)  # 2026-11-23 00:00: the 23rd on is kept
    assert cutoff == datetime(2026, 11, 23, tzinfo=UTC)
    first = datetime(2026, 11, 19, tzinfo=UTC)
    conn.execute("SELECT telemetry.ensure_partitions(%s::date, %s::date)",
                 (first.date(), as_of.date()))
    for day in range(8):  # 19th .. 26th
        _add_rows(conn, first + timedelta(days=day, hours=5))
    # A day without its own partition lands in the default one.
    _add_rows(conn, datetime(2026, 11, 10, 6, tzinfo=UTC), 2)
    for ts in (cutoff - timedelta(hours=1), cutoff + timedelta(hours=1)):
        conn.execute("INSERT INTO telemetry.scores (detector, device_id, metric, ts, score,"
                     " is_anomaly) VALUES ('rolling_z', 1, 'co2', %s, 2.0, true)", (ts,))
        conn.execute("INSERT INTO telemetry.quality_results (suite, target, window_start,"
                     " window_end, expectation, expectation_type, severity, success, run_id)"
                     " VALUES ('kpi', %s, %s, %s, 'e', 't', 'error', false, 'test')",
                     (f"kpi {ts}", ts - timedelta(hours=6), ts))

    dry = maintenance.retention(maintenance.RetentionParams(keep_days=3, as_of=as_of,
                                                            dry_run=True))
    assert dry.expired == [_day(first + timedelta(days=d)) for d in range(4)]
    assert dry.dropped == {} and store.table_counts(conn)["readings"] == 8 * 3 + 2

    # A long reader holds the readings table: dropping any partition needs an exclusive lock
    # on it, so this run gives up on each after the timeout and leaves them for the next run.
    with psycopg.connect(conn.info.dsn) as reader:
        reader.execute(f"SELECT count(*) FROM telemetry.{_day(first)}").fetchone()
        held = maintenance.retention(maintenance.RetentionParams(
            keep_days=3, as_of=as_of, lock_timeout_seconds=0.3))
        reader.rollback()
    assert list(held.not_dropped) == dry.expired and held.dropped == {}
    assert held.default_rows == 2 and held.scores == 1 and held.quality_results == 1

    done = maintenance.retention(maintenance.RetentionParams(keep_days=3, as_of=as_of))
    assert done.dropped == dict.fromkeys(dry.expired, 3) and not done.not_dropped
    left = [p.name for p in retention.partitions(conn)]
    assert left[0] == _day(cutoff) and _day(first) not in left
    assert conn.execute("SELECT min(ts), count(*) FROM telemetry.readings").fetchone() == (
        cutoff + timedelta(hours=5), 4 * 3)
    assert conn.execute("SELECT count(*) FROM telemetry.scores").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM telemetry.quality_results").fetchone()[0] == 1
    # A retried drop of a partition already gone is a no-op; a connection inside a
    # transaction is refused (each step must commit on its own).
    gone = retention.Partition(_day(first), first.date())
    assert retention.drop_partition(conn, gone) == 0
    with psycopg.connect(conn.info.dsn) as in_transaction, pytest.raises(ValueError):
        retention.drop_partition(in_transaction, gone)
    # Loading that day again later still works: its partition is made anew.
    conn.execute("SELECT telemetry.ensure_partitions(%s::date, %s::date)",
                 (first.date(), first.date()))
    _add_rows(conn, first + timedelta(hours=1))
    assert conn.execute(f"SELECT count(*) FROM telemetry.{_day(first)}").fetchone()[0] == 3


def test_retention_refuses_a_horizon_without_today_and_bad_parameters():
    with pytest.raises(ValueError):
        retention.cutoff(END, 0)
    with pytest.raises(ValueError):
        maintenance.RetentionParams(keep_days=0)
    with pytest.raises(ValueError):
        maintenance.RetentionParams(keep_days=3651)
    with pytest.raises(ValueError):
        maintenance.RollupParams(horizon_minutes=1)


# ---------------------------------------------------------------------------------------------
# hourly-rollup and nightly


def latest_artifact(key: str) -> str:
    """The newest markdown published under `key` (on this test process's Prefect server)."""
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts()
    return next(a.data for a in found if a.key == key)


@pytest.mark.usefixtures("prefect_harness")
def test_hourly_rollup_then_nightly_run_their_steps_and_publish_summaries(conn):
    empty = maintenance.hourly_rollup()
    assert empty.skipped == "nothing loaded yet"
    with locks.advisory_lock(locks.micro_batch_lock_name(SIMULATOR_STREAM)):
        busy = maintenance.hourly_rollup(maintenance.RollupParams(lock_wait_seconds=0.3))
    assert busy.skipped and "a micro-batch held the lock" in busy.skipped

    pipeline.backfill(params=BackfillParams(days=1, end=END, chunk_minutes=360), fleet=SMALL)
    rollup = maintenance.hourly_rollup()
    assert (rollup.window_start, rollup.window_end) == (END - timedelta(hours=2), END)
    assert rollup.dbt_models >= 5 and rollup.kpi is not None and rollup.kpi.targets >= 1
    assert "raw_batch" in rollup.last_day and rollup.last_day["raw_batch"].targets == 4
    assert rollup.report is not None and rollup.report.exists()
    markdown = latest_artifact("hourly-rollup")
    assert "quality, last day: raw_batch" in markdown and "quality.html" in markdown

    night = maintenance.nightly(maintenance.NightlyParams(
        drift=DriftParams(current_end=END, current_days=0.5, reference_days=0.5),
        train=TrainParams(days=1, end=END), evaluate=TINY_EVAL,
        retention=maintenance.RetentionParams(keep_days=3650)))
    assert list(night.steps) == ["drift-report", "train", "evaluate", "retention"]
    assert all(s.status == "completed" for s in night.steps.values()), night.steps
    assert "rolling_z" in night.steps["train"].detail and "f1" in night.steps["evaluate"].detail
    assert conn.execute("SELECT count(*) FROM telemetry.models").fetchone()[0] == 4
    assert "**completed**" in latest_artifact("nightly")


@pytest.mark.usefixtures("prefect_harness")
def test_nightly_goes_on_after_a_failed_step_and_then_fails(conn):
    """Nothing loaded: training fails, evaluate-lite and retention still run."""
    state = maintenance.nightly(maintenance.NightlyParams(evaluate=TINY_EVAL),
                                return_state=True)
    assert state.is_failed() and "nightly steps failed: train" in str(state.message)
    assert conn.execute("SELECT count(*) FROM telemetry.evaluations").fetchone()[0] > 0
    markdown = latest_artifact("nightly")
    assert "train | **failed**" in markdown and "retention | **completed**" in markdown


# ---------------------------------------------------------------------------------------------
# telemetry status


@pytest.mark.usefixtures("prefect_harness")
def test_status_shows_lag_last_flow_runs_the_lock_and_open_alerts(conn, monkeypatch):
    from typer.testing import CliRunner

    from cli import main as cli_main

    # The CLI's process defaults (PREFECT_HOME, log level) would outlive this test.
    monkeypatch.setattr(cli_main, "apply_defaults", lambda verbose=False: None)
    monkeypatch.setattr(cli_main.console, "width", 200)
    store.advance_watermark(conn, SIMULATOR_STREAM, END)
    maintenance.retention(maintenance.RetentionParams(keep_days=30, dry_run=True))
    with locks.advisory_lock(locks.micro_batch_lock_name(SIMULATOR_STREAM)):
        result = CliRunner().invoke(cli_main.app, ["status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "lag: now - high water" in out and "2026-11-20 00:00:00" in out
    assert "last flow runs (Prefect)" in out and "retention" in out and "Completed" in out
    assert "micro-batch lock (micro-batch:simulator): held by pid" in out
    assert "open alerts: 0" in out and "readings partitions:" in out
    free = CliRunner().invoke(cli_main.app, ["status"])
    assert "micro-batch lock (micro-batch:simulator): free" in free.output
