"""Data access for detection: model registry, scores, alerts and the alert machine's state."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row


def save_model(conn: psycopg.Connection, detector: str, params: dict[str, Any],
               train_start: datetime, train_end: datetime, row_count: int,
               state: dict[str, Any], metrics: dict[str, Any] | None = None,
               reason: str = "scheduled") -> tuple[int, int]:
    """Register a fitted detector as the next version; returns (model_id, version)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('telemetry.models:' || %s))",
                 (detector,))
    row = conn.execute(
        "INSERT INTO telemetry.models (detector, version, params, train_start, train_end,"
        " row_count, state, metrics, reason)"
        " SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s, %s"
        " FROM telemetry.models WHERE detector = %s RETURNING model_id, version",
        (detector, json.dumps(params, default=str), train_start, train_end, row_count,
         json.dumps(state), json.dumps(metrics or {}, default=str), reason, detector),
    ).fetchone()
    return int(row[0]), int(row[1])


def latest_models(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """The newest version of each detector: model_id, version, params, state."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT DISTINCT ON (detector) model_id, detector, version, params, state,"
            " train_start, train_end, row_count, metrics, created_at FROM telemetry.models"
            " ORDER BY detector, version DESC"
        ).fetchall()
    return {r["detector"]: r for r in rows}


def replace_scores(conn: psycopg.Connection, start: datetime, end: datetime,
                   device_ids: np.ndarray, scores: pd.DataFrame) -> int:
    """Idempotent: the window's scores for these devices are replaced by `scores`."""
    conn.execute(
        "DELETE FROM telemetry.scores WHERE ts >= %s AND ts < %s AND device_id = ANY(%s)",
        (start, end, [int(d) for d in device_ids]),
    )
    if scores.empty:
        return 0
    columns = ["detector", "device_id", "metric", "ts", "model_id", "value", "baseline_mean",
               "baseline_std", "score", "is_anomaly", "severity", "reason", "contributions"]
    frame = scores.reindex(columns=columns)
    # CSV through pandas' C writer: an empty unquoted field is NULL (NaN, None).
    # pandas' own ISO format (no date_format: a format string is applied per value)
    payload = frame.to_csv(index=False, header=False)
    with conn.cursor().copy(
        f"COPY telemetry.scores ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    ) as copy:
        copy.write(payload)
    return len(frame)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def confirmed_anomalies(conn: psycopg.Connection, start: datetime, end: datetime
                        ) -> pd.DataFrame:
    """Points already scored as anomalies (excluded from training baselines)."""
    rows = conn.execute(
        "SELECT DISTINCT device_id, metric, ts FROM telemetry.scores"
        " WHERE is_anomaly AND ts >= %s AND ts < %s", (start, end)).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "metric", "ts"])


def faulted_readings(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT DISTINCT device_id, metric_id, ts FROM telemetry.data_faults"
        " WHERE ts >= %s AND ts < %s", (start, end)).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "metric_id", "ts"])


def labels_between(conn: psycopg.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT label_id, device_id, metrics, anomaly_type, start_ts, end_ts, magnitude"
        " FROM telemetry.anomaly_labels WHERE end_ts > %s AND start_ts < %s", (start, end)
    ).fetchall()
    return pd.DataFrame(rows, columns=["label_id", "device_id", "metrics", "anomaly_type",
                                       "start_ts", "end_ts", "magnitude"])


AlertKey = tuple[str, int, str]  # (kind, device_id, metric)


def alert_states(conn: psycopg.Connection, device_ids: np.ndarray
                 ) -> dict[AlertKey, tuple[dict[str, Any], int | None]]:
    """The alert machine's stored state and the alert row it belongs to, per key."""
    rows = conn.execute(
        "SELECT kind, device_id, metric, state, alert_id FROM telemetry.alert_states"
        " WHERE device_id = ANY(%s)", ([int(d) for d in device_ids],)).fetchall()
    return {(r[0], int(r[1]), r[2]): (r[3], r[4]) for r in rows}


def save_alert_state(conn: psycopg.Connection, key: AlertKey, state: dict[str, Any],
                     alert_id: int | None) -> None:
    conn.execute(
        "INSERT INTO telemetry.alert_states (kind, device_id, metric, state, alert_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, device_id, metric) DO UPDATE SET"
        " state = EXCLUDED.state, alert_id = EXCLUDED.alert_id, updated_at = now()",
        (*key, json.dumps(state, default=str), alert_id))


_REASONS = {
    "device": "the fused detector score reached its threshold",
    "quarantine": "many of this device's rows are being rejected (see telemetry.quarantine"
                  " for the rules they broke)",
}


def _severity(value: str) -> str:
    return value if value in ("low", "medium", "high", "critical") else "low"


