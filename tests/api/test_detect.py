"""POST /api/v1/detect: online moving average +- k sigma with persisted series state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api import metrics
from api.main import create_app
from core import online
from detectors import RollingZScore

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def anomaly_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Set before the app is built (fixture order), so the app writes here."""
    path = tmp_path / "log" / "anomalies.jsonl"
    monkeypatch.setenv("TELEMETRY_ANOMALY_LOG_PATH", str(path))
    return path


def series(n: int = 120, spikes: tuple[int, ...] = (70, 100)) -> np.ndarray:
    values = 21.0 + np.random.default_rng(7).normal(0, 0.2, n)
    for i in spikes:
        values[i] += 5.0
    return values


def points(values: np.ndarray, start: int = 0) -> list[dict]:
    return [{"ts": (T0 + timedelta(seconds=10 * (start + i))).isoformat(), "value": float(v)}
            for i, v in enumerate(values)]


def post(client: TestClient, payload: dict):
    return client.post("/api/v1/detect", json=payload, headers=AUTH)


def test_online_scores_match_the_rolling_estimator_and_any_chunking():
    x = series(400)
    state = online.SeriesState(window=60, min_periods=30)
    unfloored, _ = online.score(state, x, 3.0, floor_fraction=0.0)
    batch = RollingZScore(window=60, threshold=3.0, floor_fraction=0.0).fit(x).score_samples(x)
    np.testing.assert_allclose(unfloored.z, batch, rtol=1e-9, equal_nan=True)
    whole, end = online.score(state, x, 3.0)
    pieces, current = [], state
    for part in np.array_split(x, [1, 2, 59, 61, 200, 399]):
        scored, current = online.score(current, part, 3.0)
        pieces.append(scored.z)
    assert np.array_equal(np.concatenate(pieces), whole.z, equal_nan=True)  # bit-identical
    assert current == end and len(end.recent) == 60 and end.n_seen == 400
    assert np.isnan(whole.z[:30]).all() and not np.isnan(whole.z[30:]).any()


def test_state_survives_a_restart_and_anomalies_reach_table_and_log(anomaly_log, client, db,
                                                                     conn):
    x = series()
    key = {"device_id": 7, "metric": "temperature", "window": 30, "k": 4.0}
    before = metrics.REGISTRY.get_sample_value("anomalies_detected_total") or 0.0
    first = post(client, {**key, "points": points(x[:80])})
    assert first.status_code == 200, first.text
    with TestClient(create_app()) as restarted:  # a new process would see the same rows
        second = post(restarted, {**key, "points": points(x[80:], start=80)})
    assert second.status_code == 200, second.text
    scores = first.json()["scores"] + second.json()["scores"]
    assert second.json()["series"] == "7:temperature" and second.json()["n_seen"] == 120

    expected, _ = online.score(online.SeriesState(window=30, min_periods=15), x, 4.0)
    got_z = np.array([np.nan if s["z"] is None else s["z"] for s in scores])
    assert np.array_equal(got_z, expected.z, equal_nan=True)  # as if sent in one piece
    trailing = pd.Series(x).shift(1).rolling(30, min_periods=15)
    np.testing.assert_allclose([s["mean"] or np.nan for s in scores], trailing.mean(),
                               rtol=1e-12, equal_nan=True)
    flagged = [i for i, s in enumerate(scores) if s["is_anomaly"]]
    assert {70, 100} <= set(flagged)
    for s in scores[15:]:
        assert s["lower"] == pytest.approx(s["mean"] - 4.0 * s["std_dev"])
        assert s["is_anomaly"] == (not s["lower"] <= s["value"] <= s["upper"])

    stamps = {(T0 + timedelta(seconds=10 * i)) for i in flagged}
    table = conn.execute("SELECT series, ts, z, k, window_size FROM telemetry.online_anomalies"
                         " ORDER BY ts").fetchall()
    assert {r[1] for r in table} == stamps and {r[0] for r in table} == {"7:temperature"}
    logged = [json.loads(line) for line in anomaly_log.read_text().splitlines()]
    assert len(logged) == len(table)
    assert {datetime.fromisoformat(r["ts"]) for r in logged} == stamps
    assert {(r["series"], r["device_id"], r["metric"], r["k"], r["window"])
            for r in logged} == {("7:temperature", 7, "temperature", 4.0, 30)}
    after = metrics.REGISTRY.get_sample_value("anomalies_detected_total")
    assert after - before == len(flagged)


