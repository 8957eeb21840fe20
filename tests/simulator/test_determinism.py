"""The key property: a range's batch depends only on (config, range), never on how it is cut."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import AnomalyConfig, FaultConfig, FleetConfig, simulate

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
INSTALLED = datetime(2026, 1, 1, tzinfo=UTC)


def busy(seed: int, **fleet: int) -> FleetConfig:
    """Every anomaly at 6/day and every fault at 1%, so events straddle any cut point."""
    base = AnomalyConfig()
    anomalies = AnomalyConfig(
        **{n: getattr(base, n).model_copy(update={"rate": 6.0}) for n in AnomalyConfig.model_fields}
    )
    faults = FaultConfig(**dict.fromkeys(FaultConfig.model_fields, 0.01))
    return FleetConfig(seed=seed, anomalies=anomalies, faults=faults, **fleet)


def concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    zones=st.integers(1, 2),
    devices=st.integers(1, 3),
    interval=st.sampled_from([5, 7, 10, 60]),
    offset_s=st.integers(-3 * 3600, 5 * 86_400),  # may start before installed_at
    length_ms=st.integers(0, 4 * 3600 * 1000),
    cut=st.floats(0, 1),
)
def test_split_law(
    seed: int, zones: int, devices: int, interval: int, offset_s: int, length_ms: int, cut: float
) -> None:
    config = busy(
        seed, sites=1, zones_per_site=zones, devices_per_zone=devices, interval_seconds=interval
    )
    a = INSTALLED + timedelta(seconds=offset_s)
    c = a + timedelta(milliseconds=length_ms)
    b = a + timedelta(milliseconds=int(length_ms * cut))
    whole, left, right = simulate(config, a, c), simulate(config, a, b), simulate(config, b, c)
    for part in ("readings", "labels", "faults"):
        pd.testing.assert_frame_equal(
            getattr(whole, part), concat([getattr(left, part), getattr(right, part)])
        )


def test_three_way_split_of_a_busy_day() -> None:
    config = busy(3, sites=1, zones_per_site=1, devices_per_zone=4)
    cuts = [MONDAY + timedelta(hours=h) for h in (0, 5.5, 6, 24)]
    whole = simulate(config, cuts[0], cuts[-1])
    parts = [simulate(config, lo, hi) for lo, hi in pairwise(cuts)]
    assert len(whole.labels) > 20 and len(whole.faults) > 100
    for part in ("readings", "labels", "faults"):
        pd.testing.assert_frame_equal(
            getattr(whole, part), concat([getattr(p, part) for p in parts])
        )


def test_same_seed_same_batch_different_seed_different() -> None:
    end = MONDAY + timedelta(hours=6)
    one = simulate(busy(11, sites=1), MONDAY, end)
    again = simulate(busy(11, sites=1), MONDAY, end)
    other = simulate(busy(12, sites=1), MONDAY, end)
    for part in ("readings", "labels", "faults"):
        pd.testing.assert_frame_equal(getattr(one, part), getattr(again, part))
    assert not one.readings["value"].equals(other.readings["value"])
    assert set(one.labels["label_id"]).isdisjoint(other.labels["label_id"])  # ids carry the seed


def test_batch_shape_window_and_order() -> None:
    start, end = MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=12)
    batch = simulate(busy(5, sites=1), start, end)
    r, lab, f = batch.readings, batch.labels, batch.faults
    assert r.dtypes.astype(str).to_dict() == {
        "device_id": "int32",
        "metric_id": "int16",
        "ts": "datetime64[ns, UTC]",
        "value": "float64",
        "arrival_ts": "datetime64[ns, UTC]",
    }
    assert r["arrival_ts"].between(start, end, inclusive="left").all()
    assert lab["start_ts"].between(start, end, inclusive="left").all()
    assert f["arrival_ts"].between(start, end, inclusive="left").all()
    assert (lab["end_ts"] - lab["start_ts"]).max() <= timedelta(hours=4)
    assert lab["label_id"].is_unique and f["fault_id"].is_unique
    keys = ["arrival_ts", "device_id", "metric_id", "ts"]
    assert r.equals(r.sort_values(keys, kind="stable").reset_index(drop=True))
    assert list(r.index) == list(range(len(r)))
    # Ordinary rows sit on the grid and arrive within the documented jitter.
    normal = r[r["device_id"] < 900_000]
    on_grid = ((normal["ts"] - INSTALLED).dt.total_seconds() % 10 == 0).mean()
    assert on_grid > 0.98
    delay = (r["arrival_ts"] - r["ts"]).dt.total_seconds()
    assert ((delay >= 0) & (delay < 2)).mean() > 0.9


def test_empty_and_pre_install_ranges() -> None:
    config = FleetConfig()
    empty = simulate(config, MONDAY, MONDAY)
    before = simulate(config, INSTALLED - timedelta(days=2), INSTALLED)
    for batch in (empty, before):
        assert batch.readings.empty and batch.labels.empty and batch.faults.empty
        assert str(batch.readings["ts"].dtype) == "datetime64[ns, UTC]"
    first = simulate(
        config.clean(), INSTALLED - timedelta(hours=1), INSTALLED + timedelta(minutes=1)
    )
    assert first.readings["ts"].min() == INSTALLED
    assert np.all(first.readings["ts"] >= INSTALLED)


def test_device_blocks_do_not_change_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # Big fleets and long ranges are computed in blocks of ticks; the block size must not leak
    # into the output.
    module = importlib.import_module("simulator.simulate")
    config = busy(8, sites=1, zones_per_site=2, devices_per_zone=3)
    start, end = MONDAY + timedelta(hours=7), MONDAY + timedelta(hours=10)
    whole = simulate(config, start, end)
    monkeypatch.setattr(module, "BLOCK_CELLS", 4 * 1000 * 2)  # ~333 ticks a block
    blocked = simulate(config, start, end)
    for part in ("readings", "labels", "faults"):
        pd.testing.assert_frame_equal(getattr(whole, part), getattr(blocked, part))
