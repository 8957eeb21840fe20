"""The score flow on Dask: two worker processes scoring two shards store exactly what one
process scoring the whole fleet stores (scores and alerts)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core import ingest, scoring, store
from flows import dask_runner
from flows.detection import ScoreParams, score
from simulator import AnomalyConfig, FleetConfig, simulate

DAY0 = datetime(2026, 11, 16, tzinfo=UTC)
DAY1 = DAY0 + timedelta(days=1)
WINDOW = (DAY1 + timedelta(hours=9), DAY1 + timedelta(hours=11))
# Frequent threshold breaches: both shards' devices raise alerts in the window.
FLEET = FleetConfig(sites=1, zones_per_site=1, devices_per_zone=4,
                    anomalies=AnomalyConfig.only("threshold_breach", 6.0))
SCORE_COLUMNS = ("detector, device_id, metric, ts, model_id, value, baseline_mean, baseline_std,"
                 " score, is_anomaly, severity, reason, contributions")
ALERT_COLUMNS = ("kind, device_id, metric, state, severity, opened_at, fired_at, resolved_at,"
                 " last_seen_at, peak_score, peak_ts, reason, detectors, contributions")
FLOATS = {"value", "baseline_mean", "baseline_std", "score", "peak_score"}


def scores(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute(f"SELECT {SCORE_COLUMNS} FROM telemetry.scores ORDER BY 1, 2, 3, 4")
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def alerts(conn: psycopg.Connection) -> list[dict]:
    # alert_id is left out: shards running at once take identity values in another order.
    cur = conn.execute(f"SELECT {ALERT_COLUMNS} FROM telemetry.alerts ORDER BY 1, 2, 3, 6")
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def assert_same(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key in FLOATS and a[key] is not None and b[key] is not None:
                assert math.isclose(a[key], b[key], rel_tol=0, abs_tol=1e-12), (key, a, b)
            else:
                assert a[key] == b[key], (key, a, b)


def reset_scoring(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM telemetry.alert_states")
    conn.execute("DELETE FROM telemetry.alerts")
    conn.execute("DELETE FROM telemetry.scores")
    conn.execute("DELETE FROM telemetry.watermarks WHERE stream = %s", (scoring.SCORE_STREAM,))


@pytest.fixture
def trained(conn: psycopg.Connection) -> psycopg.Connection:
    ingest.register_fleet(FLEET)
    for piece in ingest.chunks(ingest.Window(DAY0, WINDOW[1]), timedelta(hours=6)):
        ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)
    scoring.train_models(DAY0, DAY1)
    return conn


@pytest.mark.usefixtures("prefect_harness")
def test_two_dask_workers_scoring_two_shards_match_one_process(trained, monkeypatch):
    monkeypatch.delenv(dask_runner.ADDRESS_ENV, raising=False)  # a LocalCluster, not a cluster
    params = {"start": WINDOW[0], "end": WINDOW[1], "chunk_minutes": 60}
    on_dask = score(ScoreParams(**params, shards=2, task_runner="dask", dask_workers=2))
    assert on_dask.runner is not None and on_dask.runner.endswith(", 2 workers")
    assert on_dask.points > 4 * 4 * 720 * 0.95  # 4 devices x 4 metrics x 2 h at 10 s
    assert on_dask.alerts_fired > 0
    assert store.get_watermark(trained, scoring.SCORE_STREAM) == WINDOW[1]  # all shards done
    dask_scores, dask_alerts = scores(trained), alerts(trained)
    assert {r["device_id"] % 2 for r in dask_scores} == {0, 1}  # both shards wrote rows

    reset_scoring(trained)
    in_process = score(ScoreParams(**params, shards=1))
    assert in_process.runner == "threads"
    assert (in_process.points, in_process.anomalies, in_process.alerts_fired) == (
        on_dask.points, on_dask.anomalies, on_dask.alerts_fired)
    assert_same(scores(trained), dask_scores)
    assert_same(alerts(trained), dask_alerts)


def test_dask_runner_hands_local_workers_this_process_database(db, monkeypatch):
    monkeypatch.delenv(dask_runner.ADDRESS_ENV, raising=False)
    runner = dask_runner.task_runner(3)
    kwargs = runner.cluster_kwargs
    assert kwargs["env"] == {"DATABASE_URL": db} and kwargs["n_workers"] == 3
    assert kwargs["processes"] and kwargs["threads_per_worker"] == 1
    monkeypatch.setenv(dask_runner.ADDRESS_ENV, "tcp://127.0.0.1:8786")
    assert dask_runner.task_runner(3).address == "tcp://127.0.0.1:8786"
