"""The detector suite's scoring (pure): input order, PCA's wide frame, duplicate readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core import detection, features
from core.backtest import loadable
from detectors import wide_readings
from simulator import FleetConfig, simulate, simulate_clean
from simulator.fleet import build_fleet

CFG = FleetConfig(seed=5, sites=1, zones_per_site=2, devices_per_zone=2)
DAY0 = datetime(2026, 1, 12, tzinfo=UTC)  # a Monday
START, END = DAY0 + timedelta(days=2), DAY0 + timedelta(days=2, hours=3)
COLUMNS = ["device_id", "metric_id", "ts", "value"]


@pytest.fixture(scope="module")
def fitted() -> tuple[detection.Suite, pd.DataFrame, pd.DataFrame]:
    devices = build_fleet(CFG)
    train = loadable(simulate_clean(CFG, DAY0, START).readings, CFG.n_devices)[COLUMNS]
    suite = detection.fit_suite(train, devices)
    test = simulate(CFG, START - timedelta(minutes=15), END).readings  # anomalies and faults
    test = loadable(test, CFG.n_devices)[COLUMNS].drop_duplicates(
        ["device_id", "metric_id", "ts"]).sort_values(["device_id", "metric_id", "ts"],
                                                      ignore_index=True)
    return suite, devices, test


def test_scores_do_not_depend_on_the_order_readings_come_in(fitted) -> None:
    suite, devices, test = fitted
    ordered = detection.score_suite(suite, test, devices, START, END)
    shuffled = test.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(
        detection.score_suite(suite, shuffled, devices, START, END), ordered, check_exact=True)
    assert len(ordered) == int(((test["ts"] >= START) & (test["ts"] < END)).sum())
    assert (ordered["score"] >= 1.0).sum() > 0  # the faulty window has anomalies to find


def test_pca_columns_match_the_pivoted_wide_frame(fitted) -> None:
    suite, devices, test = fitted
    scored = detection.score_suite(suite, test, devices, START, END)
    rows = test[(test["ts"] >= START) & (test["ts"] < END)]
    wide = wide_readings(rows)
    pca = suite.detectors["pca"]
    expected = pd.DataFrame({
        "device_id": wide["device_id"], "ts": wide["ts"],
        "pca_score": pca.decision_function(wide[features.PCA_METRICS],
                                           groups=wide["device_id"].to_numpy())})
    got = scored[["device_id", "ts", "pca_score"]].merge(expected, on=["device_id", "ts"],
                                                         suffixes=("", "_pivot"))
    assert len(got) == len(scored)
    np.testing.assert_array_equal(got["pca_score"], got["pca_score_pivot"])


def test_a_repeated_reading_is_scored_twice_and_pca_keeps_the_first(fitted) -> None:
    suite, devices, test = fitted
    inside = test[(test["ts"] >= START) & (test["ts"] < END)]
    first = inside.iloc[[100]]
    again = first.assign(value=first["value"] * 10.0)
    scored = detection.score_suite(suite, pd.concat([test, again], ignore_index=True),
                                   devices, START, END)
    assert len(scored) == len(inside) + 1
    plain = detection.score_suite(suite, test, devices, START, END)
    key = ["device_id", "ts"]
    pca_plain = plain.drop_duplicates(key).set_index(key)["pca_score"]
    pca_dup = scored.drop_duplicates(key).set_index(key)["pca_score"]
    pd.testing.assert_series_equal(pca_dup, pca_plain)  # the later value is not PCA's input
