"""Drift verdicts on simulated fleets (pure: simulator + pandas + Evidently, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from reports import drift
from simulator import FleetConfig, simulate_clean
from simulator.metrics import METRIC_BY_ID

FLEET = FleetConfig(seed=11, sites=1, zones_per_site=3, devices_per_zone=3)  # 9 devices
FIRST = datetime(2026, 11, 7, tzinfo=UTC)  # a Saturday
LAST = datetime(2026, 11, 18, tzinfo=UTC)  # a Wednesday
SATURDAY, TUESDAY = datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC)


def five_minute_means(readings: pd.DataFrame) -> pd.DataFrame:
    """What fct_kpi_5m holds, pivoted wide: one row per device x 5-minute window."""
    window = readings["ts"].dt.floor("5min").rename("window_start")
    metric = readings["metric_id"].map(lambda i: METRIC_BY_ID[int(i)].metric).rename("metric")
    means = readings.groupby([readings["device_id"], window, metric])["value"].mean()
    wide = means.unstack("metric").reset_index()
    wide.columns.name = None
    return wide[["device_id", "window_start", *drift.METRICS]]


@pytest.fixture(scope="module")
def clean_fleet() -> pd.DataFrame:
    """Eleven clean days of a 9-device fleet (anomalies and faults off)."""
    return five_minute_means(simulate_clean(FLEET, FIRST, LAST).readings)


def periods_of(frame: pd.DataFrame, day: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    return drift.Periods.ending(day + timedelta(days=1), 1, 7).split(frame)


@pytest.mark.parametrize("day", [SATURDAY, TUESDAY], ids=["saturday", "tuesday"])
def test_two_clean_periods_of_the_same_fleet_do_not_drift(clean_fleet, day):
    reference, current = periods_of(clean_fleet, day)
    result = drift.compare(reference, current)
    table = result.table.set_index("metric")
    assert list(table.index) == list(drift.METRICS)
    assert result.drifted == [], table
    assert (table["method"] == "wasserstein").all()
    assert (table["statistic"] < table["threshold"]).all()
    assert (table["reference_rows"] == len(reference)).all()
    assert (table["current_rows"] == len(current)).all()


def test_a_metric_shifted_by_two_standard_deviations_drifts_and_only_that_one(clean_fleet):
    reference, current = periods_of(clean_fleet, TUESDAY)
    shift = 2 * reference["humidity"].std()
    result = drift.compare(reference, current.assign(humidity=current["humidity"] + shift))
    table = result.table.set_index("metric")
    assert result.drifted == ["humidity"]
    assert table.loc["humidity", "statistic"] >= table.loc["humidity", "threshold"]
    gained = table.loc["humidity", "current_mean"] - table.loc["humidity", "reference_mean"]
    assert gained == pytest.approx(shift, rel=0.25)


def test_the_verdict_is_deterministic(clean_fleet):
    reference, current = periods_of(clean_fleet, TUESDAY)
    first = drift.compare(reference, current, max_rows=3000).table
    pd.testing.assert_frame_equal(first, drift.compare(reference, current, max_rows=3000).table)


def test_the_office_week_alone_is_not_drift_but_comparing_raw_periods_would_be(clean_fleet):
    """Why the reference is calendar-matched: the same Saturday against the raw week drifts."""
    reference, current = periods_of(clean_fleet, SATURDAY)
    metrics = list(drift.METRICS)
    raw = drift.run_report(reference[metrics], current[metrics], {m: 0.5 for m in metrics})
    assert drift._table(raw, drift.METRICS)["drifted"].any()
    assert drift.compare(reference, current).drifted == []


def test_too_few_rows_is_reported_not_passed(clean_fleet):
    reference, current = periods_of(clean_fleet, TUESDAY)
    with pytest.raises(drift.InsufficientDataError, match="current period has 50 rows of co2"):
        drift.compare(reference, current.head(50))
    with pytest.raises(drift.InsufficientDataError, match="reference period has 0 rows"):
        drift.compare(reference.assign(occupancy=np.nan), current)


def test_a_reference_without_the_current_day_types_is_insufficient(clean_fleet):
    reference, current = periods_of(clean_fleet, SATURDAY)
    weekdays = reference[reference["window_start"].dt.dayofweek < 5]
    with pytest.raises(drift.InsufficientDataError, match="weekday/weekend"):
        drift.compare(weekdays, current)


def test_windows_touching_an_anomaly_or_alert_are_left_out_of_the_reference():
    start = pd.Timestamp("2026-11-17 10:00", tz="UTC")
    frame = pd.DataFrame({
        "device_id": np.repeat([1, 2], 6),
        "window_start": list(pd.date_range(start, periods=6, freq="5min")) * 2,
        "co2": 500.0,
    })
    windows = pd.DataFrame({
        "device_id": [1, 2, None],
        "start_ts": [start + pd.Timedelta(minutes=7), start + pd.Timedelta(minutes=25),
                     start],
        "end_ts": [start + pd.Timedelta(minutes=12), start + pd.Timedelta(minutes=25),
                   start + pd.Timedelta(hours=1)],  # no device: a fleet-level data alert
    })
    kept = drift.exclude_windows(frame, windows)
    gone = frame.drop(kept.index)
    assert list(zip(gone["device_id"], gone["window_start"].dt.strftime("%H:%M"),
                    strict=True)) == [(1, "10:05"), (1, "10:10"), (2, "10:25")]


def test_the_html_is_self_contained(clean_fleet, tmp_path):
    reference, current = periods_of(clean_fleet, TUESDAY)
    result = drift.compare(reference, current, max_rows=2000)
    path = drift.save_html(result.snapshot, tmp_path / "drift" / "all.html")
    html = path.read_text()
    assert path.stat().st_size > 100_000 and "<script src" not in html
