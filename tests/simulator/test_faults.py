"""Each fault record describes one emitted row, and that row is broken the way the record says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from simulator import FAULT_TYPES, AnomalyConfig, FaultConfig, FleetConfig, build_fleet, simulate
from simulator.metrics import METRIC_BY_ID

START = datetime(2026, 1, 6, tzinfo=UTC)
END = START + timedelta(hours=12)
ROW = ["device_id", "metric_id", "ts", "arrival_ts"]
Runs = tuple[FleetConfig, pd.DataFrame, pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def runs() -> Runs:
    config = FleetConfig(
        seed=99,
        sites=1,
        zones_per_site=2,
        devices_per_zone=3,
        anomalies=AnomalyConfig.disabled(),
        faults=FaultConfig(**dict.fromkeys(FAULT_TYPES, 0.005)),
    )
    batch = simulate(config, START, END)
    clean = simulate(config.clean(), START, END).readings
    return config, batch.readings, batch.faults, clean


def emitted(readings: pd.DataFrame, faults: pd.DataFrame, fault_type: str) -> pd.DataFrame:
    """The emitted row of each fault of one type (value joined from readings)."""
    some = faults[faults["fault_type"] == fault_type]
    assert len(some) >= 20, f"too few {fault_type} faults to judge"
    rows = some.merge(readings, on=ROW, how="left", validate="1:m")
    assert len(rows) == len(some)
    return rows


def test_every_fault_is_one_emitted_row(runs: Runs) -> None:
    _, readings, faults, _ = runs
    assert set(faults["fault_type"]) == set(FAULT_TYPES)
    assert faults["fault_id"].is_unique
    assert faults["detail"].str.len().min() > 10
    hits = faults.merge(readings, on=ROW, how="left", indicator=True)
    assert (hits["_merge"] == "both").all()
    rate = len(faults) / len(readings)
    assert 0.025 < rate < 0.045  # 7 types x 0.5%


def test_unfaulted_rows_are_the_clean_rows(runs: Runs) -> None:
    _, readings, faults, clean = runs
    marked = readings.merge(faults[ROW].assign(faulty=True), on=ROW, how="left")
    ordinary = marked[marked["faulty"].isna()].drop(columns="faulty")
    matched = ordinary.merge(clean, on=[*ROW, "value"], how="left", indicator=True)
    assert (matched["_merge"] == "both").all()


def test_null_and_impossible_values(runs: Runs) -> None:
    _, readings, faults, _ = runs
    assert emitted(readings, faults, "null")["value"].isna().all()
    bad = emitted(readings, faults, "impossible")
    lo = bad["metric_id"].map(lambda m: METRIC_BY_ID[m].hard_min)
    hi = bad["metric_id"].map(lambda m: METRIC_BY_ID[m].hard_max)
    assert ((bad["value"] < lo) | (bad["value"] > hi)).all()


def test_unknown_device(runs: Runs) -> None:
    config, readings, faults, _ = runs
    rows = emitted(readings, faults, "unknown_device")
    assert not rows["device_id"].isin(build_fleet(config)["device_id"]).any()
    assert (rows["device_id"] >= 900_000).all()


def test_timing_faults(runs: Runs) -> None:
    _, readings, faults, _ = runs
    future = emitted(readings, faults, "future_timestamp")
    ahead = future["ts"] - future["arrival_ts"]
    assert (ahead > timedelta(hours=1)).all() and (ahead <= timedelta(hours=48)).all()

    late = emitted(readings, faults, "late")
    delay = late["arrival_ts"] - late["ts"]
    assert (delay >= timedelta(minutes=10)).all() and (delay < timedelta(minutes=100)).all()

    ooo = emitted(readings, faults, "out_of_order")
    delay = ooo["arrival_ts"] - ooo["ts"]
    assert (delay >= timedelta(seconds=30)).all() and (delay < timedelta(seconds=300)).all()
    # With a 10 s interval the next reading of the same series has already arrived.
    nxt = ooo[["device_id", "metric_id", "ts", "arrival_ts"]].assign(
        ts=ooo["ts"] + timedelta(seconds=10)
    )
    later = nxt.merge(readings, on=["device_id", "metric_id", "ts"], suffixes=("", "_next"))
    assert len(later) > 0.9 * len(ooo)
    # (unless that one is itself delayed: 3.5% of readings carry some fault here)
    assert (later["arrival_ts_next"] < later["arrival_ts"]).mean() > 0.9


def test_duplicate_has_an_earlier_identical_twin(runs: Runs) -> None:
    _, readings, faults, _ = runs
    copies = emitted(readings, faults, "duplicate")
    key = ["device_id", "metric_id", "ts"]
    twins = copies.merge(readings, on=key, suffixes=("", "_twin"))
    twins = twins[twins["arrival_ts_twin"] < twins["arrival_ts"]]
    # The first copy may have arrived before the window opened; most arrive inside it.
    assert twins["ts"].nunique() > 0.95 * copies["ts"].nunique()
    np.testing.assert_array_equal(twins["value"], twins["value_twin"])
    gap = twins["arrival_ts"] - twins["arrival_ts_twin"]
    assert (gap >= timedelta(seconds=1)).all() and (gap <= timedelta(seconds=121)).all()


def test_default_fault_share() -> None:
    batch = simulate(
        FleetConfig(anomalies=AnomalyConfig.disabled()), START, START + timedelta(hours=2)
    )
    share = len(batch.faults) / len(batch.readings)
    assert 0.002 < share < 0.005  # defaults total 0.36%
