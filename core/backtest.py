"""The honest backtest behind `telemetry evaluate` (pure: simulator + detectors, no DB, no Prefect).

    run_backtest(config, train_days, test_days, params, policy, tolerance) -> BacktestResult

1. History: the fleet simulated (anomalies and faults on) for `train_days`, cleaned the way the
   loader cleans (see `loadable`), minus every reading inside a labeled anomaly, the way the
   production trainer drops labeled, quarantined and confirmed-anomalous readings. The suite is
   fitted once on it (core.detection.fit_suite).
2. Test range: the `test_days` after the history, simulated with anomalies and faults, cleaned
   the same way (NaN values, unknown devices, values outside the hard limits and timestamps more
   than 300 s after arrival are what the loader quarantines; duplicate keys keep the first row),
   and scored day by day with `history` of readings before each day, as production scores
   windows (core.detection.score_suite).
3. Alerts: per (device, metric) key the alert state machine (detectors.alerts.episodes) over
   each detector's normalized score, keeping alerts that fired. The PCA detector's alerts are
   device-level (metric "multi"); missing data is found by the gap detector (device-level,
   metric "multi", core.detection.detect_gaps). Detectors evaluated:
      fused            the fused score under the policy, plus the gap alerts (the product)
      rolling_z, stuck, seasonal_z, pca, gaps     each alone, same policy
      baseline_z2.5    rolling |z| >= 2.5, alert on any point (the classic rule)
      baseline_static  value > static limit (co2 1000, temperature 30, humidity 80), any point
   Baselines use the classic rule: open on one point, close on the first point back under the
   line, no count, duration or cooldown.
4. Scores: detectors.evaluation.event_scores per detector against the labels (matching by
   device, metric or "multi", and time within `tolerance`; an alert counts from its fired_ts).
   Alerts carry no anomaly type, so per-type rows report the type's recall, the detector's
   OVERALL precision, and f1 = harmonic mean of those two (see docs/EVALUATION.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core import features
from core.detection import (
    DEFAULT_POLICY,
    SuiteParams,
    detect_gaps,
    fit_suite,
    policy_dict,
    score_suite,
)
from detectors.alerts import AlertPolicy, episodes
from detectors.evaluation import (
    error_breakdown,
    event_scores,
    label_mask,
    match_events,
    pointwise_scores,
)
from simulator import FleetConfig, build_fleet, simulate
from simulator.anomalies import ANOMALY_TYPES, MAX_DURATION_S
from simulator.faults import MAX_LATENESS_NS, UNKNOWN_DEVICE_BASE
from simulator.metrics import METRICS

TOLERANCE = timedelta(minutes=5)
FUTURE_TOLERANCE_S = 300.0
DETECTORS = ("fused", "rolling_z", "stuck", "seasonal_z", "pca", "gaps",
             "baseline_z2.5", "baseline_static")
SINGLE = ("rolling_z", "stuck", "seasonal_z", "pca")
BASELINE_Z = 2.5
# The classic rule: alert while above the line (resolve just under the fire threshold).
CLASSIC_POLICY = AlertPolicy(fire_threshold=1.0, resolve_threshold=1.0 - 1e-9)
EVALUATION_COLUMNS = ("run_id", "detector", "anomaly_type", "seed", "days", "devices", "events",
                      "detected", "precision", "recall", "f1", "false_alarms_per_device_day",
                      "median_time_to_detect_s", "pointwise", "params")
ALERT_COLUMNS = ("device_id", "metric", "start_ts", "fired_ts", "end_ts", "peak_score")
_KEEP = ("device_id", "metric", "ts", "value", "rolling_z", "stuck", "seasonal_z", "pca_score",
         "score", "severity")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class BacktestResult:
    table: pd.DataFrame  # EVALUATION_COLUMNS, one row per detector x anomaly_type (+ "all")
    metadata: dict[str, Any]
    matched: pd.DataFrame  # labels x detector: detected, time_to_detect (fused and others)
    breakdown: dict[str, pd.DataFrame]  # error breakdown of the fused detector: type, site
    alerts: dict[str, pd.DataFrame] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Data: what the readings table would hold.

def loadable(readings: pd.DataFrame, n_devices: int,
             future_tolerance_s: float = FUTURE_TOLERANCE_S) -> pd.DataFrame:
    """Drop the rows the loader quarantines (NaN value, unknown device, outside the hard
    limits, ts more than `future_tolerance_s` after arrival) and repeated keys (first kept)."""
    value = readings["value"].to_numpy(np.float64)
    metric = readings["metric_id"].to_numpy(np.int64)
    device = readings["device_id"].to_numpy(np.int64)
    lo = np.full(max(m.metric_id for m in METRICS) + 1, np.nan)
    hi = lo.copy()
    for m in METRICS:
        lo[m.metric_id], hi[m.metric_id] = m.hard_min, m.hard_max
    ahead = (readings["ts"] - readings["arrival_ts"]).dt.total_seconds().to_numpy()
    with np.errstate(invalid="ignore"):
        ok = (~np.isnan(value) & (device >= 1) & (device <= n_devices)
              & (device < UNKNOWN_DEVICE_BASE) & (value >= lo[metric]) & (value <= hi[metric])
              & (ahead <= future_tolerance_s))
    kept = readings.loc[ok]
    kept = kept.drop_duplicates(["device_id", "metric_id", "ts"], keep="first")
    return kept.reset_index(drop=True)


@dataclass
class RangeData:
    readings: pd.DataFrame  # loadable rows with ts in [start, end)
    labels: pd.DataFrame  # every label that may overlap [start, end)


def simulate_range(config: FleetConfig, start: datetime, end: datetime) -> RangeData:
    """Readings with ts in [start, end) as the readings table would hold them, and labels.

    Simulated by arrival from MAX_DURATION before `start` (so anomalies running into the range
    are labeled) to the latest arrival of a reading stamped before `end`."""
    lead = pd.Timedelta(seconds=MAX_DURATION_S)
    lag = pd.Timedelta(MAX_LATENESS_NS, unit="ns")
    lo = max(pd.Timestamp(start) - lead, pd.Timestamp(config.installed_at))
    batch = simulate(config, lo.to_pydatetime(), (pd.Timestamp(end) + lag).to_pydatetime())
    r = batch.readings
    r = r[(r["ts"] >= pd.Timestamp(start)) & (r["ts"] < pd.Timestamp(end))]
    readings = loadable(r, config.n_devices)
    readings = readings[["device_id", "metric_id", "ts", "value"]]
    return RangeData(readings.reset_index(drop=True), batch.labels.reset_index(drop=True))


def training_readings(data: RangeData) -> pd.DataFrame:
    """History minus every reading inside a labeled anomaly (as the production trainer)."""
    named = features.with_metric_names(data.readings)
    inside = label_mask(named[["device_id", "metric", "ts"]], data.labels)
    return data.readings.loc[~inside].reset_index(drop=True)


def score_range(suite: Any, readings: pd.DataFrame, devices: pd.DataFrame, start: datetime,
                end: datetime, chunk: timedelta = timedelta(days=1),
                history: timedelta | None = None, progress: Progress | None = None
                ) -> pd.DataFrame:
    """score_suite over [start, end) in chunks, each with `history` of readings before it."""
    params: SuiteParams = suite.params
    interval = float(devices["interval_seconds"].iloc[0]) if len(devices) else 10.0
    if history is None:
        history = timedelta(seconds=max(2 * params.rolling_window * interval, 3600.0))
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    edges = [*pd.date_range(lo, hi, freq=pd.Timedelta(chunk), inclusive="left"), hi]
    ts = readings["ts"]
    parts = []
    total = len(edges) - 1
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        window = readings[(ts >= a - pd.Timedelta(history)) & (ts < b)]
        scored = score_suite(suite, window, devices, a.to_pydatetime(), b.to_pydatetime())
        parts.append(_compact(scored))
        if progress:
            progress("score", i + 1, total)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["device_id", "metric", "ts"], ignore_index=True, kind="stable")


def _compact(scored: pd.DataFrame) -> pd.DataFrame:
    out = scored.loc[:, [c for c in _KEEP if c in scored.columns]].copy()
    for c in ("rolling_z", "stuck", "seasonal_z", "pca_score", "score"):
        out[c] = out[c].astype(np.float32)
    out["metric"] = out["metric"].astype("category")
    out["severity"] = out["severity"].astype("category")
    return out


# ---------------------------------------------------------------------------------------------
# Alerts.

def key_alerts(scored: pd.DataFrame, column: str | np.ndarray, policy: AlertPolicy,
               metric: str | None = None, severity: bool = False) -> pd.DataFrame:
    """Fired alerts per (device, metric) key of `scored` (sorted by device, metric, ts) for one
    score column; `metric` overrides the alerts' metric (e.g. "multi")."""
    score = (scored[column] if isinstance(column, str) else pd.Series(column)).to_numpy(
        np.float64)
    dev = scored["device_id"].to_numpy()
    met = scored["metric"].astype(str).to_numpy()
    ts = scored["ts"]
    sev = scored["severity"].astype(object).to_numpy() if severity else None
    cut = np.flatnonzero((dev[1:] != dev[:-1]) | (met[1:] != met[:-1])) + 1
    bounds = np.concatenate(([0], cut, [len(scored)]))
    parts = []
    for a, b in itertools.pairwise(bounds):
        s = score[a:b]
        if not (s >= policy.fire_threshold).any():
            continue
        ep = episodes(ts.iloc[a:b], s, None if sev is None else sev[a:b], policy)
        ep = ep[ep["fired_ts"].notna()]
        if ep.empty:
            continue
        ep = ep.assign(device_id=int(dev[a]), metric=metric or met[a])
        parts.append(ep)
    if not parts:
        return _empty_alerts()
    return pd.concat(parts, ignore_index=True).loc[:, list(ALERT_COLUMNS)]


