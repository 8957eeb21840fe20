"""The loader against a real PostgreSQL: idempotency, quarantine rules, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import loader, rules, store

T0 = pd.Timestamp("2026-11-20T10:00:00Z")


def fleet(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "device_id": range(1, n + 1),
        "device_name": [f"site-01/zone-01/dev-{i:02d}" for i in range(1, n + 1)],
        "site": "site-01", "zone": "zone-01", "device_kind": "env-sensor",
        "metrics": [["co2", "temperature", "humidity", "occupancy"]] * n,
        "interval_seconds": 10,
        "installed_at": pd.Timestamp("2026-01-01T00:00:00Z"),
    })


def readings(minutes: int = 10, start: pd.Timestamp = T0, devices: int = 3) -> pd.DataFrame:
    ts = pd.date_range(start, periods=minutes * 6, freq="10s")
    grid = pd.MultiIndex.from_product([range(1, devices + 1), [1, 2], ts],
                                      names=["device_id", "metric_id", "ts"]).to_frame(index=False)
    # values are a function of the key, so overlapping frames agree where they overlap
    phase = grid["ts"].astype("int64") // 10**9 % 3600 / 3600 + grid["device_id"] / 7
    grid["value"] = np.where(grid["metric_id"] == 1, 600.0, 21.0) + np.sin(phase * 6.283)
    return grid


@pytest.fixture
def registered(conn: psycopg.Connection) -> psycopg.Connection:
    store.upsert_devices(conn, fleet())
    return conn


def load(frame: pd.DataFrame, **kw) -> loader.BatchResult:
    kw.setdefault("reference_time", T0 + pd.Timedelta(hours=1))
    return loader.load_readings(frame, source="simulator", stream="test", **kw)


def snapshot(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM telemetry.{table} ORDER BY 1, 2, 3").fetchall()


def test_clean_batch_loads_every_row_into_day_partitions(registered):
    frame = readings()
    result = load(frame, window_start=T0, window_end=T0 + pd.Timedelta(minutes=10))
    assert (result.rows_received, result.rows_loaded, result.rows_quarantined) == (360, 360, 0)
    assert result.load_path == "direct"
    parts = registered.execute(
        "SELECT tableoid::regclass::text, count(*) FROM telemetry.readings GROUP BY 1"
    ).fetchall()
    assert parts == [("telemetry.readings_p20261120", 360)]
    stored = registered.execute(
        "SELECT device_id, metric_id, ts, value FROM telemetry.readings ORDER BY 1, 2, 3"
    ).fetchall()
    expected = frame.sort_values(["device_id", "metric_id", "ts"])
    assert [r[3] for r in stored] == expected["value"].tolist()  # bit-exact through binary COPY
    assert stored[0][2] == expected["ts"].iloc[0].to_pydatetime()


def test_rerunning_a_batch_changes_nothing_and_the_ledger_says_duplicate(registered):
    frame = readings()
    bad = pd.DataFrame({"device_id": [99], "metric_id": [1], "ts": [T0], "value": [500.0]})
    first = load(pd.concat([frame, bad]))
    before = (snapshot(registered, "readings"), snapshot(registered, "quarantine"))
    second = load(pd.concat([frame, bad]))
    assert (snapshot(registered, "readings"), snapshot(registered, "quarantine")) == before
    assert (first.rows_loaded, first.rows_duplicate, first.rows_quarantined) == (360, 0, 1)
    assert (second.rows_loaded, second.rows_duplicate, second.rows_quarantined) == (0, 360, 1)
    assert second.load_path == "staged"
    ledger = registered.execute(
        "SELECT rows_received, rows_loaded, rows_duplicate, status FROM telemetry.batches"
        " ORDER BY batch_id").fetchall()
    assert ledger == [(361, 360, 0, "succeeded"), (361, 0, 360, "succeeded")]


def test_overlapping_batch_loads_only_new_rows(registered):
    load(readings(minutes=10))
    result = load(readings(minutes=20))
    assert (result.rows_loaded, result.rows_duplicate) == (360, 360)
    assert registered.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0] == 720


BAD_ROWS = {
    rules.NULL_VALUE: {"device_id": 1, "metric_id": 1, "value": np.nan},
    rules.UNKNOWN_METRIC: {"device_id": 1, "metric_id": 9, "value": 1.0},
    rules.UNKNOWN_DEVICE: {"device_id": 900001, "metric_id": 1, "value": 500.0},
    rules.IMPOSSIBLE_VALUE: {"device_id": 2, "metric_id": 1, "value": -40.0},
    rules.FUTURE_TIMESTAMP: {"device_id": 3, "metric_id": 2, "value": 21.0,
                             "ts": T0 + pd.Timedelta(hours=5)},
}
REASON_WORDS = {
    rules.NULL_VALUE: "null", rules.UNKNOWN_METRIC: "metric registry",
    rules.UNKNOWN_DEVICE: "device registry", rules.IMPOSSIBLE_VALUE: "physically possible",
    rules.FUTURE_TIMESTAMP: "device clock",
}


@pytest.mark.parametrize("rule", list(BAD_ROWS))
def test_each_bad_row_lands_in_quarantine_with_its_rule_and_reason(registered, rule):
    row = {"ts": T0 + pd.Timedelta(minutes=30), **BAD_ROWS[rule]}
    frame = pd.concat([readings(minutes=1), pd.DataFrame([row])], ignore_index=True)
    result = load(frame)
    assert result.rows_loaded == 36 and result.quarantined_by_rule == {rule: 1}
    q = registered.execute(
        "SELECT rule, reason, device_id, metric_id, raw FROM telemetry.quarantine").fetchall()
    assert len(q) == 1
    stored_rule, reason, device_id, metric_id, raw = q[0]
    assert stored_rule == rule and REASON_WORDS[rule] in reason
    assert (device_id, metric_id) == (row["device_id"], row["metric_id"])
    assert raw["device_id"] == row["device_id"]  # the raw payload is kept


def test_conflicting_duplicate_inside_a_batch_keeps_the_first(registered):
    frame = readings(minutes=1)
    clash = frame.iloc[[0]].assign(value=frame["value"].iloc[0] + 5)
    same = frame.iloc[[1]]
    result = load(pd.concat([frame, clash, same], ignore_index=True))
    assert (result.rows_loaded, result.rows_duplicate) == (36, 1)
    assert result.quarantined_by_rule == {rules.CONFLICTING_DUPLICATE: 1}
    stored = registered.execute(
        "SELECT value FROM telemetry.readings WHERE device_id = %s AND metric_id = %s AND ts = %s",
        (int(frame.device_id[0]), int(frame.metric_id[0]), frame.ts[0])).fetchone()[0]
    assert stored == frame["value"].iloc[0]


def test_conflicting_duplicate_against_stored_rows_keeps_the_stored_value(registered):
    frame = readings(minutes=1)
    first = load(frame)
    changed = frame.copy()
    changed.loc[:4, "value"] += 1.5
    result = load(changed)
    assert result.rows_loaded == 0 and result.rows_duplicate == 31
    assert result.quarantined_by_rule == {rules.CONFLICTING_DUPLICATE: 5}
    reasons = [r[0] for r in registered.execute("SELECT reason FROM telemetry.quarantine")]
    assert all(f"by batch {first.batch_id}" in r for r in reasons)
    assert snapshot(registered, "readings")[0][3] == frame.sort_values(
        ["device_id", "metric_id", "ts"])["value"].iloc[0]
    load(changed)  # a re-run quarantines nothing new
    assert registered.execute("SELECT count(*) FROM telemetry.quarantine").fetchone()[0] == 5


def test_crash_before_commit_leaves_no_partial_batch(registered, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("power cut after COPY")

    monkeypatch.setattr(loader, "_finish_batch", crash)
    frame = pd.concat([readings(), pd.DataFrame([{"ts": T0, **BAD_ROWS[rules.NULL_VALUE]}])])
    with pytest.raises(RuntimeError, match="power cut"):
        load(frame, window_end=T0 + pd.Timedelta(minutes=10))
    counts = store.table_counts(registered)
    assert counts["readings"] == 0 and counts["quarantine"] == 0
    assert store.get_watermark(registered, "test") is None
    ledger = registered.execute("SELECT status, rows_loaded, error FROM telemetry.batches"
                                ).fetchall()
    assert ledger == [("failed", 0, "RuntimeError: power cut after COPY")]
    monkeypatch.undo()
    assert load(frame).rows_loaded == 360  # the retry loads everything


def test_sigkill_mid_copy_then_rerun_equals_one_clean_run_and_the_ledger_shows_both(
        registered, db):
    """A hard kill while a large batch's COPY is streaming: nothing of it stays, the rerun
    gives exactly the rows one clean run gives, and the ledger keeps both attempts."""
    frame = readings(minutes=4200)  # 151,200 rows: the COPY goes out in 50k-row pieces
    reference = T0 + pd.Timedelta(hours=80)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pandas as pd
        from test_loader import readings
        from core import loader
        real = loader.readings_chunks
        def pieces(frame, batch_id, *args, **kwargs):
            for i, piece in enumerate(real(frame, batch_id, *args, **kwargs)):
                yield piece
                if i == 1:  # the header and the first 50k rows are on their way
                    print("mid-copy", flush=True)
                    time.sleep(120)
        loader.readings_chunks = pieces
        loader.load_readings(readings(minutes=4200), source="simulator", stream="test",
                             reference_time=pd.Timestamp({str(reference)!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ,
                            "DATABASE_URL": db}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"mid-copy\n", proc.stderr.read().decode()
        pid, status = registered.execute(
            "SELECT backend_pid, status FROM telemetry.batches").fetchone()
        query = registered.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                                   (pid,)).fetchone()
        assert status == "running" and query and query[0].startswith("COPY")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30  # the server ends the session once it sees the socket go
    while registered.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the killed loader's session did not end"
        time.sleep(0.1)
    assert store.table_counts(registered)["readings"] == 0

    rerun = load(frame, reference_time=reference)
    assert rerun.rows_loaded == len(frame) and rerun.rows_quarantined == 0
    stored = pd.DataFrame(registered.execute(
        "SELECT device_id, metric_id, ts, value FROM telemetry.readings"
        " ORDER BY device_id, metric_id, ts").fetchall(),
        columns=["device_id", "metric_id", "ts", "value"])
    expected = frame.sort_values(["device_id", "metric_id", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    ledger = registered.execute("SELECT status, rows_loaded, error, backend_pid"
                                " FROM telemetry.batches ORDER BY batch_id").fetchall()
    assert ledger == [("failed", 0, loader.INTERRUPTED, None),
                      ("succeeded", len(frame), None, None)]


def test_an_attempt_whose_session_is_alive_is_not_marked_failed(registered):
    """Only attempts whose server session has ended count as interrupted: a load running
    alongside keeps its 'running' row."""
    with psycopg.connect(registered.info.dsn) as other:
        other.execute(
            "INSERT INTO telemetry.batches (source, stream, reference_time, status, started_at,"
            " backend_pid) VALUES ('simulator', 'other', now(), 'running', now(),"
            " pg_backend_pid())")
        other.commit()
        load(readings(minutes=1))
        statuses = registered.execute("SELECT stream, status FROM telemetry.batches"
                                      " ORDER BY batch_id").fetchall()
        assert statuses == [("other", "running"), ("test", "succeeded")]


def test_watermark_only_moves_forward(registered):
    later, earlier = T0 + pd.Timedelta(minutes=20), T0 + pd.Timedelta(minutes=10)
    load(readings(minutes=1), window_end=later)
    load(readings(minutes=1), window_end=earlier)
    assert store.get_watermark(registered, "test") == later.to_pydatetime()


def test_unknown_source_is_refused_before_anything_is_written(registered):
    with pytest.raises(ValueError, match="source must be one of"):
        loader.load_readings(readings(minutes=1), source="ftp", stream="x")
    assert store.table_counts(registered)["batches"] == 0


def test_mixed_batch_new_late_duplicate_and_conflicting_rows(registered):
    """Fresh rows take the direct COPY, older ones the staged insert, in one batch."""
    load(readings(minutes=10))
    frame = readings(minutes=20)  # first 10 min stored already, last 10 min new
    stored = frame[frame["ts"] < T0 + pd.Timedelta(minutes=10)]
    late_new = stored.iloc[[0]].assign(ts=T0 - pd.Timedelta(minutes=30))  # older than stored
    conflict = stored.iloc[[5]].assign(value=stored["value"].iloc[5] + 1)
    batch = pd.concat([frame.drop(index=stored.index[5]), late_new, conflict], ignore_index=True)
    result = load(batch)
    assert result.load_path == "direct+staged"
    assert result.rows_loaded == 360 + 1
    assert result.rows_duplicate == 359
    assert result.quarantined_by_rule == {rules.CONFLICTING_DUPLICATE: 1}
    assert result.rows_received == result.rows_loaded + result.rows_duplicate + 1
    assert registered.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0] == 721


def test_infinite_values_are_quarantined_with_a_readable_payload(conn):
    import numpy as np
    import pandas as pd

    from core import loader, store
    from simulator import FleetConfig, build_fleet

    store.upsert_devices(conn, build_fleet(FleetConfig(sites=1, zones_per_site=1,
                                                       devices_per_zone=1)))
    ts = pd.Timestamp("2026-11-20T10:00:00Z")
    frame = pd.DataFrame({"device_id": [1, 1, 1], "metric_id": [1, 2, 2],
                          "ts": [ts, ts, ts + pd.Timedelta(nanoseconds=500)],
                          "value": [np.inf, 21.0, 21.0]})
    result = loader.load_readings(frame, source="api", stream="api", reference_time=ts)
    # +inf is impossible; two keys differing below a microsecond are one stored key
    assert (result.rows_loaded, result.rows_duplicate, result.rows_quarantined) == (1, 1, 1)
    raw = conn.execute("SELECT rule, raw->>'value' FROM telemetry.quarantine").fetchone()
    assert raw == ("impossible_value", "inf")


# Anything a batch may hold: registered and unknown devices and metrics, any float (NaN, ±inf,
# huge), timestamps from the far past to the far future, repeats of the same key.
# About half of the choices plausible, so batches mix rows that load with rows that cannot.
_ROWS = st.lists(st.tuples(
    st.one_of(st.integers(1, 3), st.integers(-1, 9)),
    st.one_of(st.integers(1, 2), st.integers(-1, 9)),
    st.one_of(st.integers(3 * 86_400 - 3_600, 3 * 86_400),  # seconds from T0 - 3 days
              st.integers(-3 * 86_400, 400 * 86_400)),
    st.one_of(st.floats(0, 50), st.floats(allow_nan=True, allow_infinity=True))),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=_ROWS)
def test_any_batch_is_loaded_or_accounted_for_row_by_row(registered, rows):
    frame = pd.DataFrame(rows, columns=["device_id", "metric_id", "offset", "value"])
    frame["ts"] = T0 - pd.Timedelta(days=3) + pd.to_timedelta(frame.pop("offset"), unit="s")
    stored = store.table_counts(registered)["readings"]
    result = load(frame, reference_time=T0)  # never raises
    assert result.rows_received == len(frame)
    assert result.rows_loaded + result.rows_duplicate + result.rows_quarantined == len(frame)
    assert sum(result.quarantined_by_rule.values()) == result.rows_quarantined
    assert store.table_counts(registered)["readings"] == stored + result.rows_loaded