def test_points_already_scored_are_skipped_and_change_nothing(anomaly_log, client, conn):
    payload = {"series": "lab/bench-1", "points": points(series(90, spikes=(80,)))}
    first = post(client, payload).json()
    state = conn.execute("SELECT recent, last_ts, n_seen, n_anomalies FROM"
                         " telemetry.online_series").fetchall()
    log_text = anomaly_log.read_text()
    again = post(client, payload).json()
    assert all(s["skipped"] for s in again["scores"]) and again["anomalies"] == 0
    assert first["anomalies"] >= 1 and again["n_seen"] == first["n_seen"] == 90
    assert conn.execute("SELECT recent, last_ts, n_seen, n_anomalies FROM"
                        " telemetry.online_series").fetchall() == state
    assert anomaly_log.read_text() == log_text
    late_and_new = post(client, {"series": "lab/bench-1", "points": [
        payload["points"][10], {"ts": (T0 + timedelta(hours=1)).isoformat(), "value": 21.0}]})
    assert [s["skipped"] for s in late_and_new.json()["scores"]] == [True, False]


def test_points_without_time_are_stamped_on_arrival(anomaly_log, client):
    out = post(client, {"series": "no-clock", "points": [{"value": 1.0}, {"value": 2.0}]})
    assert out.status_code == 200
    stamps = [datetime.fromisoformat(s["ts"]) for s in out.json()["scores"]]
    assert stamps[0] < stamps[1] <= datetime.now(UTC)


@pytest.mark.parametrize(("payload", "status"), [
    ({"series": "s", "points": []}, 422),
    ({"points": [{"value": 1.0}]}, 422),  # no key
    ({"device_id": 1, "points": [{"value": 1.0}]}, 422),  # metric missing
    ({"series": "bad key with spaces", "points": [{"value": 1.0}]}, 422),
    ({"series": "s", "points": [{"value": "1.0x"}]}, 422),
    ({"series": "s", "points": [{"ts": "2026-11-20T10:00:00", "value": 1.0}]}, 422),  # naive
    ({"series": "s", "points": [{"ts": "2026-11-20T10:00:10Z", "value": 1.0},
                                {"ts": "2026-11-20T10:00:00Z", "value": 1.0}]}, 422),
    ({"series": "s", "k": 0, "points": [{"value": 1.0}]}, 422),
    ({"series": "s", "window": 1, "points": [{"value": 1.0}]}, 422),
    ({"series": "s", "points": [{"value": 1.0, "extra": 1}]}, 422),
])
def test_bad_requests_are_refused(anomaly_log, client, payload, status):
    assert post(client, payload).status_code == status


def test_nan_inf_limits_window_and_token(anomaly_log, client, monkeypatch):
    for literal in (b"NaN", b"Infinity", b"1e400"):
        body = b'{"series": "s", "points": [{"value": ' + literal + b"}]}"
        response = client.post("/api/v1/detect", content=body,
                               headers={**AUTH, "Content-Type": "application/json"})
        assert response.status_code == 422, literal
    assert post(client, {"series": "w", "window": 10, "points": [{"value": 1.0}]}).status_code \
        == 200
    clash = post(client, {"series": "w", "window": 20, "points": [{"value": 1.0}]})
    assert clash.status_code == 409 and "window 10" in clash.json()["detail"]
    assert post(client, {"series": "w", "points": [{"value": 1.0}]}).status_code == 200
    too_many = {"series": "s", "points": [{"value": 1.0}] * 1001}
    assert post(client, too_many).status_code == 413
    assert client.post("/api/v1/detect", json={"series": "s", "points": [{"value": 1.0}]}
                       ).status_code == 401
