"""Training, scoring and alerts against a real database: idempotent, late data, shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from core import db as core_db
from core import ingest, scoring
from core.settings import PROJECT_ROOT
from simulator import AnomalyConfig, FleetConfig, simulate

DAY0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
DAY1 = DAY0 + timedelta(days=1)
WINDOW = (DAY1 + timedelta(hours=9), DAY1 + timedelta(hours=11))
# Threshold breaches only, often: every device gets some in the scored window.
FLEET = FleetConfig(sites=1, zones_per_site=1, devices_per_zone=3,
                    anomalies=AnomalyConfig.only("threshold_breach", 6.0))


def load(start: datetime, end: datetime) -> None:
    for piece in ingest.chunks(ingest.Window(start, end), timedelta(hours=6)):
        ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)


@pytest.fixture
def trained(conn: psycopg.Connection) -> psycopg.Connection:
    ingest.register_fleet(FLEET)
    load(DAY0, WINDOW[1])
    summary = scoring.train_models(DAY0, DAY1)
    assert set(summary.versions) == {"rolling_z", "stuck", "seasonal_z", "pca"}
    assert summary.excluded > 0  # labeled anomalies were kept out of the baselines
    return conn


def snapshot(conn: psycopg.Connection) -> tuple[list, list]:
    scores = conn.execute("SELECT detector, device_id, metric, ts, score, severity"
                          " FROM telemetry.scores ORDER BY 1, 2, 3, 4").fetchall()
    alerts = conn.execute("SELECT kind, device_id, metric, state, severity, opened_at, fired_at,"
                          " resolved_at FROM telemetry.alerts ORDER BY alert_id").fetchall()
    return scores, alerts


def test_scoring_finds_breaches_raises_alerts_and_rerunning_changes_nothing(trained):
    first = scoring.score_window(*WINDOW)
    assert first.points > 3 * 4 * 600 * 0.95  # 3 devices x 4 metrics x 2 h at 10 s
    assert first.recorded == first.anomalies > 0
    assert first.alerts_fired > 0
    labels = pd.DataFrame(trained.execute(
        "SELECT device_id, metrics[1], start_ts, end_ts FROM telemetry.anomaly_labels"
        " WHERE start_ts < %s AND end_ts > %s", (WINDOW[1], WINDOW[0])).fetchall(),
        columns=["device_id", "metric", "start_ts", "end_ts"])
    fired = pd.DataFrame(trained.execute(
        "SELECT device_id, metric, opened_at FROM telemetry.alerts WHERE fired_at IS NOT NULL"
    ).fetchall(), columns=["device_id", "metric", "opened_at"])
    hits = labels.merge(fired, on=["device_id", "metric"])
    hits = hits[(hits.opened_at >= hits.start_ts - timedelta(minutes=5))
                & (hits.opened_at < hits.end_ts)]
    assert hits["start_ts"].nunique() >= len(labels) // 2  # most breaches raise an alert
    before = snapshot(trained)
    again = scoring.score_window(*WINDOW)
    assert snapshot(trained) == before
    assert (again.points, again.recorded) == (first.points, first.recorded)
    assert again.alerts_opened == again.alerts_fired == 0


def test_at_most_one_open_alert_per_device_and_metric(trained):
    scoring.score_window(WINDOW[0], WINDOW[0] + timedelta(hours=1))
    scoring.score_window(WINDOW[0] + timedelta(hours=1), WINDOW[1])
    dupes = trained.execute(
        "SELECT kind, device_id, metric, count(*) FROM telemetry.alerts"
        " WHERE state IN ('pending', 'firing') GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
    assert dupes == []


def test_late_reading_is_scored_when_its_window_is_rescored(trained):
    scoring.score_window(*WINDOW)
    late_ts = WINDOW[0] + timedelta(minutes=30, seconds=5)  # off the 10 s grid: a new key
    late = pd.DataFrame({"device_id": [1], "metric_id": [1], "ts": [late_ts],
                         "value": [4000.0]})
    from core import loader
    loader.load_readings(late, source="api", stream="late-test", reference_time=WINDOW[1])
    scoring.score_window(*WINDOW)
    row = trained.execute("SELECT score, severity FROM telemetry.scores WHERE device_id = 1"
                          " AND metric = 'co2' AND ts = %s", (late_ts,)).fetchone()
    assert row is not None and row[0] >= 4.0 and row[1] in ("high", "critical")


def test_shards_score_disjoint_devices_that_add_up_to_the_whole(trained):
    whole = scoring.score_window(*WINDOW)
    whole_rows = snapshot(trained)[0]
    trained.execute("DELETE FROM telemetry.scores")
    parts = [scoring.score_window(*WINDOW, shard=i, shards=2) for i in range(2)]
    assert sum(p.points for p in parts) == whole.points
    assert snapshot(trained)[0] == whole_rows


def test_scoring_before_training_says_what_to_run(conn):
    with pytest.raises(scoring.NoModelsError, match="telemetry run train"):
        scoring.score_window(*WINDOW)


def test_people_acknowledge_and_resolve_open_alerts(trained):
    from core import alerting

    scoring.score_window(*WINDOW)
    open_ids = [r[0] for r in trained.execute(
        "SELECT alert_id FROM telemetry.alerts WHERE state = 'firing' ORDER BY 1")]
    assert open_ids  # the seeded breaches leave some alert open at the window's end
    first = open_ids[0]
    alerting.acknowledge_alert(first, by="ops@site", note="looking")
    row = trained.execute("SELECT state, acknowledged_by, ack_note FROM telemetry.alerts"
                          " WHERE alert_id = %s", (first,)).fetchone()
    assert row == ("firing", "ops@site", "looking")
    alerting.resolve_alert(first, by="ops@site", note="fan replaced")
    row = trained.execute("SELECT state, resolved_by, resolve_note FROM telemetry.alerts"
                          " WHERE alert_id = %s", (first,)).fetchone()
    assert row == ("resolved", "ops@site", "fan replaced")
    with pytest.raises(alerting.AlertClosedError):
        alerting.resolve_alert(first, by="ops@site")
    with pytest.raises(alerting.AlertNotFoundError):
        alerting.acknowledge_alert(999_999, by="x")


def test_acknowledging_a_closed_or_missing_alert_is_refused(trained):
    from core import alerting

    with pytest.raises(alerting.AlertNotFoundError, match="no alert with id 42"):
        alerting.acknowledge_alert(42, by="ops")


def test_dropouts_raise_one_data_alert_each_that_resolves_when_readings_return(conn):
    fleet = FleetConfig(sites=1, zones_per_site=1, devices_per_zone=3, seed=11,
                        anomalies=AnomalyConfig.only("dropout", 8.0))
    ingest.register_fleet(fleet)
    for piece in ingest.chunks(ingest.Window(DAY0, WINDOW[1]), timedelta(hours=6)):
        ingest.load_simulated(simulate(fleet, piece.start, piece.end), piece)
    scoring.train_models(DAY0, DAY1)
    scoring.score_window(*WINDOW)
    dropouts = conn.execute(
        "SELECT device_id, start_ts, end_ts FROM telemetry.anomaly_labels"
        " WHERE anomaly_type = 'dropout' AND start_ts >= %s AND end_ts <= %s",
        (WINDOW[0], WINDOW[1] - timedelta(minutes=1))).fetchall()
    assert dropouts  # the seeded config drops readings inside the window
    data_alerts = conn.execute(
        "SELECT device_id, opened_at, resolved_at, state FROM telemetry.alerts"
        " WHERE kind = 'data' ORDER BY opened_at").fetchall()
    for device, start, stop in dropouts:  # each dropout is covered by a data alert
        assert any(d == device and o <= start + timedelta(minutes=1) and r is not None
                   and r >= stop - timedelta(seconds=30) for d, o, r, _ in data_alerts)
    before = snapshot(conn)
    scoring.score_window(*WINDOW)
    assert snapshot(conn) == before


def test_retraining_the_same_window_reuses_the_models_unless_forced(trained):
    again = scoring.train_models(DAY0, DAY1)
    assert again.reused and set(again.versions.values()) == {1}
    forced = scoring.train_models(DAY0, DAY1, reason="manual", force=True)
    assert not forced.reused and set(forced.versions.values()) == {2}
    assert trained.execute("SELECT count(*) FROM telemetry.models").fetchone()[0] == 8


def test_stored_anomalies_carry_the_baseline_they_were_compared_with(trained):
    scoring.score_window(*WINDOW)
    device, metric, ts, value, mean, std = trained.execute(
        "SELECT device_id, metric, ts, value, baseline_mean, baseline_std FROM telemetry.scores"
        " WHERE baseline_std IS NOT NULL ORDER BY score DESC LIMIT 1").fetchone()
    metric_id = {"co2": 1, "temperature": 2, "humidity": 3, "occupancy": 4}[metric]
    previous = [r[0] for r in trained.execute(
        "SELECT value FROM telemetry.readings WHERE device_id = %s AND metric_id = %s"
        " AND ts < %s ORDER BY ts DESC LIMIT 60", (device, metric_id, ts))]
    assert mean == pytest.approx(sum(previous) / len(previous), rel=1e-9)
    assert std == pytest.approx(pd.Series(previous).std(), rel=1e-6)
    assert value is not None


def test_a_device_sending_rejected_rows_gets_a_data_alert(trained):
    from core import loader

    ts = pd.date_range(WINDOW[0] + timedelta(minutes=5), periods=300, freq="10s")  # 10 % of 2 h
    broken = pd.DataFrame({"device_id": 2, "metric_id": 3, "ts": ts, "value": 150.0})  # > 100 %
    loader.load_readings(broken, source="api", stream="broken-sensor", reference_time=WINDOW[1])
    summary = scoring.score_window(*WINDOW)
    assert summary.data_alerts_opened >= 1
    alert = trained.execute("SELECT state, reason FROM telemetry.alerts WHERE kind = 'data'"
                            " AND device_id = 2 AND metric = 'quarantine'").fetchone()
    assert alert is not None and alert[0] == "firing" and "rejected" in alert[1]
    others = trained.execute("SELECT count(*) FROM telemetry.alerts WHERE kind = 'data'"
                             " AND metric = 'quarantine' AND device_id <> 2").fetchone()[0]
    assert others == 0  # the simulator's scattered faults stay under the share


def test_sharded_windows_move_the_watermark_only_when_marked(trained):
    from core import store

    for shard in range(2):
        scoring.score_window(*WINDOW, shard=shard, shards=2)
    assert store.get_watermark(trained, scoring.SCORE_STREAM) is None
    scoring.mark_scored(WINDOW[1])
    assert store.get_watermark(trained, scoring.SCORE_STREAM) == WINDOW[1]


def test_scoring_killed_half_way_then_rerun_equals_one_clean_run(trained, db, pg_admin_url,
                                                                monkeypatch):
    """SIGKILL after the window's scores are written and while its alerts are advanced, in
    the same transaction; the rerun's scores and alerts equal a clean run's on a copy of the
    same database."""
    trained.close()
    core_db.reset_caches()
    name = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
    clone = f"{name}_clean"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{clone}" TEMPLATE "{name}"')
    try:
        clean_url = core_db.with_dbname(pg_admin_url, clone)
        monkeypatch.setenv("DATABASE_URL", clean_url)
        core_db.reset_caches()
        scoring.score_window(*WINDOW)
        with psycopg.connect(clean_url) as conn:
            clean = snapshot(conn)
        core_db.reset_caches()
    finally:
        monkeypatch.setenv("DATABASE_URL", db)
        core_db.reset_caches()
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{clone}" WITH (FORCE)')
    assert clean[0] and clean[1]  # the clean run scored and alerted

    script = textwrap.dedent(f"""
        import time
        from datetime import datetime
        from core import scoring
        real = scoring._quarantine_alerts
        def half_way(*args, **kwargs):  # scores replaced and alerts advanced, not committed
            print("half-way", flush=True)
            time.sleep(120)
        scoring._quarantine_alerts = half_way
        scoring.score_window(datetime.fromisoformat({WINDOW[0].isoformat()!r}),
                             datetime.fromisoformat({WINDOW[1].isoformat()!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ,
                            "DATABASE_URL": db}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=PROJECT_ROOT)
    try:
        assert proc.stdout.readline() == b"half-way\n", proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with psycopg.connect(db) as conn:
        assert snapshot(conn) == ([], [])  # nothing of the killed run is visible
    scoring.score_window(*WINDOW)
    with psycopg.connect(db) as conn:
        assert snapshot(conn) == clean
