"""The clean signal looks like an office: schedules, couplings between metrics, normal bands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from simulator import METRICS, FleetConfig, simulate_clean
from simulator.signals import clean_values

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    """One Monday-to-Sunday week, 12 devices, one reading a minute: metrics side by side."""
    config = FleetConfig(seed=5, sites=2, zones_per_site=2, devices_per_zone=3, interval_seconds=60)
    r = simulate_clean(config, MONDAY, MONDAY + timedelta(days=7)).readings
    r = r[r["ts"] >= MONDAY]  # drop the few stragglers from before the window (jitter)
    wide = r.pivot_table(index=["device_id", "ts"], columns="metric_id", values="value")
    wide.columns = [m.metric for m in METRICS]
    wide = wide.reset_index()
    wide["hour"] = wide["ts"].dt.hour
    wide["weekday"] = wide["ts"].dt.dayofweek < 5
    return wide


def test_occupancy_follows_the_office_schedule(week: pd.DataFrame) -> None:
    occ = week["occupancy"]
    assert (occ >= 0).all() and (occ == occ.round()).all()
    working = occ[week["weekday"] & week["hour"].between(9, 16)].mean()
    night = occ[week["hour"].between(0, 5)].mean()
    weekend_day = occ[~week["weekday"] & week["hour"].between(9, 16)].mean()
    assert working > 5
    assert night < 0.2
    assert weekend_day < working / 5


def test_metrics_are_coupled(week: pd.DataFrame) -> None:
    assert week["co2"].corr(week["occupancy"]) > 0.7
    assert week["temperature"].corr(week["occupancy"]) > 0.4
    assert week["humidity"].corr(week["temperature"]) > 0.3
    weekday = week[week["weekday"]]
    by_hour = weekday.groupby("hour")[["co2", "temperature"]].mean()
    assert by_hour["co2"].loc[10:16].min() > by_hour["co2"].loc[0:5].max() + 100


def test_co2_lags_occupancy() -> None:
    # Air fills after people arrive: the morning CO2 rise trails the occupancy rise.
    ts = np.arange(0, 86_400, 60) + int(MONDAY.timestamp())
    device = np.full(ts.shape, 3)
    occ = clean_values(1, 4, device, ts)
    co2 = clean_values(1, 1, device, ts)
    lags = range(0, 61)  # minutes
    corr = [np.corrcoef(occ[: len(ts) - lag], co2[lag:])[0, 1] for lag in lags]
    assert 5 <= int(np.argmax(corr)) <= 40


def test_clean_values_stay_in_the_normal_band(week: pd.DataFrame) -> None:
    # Each metric's components are sized to keep its daily extremes inside the band by about
    # three combined standard deviations. Measured on this 12-device week for seeds 1-8: co2
    # 99.7-99.9%, temperature 98.6-99.9% (the per-device offset dominates), humidity 99.2-100%,
    # occupancy 99.95-100%. 97% leaves room for an unlucky device draw, yet a level set 10% of
    # a band width too low fails it (co2 falls to ~91%, temperature ~91%, occupancy ~31%).
    for spec in METRICS:
        v = week[spec.metric]
        share = v.between(spec.normal_min, spec.normal_max).mean()
        assert share >= 0.97, (spec.metric, share)
        assert v.between(spec.hard_min, spec.hard_max).all()


def test_signal_is_a_pure_function_of_time() -> None:
    ts = np.array([1_767_600_000, 1_767_600_010, 1_767_700_000])
    for spec in METRICS:
        together = clean_values(7, spec.metric_id, np.array([[1], [2]]), ts[None, :])
        alone = np.array([[clean_values(7, spec.metric_id, d, t)[0] for t in ts] for d in (1, 2)])
        np.testing.assert_array_equal(together, alone)
