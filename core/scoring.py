"""Train the detector suite from the database, score windows, and keep alerts up to date.

I/O around the pure suite in core/detection.py and the alert machine in detectors/alerts.py:
  train_models(start, end)          clean history -> one new model version per detector
  score_window(start, end, shard)   readings (+ history) -> scores table (replaced, so re-running
                                    a window changes nothing) -> alert machine -> alerts table
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from core import db, detection, detection_store, features, quality_store, readback, store
from core.settings import get_settings
from detectors import alerts as alert_machine
from detectors.evaluation import label_mask

log = logging.getLogger(__name__)
SCORE_STREAM = "score"
ALERT_POLICY = detection.DEFAULT_POLICY  # tuned on seed 1, reported on seed 2 (EVALUATION.md)


class NoModelsError(RuntimeError):
    """Scoring was asked for before any model was trained."""


@dataclass
class TrainSummary:
    train_start: datetime
    train_end: datetime
    rows: int
    excluded: int
    versions: dict[str, int] = field(default_factory=dict)
    reused: bool = False


@dataclass
class ScoreSummary:
    start: datetime
    end: datetime
    shard: int
    shards: int
    points: int = 0
    anomalies: int = 0
    recorded: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    alerts_opened: int = 0
    alerts_fired: int = 0
    alerts_resolved: int = 0
    data_alerts_opened: int = 0
    open_alerts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _exclusions(readings: pd.DataFrame, labels: pd.DataFrame, confirmed: pd.DataFrame,
                faulted: pd.DataFrame) -> np.ndarray:
    """Readings a baseline must not learn from: labeled anomalies, confirmed anomalies, rows
    the simulator faulted (late, duplicated, out of order) and rows of batches that failed an
    error-severity expectation."""
    named = features.with_metric_names(readings)[["device_id", "metric_id", "metric", "ts"]]
    mask = (label_mask(named[["device_id", "metric", "ts"]], labels) if not labels.empty
            else np.zeros(len(named), bool))
    if not confirmed.empty:
        confirmed = confirmed.assign(ts=pd.to_datetime(confirmed["ts"], utc=True), hit=True)
        hit = named.merge(confirmed, on=["device_id", "metric", "ts"], how="left")["hit"]
        mask |= hit.notna().to_numpy()
    if not faulted.empty:
        faulted = faulted.assign(ts=pd.to_datetime(faulted["ts"], utc=True), hit=True)
        hit = named.merge(faulted, on=["device_id", "metric_id", "ts"], how="left")["hit"]
        mask |= hit.notna().to_numpy()
    return mask


def train_models(train_start: datetime, train_end: datetime, reason: str = "scheduled",
                 params: detection.SuiteParams | None = None, force: bool = False
                 ) -> TrainSummary:
    """Fit every detector on [train_start, train_end) minus anomalies and faulted rows, and
    register new versions. The same window, parameters and input again reuse the current
    versions (re-running a training run changes nothing) unless `force`."""
    params = params or detection.SuiteParams()
    with db.connect() as conn:
        readings = readback.read_readings(train_start, train_end, conn=conn)
        devices = store.devices(conn)
        labels = detection_store.labels_between(conn, train_start, train_end)
        confirmed = detection_store.confirmed_anomalies(conn, train_start, train_end)
        faulted = pd.concat([f for f in (
            detection_store.faulted_readings(conn, train_start, train_end),
            quality_store.failed_batch_readings(conn, train_start, train_end)) if not f.empty
        ] or [pd.DataFrame(columns=["device_id", "metric_id", "ts"])],
            ignore_index=True).drop_duplicates()
        current = detection_store.latest_models(conn)
    if readings.empty:
        raise ValueError(f"no readings between {train_start} and {train_end} to train on")
    fingerprint = {"input_rows": len(readings), "params": params.model_dump()}
    if not force and current and all(
        m["train_start"] == train_start and m["train_end"] == train_end
        and m["metrics"].get("input_rows") == len(readings) and m["params"] == fingerprint["params"]
        for m in current.values()
    ):
        first = next(iter(current.values()))
        return TrainSummary(train_start, train_end, int(first["row_count"]),
                            int(first["metrics"].get("excluded_rows", 0)),
                            {name: int(m["version"]) for name, m in current.items()}, reused=True)
    excluded = _exclusions(readings, labels, confirmed, faulted)
    clean = readings[~excluded].reset_index(drop=True)
    suite = detection.fit_suite(clean, devices, params)
    summary = TrainSummary(train_start, train_end, len(clean), int(excluded.sum()))
    with db.transaction() as conn:
        for name in suite.detectors:
            _, version = detection_store.save_model(
                conn, name, params.model_dump(), train_start, train_end, len(clean),
                suite.state(name), {"excluded_rows": int(excluded.sum()),
                                    "input_rows": len(readings)}, reason)
            summary.versions[name] = version
    log.info("trained %s on %s rows (%s excluded)", summary.versions, len(clean),
             summary.excluded)
    return summary


def load_suite(conn: psycopg.Connection) -> detection.Suite:
    models = detection_store.latest_models(conn)
    if not models:
        raise NoModelsError("no trained models: run `telemetry run train` first")
    params = detection.SuiteParams(**next(iter(models.values()))["params"])
    return detection.Suite.from_states(
        params, {name: m["state"] for name, m in models.items()},
        {name: int(m["model_id"]) for name, m in models.items()})


def _records(scored: pd.DataFrame, suite: detection.Suite, floor: float) -> pd.DataFrame:
    """Rows for the scores table: the fused score of every point at or above the floor, with
    each detector's score and the PCA metric shares as contributions."""
    keep = scored[scored["score"].to_numpy() >= floor]
    if keep.empty:
        return pd.DataFrame()
    detector_cols = [*detection.UNIVARIATE, "seasonal_z", "pca_score"]
    share_cols = [c for c in keep.columns if c.startswith("pca_share_")]
    parts = keep[detector_cols + share_cols].round(4)
    # One JSON object per row, serialized by pandas' C writer (NaN -> null).
    contributions = parts.to_json(orient="records", lines=True).splitlines()
    return pd.DataFrame({
        "detector": "fused",
        "device_id": keep["device_id"].to_numpy(),
        "metric": keep["metric"].to_numpy(),
        "ts": keep["ts"].array,  # not to_numpy: that boxes every tz-aware timestamp
        "model_id": max(suite.model_ids.values(), default=None),
        "value": keep["value"].to_numpy(),
        "baseline_mean": keep["baseline_mean"].to_numpy(),
        "baseline_std": keep["baseline_std"].to_numpy(),
        "score": keep["score"].to_numpy(),
        "is_anomaly": keep["score"].to_numpy() >= 1.0,
        "severity": keep["severity"].to_numpy(),
        "reason": (keep["reason"] + " " + keep["fired_by"]).str.strip().to_numpy(),
        "contributions": contributions,
    })


