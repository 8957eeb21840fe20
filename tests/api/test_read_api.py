"""The read API against one real database per module: a simulated fleet loaded, dbt marts
built, detectors trained and a window scored, plus rows written here for the tables the
pipeline fills elsewhere (evaluations, quality, drift, a data alert). Expected values come
from SQL on the same database or from the rows inserted here."""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.main import create_app
from core import db as core_db
from core import ingest, report_store, scoring
from core.dbt_runner import run_dbt
from core.settings import get_settings
from simulator import AnomalyConfig, FleetConfig, simulate

DAY0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
LOADED = (DAY0 + timedelta(hours=12), DAY0 + timedelta(days=1, hours=2))
TRAIN = (LOADED[0], DAY0 + timedelta(days=1))
SCORED = (TRAIN[1], LOADED[1])
FLEET = FleetConfig(sites=2, zones_per_site=2, devices_per_zone=2,  # 8 devices
                    anomalies=AnomalyConfig.only("threshold_breach", 6.0))
API = "/api/v1"


@dataclass
class Seeded:
    client: TestClient
    url: str

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(query, params).fetchall()


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _extra_rows(conn: psycopg.Connection) -> None:
    """Evaluations (an old and a new run), quality results, drift results, a data alert, an
    acknowledged alert."""
    old, new = DAY0 - timedelta(days=2), DAY0 - timedelta(days=1)
    for run_id, created, rows in (
        ("eval-old", old, [("rolling_z", "all", 0.5)]),
        ("eval-new", new, [("rolling_z", "all", 0.8), ("rolling_z", "spike", 0.9),
                           ("pca", "all", 0.7)]),
    ):
        for detector, kind, f1 in rows:
            conn.execute(
                "INSERT INTO telemetry.evaluations (run_id, detector, anomaly_type, seed, days,"
                " devices, events, detected, precision, recall, f1, created_at)"
                " VALUES (%s, %s, %s, 7, 7, 45, 10, 8, 0.9, 0.8, %s, %s)",
                (run_id, detector, kind, f1, created))
    for suite, target, expectation, severity, success in (
        ("raw_batch", "batch 1", "values_not_null", "error", True),
        ("raw_batch", "batch 2", "values_not_null", "error", False),
        ("kpi", "fct_kpi_5m [a, b)", "windows_complete", "warning", False),
    ):
        conn.execute(
            "INSERT INTO telemetry.quality_results (suite, target, expectation,"
            " expectation_type, severity, success, element_count, unexpected_count, run_id,"
            " validated_at) VALUES (%s, %s, %s, 'expect_x', %s, %s, 100, %s, 'q-run', %s)",
            (suite, target, expectation, severity, success, 0 if success else 3, SCORED[0]))
    for site, metric, drifted in (("all", "co2", True), ("site-01", "temperature", False)):
        conn.execute(
            "INSERT INTO telemetry.drift_results (run_id, reference_start, reference_end,"
            " current_start, current_end, site, metric, method, statistic, threshold, drifted,"
            " reference_rows, current_rows) VALUES ('d-run', %s, %s, %s, %s, %s, %s,"
            " 'wasserstein', 0.7, 0.5, %s, 100, 20)",
            (DAY0 - timedelta(days=7), DAY0, DAY0, DAY0 + timedelta(days=1), site, metric,
             drifted))
    conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
        " fired_at, last_seen_at, reason) VALUES ('data', NULL, 'quality:raw_batch:values',"
        " 'firing', 'high', %s, %s, %s, 'a batch failed')", (SCORED[0], SCORED[0], SCORED[0]))
    conn.execute(
        "UPDATE telemetry.alerts SET acknowledged_at = %s, acknowledged_by = 'ops',"
        " ack_note = 'on it' WHERE alert_id = (SELECT min(alert_id) FROM telemetry.alerts)",
        (SCORED[1],))


