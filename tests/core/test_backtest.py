"""The backtest end to end on tiny fleets (pure: no database). Quality numbers are reported in
docs/EVALUATION.md, never asserted here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.backtest import DETECTORS, EVALUATION_COLUMNS, loadable, run_backtest
from core.detection import SuiteParams, detect_gaps
from detectors.gaps import GapDetector
from simulator import AnomalyConfig, FaultConfig, FleetConfig, build_fleet

TINY = {"sites": 1, "zones_per_site": 1, "devices_per_zone": 2}


def _only(kind: str, rate: float, seed: int = 5) -> FleetConfig:
    return FleetConfig(seed=seed, anomalies=AnomalyConfig.only(kind, rate),
                       faults=FaultConfig.disabled(), **TINY)


@pytest.fixture(scope="module")
def default_run():
    return run_backtest(FleetConfig(seed=11, **TINY), train_days=2, test_days=1)


def test_runs_end_to_end_with_the_evaluations_columns(default_run) -> None:
    table = default_run.table
    assert tuple(table.columns) == EVALUATION_COLUMNS
    assert set(table["detector"]) == set(DETECTORS)
    all_rows = table[table["anomaly_type"] == "all"]
    assert len(all_rows) == len(DETECTORS)
    assert (all_rows["events"] == default_run.metadata["labels"]).all()
    assert table["run_id"].nunique() == 1
    assert (table["seed"] == 11).all() and (table["devices"] == 2).all()
    assert isinstance(table["params"].iloc[0], dict)
    assert {"precision", "recall", "f1"} <= set(all_rows["pointwise"].iloc[0])
    assert set(default_run.breakdown) == {"anomaly_type", "site"}


def test_same_seed_same_result(default_run) -> None:
    again = run_backtest(FleetConfig(seed=11, **TINY), train_days=2, test_days=1)
    pd.testing.assert_frame_equal(default_run.table, again.table)


def test_planted_spikes_are_all_found() -> None:
    result = run_backtest(_only("spike", 6.0), train_days=2, test_days=1)
    row = result.table.set_index(["detector", "anomaly_type"]).loc[("fused", "spike")]
    assert row["events"] >= 5
    assert row["recall"] == 1.0


def test_static_baseline_finds_threshold_breaches() -> None:
    result = run_backtest(_only("threshold_breach", 4.0), train_days=2, test_days=1)
    row = result.table.set_index(["detector", "anomaly_type"]).loc[
        ("baseline_static", "threshold_breach")]
    assert row["events"] >= 3
    assert row["recall"] == 1.0


def test_dropouts_are_credited_to_gap_alerts() -> None:
    result = run_backtest(_only("dropout", 4.0), train_days=2, test_days=1)
    table = result.table.set_index(["detector", "anomaly_type"])
    assert table.loc[("gaps", "dropout"), "events"] >= 3
    assert table.loc[("gaps", "dropout"), "recall"] == 1.0
    assert table.loc[("fused", "dropout"), "recall"] == 1.0


def test_loadable_drops_what_the_loader_quarantines() -> None:
    ts = pd.Timestamp("2026-01-05T00:00:00Z")
    rows = pd.DataFrame({
        "device_id": [1, 1, 900123, 1, 1, 1],
        "metric_id": [1, 1, 1, 3, 2, 2],
        "ts": [ts, ts, ts, ts, ts + pd.Timedelta(hours=2), ts],
        "value": [500.0, 510.0, 500.0, 100.5, 21.0, np.nan],
        "arrival_ts": [ts] * 6,
    })
    kept = loadable(rows, n_devices=2)
    assert kept["value"].tolist() == [500.0]  # first of the duplicate key only


def test_gap_detector_and_device_gaps() -> None:
    t = pd.date_range("2026-01-05", periods=100, freq="10s", tz="UTC")
    stamps = t.delete(range(40, 60))  # 200 s silence
    det = GapDetector(factor=3).fit(stamps)
    assert det.interval_ == 10.0
    found = det.gaps(stamps)
    assert len(found) == 1
    assert found["start_ts"].iloc[0] == t[39] + pd.Timedelta(seconds=30)
    assert found["end_ts"].iloc[0] == t[60]
    assert det.predict(stamps).sum() == 1

    devices = build_fleet(FleetConfig(**TINY))
    readings = pd.DataFrame({"device_id": 1, "metric_id": 1, "ts": stamps, "value": 1.0})
    start, end = t[0].to_pydatetime(), (t[-1] + pd.Timedelta(seconds=10)).to_pydatetime()
    gaps = detect_gaps(readings, devices, start, end, SuiteParams())
    assert gaps.groupby("device_id").size().to_dict() == {1: 1, 2: 1}  # device 2 never reported
    assert set(gaps["metric"]) == {"multi"}


def test_run_backtest_accepts_a_start() -> None:
    cfg = FleetConfig(seed=4, anomalies=AnomalyConfig.disabled(), **TINY)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    result = run_backtest(cfg, train_days=1, test_days=0.5, start=start,
                          tolerance=timedelta(minutes=1))
    assert result.metadata["params"]["test_start"] == pd.Timestamp(start + timedelta(days=1)
                                                                   ).isoformat()
    assert (result.table["events"] == 0).all()