def score_window(start: datetime, end: datetime, shard: int = 0, shards: int = 1,
                 policy: alert_machine.AlertPolicy | None = None) -> ScoreSummary:
    """Score readings in [start, end) for this shard's devices; idempotent per window."""
    policy = policy or ALERT_POLICY
    summary = ScoreSummary(start, end, shard, shards)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[stage] = round(now - clock, 3)
        clock = now

    with db.connect() as conn:
        suite = load_suite(conn)
        devices = store.devices(conn)
        interval = int(devices["interval_seconds"].max()) if len(devices) else 10
        history = timedelta(seconds=interval * (suite.params.rolling_window + 5))
        readings = readback.read_readings(start - history, end, shard=shard, shards=shards,
                                          conn=conn)
    shard_devices = devices[devices["device_id"] % shards == shard]
    lap("read")
    scored = detection.score_suite(suite, readings, devices, start, end)
    lap("detect")
    summary.points = len(scored)
    if not scored.empty:
        summary.anomalies = int((scored["score"] >= 1.0).sum())
        summary.by_severity = {k: int(v) for k, v in scored.loc[
            scored["severity"] != "none", "severity"].value_counts().items()}
    records = _records(scored, suite, get_settings().score_record_floor)
    with db.transaction() as conn:
        summary.recorded = detection_store.replace_scores(
            conn, start, end, shard_devices["device_id"].to_numpy(), records)
        lap("write_scores")
        _advance_alerts(conn, scored, shard_devices["device_id"].to_numpy(), policy, summary)
        _quarantine_alerts(conn, shard_devices, start, end, policy, summary)
        gaps = detection.detect_gaps(readings, shard_devices, start, end, suite.params)
        data = detection_store.apply_gap_alerts(
            conn, gaps, shard_devices["device_id"].to_numpy(), start, end)
        summary.data_alerts_opened += data["opened"]
        summary.open_alerts = detection_store.open_alert_count(conn)
        lap("alerts")
        if shards == 1:  # sharded runs: the caller marks the window once every shard is done
            store.advance_watermark(conn, SCORE_STREAM, end)
    return summary


