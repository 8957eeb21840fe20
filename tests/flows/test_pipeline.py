"""Flows end to end under a real (temporary) Prefect server, real PostgreSQL and real dbt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pydantic import ValidationError

from core import store
from flows import pipeline
from flows.params import BackfillParams, FleetParams, WindowParams

END = datetime(2026, 11, 20, tzinfo=UTC)
SMALL = FleetParams(sites=1, zones_per_site=2, devices_per_zone=2)  # 4 devices


def readings_snapshot(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT device_id, metric_id, ts, value, batch_id FROM telemetry.readings ORDER BY 1, 2, 3"
    ).fetchall()


def kpi_snapshot(conn: psycopg.Connection) -> list[tuple]:
    # A float sum may differ in its last bit when PostgreSQL scans rows in another order.
    return conn.execute(
        "SELECT device_id, metric_id, window_start, reading_count, round(mean::numeric, 9)"
        " FROM analytics.fct_kpi_5m ORDER BY 1, 2, 3"
    ).fetchall()


@pytest.mark.usefixtures("prefect_harness")
def test_backfill_loads_builds_kpis_and_a_rerun_changes_nothing(conn):
    params = BackfillParams(days=2 / 24, end=END, chunk_minutes=30)
    first = pipeline.backfill(params=params, fleet=SMALL)
    load = first.load
    assert load.chunks == 4 and len(load.batch_ids) == 4
    assert load.rows_loaded > 0.95 * 4 * 4 * 720  # 4 devices x 4 metrics x 2 h at 10 s
    assert load.rows_quarantined == sum(load.quarantined_by_rule.values())
    assert first.dbt_models >= 5 and first.dbt_tests > 0
    counts = store.table_counts(conn)
    assert counts["readings"] == load.rows_loaded and counts["devices"] == 4
    assert store.get_watermark(conn, "simulator") == END
    readings, kpis = readings_snapshot(conn), kpi_snapshot(conn)
    assert kpis and {k[2] for k in kpis} >= {END - timedelta(minutes=5)}

    second = pipeline.backfill(params=params, fleet=SMALL)
    assert second.load.rows_loaded == 0
    assert second.load.rows_duplicate == load.rows_loaded + load.rows_duplicate
    assert readings_snapshot(conn) == readings and kpi_snapshot(conn) == kpis
    assert store.table_counts(conn)["quarantine"] == counts["quarantine"]


@pytest.mark.usefixtures("prefect_harness")
def test_micro_batch_continues_from_the_watermark_and_catches_up_in_bounded_runs(conn):
    pipeline.simulate_and_load(window=WindowParams(start=END - timedelta(minutes=10), end=END),
                               fleet=SMALL)
    # A gap of 3 h with a 1 h cap per run: the run covers exactly the first hour, says what is
    # left, and the next run starts where it stopped.
    window = WindowParams(end=END + timedelta(hours=3), max_catch_up_hours=1, chunk_minutes=20)
    run = pipeline.micro_batch(window=window, fleet=SMALL)
    assert (run.load.window_start, run.load.window_end) == (END, END + timedelta(hours=1))
    assert run.load.chunks == 3 and run.load.remaining_gap_hours == pytest.approx(2.0)
    assert store.get_watermark(conn, "simulator") == END + timedelta(hours=1)
    newest = conn.execute("SELECT max(window_start) FROM analytics.fct_kpi_5m").fetchone()[0]
    assert newest >= END + timedelta(minutes=50)
    again = pipeline.micro_batch(window=window, fleet=SMALL)
    assert again.load.window_start == END + timedelta(hours=1)


def test_flow_parameters_refuse_bad_values():
    with pytest.raises(ValidationError, match="exceeds the limit"):
        FleetParams(sites=100, zones_per_site=100, devices_per_zone=2)
    with pytest.raises(ValidationError):
        BackfillParams(days=0)
    with pytest.raises(ValidationError, match="start must be before end"):
        WindowParams(start=END, end=END - timedelta(minutes=1))


@pytest.mark.usefixtures("prefect_harness")
def test_backfilling_older_history_builds_its_kpi_windows_too(conn):
    """History older than the late-data horizon still gets KPIs when it is backfilled."""
    pipeline.backfill(params=BackfillParams(days=1 / 24, end=END, chunk_minutes=60), fleet=SMALL)
    older_end = END - timedelta(hours=6)
    pipeline.backfill(params=BackfillParams(days=1 / 24, end=older_end, chunk_minutes=60),
                      fleet=SMALL)
    built = conn.execute(
        "SELECT count(DISTINCT window_start) FROM analytics.fct_kpi_5m"
        " WHERE window_start >= %s AND window_start < %s",
        (older_end - timedelta(hours=1), older_end),
    ).fetchone()[0]
    assert built == 12
    hourly = conn.execute(
        "SELECT count(*) FROM analytics.fct_kpi_1h WHERE window_start = %s",
        (older_end - timedelta(hours=1),),
    ).fetchone()[0]
    assert hourly == 4 * 4  # every device and metric


@pytest.mark.usefixtures("prefect_harness")
def test_train_then_micro_batch_scores_and_raises_alerts(conn):
    from flows import detection

    pipeline.backfill(params=BackfillParams(days=1, end=END, chunk_minutes=360), fleet=SMALL)
    versions = detection.train(detection.TrainParams(days=1, end=END))
    assert versions == {"rolling_z": 1, "stuck": 1, "seasonal_z": 1, "pca": 1}
    run = pipeline.micro_batch(window=WindowParams(end=END + timedelta(hours=2)), fleet=SMALL)
    assert run.score is not None and run.score.skipped is None
    stored = conn.execute("SELECT count(*) FROM telemetry.readings WHERE ts >= %s AND ts < %s",
                          (END, END + timedelta(hours=2))).fetchone()[0]
    assert run.score.points == stored  # scoring started where training stopped
    assert store.get_watermark(conn, "score") == END + timedelta(hours=2)
    again = detection.score(detection.ScoreParams(start=END, end=END + timedelta(hours=2)))
    assert again.alerts_opened == 0  # re-scoring a window raises nothing twice


@pytest.mark.usefixtures("prefect_harness")
def test_micro_batch_before_training_loads_and_says_scoring_waits(conn):
    run = pipeline.micro_batch(window=WindowParams(start=END, end=END + timedelta(minutes=10)),
                               fleet=SMALL)
    assert run.load.rows_loaded > 0
    assert run.score is not None and "no trained models" in run.score.skipped


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_flow_stores_a_backtest(conn):
    from flows import detection

    figures = detection.evaluate(detection.EvaluateParams(
        days=0.5, train_days=1, sites=1, zones_per_site=1, devices_per_zone=2))
    assert set(figures) == {"f1", "recall", "precision", "false_alarms_per_device_day"}
    stored = conn.execute("SELECT count(DISTINCT detector) FROM telemetry.evaluations"
                          " WHERE anomaly_type = 'all'").fetchone()[0]
    assert stored >= 6  # fused, four detectors, gaps, two baselines


@pytest.mark.usefixtures("prefect_harness")
def test_a_report_that_cannot_be_written_fails_its_task_and_leaves_the_data_stages(
        conn, tmp_path, monkeypatch):
    from core.settings import get_settings
    from flows import detection
    from reports.render import ReportWriteError

    pipeline.backfill(params=BackfillParams(days=1, end=END, chunk_minutes=360), fleet=SMALL)
    detection.train(detection.TrainParams(days=1, end=END))
    blocked = tmp_path / "reports"
    blocked.write_text("a file where the reports directory should be")
    monkeypatch.setenv("TELEMETRY_REPORTS_DIR", str(blocked))
    get_settings.cache_clear()
    first = END + timedelta(hours=2)
    with pytest.raises(ReportWriteError, match=r"is a file, not a directory.*telemetry report"):
        pipeline.micro_batch(window=WindowParams(end=first), fleet=SMALL)
    # Loaded, built, scored and alerted before the report: all of it stays.
    assert store.get_watermark(conn, "score") == first
    assert conn.execute("SELECT count(*) FROM telemetry.readings WHERE ts >= %s",
                        (END,)).fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM telemetry.alerts").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM analytics.fct_kpi_5m WHERE window_start >= %s",
                        (END,)).fetchone()[0] > 0
    assert not list(tmp_path.glob("**/.*.tmp"))

    # Fixed: the next minute writes the report it missed, alert changes or not.
    blocked.unlink()
    run = pipeline.micro_batch(window=WindowParams(end=first + timedelta(minutes=1)),
                               fleet=SMALL)
    assert run.load.rows_loaded > 0
    assert (blocked / "alerts.html").is_file()


@pytest.mark.usefixtures("prefect_harness")
def test_late_readings_across_a_window_boundary_update_kpis_and_scores_on_the_next_run(conn):
    import pandas as pd

    from core import loader
    from flows import detection
    from tests.flows.test_outage import kpis_match_raw

    pipeline.backfill(params=BackfillParams(days=1, end=END, chunk_minutes=360), fleet=SMALL)
    detection.train(detection.TrainParams(days=1, end=END))
    scored_to = END + timedelta(minutes=30)
    pipeline.micro_batch(window=WindowParams(end=scored_to), fleet=SMALL)
    boundary = END + timedelta(minutes=20)  # a 5-minute window boundary, KPIs built, scored
    late_ts = [boundary - timedelta(seconds=3), boundary + timedelta(seconds=3)]  # off-grid
    co2 = conn.execute("SELECT metric_id FROM telemetry.metrics WHERE metric = 'co2'"
                       ).fetchone()[0]
    before = conn.execute(
        "SELECT window_start, reading_count, max FROM analytics.fct_kpi_5m"
        " WHERE device_id = 1 AND metric_id = %s AND window_start IN (%s, %s) ORDER BY 1",
        (co2, boundary - timedelta(minutes=5), boundary)).fetchall()
    assert len(before) == 2 and all(r[2] < 5000 for r in before)
    # Out of order: the later one first, both after their windows were computed.
    late = pd.DataFrame({"device_id": [1, 1], "metric_id": [co2, co2],
                         "ts": pd.to_datetime(late_ts[::-1], utc=True), "value": [5000.0] * 2})
    assert loader.load_readings(late, source="api", stream="late-test",
                                reference_time=scored_to).rows_loaded == 2

    pipeline.micro_batch(window=WindowParams(end=scored_to + timedelta(minutes=1)),
                         fleet=SMALL)
    after = conn.execute(
        "SELECT window_start, reading_count, max FROM analytics.fct_kpi_5m"
        " WHERE device_id = 1 AND metric_id = %s AND window_start IN (%s, %s) ORDER BY 1",
        (co2, boundary - timedelta(minutes=5), boundary)).fetchall()
    assert [(w, n, m) for w, n, m in after] == [(w, n + 1, 5000.0) for w, n, _ in before]
    kpis_match_raw(conn, END, scored_to)
    scores = conn.execute(
        "SELECT ts FROM telemetry.scores WHERE detector = 'fused' AND device_id = 1"
        " AND metric = 'co2' AND ts = ANY(%s) AND score >= 1 ORDER BY ts",
        (late_ts,)).fetchall()
    assert [r[0] for r in scores] == late_ts
