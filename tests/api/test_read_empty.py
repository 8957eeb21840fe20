"""The read API on a migrated database with nothing loaded and no dbt run yet."""

from __future__ import annotations

import pytest

API = "/api/v1"
LISTS = ["/devices", "/readings", "/anomalies", "/alerts", "/runs", "/models", "/quality",
         "/drift", "/analytics/topk?by=device", "/analytics/histogram?metric=co2"]


@pytest.mark.parametrize("path", LISTS)
def test_lists_are_empty(client, path):
    assert client.get(API + path).json() == {"items": [], "next_cursor": None}


def test_marts_not_built_yet_is_a_503_that_says_what_to_run(client):
    for path in ("/kpis", "/kpis?grain=1h&device_id=1", "/heatmap", "/analytics/summary"):
        response = client.get(API + path)
        assert response.status_code == 503, path
        assert "telemetry dbt build" in response.json()["detail"]
        assert response.headers["retry-after"] == "60"


def test_stats_and_missing_things(client):
    assert client.get(f"{API}/stats").json() == {
        "devices": 0, "readings": 0, "anomalies": 0, "alerts": 0, "open_alerts": 0,
        "alerts_by_severity": {"low": 0, "medium": 0, "high": 0, "critical": 0}}
    for path in ("/devices/1", "/alerts/1", "/models/1", "/models/1/eval"):
        assert client.get(API + path).status_code == 404, path
    body = client.post(f"{API}/graphql", json={"query": "{ readings { items { ts } } }"}).json()
    assert body == {"data": {"readings": {"items": []}}}


def test_openapi_documents_every_read_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path in ("/devices", "/devices/{device_id}", "/readings", "/kpis", "/heatmap",
                 "/anomalies", "/alerts", "/alerts/{alert_id}", "/runs", "/models",
                 "/models/{model_id}", "/models/{model_id}/eval", "/quality", "/drift",
                 "/stats", "/reports", "/reports/{name}", "/analytics/summary",
                 "/analytics/topk", "/analytics/histogram", "/graphql"):
        assert API + path in spec["paths"], path
    kpis = spec["paths"][f"{API}/kpis"]["get"]
    schema = kpis["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("Page_Kpi_")
    assert {p["name"] for p in kpis["parameters"]} >= {
        "grain", "device_id", "metric", "site", "zone", "from", "to", "limit", "cursor"}
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