def mark_scored(end: datetime) -> None:
    """All shards of a window are scored: move the scoring watermark."""
    with db.transaction() as conn:
        store.advance_watermark(conn, SCORE_STREAM, end)


def _quarantine_alerts(conn: psycopg.Connection, devices: pd.DataFrame, start: datetime,
                       end: datetime, policy: alert_machine.AlertPolicy,
                       summary: ScoreSummary) -> None:
    """Data alerts for devices whose rows are being rejected: one point per device and window,
    scored as the rejected share of its expected readings over the configured share (1.0 = at
    the limit), through the same alert machine (so hysteresis and cooldown apply)."""
    limit = get_settings().quarantine_alert_share
    rejected = detection_store.quarantined_per_device(
        conn, start, end, devices["device_id"].to_numpy())
    seconds = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds()
    expected = seconds / devices["interval_seconds"].to_numpy() * len(features.PCA_METRICS)
    share = np.array([rejected.get(int(d), 0) for d in devices["device_id"]]) / expected
    frame = pd.DataFrame({"alert_kind": "data", "device_id": devices["device_id"].to_numpy(),
                          "metric": "quarantine", "ts": pd.Timestamp(end) - pd.Timedelta(1, "us"),
                          "score": share / limit, "severity": "medium"})
    _apply_machine(conn, frame, devices["device_id"].to_numpy(), policy, summary)


def _advance_alerts(conn: psycopg.Connection, scored: pd.DataFrame, device_ids: np.ndarray,
                    policy: alert_machine.AlertPolicy, summary: ScoreSummary) -> None:
    """Feed the window's fused scores to the alert machine and persist what changed."""
    if scored.empty:
        return
    frame = scored[["device_id", "metric", "ts", "score", "severity"]].assign(
        alert_kind="device")  # keeps ts as datetime64 (to_numpy would box every timestamp)
    counts = _apply_machine(conn, frame, device_ids, policy, summary)
    summary.alerts_opened += counts.get("opened", 0)
    summary.alerts_fired += counts.get("fired", 0)
    summary.alerts_resolved += counts.get("resolved", 0)


def _apply_machine(conn: psycopg.Connection, frame: pd.DataFrame, device_ids: np.ndarray,
                   policy: alert_machine.AlertPolicy, summary: ScoreSummary) -> dict[str, int]:
    """Advance the stored per-key states with `frame` (alert_kind, device_id, metric, ts,
    score, severity) and write the transitions to the alerts table."""
    keys = ["alert_kind", "device_id", "metric"]
    kinds = set(frame["alert_kind"])
    stored = {k: v for k, v in detection_store.alert_states(conn, device_ids).items()
              if k[0] in kinds}
    states = {key: alert_machine.AlertState.from_dict(s) for key, (s, _) in stored.items()}
    alert_ids = {key: alert_id for key, (_, alert_id) in stored.items()}
    new_states, transitions = alert_machine.advance_many(states, frame, policy, keys=keys)
    # Pipelined: statements go out without a round trip each (only a new alert's id is waited
    # for), which was most of the alert stage's database time.
    with conn.pipeline():
        for row in transitions.itertuples(index=False):
            key = (row.alert_kind, int(row.device_id), row.metric)
            alert_ids[key] = detection_store.apply_transition(conn, key, alert_ids.get(key), row)
        for key, state in new_states.items():
            if states.get(key) != state:
                detection_store.save_alert_state(conn, key, state.to_dict(),
                                                 alert_ids.get(key))
    if transitions.empty:
        return {}
    if "data" in kinds:
        summary.data_alerts_opened += int((transitions["kind"] == "fired").sum())
    return {k: int(v) for k, v in transitions["kind"].value_counts().items()}

def has_models() -> bool:
    with db.connect() as conn:
        return detection_store.has_models(conn)


def trained_until() -> datetime | None:
    """The end of the newest models' training window (scoring starts there at first)."""
    with db.connect() as conn:
        return detection_store.trained_until(conn)