def _empty_alerts() -> pd.DataFrame:
    empty_ts = pd.to_datetime(pd.Series([], dtype="datetime64[ns]"), utc=True)
    return pd.DataFrame({"device_id": pd.Series([], dtype=np.int64),
                         "metric": pd.Series([], dtype=object), "start_ts": empty_ts,
                         "fired_ts": empty_ts, "end_ts": empty_ts,
                         "peak_score": pd.Series([], dtype=np.float64)})


def static_scores(scored: pd.DataFrame, limits: dict[str, float]) -> np.ndarray:
    """value / limit for metrics with a limit (NaN otherwise): >= 1 is a breach... at the
    limit itself; the rule is value > limit, so exact equality is nudged below 1."""
    metric = scored["metric"].astype(str).to_numpy()
    value = scored["value"].to_numpy(np.float64)
    limit = pd.Series(metric).map(limits).to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        ratio = value / limit
    return np.where(value > limit, np.maximum(ratio, 1.0), np.minimum(ratio, 1.0 - 1e-9))


def all_alerts(scored: pd.DataFrame, gaps: pd.DataFrame, params: SuiteParams,
               policy: AlertPolicy) -> dict[str, pd.DataFrame]:
    """Fired alerts per evaluated detector (see the module docstring)."""
    out: dict[str, pd.DataFrame] = {}
    fused = key_alerts(scored, "score", policy, severity=True)
    out["fused"] = pd.concat([fused, gaps.loc[:, list(ALERT_COLUMNS)]], ignore_index=True)
    for name in ("rolling_z", "stuck", "seasonal_z"):
        out[name] = key_alerts(scored, name, policy)
    first = scored[scored["metric"].astype(str) == "co2"]  # PCA: one score per device and ts
    out["pca"] = key_alerts(first, "pca_score", policy, metric="multi")
    out["gaps"] = gaps.loc[:, list(ALERT_COLUMNS)]
    raw_z = scored["rolling_z"].to_numpy(np.float64) * params.rolling_threshold
    out["baseline_z2.5"] = key_alerts(scored, raw_z / BASELINE_Z, CLASSIC_POLICY)
    out["baseline_static"] = key_alerts(scored, static_scores(scored, params.limits),
                                        CLASSIC_POLICY)
    return out


