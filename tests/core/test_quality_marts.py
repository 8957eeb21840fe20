"""The KPI and scores suites against real dbt marts and real scores: clean data passes every
expectation; a broken row fails the expectation about it, counted and identifiable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core import dbt_runner, ingest, quality, scoring
from core.settings import get_settings
from simulator import AnomalyConfig, FaultConfig, FleetConfig, simulate

DAY = datetime(2026, 11, 17, tzinfo=UTC)
CLEAN = FleetConfig(seed=8, sites=1, zones_per_site=1, devices_per_zone=3,
                    anomalies=AnomalyConfig.disabled(), faults=FaultConfig.disabled())
HOUR = (DAY + timedelta(hours=13), DAY + timedelta(hours=14))


def test_kpi_and_scores_suites_pass_on_clean_data_and_name_a_broken_row(conn, monkeypatch):
    monkeypatch.setenv("TELEMETRY_SCORE_RECORD_FLOOR", "0")  # store every score: all checked
    get_settings.cache_clear()
    ingest.register_fleet(CLEAN)
    for piece in ingest.chunks(ingest.Window(DAY, HOUR[1]), timedelta(hours=7)):
        ingest.load_simulated(simulate(CLEAN, piece.start, piece.end), piece)
    dbt_runner.run_dbt(["build"])
    kpis = quality.validate_kpis(*HOUR, "test")
    assert kpis.status == "passed" and kpis.targets == 1
    unexpected = conn.execute(
        "SELECT coalesce(sum(unexpected_count), 0) FROM telemetry.quality_results"
        " WHERE suite = 'kpi'").fetchone()[0]
    assert unexpected == 0

    scoring.train_models(DAY, HOUR[0])
    scored = scoring.score_window(*HOUR)
    assert scored.recorded == scored.points > 0
    scores = quality.validate_scores(*HOUR, "test")
    assert scores.status == "passed" and scores.targets == 1

    # One KPI row whose mean lies above its max, and one score without a model version.
    device = conn.execute(
        "UPDATE analytics.fct_kpi_15m SET mean = max + 1 WHERE window_start = %s"
        " AND metric = 'co2' AND device_id = (SELECT min(device_id) FROM telemetry.devices)"
        " RETURNING device_id", (HOUR[0],)).fetchone()[0]
    broken = quality.validate_kpis(*HOUR, "test-2")
    assert broken.status == "error" and broken.failed == {"mean_within_min_max": 1}
    row = conn.execute(
        "SELECT unexpected_count, unexpected_sample FROM telemetry.quality_results"
        " WHERE suite = 'kpi' AND expectation = 'mean_within_min_max'").fetchone()
    assert row[0] == 1
    assert row[1][0]["mart"] == "fct_kpi_15m" and row[1][0]["device_id"] == device
    conn.execute(
        "UPDATE telemetry.scores SET model_id = NULL WHERE device_id = %s AND metric = 'co2'"
        " AND ts = %s", (device, HOUR[0] + timedelta(minutes=7)))
    no_model = quality.validate_scores(*HOUR, "test-2")
    assert no_model.failed == {"model_version_present": 1} and no_model.alerts_raised == 1
    keys = {r[0] for r in conn.execute(
        "SELECT metric FROM telemetry.alerts WHERE kind = 'data' AND device_id IS NULL")}
    assert keys == {"quality:kpi:mean_within_min_max", "quality:scores:model_version_present"}
