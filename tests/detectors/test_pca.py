"""PCADetector on simulated fleets: ventilation failures found and blamed on the right metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from detectors import PCADetector, wide_readings
from simulator import AnomalyConfig, FleetConfig, simulate, simulate_clean

METRICS = ["co2", "temperature", "humidity", "occupancy"]
CFG = FleetConfig(
    seed=5,
    sites=1,
    zones_per_site=1,
    devices_per_zone=3,
    anomalies=AnomalyConfig.only("ventilation_failure", 4.0),
)


@pytest.fixture(scope="module")
def fleet() -> tuple[PCADetector, pd.DataFrame, pd.DataFrame]:
    train = wide_readings(
        simulate_clean(
            CFG, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC)
        ).readings
    ).dropna()
    batch = simulate(CFG, datetime(2026, 1, 8, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))
    test = wide_readings(batch.readings)
    test = test[test["device_id"] <= CFG.n_devices].reset_index(drop=True)
    det = PCADetector().fit(train[METRICS], groups=train["device_id"])
    return det, test, batch.labels


def test_ventilation_failures_are_found_and_blamed_on_co2_temperature_humidity(fleet) -> None:
    det, test, labels = fleet
    events = labels[labels["anomaly_type"] == "ventilation_failure"]
    assert len(events) >= 5
    score = det.decision_function(test[METRICS], groups=test["device_id"])
    contrib = det.contributions(test[METRICS], groups=test["device_id"])
    found = 0
    for ev in events.itertuples():
        # the second half of the event: the rise has built up (time constant = a third)
        mid = ev.start_ts + (ev.end_ts - ev.start_ts) / 2
        rows = (test["device_id"] == ev.device_id) & (test["ts"] >= mid) & (test["ts"] < ev.end_ts)
        rows = rows.to_numpy() & (score >= 1.0)
        if rows.sum() == 0:
            continue
        found += 1
        share = np.nanmean(contrib[rows], axis=0)
        assert share[3] < 0.25, share  # occupancy is not what drove it
        assert share[:3].sum() > 0.75, share
    assert found >= 0.8 * len(events)


def test_clean_false_alarm_rate_is_near_the_training_quantile(fleet) -> None:
    det, _, _ = fleet
    clean = wide_readings(
        simulate_clean(
            CFG, datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 13, tzinfo=UTC)
        ).readings
    )
    s = det.decision_function(clean[METRICS], groups=clean["device_id"])
    assert np.nanmean(s >= 1.0) < 0.03  # two statistics at the 99.5% quantile each, fresh day


def test_contributions_rows_sum_to_one_and_nan_rows_are_nan(fleet) -> None:
    det, test, _ = fleet
    x = test[METRICS].to_numpy()[:500].copy()
    x[3, 1] = np.nan
    c = det.contributions(x, groups=test["device_id"].to_numpy()[:500])
    ok = ~np.isnan(x).any(axis=1)
    np.testing.assert_allclose(c[ok].sum(axis=1), 1.0)
    assert (c[ok] >= 0).all()
    assert np.isnan(c[~ok]).all()
    assert np.isnan(det.decision_function(x)[~ok]).all()


def test_unseen_devices_fall_back_to_global_standardization(fleet) -> None:
    det, test, _ = fleet
    x = test[METRICS].iloc[:200]
    unseen = det.decision_function(x, groups=np.full(200, 999_999))
    pooled = det.decision_function(x)
    np.testing.assert_array_equal(unseen, pooled)
    mixed = np.r_[test["device_id"].to_numpy()[:100], np.full(100, 999_999)]
    s = det.decision_function(x, groups=mixed)
    np.testing.assert_array_equal(s[100:], pooled[100:])
    np.testing.assert_array_equal(s[:100], det.decision_function(x.iloc[:100], groups=mixed[:100]))