def point_predictions(scored: pd.DataFrame, params: SuiteParams) -> dict[str, np.ndarray]:
    """Per reading, 0/1 of each detector (for point-wise reference scores)."""
    with np.errstate(invalid="ignore"):
        preds = {name: scored[col].to_numpy(np.float64) >= 1.0 for name, col in
                 (("fused", "score"), ("rolling_z", "rolling_z"), ("stuck", "stuck"),
                  ("seasonal_z", "seasonal_z"), ("pca", "pca_score"))}
        raw_z = scored["rolling_z"].to_numpy(np.float64) * params.rolling_threshold
        preds["baseline_z2.5"] = raw_z >= BASELINE_Z
        preds["baseline_static"] = static_scores(scored, params.limits) >= 1.0
    return preds


# ---------------------------------------------------------------------------------------------
# Evaluation.

def _num(x: Any) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def _hm(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def evaluate(scored: pd.DataFrame, alerts: dict[str, pd.DataFrame], labels: pd.DataFrame,
             devices: pd.DataFrame, start: datetime, end: datetime, tolerance: timedelta,
             params: SuiteParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, matched): scores has one row per detector x anomaly_type ("all" overall) with
    events, detected, precision, recall, f1, false_alarms_per_device_day,
    median_time_to_detect_s, pointwise; matched is match_events per label and detector."""
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    in_range = ((labels["start_ts"] < hi) & (labels["end_ts"] > lo)).to_numpy()
    labels = labels.loc[in_range].reset_index(drop=True)
    preds = point_predictions(scored, params)
    truth = label_mask(scored[["device_id", "metric", "ts"]], labels)
    type_masks = {kind: label_mask(scored[["device_id", "metric", "ts"]],
                                   labels[labels["anomaly_type"] == kind])
                  for kind in sorted(labels["anomaly_type"].unique())}
    rows, matched_parts = [], []
    n_dev = len(devices)
    for name in DETECTORS:
        al = alerts[name]
        table = event_scores(labels, al, tolerance, lo, hi, n_dev, start_col="fired_ts")
        m = match_events(labels, al, tolerance, hi, start_col="fired_ts")
        matched_parts.append(m.assign(detector=name))
        overall = table.loc["overall"]
        precision = _num(overall["precision"])
        pw: dict[str, Any] | None = None
        if name in preds:
            ps = pointwise_scores(truth, preds[name])
            pw = {"precision": _num(ps.precision), "recall": _num(ps.recall), "f1": _num(ps.f1)}
        for kind in [*ANOMALY_TYPES, "all"]:
            key = "overall" if kind == "all" else kind
            if key not in table.index:
                continue
            row = table.loc[key]
            recall = _num(row["recall"])
            ttd = row["median_time_to_detect"]
            point = pw
            if kind != "all" and name in preds:
                mask = type_masks[kind]
                point = {"recall": _num(pointwise_scores(mask[mask], preds[name][mask]).recall)
                         if mask.any() else None}
            rows.append({
                "detector": name, "anomaly_type": kind,
                "events": int(row["n_labels"]), "detected": int(row["n_detected"]),
                "precision": precision, "recall": recall,
                "f1": _num(overall["f1"]) if kind == "all" else _hm(precision, recall),
                "false_alarms_per_device_day": _num(overall["false_alarms_per_device_day"])
                if kind == "all" else None,
                "median_time_to_detect_s": None if pd.isna(ttd) else
                float(pd.Timedelta(ttd).total_seconds()),
                "pointwise": point,
            })
    return pd.DataFrame(rows), pd.concat(matched_parts, ignore_index=True)


def _run_id(meta: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


def run_backtest(config: FleetConfig, train_days: float = 7.0, test_days: float = 7.0,
                 params: SuiteParams | None = None, policy: AlertPolicy | None = None,
                 tolerance: timedelta = TOLERANCE, start: datetime | None = None,
                 progress: Progress | None = None, keep_alerts: bool = False,
                 run_id: str | None = None) -> BacktestResult:
    """Fit on `train_days` of history, score and evaluate the next `test_days` (see module)."""
    params = params or SuiteParams()
    policy = policy or DEFAULT_POLICY
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    devices = build_fleet(config)
    t0 = pd.Timestamp(start or config.installed_at)
    t1 = t0 + pd.Timedelta(days=train_days)
    t2 = t1 + pd.Timedelta(days=test_days)
    step = (lambda s: progress(s, 0, 1)) if progress else (lambda s: None)
    step("simulate history")
    history = simulate_range(config, t0.to_pydatetime(), t1.to_pydatetime())
    train = training_readings(history)
    lap("simulate_history")
    step("fit")
    suite = fit_suite(train, devices, params)
    lap("fit")
    step("simulate test")
    interval = config.interval_seconds
    lead = pd.Timedelta(seconds=max(2 * params.rolling_window * interval, 3600))
    test = simulate_range(config, (t1 - lead).to_pydatetime(), t2.to_pydatetime())
    lap("simulate_test")
    scored = score_range(suite, test.readings, devices, t1.to_pydatetime(), t2.to_pydatetime(),
                         history=lead.to_pytimedelta(), progress=progress)
    lap("score")
    step("alerts")
    test_rows = test.readings[test.readings["ts"] >= t1]
    gaps = detect_gaps(test_rows, devices, t1.to_pydatetime(), t2.to_pydatetime(), params)
    alerts = all_alerts(scored, gaps, params, policy)
    lap("alerts")
    step("evaluate")
    scores, matched = evaluate(scored, alerts, test.labels, devices, t1.to_pydatetime(),
                               t2.to_pydatetime(), tolerance, params)
    lap("evaluate")

    fused = matched[matched["detector"] == "fused"].merge(
        devices[["device_id", "site"]], on="device_id", how="left")
    breakdown = {"anomaly_type": error_breakdown(fused, "anomaly_type"),
                 "site": error_breakdown(fused, "site")}
    param_doc = {"suite": params.model_dump(), "policy": policy_dict(policy),
                 "tolerance_s": pd.Timedelta(tolerance).total_seconds(),
                 "train_days": train_days, "train_start": t0.isoformat(),
                 "test_start": t1.isoformat(), "test_end": t2.isoformat(),
                 "fleet": {"sites": config.sites, "zones_per_site": config.zones_per_site,
                           "devices_per_zone": config.devices_per_zone,
                           "interval_seconds": config.interval_seconds}}
    meta = {"seed": config.seed, "days": float(test_days), "devices": config.n_devices,
            "params": param_doc}
    rid = run_id or _run_id(meta)
    scores.insert(0, "run_id", rid)
    scores["seed"] = config.seed
    scores["days"] = float(test_days)
    scores["devices"] = config.n_devices
    scores["params"] = [param_doc] * len(scores)
    table = scores.loc[:, list(EVALUATION_COLUMNS)]
    meta |= {"run_id": rid, "train_rows": len(train), "test_rows": len(scored),
             "labels": int(((test.labels["start_ts"] < t2) & (test.labels["end_ts"] > t1)).sum()),
             "timings_s": timings}
    return BacktestResult(table=table, metadata=meta, matched=matched, breakdown=breakdown,
                          alerts=alerts if keep_alerts else {}, timings=timings)
