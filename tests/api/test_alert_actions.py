"""POST /api/v1/alerts/{id}/ack and /resolve: who and why, through the alert machine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from core import detection_store, ingest
from detectors import alerts as alert_machine
from simulator import FleetConfig

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = pd.Timestamp("2026-11-20T10:00:00Z")


def fire_alert(conn: psycopg.Connection, device_id: int = 1, metric: str = "co2") -> int:
    """An alert as scoring raises one: the machine fires on a breach, its state is kept."""
    key = ("device", device_id, metric)
    state, changes = alert_machine.advance(None, pd.date_range(T0, periods=4, freq="10s"),
                                           np.array([1.5, 2.0, 2.5, 2.2]))
    alert_id = None
    for change in changes:
        alert_id = detection_store.apply_transition(conn, key, alert_id, change) or alert_id
    detection_store.save_alert_state(conn, key, state.to_dict(), alert_id)
    assert alert_id is not None
    return alert_id


@pytest.fixture
def alert_id(client, conn) -> int:
    ingest.register_fleet(FleetConfig(sites=1, zones_per_site=1, devices_per_zone=2))
    return fire_alert(conn)


def row(conn: psycopg.Connection, alert_id: int) -> tuple:
    return conn.execute(
        "SELECT state, acknowledged_by, ack_note, acknowledged_at IS NOT NULL, resolved_by,"
        " resolve_note, resolved_at IS NOT NULL FROM telemetry.alerts WHERE alert_id = %s",
        (alert_id,)).fetchone()


def test_acknowledge_then_resolve_records_who_and_why(client, conn, alert_id):
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=AUTH,
                        json={"by": "ops@site-01", "note": "fan checked"})
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["alert_id"], body["state"], body["acknowledged_by"], body["ack_note"]) == (
        alert_id, "firing", "ops@site-01", "fan checked")
    assert body["device_name"] == "site-01/zone-01/dev-01" and body["site"] == "site-01"
    assert row(conn, alert_id) == ("firing", "ops@site-01", "fan checked", True, None, None,
                                   False)

    resolved = client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=AUTH,
                           json={"by": "  lead@site-01 ", "note": "filter replaced"})
    assert resolved.status_code == 200
    body = resolved.json()
    assert (body["state"], body["resolved_by"], body["resolve_note"]) == (
        "resolved", "lead@site-01", "filter replaced")
    assert body["resolved_at"] is not None and body["acknowledged_by"] == "ops@site-01"
    assert row(conn, alert_id)[0] == "resolved"
    stored = detection_store.alert_state(conn, ("device", 1, "co2"))
    assert stored["resolved_by"] == "lead@site-01"  # the machine knows, so it stays closed

    again = client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=AUTH, json={"by": "x"})
    assert again.status_code == 409 and "resolved" in again.json()["detail"]
    late_ack = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=AUTH, json={"by": "x"})
    assert late_ack.status_code == 409


def test_a_note_is_optional(client, conn, alert_id):
    response = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=AUTH, json={"by": "ops"})
    assert response.status_code == 200 and response.json()["ack_note"] is None


@pytest.mark.parametrize("action", ["ack", "resolve"])
def test_unknown_alerts_are_404(client, action):
    response = client.post(f"/api/v1/alerts/999999/{action}", headers=AUTH, json={"by": "ops"})
    assert response.status_code == 404 and "999999" in response.json()["detail"]


@pytest.mark.parametrize(("path", "content", "status"), [
    ("{id}/ack", b'{"note": "no one"}', 422),
    ("{id}/ack", b'{"by": "   "}', 422),
    ("{id}/ack", b'{"by": ""}', 422),
    ("{id}/ack", b'{"by": NaN}', 422),
    ("{id}/ack", b'{"by": "ops", "note": NaN}', 422),
    ("{id}/ack", b'{"by": "ops", "extra": 1}', 422),
    ("{id}/ack", b"not json", 422),
    ("{id}/resolve", b'{"by": "' + b"x" * 201 + b'"}', 422),
    ("abc/ack", b'{"by": "ops"}', 422),
    ("0/resolve", b'{"by": "ops"}', 422),
])
def test_bad_actions_are_refused_and_change_nothing(client, conn, alert_id, path, content,
                                                    status):
    response = client.post(f"/api/v1/alerts/{path.format(id=alert_id)}", content=content,
                           headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert row(conn, alert_id)[:2] == ("firing", None)


def test_actions_need_the_token(client, conn, alert_id):
    for action in ("ack", "resolve"):
        response = client.post(f"/api/v1/alerts/{alert_id}/{action}", json={"by": "ops"})
        assert response.status_code == 401
    assert row(conn, alert_id)[:2] == ("firing", None)
