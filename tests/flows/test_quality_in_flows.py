"""Quality checks inside the flows: bad data marks its batch and raises a data alert, and the
flow still finishes with every good row loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows import pipeline
from flows.params import FleetParams, WindowParams

END = datetime(2026, 11, 20, tzinfo=UTC)
BAD_DAY = FleetParams(sites=1, zones_per_site=2, devices_per_zone=2, fault_scale=100)


@pytest.mark.usefixtures("prefect_harness")
def test_a_micro_batch_of_bad_data_finishes_marks_its_batches_and_raises_data_alerts(conn):
    window = WindowParams(start=END, end=END + timedelta(minutes=30), chunk_minutes=10)
    run = pipeline.micro_batch(window=window, fleet=BAD_DAY)
    load = run.load
    assert load.quality == {"error": 3}
    assert {"value_not_null", "device_known", "ts_not_in_future"} <= set(load.quality_failed)
    # nothing lost: every received row is loaded, a skipped duplicate, or quarantined
    assert load.rows_received == load.rows_loaded + load.rows_duplicate + load.rows_quarantined
    assert load.rows_loaded > 0 and run.quality["kpi"].targets > 0
    marks = conn.execute("SELECT quality, count(*) FROM telemetry.batches GROUP BY 1").fetchall()
    assert marks == [("error", 3)]
    rows = conn.execute(
        "SELECT metric, state, resolve_note FROM telemetry.alerts WHERE kind = 'data'"
        " AND device_id IS NULL").fetchall()
    alerts = {metric: state for metric, state, _ in rows}
    assert alerts["quality:raw_batch:value_not_null"] == "firing"  # 5% nulls in every batch
    # an expectation that failed in one batch and passed in a later one is resolved, saying so
    assert all(state == "firing" or note.startswith("passed on simulator [")
               for _, state, note in rows)
    failed_rows = conn.execute(
        "SELECT count(*) FROM telemetry.quality_results WHERE NOT success AND suite = 'raw_batch'"
    ).fetchone()[0]
    assert failed_rows >= 3 * 3  # three batches, at least three error expectations each

    # The run published its summary to Prefect, with the failed expectations in it.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # this process's server: newest is ours
        [published, *_] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["micro-batch"])),
            sort=ArtifactSort.CREATED_DESC)
    assert "value_not_null" in published.data and "quarantined" in published.data

    # A rerun of the same window changes nothing: same results, same alerts.
    before = conn.execute("SELECT suite, target, expectation, success, unexpected_count"
                          " FROM telemetry.quality_results ORDER BY 1, 2, 3").fetchall()
    pipeline.simulate_and_load(window=window, fleet=BAD_DAY)
    after = conn.execute("SELECT suite, target, expectation, success, unexpected_count"
                         " FROM telemetry.quality_results ORDER BY 1, 2, 3").fetchall()
    assert after == before
    assert conn.execute("SELECT count(*) FROM telemetry.alerts WHERE kind = 'data'"
                        " AND device_id IS NULL").fetchone()[0] == len(alerts)