def apply_transition(conn: psycopg.Connection, key: AlertKey, alert_id: int | None,
                     change: Any) -> int | None:
    """Write one machine transition to the alerts table.

    Only alerts that fire become rows: a pending episode lives in alert_states until it fires
    (or is cancelled without ever notifying anyone)."""
    kind = change.kind
    peak = None if pd.isna(change.peak_score) else float(change.peak_score)
    if kind == "opened":
        return None
    if kind == "fired":
        return int(conn.execute(
            "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
            " fired_at, last_seen_at, peak_score, peak_ts, reason) VALUES (%s, %s, %s, 'firing',"
            " %s, %s, %s, %s, %s, %s, %s) RETURNING alert_id",
            (*key, _severity(change.severity), change.opened_at, change.ts, change.ts, peak,
             change.ts, _REASONS.get(key[2], _REASONS["device"]))).fetchone()[0])
    if alert_id is None or kind == "cancelled":
        return None
    updates = {
        "escalated": "",
        "acknowledged": "acknowledged_at = %(ts)s, acknowledged_by = %(by)s,"
                        " ack_note = %(note)s, ",
        "resolved": "state = 'resolved', resolved_at = %(ts)s, resolved_by = %(by)s,"
                    " resolve_note = %(note)s, ",
    }[kind]
    conn.execute(
        f"UPDATE telemetry.alerts SET {updates}severity = telemetry.greatest_severity(severity,"
        " %(severity)s), last_seen_at = greatest(last_seen_at, %(ts)s),"
        " peak_score = greatest(peak_score, %(peak)s), updated_at = now()"
        " WHERE alert_id = %(id)s",
        {"ts": change.ts, "severity": _severity(change.severity), "by": change.by,
         "note": change.note, "peak": peak, "id": alert_id})
    return None if kind in ("resolved", "cancelled") else alert_id


def open_alert_count(conn: psycopg.Connection) -> int:
    return int(conn.execute(
        "SELECT count(*) FROM telemetry.alerts WHERE state IN ('pending', 'firing')"
    ).fetchone()[0])


def open_alerts_by_severity(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT severity, count(*) FROM telemetry.alerts WHERE state IN ('pending', 'firing')"
        " GROUP BY 1 ORDER BY array_position(ARRAY['critical','high','medium','low'], severity)"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


EVALUATION_COLUMNS = ("run_id", "detector", "anomaly_type", "seed", "days", "devices", "events",
                      "detected", "precision", "recall", "f1", "false_alarms_per_device_day",
                      "median_time_to_detect_s", "pointwise", "params")


def save_evaluation(conn: psycopg.Connection, rows: pd.DataFrame) -> int:
    """Store one backtest's rows (one per detector x anomaly type); a re-run id replaces."""
    frame = rows.reindex(columns=list(EVALUATION_COLUMNS))
    records = []
    for row in frame.itertuples(index=False):
        values = [None if _missing(v) else v for v in row]
        values[-2] = json.dumps(values[-2] or {}, default=str)  # pointwise
        values[-1] = json.dumps(values[-1] or {}, default=str)  # params
        records.append(values)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO telemetry.evaluations ({', '.join(EVALUATION_COLUMNS)}) VALUES"
            f" ({', '.join(['%s'] * len(EVALUATION_COLUMNS))})"
            " ON CONFLICT (run_id, detector, anomaly_type) DO UPDATE SET"
            " precision = EXCLUDED.precision, recall = EXCLUDED.recall, f1 = EXCLUDED.f1,"
            " false_alarms_per_device_day = EXCLUDED.false_alarms_per_device_day,"
            " median_time_to_detect_s = EXCLUDED.median_time_to_detect_s,"
            " events = EXCLUDED.events, detected = EXCLUDED.detected",
            records)
    return len(records)


