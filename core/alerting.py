"""People acting on alerts: acknowledge and resolve, through the same machine as scoring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core import db, detection_store
from detectors import alerts as alert_machine


class AlertNotFoundError(LookupError):
    pass


class AlertClosedError(ValueError):
    pass


def _load(conn: Any, alert_id: int) -> tuple[dict[str, Any], alert_machine.AlertState | None]:
    """The open alert and its machine state; None for alerts the machine does not track
    (missing-data gaps and fleet-level quality alerts), which are updated directly."""
    alert = detection_store.alert_for_update(conn, alert_id)
    if alert is None:
        raise AlertNotFoundError(f"no alert with id {alert_id}")
    if alert["state"] not in alert_machine.OPEN_STATES:
        raise AlertClosedError(f"alert {alert_id} is {alert['state']}, not open")
    stored = detection_store.alert_state(conn, (alert["kind"], alert["device_id"],
                                                alert["metric"]))
    state = alert_machine.AlertState.from_dict(stored) if stored else None
    if state is not None and not state.is_open:
        raise AlertClosedError(f"alert {alert_id} has no open episode")
    return alert, state


def acknowledge_alert(alert_id: int, by: str, note: str | None = None) -> dict[str, Any]:
    """Record who looked at an open alert and why; it stays open."""
    now = datetime.now(UTC)
    with db.transaction() as conn:
        alert, state = _load(conn, alert_id)
        if state is None:
            detection_store.acknowledge_row(conn, alert_id, by, note, now)
            return {"alert_id": alert_id, "acknowledged_by": by, "acknowledged_at": now}
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
        if state is None:
            detection_store.resolve_row(conn, alert_id, by, note, now)
            return {"alert_id": alert_id, "resolved_by": by, "resolved_at": now}
        state, change = alert_machine.resolve_manually(state, by, note, pd.Timestamp(now),
                                                       policy or ALERT_POLICY)
        key = (alert["kind"], alert["device_id"], alert["metric"])
        detection_store.apply_transition(conn, key, alert_id, change)
        detection_store.save_alert_state(conn, key, state.to_dict(), None)
    return {"alert_id": alert_id, "resolved_by": by, "resolved_at": now}


def list_alerts(open_only: bool = True, limit: int = 50) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return detection_store.list_alerts(conn, open_only, limit)
