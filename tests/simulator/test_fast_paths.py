"""The shortcuts simulate() takes for speed give exactly what the plain definitions give."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from simulator import FAULT_TYPES, AnomalyConfig, FaultConfig, FleetConfig, simulate
from simulator.faults import (
    NO_FAULT,
    FaultedRows,
    classify,
    fault_threshold,
    faults_frame,
    jitter_ns,
)
from simulator.rng import Stream, hash64, normal
from simulator.signals import clean_grid, clean_values

sim = importlib.import_module("simulator.simulate")
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
READING_ORDER = ["arrival_ts", "device_id", "metric_id", "ts", "value"]


def busy(seed: int) -> FleetConfig:
    base = AnomalyConfig()
    anomalies = AnomalyConfig(
        **{n: getattr(base, n).model_copy(update={"rate": 6.0}) for n in AnomalyConfig.model_fields}
    )
    faults = FaultConfig(**dict.fromkeys(FAULT_TYPES, 0.01))
    return FleetConfig(seed=seed, sites=1, anomalies=anomalies, faults=faults)


@pytest.mark.parametrize("step", [1, 7, 10, 60, 3600])
def test_clean_grid_is_clean_values_bit_for_bit(step: int) -> None:
    devices = np.array([1, 2, 7, 40], dtype=np.int64)
    ts = int(MONDAY.timestamp()) + 3 * 3600 + step * np.arange(0, 500, dtype=np.int64)
    grid = clean_grid(3, devices, ts, step)
    for i, metric_id in enumerate((1, 2, 3, 4)):
        one = clean_values(3, metric_id, devices[:, None], ts[None, :])
        assert np.array_equal(grid[:, i, :].view(np.int64), one.view(np.int64))


def test_normal_is_box_muller_bit_for_bit() -> None:
    h = hash64(9, Stream.NOISE, np.arange(100_003))  # several chunks and a ragged end
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 0.5) * (2.0**-32)
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * (2.0**-32)
    expected = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    assert np.array_equal(normal(h).view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize(
    "faults",
    [
        FaultConfig(),
        FaultConfig.disabled(),
        FaultConfig(**dict.fromkeys(FAULT_TYPES, 0.01)),
        FaultConfig(duplicate=0.1, late=0.1, out_of_order=0.1, null=0.1, impossible=0.09),
    ],
)
def test_fault_threshold_is_classify(faults: FaultConfig) -> None:
    h = hash64(1, Stream.READING, np.arange(200_000))
    threshold = fault_threshold(faults)
    edge = int(threshold) >> 11  # hashes either side of the boundary
    near = np.array([max(edge - 1, 0) << 11, max((edge << 11) - 1, 0), edge << 11], np.uint64)
    for sample in (h, near):
        assert np.array_equal(classify(sample, faults) != NO_FAULT, sample < threshold)


@pytest.mark.parametrize("interval", [1, 3, 10, 60])
def test_jitter_table_is_the_formula(interval: int) -> None:
    h = hash64(2, Stream.READING, np.arange(10_000))
    max_ms = min(2000, interval * 500)
    expected = ((h & np.uint64(0x7FF)).astype(np.int64) * max_ms // 2048) * 1_000_000
    assert np.array_equal(jitter_ns(h, interval), expected)


def test_readings_are_in_the_documented_total_order() -> None:
    r = simulate(busy(21), MONDAY + timedelta(hours=8), MONDAY + timedelta(hours=11)).readings
    assert r["value"].isna().any() and (r["device_id"] >= 900_000).any()
    assert r.equals(r.sort_values(READING_ORDER, kind="stable").reset_index(drop=True))


def test_chunk_sizes_do_not_change_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    config = busy(8)
    start, end = MONDAY + timedelta(hours=7, minutes=3), MONDAY + timedelta(hours=10)
    whole = simulate(config, start, end)
    monkeypatch.setattr(sim, "HASH_CHUNK", 7 * 60)  # ~7 ticks per chunk
    monkeypatch.setattr(importlib.import_module("simulator.rng"), "_CHUNK", 64)
    monkeypatch.setattr(sim, "BLOCK_CELLS", 600)  # 10-tick blocks, events in 7-device chunks
    chunked = simulate(config, start, end)
    for part in ("readings", "labels", "faults"):
        pd.testing.assert_frame_equal(getattr(whole, part), getattr(chunked, part))


def _faulted(rows: list[tuple[int, int, int, int, int, float, int]]) -> FaultedRows:
    """(code, device, emitted device, metric, ts_ns, value, arrival_ns) per row."""
    code, dev, emit_dev, met, ts, value, arrival = (np.array(c) for c in zip(*rows, strict=True))
    return FaultedRows(
        code.astype(np.int8), dev, met, ts, emit_dev, ts, value.astype(np.float64), arrival
    )


def test_faults_tied_on_every_number_are_ordered_by_fault_id() -> None:
    unknown = FAULT_TYPES.index("unknown_device")
    s = 1_000_000_000
    faulted = _faulted(
        [  # the first two are sent as one device, at one ts and arrival: only ids differ
            (unknown, 3, 900_001, 1, 50 * s, 401.0, 50 * s + 7),
            (unknown, 12, 900_001, 1, 50 * s, 400.0, 50 * s + 7),
            (FAULT_TYPES.index("null"), 5, 5, 2, 40 * s, np.nan, 40 * s + 9),
        ]
    )
    expected = faults_frame(faulted, 1).sort_values(
        ["arrival_ts", "device_id", "metric_id", "ts", "fault_id"], kind="stable"
    )
    got = sim._faults_frame(faulted, 1)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
    ids = ["s1-d12-m1-t50-unknown_device", "s1-d3-m1-t50-unknown_device"]  # string order
    assert list(got["fault_id"][1:]) == ids


def test_merged_rows_match_a_full_sort() -> None:
    # Regular rows, sorted and unique on (arrival, device, metric), merged with faulted rows
    # that tie with them on arrival (two of them with each other on everything).
    s, unknown = 1_000_000_000, FAULT_TYPES.index("unknown_device")
    arrival = np.array([10, 10, 10, 20, 30, 30], dtype=np.int64) * s
    regular = sim._Rows(
        np.array([1, 2, 2, 1, 1, 3], dtype=np.int32),
        np.array([1, 1, 3, 2, 4, 1], dtype=np.int16),
        arrival - 5,
        np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        arrival,
    )
    faulted = _faulted(
        [
            (FAULT_TYPES.index("late"), 2, 2, 2, 3 * s, 7.0, 10 * s),
            (FAULT_TYPES.index("null"), 2, 2, 1, 10 * s - 5, np.nan, 10 * s),
            (unknown, 4, 900_000, 2, 30 * s - 5, 8.0, 30 * s),
            (unknown, 2, 900_000, 2, 30 * s - 5, 8.0, 30 * s),
            (FAULT_TYPES.index("duplicate"), 1, 1, 1, 0, 9.0, 31 * s),
        ]
    )
    frame = sim._readings_frame([regular], faulted)
    assert len(frame) == 11
    assert frame.equals(frame.sort_values(READING_ORDER, kind="stable").reset_index(drop=True))