def apply_gap_alerts(conn: psycopg.Connection, gaps: pd.DataFrame, device_ids: np.ndarray,
                     start: datetime, end: datetime) -> dict[str, int]:
    """Missing-data alerts (kind 'data', metric 'multi') from the window's silences.

    A silence that continues an open data alert extends it; one that ends inside the window
    resolves it at its end; an open data alert whose device reported at the window's start is
    resolved there. Re-scoring a window finds the same silences and adds nothing."""
    counts = {"opened": 0, "resolved": 0}
    open_rows = conn.execute(
        "SELECT device_id, alert_id FROM telemetry.alerts WHERE kind = 'data'"
        " AND metric = 'multi' AND state = 'firing' AND device_id = ANY(%s)",
        ([int(d) for d in device_ids],),
    ).fetchall()
    open_alerts = {int(d): int(a) for d, a in open_rows}
    hi = pd.Timestamp(end)
    by_device = {int(d): g.sort_values("start_ts") for d, g in gaps.groupby("device_id")}
    for device, alert_id in open_alerts.items():
        first = by_device.get(device)
        continues = first is not None and first["start_ts"].iloc[0] <= pd.Timestamp(start) \
            + pd.Timedelta(minutes=1)
        if not continues:
            _resolve_gap(conn, alert_id, start)
            counts["resolved"] += 1
    for device, group in by_device.items():
        for gap in group.itertuples(index=False):
            ends = gap.end_ts if pd.notna(gap.end_ts) and gap.end_ts < hi else None
            alert_id = open_alerts.pop(device, None)
            if alert_id is None:
                exists = conn.execute(
                    "SELECT 1 FROM telemetry.alerts WHERE kind = 'data' AND metric = 'multi'"
                    " AND device_id = %s AND opened_at = %s", (device, gap.start_ts)).fetchone()
                if exists:
                    continue
                alert_id = int(conn.execute(
                    "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity,"
                    " opened_at, fired_at, last_seen_at, peak_score, reason, detectors)"
                    " VALUES ('data', %s, 'multi', 'firing', 'medium', %s, %s, %s, %s, %s,"
                    " ARRAY['gaps']) RETURNING alert_id",
                    (device, gap.start_ts, gap.fired_ts, ends or hi, float(gap.peak_score),
                     "no readings from this device: longer silence than its reporting"
                     " interval allows")).fetchone()[0])
                counts["opened"] += 1
            else:
                conn.execute("UPDATE telemetry.alerts SET last_seen_at = greatest(last_seen_at,"
                             " %s), updated_at = now() WHERE alert_id = %s",
                             (ends or hi, alert_id))
            if ends is not None:
                _resolve_gap(conn, alert_id, ends)
                counts["resolved"] += 1
    return counts


def _resolve_gap(conn: psycopg.Connection, alert_id: int, when: datetime) -> None:
    conn.execute("UPDATE telemetry.alerts SET state = 'resolved', resolved_at = %s,"
                 " resolve_note = 'readings arrived again', updated_at = now()"
                 " WHERE alert_id = %s AND state = 'firing'", (when, alert_id))


def quarantined_per_device(conn: psycopg.Connection, start: datetime, end: datetime,
                           device_ids: np.ndarray) -> dict[int, int]:
    """Rows rejected per known device with timestamps in [start, end)."""
    rows = conn.execute(
        "SELECT device_id, count(*) FROM telemetry.quarantine WHERE ts >= %s AND ts < %s"
        " AND device_id = ANY(%s) GROUP BY 1", (start, end, [int(d) for d in device_ids])
    ).fetchall()
    return {int(d): int(n) for d, n in rows}


def has_models(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM telemetry.models)").fetchone()[0])


def trained_until(conn: psycopg.Connection) -> datetime | None:
    return conn.execute("SELECT max(train_end) FROM telemetry.models").fetchone()[0]


def acknowledge_row(conn: psycopg.Connection, alert_id: int, by: str, note: str | None,
                    when: datetime) -> None:
    """Acknowledge an alert the machine does not track (gap and quality alerts)."""
    conn.execute("UPDATE telemetry.alerts SET acknowledged_at = %s, acknowledged_by = %s,"
                 " ack_note = %s, updated_at = now() WHERE alert_id = %s",
                 (when, by, note, alert_id))


def resolve_row(conn: psycopg.Connection, alert_id: int, by: str, note: str | None,
                when: datetime) -> None:
    """Resolve an alert the machine does not track (gap and quality alerts)."""
    conn.execute("UPDATE telemetry.alerts SET state = 'resolved', resolved_at = %s,"
                 " resolved_by = %s, resolve_note = %s, updated_at = now() WHERE alert_id = %s",
                 (when, by, note, alert_id))


def alert_for_update(conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM telemetry.alerts WHERE alert_id = %s FOR UPDATE",
                           (alert_id,)).fetchone()


def alert_state(conn: psycopg.Connection, key: AlertKey) -> dict[str, Any] | None:
    row = conn.execute("SELECT state FROM telemetry.alert_states WHERE kind = %s"
                       " AND device_id = %s AND metric = %s", key).fetchone()
    return row[0] if row else None


def list_alerts(conn: psycopg.Connection, open_only: bool, limit: int) -> list[dict[str, Any]]:
    where = "WHERE state IN ('pending', 'firing')" if open_only else ""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT a.alert_id, a.kind, a.device_id, d.device_name, a.metric, a.state,"
            f" a.severity, a.opened_at, a.fired_at, a.resolved_at, a.peak_score,"
            f" a.acknowledged_by FROM telemetry.alerts a"
            f" LEFT JOIN telemetry.devices d USING (device_id) {where}"
            f" ORDER BY array_position(ARRAY['critical','high','medium','low'], a.severity),"
            f" a.opened_at DESC LIMIT %s", (limit,)).fetchall()
