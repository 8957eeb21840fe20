"""The drift flow end to end: real PostgreSQL, dbt and a temporary Prefect server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from pydantic import ValidationError

from core import dbt_runner
from core.settings import get_settings
from flows import detection, pipeline
from flows.drift import DriftParams, drift_report, rebaseline, resolve_periods
from flows.params import BackfillParams, FleetParams

END = datetime(2026, 11, 20, tzinfo=UTC)  # a Friday: Thursday is tested against Tue-Wed
THURSDAY = END - timedelta(days=1)
SMALL = FleetParams(sites=1, zones_per_site=2, devices_per_zone=2)  # 4 devices
PARAMS = DriftParams(current_end=END, current_days=1, reference_days=2)


def results(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT drift_id, current_start, current_end, site, metric, method, statistic,"
        " threshold, drifted, reference_rows, current_rows, report_path"
        " FROM telemetry.drift_results ORDER BY drift_id").fetchall()


def add_alert(conn: psycopg.Connection, metric: str, state: str, opened_at: datetime) -> int:
    return conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, opened_at, fired_at,"
        " last_seen_at, resolved_at) VALUES ('device', 1, %s, %s, %s, %s, %s, %s)"
        " RETURNING alert_id",
        (metric, state, opened_at, opened_at, opened_at + timedelta(minutes=30),
         opened_at + timedelta(minutes=30) if state == "resolved" else None)).fetchone()[0]


def shift_co2(conn: psycopg.Connection) -> float:
    """Move Thursday's CO2 readings up by two standard deviations of the reference's 5-minute
    means, then rebuild the KPI windows from Thursday on."""
    std = conn.execute(
        "SELECT stddev_pop(mean) FROM analytics.fct_kpi_5m WHERE metric = 'co2'"
        " AND window_start >= %s AND window_start < %s",
        (THURSDAY - timedelta(days=2), THURSDAY)).fetchone()[0]
    conn.execute("UPDATE telemetry.readings SET value = value + %s WHERE metric_id = 1"
                 " AND ts >= %s AND ts < %s", (2 * std, THURSDAY, END))
    dbt_runner.run_dbt(["build", "--select", "fct_kpi_5m+"],
                       vars={"rebuild_from": THURSDAY.isoformat()})
    return 2 * std


@pytest.mark.usefixtures("prefect_harness")
def test_drift_report_stores_reports_flags_alerts_and_feeds_training(conn, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("TELEMETRY_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("TELEMETRY_DRIFT_PERSIST_RUNS", "2")
    get_settings.cache_clear()
    pipeline.backfill(params=BackfillParams(days=3, end=END, chunk_minutes=720), fleet=SMALL)

    clean = drift_report(PARAMS)
    assert clean.drifted == {"all": []} and not clean.skipped
    assert (clean.current_start, clean.reference_start) == (THURSDAY, END - timedelta(days=3))
    stored = results(conn)
    assert [(r[3], r[4], r[8]) for r in stored] == [
        ("all", m, False) for m in ("co2", "temperature", "humidity", "occupancy")]
    assert all(r[5] == "wasserstein" and r[9] > 1500 and r[10] > 1000 for r in stored)
    report = tmp_path / clean.report_paths[0]
    assert report.is_file() and stored[0][11] == clean.report_paths[0]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest[clean.report_paths[0]]["name"] == "drift-evidently"
    assert manifest[clean.report_paths[0]]["summary"] == "0 of 4 metrics drifted"

    assert drift_report(PARAMS).results == clean.results
    assert results(conn) == stored  # same rows, same ids

    open_co2 = add_alert(conn, "co2", "firing", THURSDAY + timedelta(hours=9))
    old_co2 = add_alert(conn, "co2", "resolved", THURSDAY - timedelta(days=2))
    open_temperature = add_alert(conn, "temperature", "firing", THURSDAY + timedelta(hours=9))
    shift = shift_co2(conn)
    shifted = drift_report(PARAMS)
    assert shifted.drifted == {"all": ["co2"]} and shifted.alerts_flagged == 1
    co2 = next(r for r in shifted.results if r.metric == "co2")
    assert co2.current_mean - co2.reference_mean == pytest.approx(shift, rel=0.3)
    assert [r[0] for r in results(conn)] == [r[0] for r in stored]  # replaced in place
    flags = dict(conn.execute("SELECT alert_id, drifted FROM telemetry.alerts").fetchall())
    assert flags == {open_co2: True, old_co2: False, open_temperature: False}

    # A second drifted run (Thursday afternoon) makes the drift persistent: training
    # re-baselines on Thursday alone, as a new model version with the reason.
    afternoon = drift_report(DriftParams(current_end=END, current_days=0.5, reference_days=2,
                                         per_site=True))
    assert afternoon.drifted == {"all": ["co2"], "site-01": ["co2"]}
    assert len(afternoon.report_paths) == 2
    versions = detection.train(detection.TrainParams(days=2, end=END))
    model = conn.execute("SELECT train_start, train_end, reason FROM telemetry.models"
                         " WHERE detector = 'pca' AND version = %s",
                         (versions["pca"],)).fetchone()
    assert model[:2] == (THURSDAY, END)
    assert model[2] == ("rebaseline: co2 drifted (all sites) in 2 consecutive drift runs since"
                        " 2026-11-19")


@pytest.mark.usefixtures("prefect_harness")
def test_drift_report_without_loaded_data_says_so(conn):
    summary = drift_report(DriftParams())
    assert summary.skipped == {"all": "nothing loaded yet"} and summary.results == []


def test_default_period_is_the_last_settled_whole_day():
    params = DriftParams(current_days=1, reference_days=7)
    now = datetime(2026, 11, 20, 2, 10, tzinfo=UTC)
    periods = resolve_periods(params, loaded_to=now - timedelta(minutes=1), now=now)
    assert (periods.current_start, periods.current_end) == (THURSDAY, END)
    assert periods.reference_start == THURSDAY - timedelta(days=7)
    # Before 02:00 yesterday's late rows may still arrive: the day before is tested.
    early = resolve_periods(params, loaded_to=END + timedelta(hours=1), now=now)
    assert early.current_end == THURSDAY
    assert resolve_periods(params, loaded_to=None, now=now) is None


def test_drift_parameters_refuse_bad_values():
    with pytest.raises(ValidationError):
        DriftParams(reference_days=0)
    with pytest.raises(ValidationError):
        DriftParams(current_days=31)


def test_rebaseline_starts_where_the_newest_persistent_drift_began():
    streaks = pd.DataFrame({"site": ["all", "site-02"], "metric": ["co2", "humidity"],
                            "runs": [4, 3], "since": [END - timedelta(days=4),
                                                      END - timedelta(days=3)]})
    start, reason = rebaseline(streaks, END - timedelta(days=7), END)
    assert start == END - timedelta(days=3)
    assert reason == ("rebaseline: co2 drifted (all sites) in 4 consecutive drift runs since"
                      " 2026-11-16; humidity drifted (site-02) in 3 consecutive drift runs"
                      " since 2026-11-17")
    # Drift older than the training window: the window is already all 'new normal'.
    assert rebaseline(streaks, END - timedelta(days=2), END) is None
    assert rebaseline(streaks.iloc[:0], END - timedelta(days=7), END) is None
