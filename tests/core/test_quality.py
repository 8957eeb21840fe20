"""Quality results in the database: stored per target, batches marked, data alerts raised for
errors and resolved by newer passing data, re-validation changes nothing, training skips rows
of failed batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from core import ingest, quality, scoring
from simulator import FAULT_TYPES, FaultConfig, FleetConfig, simulate

END = datetime(2026, 11, 18, 12, tzinfo=UTC)
CLEAN = FleetConfig(seed=4, sites=1, zones_per_site=2, devices_per_zone=2,
                    faults=FaultConfig.disabled())
NULLS = CLEAN.model_copy(update={"faults": FaultConfig(
    **{name: (0.05 if name == "null" else 0.0) for name in FAULT_TYPES})})
ALERT_KEY = "quality:raw_batch:value_not_null"


def load_and_check(config: FleetConfig, start: datetime, end: datetime
                   ) -> tuple[int, quality.QualitySummary]:
    window = ingest.Window(start, end)
    batch = simulate(config, start, end)
    loaded = ingest.load_simulated(batch, window)
    checked = quality.validate_raw_batch(batch.readings, start, end, end, loaded.batch_id,
                                         "simulator", "test-run")
    return loaded.batch_id, checked


def quality_alerts(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT alert_id, state, severity, device_id, reason, resolve_note FROM telemetry.alerts"
        " WHERE kind = 'data' AND metric = %s ORDER BY alert_id", (ALERT_KEY,)).fetchall()


def results(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT suite, target, expectation, severity, success, unexpected_count,"
        " unexpected_sample FROM telemetry.quality_results ORDER BY suite, target, expectation"
    ).fetchall()


def test_a_failed_error_expectation_marks_the_batch_and_raises_one_data_alert(conn):
    ingest.register_fleet(CLEAN)
    start = END - timedelta(minutes=10)
    batch_id, checked = load_and_check(NULLS, start, END)
    assert checked.status == "error" and checked.failed == {"value_not_null": 1}
    assert checked.alerts_raised == 1
    assert conn.execute("SELECT quality FROM telemetry.batches WHERE batch_id = %s",
                        (batch_id,)).fetchone()[0] == "error"
    nulls = conn.execute("SELECT count(*) FROM telemetry.quarantine WHERE batch_id = %s"
                         " AND rule = 'null_value'", (batch_id,)).fetchone()[0]
    row = conn.execute(
        "SELECT success, unexpected_count, unexpected_sample, severity, batch_id"
        " FROM telemetry.quality_results WHERE expectation = 'value_not_null'").fetchone()
    # GX counted exactly the rows the loader quarantined as null, and names them
    assert row[:2] == (False, nulls) and nulls > 0
    assert row[3] == "error" and row[4] == batch_id
    assert {"device_id", "metric_id", "ts"} <= set(row[2][0])
    [(alert_id, state, severity, device_id, reason, _)] = quality_alerts(conn)
    assert (state, severity, device_id) == ("firing", "high", None)
    assert "value_not_null" in reason and "simulator [" in reason

    # Validating the same batch again replaces its results: nothing new, one alert.
    before = results(conn)
    again = quality.validate_raw_batch(simulate(NULLS, start, END).readings, start, END, END,
                                       batch_id, "simulator", "test-run-2")
    assert again.alerts_raised == 0
    assert results(conn) == before and len(quality_alerts(conn)) == 1

    # Newer clean data passes the expectation: the alert resolves, saying where it passed.
    _, clean = load_and_check(CLEAN, END, END + timedelta(minutes=10))
    assert clean.status == "passed" and clean.alerts_resolved == 1
    [(same_id, state, _, _, _, note)] = quality_alerts(conn)
    assert (same_id, state) == (alert_id, "resolved") and note.startswith("passed on simulator")

    # Re-validating the old failing batch does not reopen what newer data resolved.
    old = quality.validate_raw_batch(simulate(NULLS, start, END).readings, start, END, END,
                                     batch_id, "simulator", "test-run-3")
    assert old.alerts_raised == 0 and len(quality_alerts(conn)) == 1


def test_training_does_not_learn_from_rows_of_a_batch_that_failed(conn):
    ingest.register_fleet(CLEAN)
    day = END - timedelta(hours=6)
    for piece in ingest.chunks(ingest.Window(day, END - timedelta(hours=1)), timedelta(hours=1)):
        load_and_check(CLEAN, piece.start, piece.end)
    clean_run = scoring.train_models(day, END)
    bad_id, checked = load_and_check(NULLS, END - timedelta(hours=1), END)
    assert checked.status == "error"
    bad_rows = conn.execute("SELECT count(*) FROM telemetry.readings WHERE batch_id = %s",
                            (bad_id,)).fetchone()[0]
    assert bad_rows > 0
    trained = scoring.train_models(day, END, force=True)
    assert trained.excluded - clean_run.excluded >= bad_rows


def test_people_can_acknowledge_and_resolve_a_fleet_quality_alert(conn):
    from core import alerting

    ingest.register_fleet(CLEAN)
    load_and_check(NULLS, END - timedelta(minutes=10), END)
    [(alert_id, *_)] = quality_alerts(conn)
    alerting.acknowledge_alert(alert_id, "ops", "looking at the gateway")
    alerting.resolve_alert(alert_id, "ops", "gateway firmware rolled back")
    row = conn.execute("SELECT state, acknowledged_by, ack_note, resolved_by, resolve_note"
                       " FROM telemetry.alerts WHERE alert_id = %s", (alert_id,)).fetchone()
    assert row == ("resolved", "ops", "looking at the gateway", "ops",
                   "gateway firmware rolled back")