@pytest.fixture(scope="module")
def seeded(pg_admin_url: str, template_db: str, worker_dbt_target: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    name = f"t_read_{uuid.uuid4().hex[:10]}"
    _admin(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = core_db.with_dbname(pg_admin_url, name)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", url)
        env.setenv("TELEMETRY_DBT_TARGET_DIR", str(worker_dbt_target))
        env.setenv("TELEMETRY_REPORTS_DIR", str(tmp_path_factory.mktemp("reports")))
        env.setenv("TELEMETRY_API_TOKEN", "read-tests-token-0123")
        core_db.reset_caches()
        get_settings.cache_clear()
        try:
            ingest.register_fleet(FLEET)
            for piece in ingest.chunks(ingest.Window(*LOADED), timedelta(hours=6)):
                ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)
            run_dbt(["build"])
            scoring.train_models(*TRAIN)
            scoring.score_window(*SCORED)
            with psycopg.connect(url, autocommit=True) as conn:
                _extra_rows(conn)
            with TestClient(create_app()) as client:
                yield Seeded(client, url)
        finally:
            core_db.reset_caches()
            get_settings.cache_clear()
            _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def get(seeded: Seeded, path: str, **params: Any) -> Any:
    response = seeded.client.get(API + path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(seeded: Seeded, path: str, **params: Any) -> tuple[list[dict], int]:
    """Every item of a list, page by page; also how many pages it took."""
    items, cursor, pages = [], None, 0
    while True:
        body = get(seeded, path, **params, **({"cursor": cursor} if cursor else {}))
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


def refused(seeded: Seeded, path: str, field: str, **params: Any) -> None:
    response = seeded.client.get(API + path, params=params)
    assert response.status_code == 422, response.text
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), \
        response.text


# ---------------------------------------------------------------------------------------------
# Devices.

def test_devices_list_pages_and_filters(seeded):
    expected = seeded.sql("SELECT device_id, device_name, site, zone, device_kind, metrics,"
                          " interval_seconds, installed_at FROM telemetry.devices"
                          " ORDER BY device_id")
    items, pages = all_pages(seeded, "/devices", limit=3)
    assert pages == 3 and len(items) == 8
    assert [{k: v for k, v in i.items() if k != "open_alert_count"} for i in items] == \
        [jsonable(r) for r in expected]
    open_counts = {r["device_id"]: r["n"] for r in seeded.sql(
        "SELECT device_id, count(*) AS n FROM telemetry.alerts"
        " WHERE state IN ('pending', 'firing') AND device_id IS NOT NULL GROUP BY 1")}
    assert {i["device_id"]: i["open_alert_count"] for i in items if i["open_alert_count"]} == \
        open_counts
    site = get(seeded, "/devices", site="site-02", zone="zone-01")["items"]
    assert [d["device_name"] for d in site] == ["site-02/zone-01/dev-01", "site-02/zone-01/dev-02"]
    assert len(get(seeded, "/devices", metric="co2")["items"]) == 8
    assert get(seeded, "/devices", metric="pressure")["items"] == []


def test_device_detail_is_its_live_status(seeded):
    device_id = seeded.sql("SELECT device_id FROM telemetry.alerts WHERE state IN"
                           " ('pending', 'firing') AND device_id IS NOT NULL LIMIT 1")
    device_id = device_id[0]["device_id"] if device_id else 1
    body = get(seeded, f"/devices/{device_id}")
    latest = seeded.sql("""
        SELECT DISTINCT ON (m.metric_id) m.metric, r.ts, r.value FROM telemetry.readings r
        JOIN telemetry.metrics m USING (metric_id) WHERE r.device_id = %s
        ORDER BY m.metric_id, r.ts DESC""", (device_id,))
    assert body["latest"] == [jsonable(r) for r in latest]
    assert body["latest"][0]["ts"] < iso(LOADED[1])
    open_ids = [r["alert_id"] for r in seeded.sql(
        "SELECT alert_id FROM telemetry.alerts WHERE device_id = %s"
        " AND state IN ('pending', 'firing') ORDER BY alert_id DESC", (device_id,))]
    assert [a["alert_id"] for a in body["open_alerts"]] == open_ids
    states = {a["state"] for a in body["open_alerts"]}
    assert body["status"] == ("firing" if "firing" in states else "pending" if states else "ok")
    assert body["device_id"] == device_id and body["metrics"] == [
        "co2", "temperature", "humidity", "occupancy"]


def test_device_not_found_and_bad_ids(seeded):
    assert seeded.client.get(f"{API}/devices/9999").status_code == 404
    for bad in ("-1", "abc", str(2**40)):
        assert seeded.client.get(f"{API}/devices/{bad}").status_code == 422


# ---------------------------------------------------------------------------------------------
# Readings.

def test_readings_in_a_range_exactly_with_pagination(seeded):
    start, end = SCORED[0], SCORED[0] + timedelta(minutes=10)
    expected = seeded.sql("""
        SELECT r.device_id, r.metric_id, m.metric, r.ts, r.value, r.batch_id
        FROM telemetry.readings r JOIN telemetry.metrics m USING (metric_id)
        WHERE r.device_id = 3 AND m.metric = 'co2' AND r.ts >= %s AND r.ts < %s
        ORDER BY r.ts""", (start, end))
    assert len(expected) >= 55
    params = {"device_id": 3, "metric": "co2", "from": iso(start), "to": iso(end)}
    assert get(seeded, "/readings", **params)["items"] == [jsonable(r) for r in expected]
    paged, pages = all_pages(seeded, "/readings", limit=7, **params)
    assert paged == [jsonable(r) for r in expected] and pages == math.ceil(len(expected) / 7)
    zone = get(seeded, "/readings", site="site-01", zone="zone-02", limit=1000,
               **{"from": iso(start), "to": iso(start + timedelta(minutes=1))})["items"]
    assert {r["device_id"] for r in zone} == {3, 4}
    assert len(zone) == seeded.sql(
        "SELECT count(*) AS n FROM telemetry.readings WHERE device_id IN (3, 4)"
        " AND ts >= %s AND ts < %s", (start, start + timedelta(minutes=1)))[0]["n"]


def test_readings_default_to_the_last_hour_of_loaded_data(seeded):
    items, _ = all_pages(seeded, "/readings", limit=1000, device_id=1)
    newest = max(r["high_water"] for r in seeded.sql(
        "SELECT high_water FROM telemetry.watermarks"))
    assert newest == LOADED[1]
    count = seeded.sql("SELECT count(*) AS n FROM telemetry.readings WHERE device_id = 1"
                       " AND ts >= %s AND ts < %s", (newest - timedelta(hours=1), newest))
    assert len(items) == count[0]["n"] > 0
    assert min(r["ts"] for r in items) >= iso(newest - timedelta(hours=1))


def test_readings_refuse_unbounded_or_backwards_ranges(seeded):
    refused(seeded, "/readings", "from", **{"from": iso(DAY0), "to": iso(LOADED[1])})
    refused(seeded, "/readings", "to", **{"from": iso(SCORED[1]), "to": iso(SCORED[0])})
    refused(seeded, "/readings", "from", **{"from": "yesterday"})
    refused(seeded, "/readings", "device_id", device_id="one")
    refused(seeded, "/readings", "cursor", cursor="not-a-cursor")
    foreign = get(seeded, "/alerts", limit=1)["next_cursor"]
    refused(seeded, "/readings", "cursor", cursor=foreign)
    refused(seeded, "/readings", "limit", limit=0)
    refused(seeded, "/readings", "limit", limit=get_settings().api_page_max + 1)


# ---------------------------------------------------------------------------------------------
# KPIs and the heatmap.

KPI_COLUMNS = ("window_start, window_end, device_id, metric_id, metric, reading_count, mean,"
               " min, max, stddev, breach_count, completeness")


@pytest.mark.parametrize("grain", ["5m", "15m", "1h"])
def test_kpis_are_the_marts_rows(seeded, grain):
    table = {"5m": "fct_kpi_5m", "15m": "fct_kpi_15m", "1h": "fct_kpi_1h"}[grain]
    start, end = SCORED[0] - timedelta(hours=3), SCORED[1]
    expected = seeded.sql(
        f"SELECT {KPI_COLUMNS} FROM analytics.{table} WHERE device_id = 5 AND metric = 'co2'"
        " AND window_start >= %s AND window_start < %s ORDER BY window_start", (start, end))
    assert expected
    params = {"grain": grain, "device_id": 5, "metric": "co2", "from": iso(start),
              "to": iso(end)}
    assert get(seeded, "/kpis", **params)["items"] == [jsonable(r) for r in expected]
    newest_first = get(seeded, "/kpis", **params, order="desc")["items"]
    assert newest_first == [jsonable(r) for r in reversed(expected)]


def test_kpi_pages_cover_the_mart_in_key_order(seeded):
    start, end = SCORED[0], SCORED[0] + timedelta(minutes=30)
    expected = seeded.sql(
        f"SELECT {KPI_COLUMNS} FROM analytics.fct_kpi_5m WHERE window_start >= %s"
        " AND window_start < %s ORDER BY window_start, device_id, metric_id", (start, end))
    assert len(expected) == 6 * 8 * 4
    items, pages = all_pages(seeded, "/kpis", limit=50, **{"from": iso(start), "to": iso(end)})
    assert items == [jsonable(r) for r in expected] and pages == 4
    backwards, _ = all_pages(seeded, "/kpis", limit=50, order="desc",
                             **{"from": iso(start), "to": iso(end)})
    assert backwards == [jsonable(r) for r in reversed(expected)]
    site = get(seeded, "/kpis", site="site-01", limit=1000,
               **{"from": iso(start), "to": iso(end)})["items"]
    assert {k["device_id"] for k in site} == {1, 2, 3, 4} and len(site) == 6 * 4 * 4


def test_kpis_refuse_bad_grains_and_orders(seeded):
    refused(seeded, "/kpis", "grain", grain="2m")
    refused(seeded, "/kpis", "order", order="sideways")
    refused(seeded, "/kpis", "to", **{"from": iso(SCORED[1]), "to": iso(SCORED[0])})


def test_heatmap_matches_the_fleet_report_and_counts(seeded):
    start, end = SCORED[0] - timedelta(hours=1), SCORED[1]
    items, _ = all_pages(seeded, "/heatmap", limit=5,
                         **{"from": iso(start + timedelta(minutes=20)), "to": iso(end)})
    with psycopg.connect(seeded.url) as conn:
        health = report_store.zone_health(conn, start, end)
    assert len(items) == len(health) == 4 * 3  # whole hours: the range was widened
    for item, (_, row) in zip(items, health.iterrows(), strict=True):
        assert (item["site"], item["zone"], item["hour"]) == (
            row["site"], row["zone"], iso(row["hour"].to_pydatetime()))
        assert item["health"] == pytest.approx(row["health"])
    alerts = seeded.sql("SELECT count(*) AS n FROM telemetry.alerts WHERE device_id IS NOT NULL"
                        " AND opened_at >= %s AND opened_at < %s", (start, end))[0]["n"]
    anomalies = seeded.sql("SELECT count(*) AS n FROM telemetry.scores WHERE is_anomaly"
                           " AND ts >= %s AND ts < %s", (start, end))[0]["n"]
    assert sum(i["alerts"] for i in items) == alerts > 0
    assert sum(i["anomalies"] for i in items) == anomalies > 0
    default = get(seeded, "/heatmap", limit=1000)["items"]  # the 24 h up to the newest window
    assert {i["hour"] for i in default} == {
        iso(SCORED[1] - timedelta(hours=h)) for h in range(1, 25)}
    refused(seeded, "/heatmap", "from", **{"from": iso(DAY0 - timedelta(days=8)),
                                           "to": iso(DAY0)})


# ---------------------------------------------------------------------------------------------
# Anomalies and alerts.

def test_anomalies_are_scored_points_above_threshold(seeded):
    expected = seeded.sql("""
        SELECT device_id, metric, ts, value, baseline_mean, baseline_std AS std_dev, score,
               severity, detector, reason, model_id
        FROM telemetry.scores WHERE is_anomaly AND device_id = 3 AND metric = 'humidity'
        ORDER BY ts DESC""")
    assert expected and all(r["score"] >= 1.0 for r in expected)
    items, _ = all_pages(seeded, "/anomalies", limit=100, device_id=3, metric="humidity")
    assert items == [jsonable(r) for r in expected]
    total = seeded.sql("SELECT count(*) AS n FROM telemetry.scores WHERE is_anomaly")[0]["n"]
    everything, _ = all_pages(seeded, "/anomalies", limit=1000, order="asc")
    assert len(everything) == total
    keys = [(a["ts"], a["device_id"], a["metric"], a["detector"]) for a in everything]
    assert keys == sorted(keys) and len(set(keys)) == total
    critical = get(seeded, "/anomalies", severity="critical", limit=1000)["items"]
    assert critical and {a["severity"] for a in critical} == {"critical"}
    refused(seeded, "/anomalies", "severity", severity="apocalyptic")


ALERT_SQL = """
    SELECT a.alert_id, a.kind, a.device_id, d.device_name, d.site, d.zone, a.metric, a.state,
           a.severity, a.opened_at, a.fired_at, a.resolved_at, a.last_seen_at, a.peak_score,
           a.reason, a.acknowledged_at, a.acknowledged_by, a.ack_note, a.resolved_by,
           a.resolve_note, a.drifted
    FROM telemetry.alerts a LEFT JOIN telemetry.devices d USING (device_id)"""


def test_alerts_list_filters_and_pages(seeded):
    expected = seeded.sql(ALERT_SQL + " ORDER BY a.alert_id DESC")
    assert len(expected) >= 3
    items, pages = all_pages(seeded, "/alerts", limit=2)
    assert items == [jsonable(r) for r in expected] and pages == math.ceil(len(expected) / 2)
    opened = [r for r in expected if r["state"] in ("pending", "firing")]
    assert get(seeded, "/alerts", state="open")["items"] == [jsonable(r) for r in opened]
    resolved = get(seeded, "/alerts", state="resolved")["items"]
    assert [a["alert_id"] for a in resolved] == [
        r["alert_id"] for r in expected if r["state"] == "resolved"]
    data = get(seeded, "/alerts", kind="data")["items"]
    assert len(data) == 1 and data[0]["device_id"] is None and data[0]["site"] is None
    site = get(seeded, "/alerts", site="site-01")["items"]
    assert [a["alert_id"] for a in site] == [
        r["alert_id"] for r in expected if r["site"] == "site-01"]
    high = get(seeded, "/alerts", severity="high")["items"]
    assert [a["alert_id"] for a in high] == [
        r["alert_id"] for r in expected if r["severity"] == "high"]
    oldest_first = get(seeded, "/alerts", order="asc", limit=1000)["items"]
    assert [a["alert_id"] for a in oldest_first] == [r["alert_id"] for r in reversed(expected)]
    window = get(seeded, "/alerts", **{"from": iso(SCORED[0]),
                                       "to": iso(SCORED[0] + timedelta(hours=1))})["items"]
    assert [a["alert_id"] for a in window] == [
        r["alert_id"] for r in expected
        if SCORED[0] <= r["opened_at"] < SCORED[0] + timedelta(hours=1)]
    refused(seeded, "/alerts", "state", state="closed")
    refused(seeded, "/alerts", "kind", kind="other")


def test_alert_detail_and_its_errors(seeded):
    first = seeded.sql(ALERT_SQL + " ORDER BY a.alert_id LIMIT 1")[0]
    body = get(seeded, f"/alerts/{first['alert_id']}")
    extra = seeded.sql("SELECT peak_ts, detectors, contributions, updated_at"
                       " FROM telemetry.alerts WHERE alert_id = %s", (first["alert_id"],))[0]
    assert body == jsonable({**first, **extra})
    assert body["acknowledged_by"] == "ops" and body["ack_note"] == "on it"
    assert seeded.client.get(f"{API}/alerts/999999").status_code == 404
    for bad in ("0", "abc", str(2**64)):
        assert seeded.client.get(f"{API}/alerts/{bad}").status_code == 422


# ---------------------------------------------------------------------------------------------
# Runs, models, quality, drift, stats.

def test_runs_are_the_batch_ledger(seeded):
    expected = seeded.sql("SELECT batch_id, rows_loaded, status FROM telemetry.batches"
                          " ORDER BY batch_id DESC")
    items, _ = all_pages(seeded, "/runs", limit=2)
    assert [(r["batch_id"], r["rows_loaded"], r["status"]) for r in items] == [
        tuple(r.values()) for r in expected]
    assert get(seeded, "/runs", status="failed")["items"] == []
    assert len(get(seeded, "/runs", source="simulator")["items"]) == len(expected)
    refused(seeded, "/runs", "source", source="fax")


def test_models_and_their_evaluation(seeded):
    models = seeded.sql("SELECT model_id, detector, version, row_count FROM telemetry.models"
                        " ORDER BY model_id DESC")
    items = get(seeded, "/models")["items"]
    assert [(m["model_id"], m["detector"], m["version"], m["row_count"]) for m in items] == [
        tuple(m.values()) for m in models]
    assert "state" not in items[0]
    rolling = next(m for m in models if m["detector"] == "rolling_z")
    detail = get(seeded, f"/models/{rolling['model_id']}")
    assert detail["is_current"] is True and detail["state_bytes"] > 0
    assert get(seeded, "/models", detector="pca")["items"][0]["detector"] == "pca"
    evaluation = get(seeded, f"/models/{rolling['model_id']}/eval")
    assert evaluation["run_id"] == "eval-new"
    assert [(e["anomaly_type"], e["f1"]) for e in evaluation["evaluations"]] == [
        ("all", 0.8), ("spike", 0.9)]
    assert evaluation["training"]["input_rows"] > 0
    stuck = next(m for m in models if m["detector"] == "stuck")
    assert get(seeded, f"/models/{stuck['model_id']}/eval")["evaluations"] == []
    assert seeded.client.get(f"{API}/models/999999").status_code == 404
    assert seeded.client.get(f"{API}/models/999999/eval").status_code == 404


def test_quality_and_drift_results(seeded):
    failed = get(seeded, "/quality", success=False)["items"]
    assert [(q["suite"], q["target"], q["unexpected_count"]) for q in failed] == [
        ("kpi", "fct_kpi_5m [a, b)", 3), ("raw_batch", "batch 2", 3)]
    assert len(get(seeded, "/quality", suite="raw_batch")["items"]) == 2
    assert len(get(seeded, "/quality", severity="warning")["items"]) == 1
    drifted = get(seeded, "/drift", drifted=True)["items"]
    assert [(d["site"], d["metric"], d["statistic"]) for d in drifted] == [("all", "co2", 0.7)]
    assert len(get(seeded, "/drift", site="site-01")["items"]) == 1
    assert get(seeded, "/drift", **{"from": iso(DAY0 + timedelta(days=2))})["items"] == []
    refused(seeded, "/quality", "success", success="maybe")


def test_stats_are_the_platform_totals(seeded):
    body = get(seeded, "/stats")
    counts = seeded.sql("""
        SELECT (SELECT count(*) FROM telemetry.devices) AS devices,
               (SELECT count(*) FROM telemetry.readings) AS readings,
               (SELECT count(*) FROM telemetry.scores WHERE is_anomaly) AS anomalies,
               (SELECT count(*) FROM telemetry.alerts) AS alerts,
               (SELECT count(*) FROM telemetry.alerts WHERE state IN ('pending', 'firing'))
                   AS open_alerts""")[0]
    by_severity = {r["severity"]: r["n"] for r in seeded.sql(
        "SELECT severity, count(*) AS n FROM telemetry.alerts"
        " WHERE state IN ('pending', 'firing') GROUP BY 1")}
    assert body == {**counts, "alerts_by_severity": {
        s: by_severity.get(s, 0) for s in ("low", "medium", "high", "critical")}}
    assert body["alerts_by_severity"]["high"] >= 1  # the data alert


# ---------------------------------------------------------------------------------------------
# Dataset analytics.

def test_summary_pools_the_hourly_windows_exactly(seeded):
    items = get(seeded, "/analytics/summary")["items"]
    raw = {r["metric"]: r for r in seeded.sql("""
        SELECT m.metric, count(*) AS readings, avg(r.value) AS mean,
               stddev_samp(r.value) AS stddev, min(r.value) AS min, max(r.value) AS max,
               count(DISTINCT r.device_id) AS devices
        FROM telemetry.readings r JOIN telemetry.metrics m USING (metric_id) GROUP BY 1""")}
    assert [i["metric"] for i in items] == sorted(raw)
    for item in items:
        expected = raw[item["metric"]]
        assert item["readings"] == expected["readings"]
        assert item["devices"] == expected["devices"] == 8
        assert (item["min"], item["max"]) == (expected["min"], expected["max"])
        assert item["mean"] == pytest.approx(expected["mean"], rel=1e-9)
        assert item["stddev"] == pytest.approx(expected["stddev"], rel=1e-6)
    co2 = get(seeded, "/analytics/summary", metric="co2", device_id=2,
              **{"from": iso(SCORED[0]), "to": iso(SCORED[1])})["items"]
    check = seeded.sql("SELECT count(*) AS n, avg(value) AS mean FROM telemetry.readings"
                       " WHERE device_id = 2 AND metric_id = 1 AND ts >= %s AND ts < %s",
                       SCORED)[0]
    assert len(co2) == 1 and co2[0]["readings"] == check["n"]
    assert co2[0]["mean"] == pytest.approx(check["mean"], rel=1e-9)
    assert co2[0]["windows"] == 2


def test_topk_groups_anomalies(seeded):
    by_device = seeded.sql("""
        SELECT s.device_id::text AS key, d.device_name AS label, count(*) AS count
        FROM telemetry.scores s JOIN telemetry.devices d USING (device_id)
        WHERE s.is_anomaly GROUP BY 1, 2 ORDER BY count DESC, key LIMIT 3""")
    assert get(seeded, "/analytics/topk", by="device", k=3)["items"] == by_device
    sites = get(seeded, "/analytics/topk", by="site")["items"]
    assert sum(s["count"] for s in sites) == seeded.sql(
        "SELECT count(*) AS n FROM telemetry.scores WHERE is_anomaly")[0]["n"]
    zones = get(seeded, "/analytics/topk", by="zone", site="site-01")["items"]
    assert {z["key"] for z in zones} <= {"site-01/zone-01", "site-01/zone-02"}
    # Types from the simulator's labels, counted here point by point.
    points = seeded.sql("SELECT device_id, metric, ts FROM telemetry.scores WHERE is_anomaly")
    labels = seeded.sql("SELECT device_id, metrics, anomaly_type, start_ts, end_ts"
                        " FROM telemetry.anomaly_labels")
    counts: dict[str, int] = {}
    for p in points:
        covering = [lb for lb in labels if lb["device_id"] == p["device_id"]
                    and lb["start_ts"] <= p["ts"] < lb["end_ts"]
                    and (p["metric"] in lb["metrics"] or p["metric"] == "multi")]
        kind = max(covering, key=lambda lb: lb["start_ts"])["anomaly_type"] if covering \
            else "unlabeled"
        counts[kind] = counts.get(kind, 0) + 1
    types = get(seeded, "/analytics/topk", by="anomaly_type")["items"]
    assert {t["key"]: t["count"] for t in types} == counts
    assert "threshold_breach" in counts
    refused(seeded, "/analytics/topk", "by", by="colour")
    refused(seeded, "/analytics/topk", "k", by="site", k=1000)


def test_histogram_bins_raw_values_in_sql(seeded):
    start, end = SCORED
    bins = get(seeded, "/analytics/histogram", metric="temperature", bins=7,
               **{"from": iso(start), "to": iso(end)})["items"]
    span = seeded.sql("SELECT min(value) AS lo, max(value) AS hi, count(*) AS n"
                      " FROM telemetry.readings WHERE metric_id = 2 AND ts >= %s AND ts < %s",
                      (start, end))[0]
    assert [b["bin"] for b in bins] == list(range(1, 8))
    assert sum(b["count"] for b in bins) == span["n"]
    assert bins[0]["lower"] == span["lo"] and bins[-1]["upper"] == pytest.approx(span["hi"])
    width = (span["hi"] - span["lo"]) / 7
    values = [r["value"] for r in seeded.sql(
        "SELECT value FROM telemetry.readings WHERE metric_id = 2 AND ts >= %s AND ts < %s",
        (start, end))]
    first = sum(1 for v in values if v < span["lo"] + width)
    assert bins[0]["count"] == first
    assert get(seeded, "/analytics/histogram", metric="pressure")["items"] == []
    refused(seeded, "/analytics/histogram", "metric")
    refused(seeded, "/analytics/histogram", "bins", metric="co2", bins=0)
    refused(seeded, "/analytics/histogram", "from", metric="co2",
            **{"from": iso(DAY0 - timedelta(days=30)), "to": iso(DAY0)})


# ---------------------------------------------------------------------------------------------
# GraphQL reads through the same page functions.

def graphql(seeded: Seeded, query: str) -> dict[str, Any]:
    response = seeded.client.post(f"{API}/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    return response.json()


def test_graphql_answers_what_rest_answers(seeded):
    start, end = iso(SCORED[0]), iso(SCORED[0] + timedelta(minutes=5))
    body = graphql(seeded, f"""{{
        readings(device_id: 2, metric: "co2", from: "{start}", to: "{end}", limit: 10) {{
            items {{ device_id metric_id metric ts value batch_id }} next_cursor }}
        anomalies(device_id: 3, limit: 5) {{
            items {{ device_id metric ts value baseline_mean std_dev score severity detector
                     reason model_id }} next_cursor }}
        alerts(state: open) {{ items {{ alert_id kind device_id site state severity
                                       acknowledged_by drifted opened_at }} next_cursor }}
    }}""")
    assert "errors" not in body, body
    data = body["data"]
    rest = get(seeded, "/readings", device_id=2, metric="co2", limit=10,
               **{"from": start, "to": end})
    assert data["readings"] == rest
    rest_anomalies = get(seeded, "/anomalies", device_id=3, limit=5)
    assert data["anomalies"] == rest_anomalies
    rest_alerts = get(seeded, "/alerts", state="open")["items"]
    fields = list(data["alerts"]["items"][0])
    assert data["alerts"]["items"] == [{f: a[f] for f in fields} for a in rest_alerts]
    cursor = data["readings"]["next_cursor"]
    page2 = graphql(seeded, f"""{{ readings(device_id: 2, metric: "co2", from: "{start}",
        to: "{end}", limit: 10, cursor: "{cursor}") {{ items {{ ts }} }} }}""")["data"]
    assert [r["ts"] for r in page2["readings"]["items"]] == [
        r["ts"] for r in get(seeded, "/readings", device_id=2, metric="co2", limit=10,
                             cursor=cursor, **{"from": start, "to": end})["items"]]


def test_graphql_refuses_what_rest_refuses(seeded):
    body = graphql(seeded, f"""{{ readings(from: "{iso(SCORED[1])}", to: "{iso(SCORED[0])}")
                                 {{ items {{ ts }} }} }}""")
    assert body["data"] is None and "to: must be later than from" in body["errors"][0]["message"]
    body = graphql(seeded, "{ alerts(limit: 0) { items { alert_id } } }")
    assert "limit" in body["errors"][0]["message"]
    body = graphql(seeded, '{ alerts(cursor: "nope") { items { alert_id } } }')
    assert "cursor" in body["errors"][0]["message"]
    response = seeded.client.post(f"{API}/graphql", json={"query": "{ alerts(severity: dire)"
                                                                   " { items { alert_id } } }"})
    assert response.status_code == 200 and response.json()["errors"]


# ---------------------------------------------------------------------------------------------
# Hostile input.

INJECTIONS = ["'; DROP TABLE telemetry.readings; --", "<script>alert(1)</script>",
              "' OR '1'='1", "\\x00", "%00", "nul\x00byte", "\u00e9t\u00e9 \U0001f525", "a" * 200]
# Every query parameter of every GET operation of the document (a new filter is covered the
# day it is added), except the live stream and GraphQL (their own tests).
FILTERS = {
    path.removeprefix(API): [p["name"] for p in ops["get"].get("parameters", [])
                             if p["in"] == "query"]
    for path, ops in create_app().openapi()["paths"].items()
    if "get" in ops and path.startswith(API) and "{" not in path
    and not path.endswith(("/stream", "/graphql"))
}
FILTERS = {path: names for path, names in FILTERS.items() if names}


def test_the_filter_list_is_the_whole_read_api():
    assert len(FILTERS) >= 13 and sum(map(len, FILTERS.values())) >= 80
    assert {"site", "zone", "metric", "from", "to", "cursor", "limit"} <= set(FILTERS["/kpis"])


def test_injection_strings_in_every_filter_are_plain_values(seeded):
    before = seeded.sql("SELECT (SELECT count(*) FROM telemetry.readings) AS readings,"
                        " (SELECT count(*) FROM telemetry.alerts) AS alerts,"
                        " (SELECT count(*) FROM pg_tables WHERE schemaname IN"
                        "  ('telemetry', 'analytics')) AS tables")
    statuses = set()
    for path, fields in FILTERS.items():
        base = {"by": "site"} if path.endswith("topk") else \
            {"metric": "co2"} if path.endswith("histogram") else {}
        for field in fields:
            for value in INJECTIONS:
                response = seeded.client.get(API + path, params={**base, field: value})
                assert response.status_code in (200, 422), (path, field, value, response.text)
                statuses.add(response.status_code)
                if response.status_code == 200 and field not in ("cursor",):
                    assert "<script>" not in json.dumps(response.json()["items"])
    for value in INJECTIONS:
        for path in ("/devices/", "/alerts/", "/models/"):
            response = seeded.client.get(API + path + quote(value, safe=""))
            assert response.status_code in (404, 422), (path, value)
    assert statuses == {200, 422}
    after = seeded.sql("SELECT (SELECT count(*) FROM telemetry.readings) AS readings,"
                       " (SELECT count(*) FROM telemetry.alerts) AS alerts,"
                       " (SELECT count(*) FROM pg_tables WHERE schemaname IN"
                       "  ('telemetry', 'analytics')) AS tables")
    assert after == before


def test_forged_cursors_are_refused_not_trusted(seeded):
    def forge(values: list) -> str:
        return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")

    for cursor in (forge(["'; DROP TABLE x; --"]), forge([1.5]), forge([2**70]), forge([]),
                   forge({"a": 1}), forge([True]), "%%%", "A" * 999):
        refused(seeded, "/alerts", "cursor", cursor=cursor)
    for cursor in (forge(["0001-01-01T00:00:00+14:00", 1, 1]), forge(["not a time", 1, 1])):
        refused(seeded, "/kpis", "cursor", cursor=cursor)
    assert get(seeded, "/alerts", cursor=forge([1]))["items"] == []  # a valid key: no rows
