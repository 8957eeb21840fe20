"""People acting on alerts: acknowledge and resolve, through the same machine as scoring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from psycopg.rows import dict_row

from core import db, detection_store
from detectors import alerts as alert_machine


class AlertNotFoundError(LookupError):
    pass


class AlertClosedError(ValueError):
    pass


def _load(conn: Any, alert_id: int) -> tuple[dict[str, Any], alert_machine.AlertState]:
    with conn.cursor(row_factory=dict_row) as cur:
        alert = cur.execute("SELECT * FROM telemetry.alerts WHERE alert_id = %s FOR UPDATE",
                            (alert_id,)).fetchone()
        if alert is None:
            raise AlertNotFoundError(f"no alert with id {alert_id}")
        if alert["state"] not in alert_machine.OPEN_STATES:
            raise AlertClosedError(f"alert {alert_id} is {alert['state']}, not open")
        row = cur.execute(
            "SELECT state FROM telemetry.alert_states WHERE kind = %s AND device_id = %s"
            " AND metric = %s", (alert["kind"], alert["device_id"], alert["metric"])).fetchone()
    state = alert_machine.AlertState.from_dict(row["state"]) if row else None
    if state is None or not state.is_open:
        raise AlertClosedError(f"alert {alert_id} has no open episode")
    return alert, state


def acknowledge_alert(alert_id: int, by: str, note: str | None = None) -> dict[str, Any]:
    """Record who looked at an open alert and why; it stays open."""
    now = datetime.now(UTC)
    with db.transaction() as conn:
        alert, state = _load(conn, alert_id)
        state, change = alert_machine.acknowledge(state, by, note, pd.Timestamp(now))
        key = (alert["kind"], alert["device_id"], alert["metric"])
        detection_store.apply_transition(conn, key, alert_id, change)
        detection_store.save_alert_state(conn, key, state.to_dict(), alert_id)
    return {"alert_id": alert_id, "acknowledged_by": by, "acknowledged_at": now}


def resolve_alert(alert_id: int, by: str, note: str | None = None,
                  policy: alert_machine.AlertPolicy | None = None) -> dict[str, Any]:
    """Close an open alert by hand; its cooldown starts now."""
    from core.scoring import ALERT_POLICY

    now = datetime.now(UTC)
    with db.transaction() as conn:
        alert, state = _load(conn, alert_id)
        state, change = alert_machine.resolve_manually(state, by, note, pd.Timestamp(now),
                                                       policy or ALERT_POLICY)
        key = (alert["kind"], alert["device_id"], alert["metric"])
        detection_store.apply_transition(conn, key, alert_id, change)
        detection_store.save_alert_state(conn, key, state.to_dict(), None)
    return {"alert_id": alert_id, "resolved_by": by, "resolved_at": now}


def list_alerts(open_only: bool = True, limit: int = 50) -> list[dict[str, Any]]:
    where = "WHERE state IN ('pending', 'firing')" if open_only else ""
    with db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT a.alert_id, a.kind, a.device_id, d.device_name, a.metric, a.state,"
            f" a.severity, a.opened_at, a.fired_at, a.resolved_at, a.peak_score,"
            f" a.acknowledged_by FROM telemetry.alerts a"
            f" LEFT JOIN telemetry.devices d USING (device_id) {where}"
            f" ORDER BY array_position(ARRAY['critical','high','medium','low'], a.severity),"
            f" a.opened_at DESC LIMIT %s", (limit,)).fetchall()
