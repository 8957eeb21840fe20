"""Labels tell the truth: inside a label the signal differs from the clean run as its type says,
outside every label the two runs are identical."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from simulator import ANOMALY_TYPES, AnomalyConfig, FaultConfig, FleetConfig, simulate
from simulator.metrics import METRIC_BY_ID, METRIC_BY_NAME, MetricSpec
from simulator.signals import RESOLUTION

START = datetime(2026, 1, 6, tzinfo=UTC)  # a Tuesday
END = START + timedelta(days=1)
INTERVAL = 10


def run(anomaly_type: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clean joined to anomalous per reading, labels that can touch the window)."""
    config = FleetConfig(
        seed=2024,
        sites=1,
        zones_per_site=2,
        devices_per_zone=3,
        interval_seconds=INTERVAL,
        anomalies=AnomalyConfig.only(anomaly_type, rate=4.0),
        faults=FaultConfig.disabled(),
    )
    key = ["device_id", "metric_id", "ts"]
    clean = simulate(config.clean(), START, END).readings[[*key, "value"]]
    noisy = simulate(config, START, END).readings[[*key, "value"]]
    joined = clean.merge(noisy, on=key, how="left", suffixes=("_clean", ""), validate="1:1")
    # Labels that started up to 4 h before the window still shape values inside it.
    labels = simulate(config, START - timedelta(hours=5), END).labels
    return joined, labels


def label_mask(rows: pd.DataFrame, label: pd.Series) -> np.ndarray:
    ids = [METRIC_BY_NAME[m].metric_id for m in label["metrics"]]
    return (
        (rows["device_id"].to_numpy() == label["device_id"])
        & rows["metric_id"].isin(ids).to_numpy()
        & (rows["ts"] >= label["start_ts"]).to_numpy()
        & (rows["ts"] < label["end_ts"]).to_numpy()
    )


def isolated(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels fully after START that overlap no other label of the same device."""
    keep = []
    for i, lab in labels.iterrows():
        same = labels[(labels["device_id"] == lab["device_id"]) & (labels.index != i)]
        clash = ((same["start_ts"] < lab["end_ts"]) & (same["end_ts"] > lab["start_ts"])).any()
        keep.append(not clash and lab["start_ts"] >= START)
    return labels[keep]


def expected_delta(anomaly_type: str, label: pd.Series, ts: pd.Series) -> np.ndarray:
    """The documented offset, in band widths, at each tick of the label."""
    ticks_in = ((ts - label["start_ts"]).dt.total_seconds() // INTERVAL).to_numpy() + 1
    n = (label["end_ts"] - label["start_ts"]).total_seconds() / INTERVAL
    if anomaly_type == "drift":
        return label["magnitude"] * ticks_in / n
    if anomaly_type == "ventilation_failure":
        return label["magnitude"] * (1 - np.exp(-ticks_in / (n / 3)))
    return np.full(len(ts), label["magnitude"])


@pytest.mark.parametrize("anomaly_type", ANOMALY_TYPES)
def test_labels_match_the_signal(anomaly_type: str) -> None:
    rows, labels = run(anomaly_type)
    assert (labels["anomaly_type"] == anomaly_type).all()
    inside = np.zeros(len(rows), dtype=bool)
    for _, lab in labels.iterrows():
        inside |= label_mask(rows, lab)
    outside = rows[~inside]
    assert outside["value"].notna().all(), "rows went missing outside any label"
    assert (outside["value"] == outside["value_clean"]).all(), "values changed outside labels"

    checked = isolated(labels)
    assert len(checked) >= 5, "too few labels to judge"
    for _, lab in checked.iterrows():
        got = rows[label_mask(rows, lab)]
        assert len(got) > 0
        for metric_id, one in got.groupby("metric_id"):
            spec = METRIC_BY_ID[int(metric_id)]
            _check(anomaly_type, lab, spec, one, 10.0 ** -RESOLUTION[spec.metric_id] + 1e-9)
        if anomaly_type == "ventilation_failure":
            occupancy = rows[(rows["device_id"] == lab["device_id"]) & (rows["metric_id"] == 4)]
            during = occupancy["ts"].between(lab["start_ts"], lab["end_ts"], inclusive="left")
            assert (occupancy[during]["value"] == occupancy[during]["value_clean"]).all()


def _check(kind: str, lab: pd.Series, spec: MetricSpec, got: pd.DataFrame, tol: float) -> None:
    value, clean = got["value"].to_numpy(), got["value_clean"].to_numpy()
    if kind == "dropout":
        assert np.isnan(value).all()  # present in the clean run, absent in the anomalous one
        return
    assert not np.isnan(value).any()
    if kind in ("spike", "level_shift", "drift", "ventilation_failure"):
        delta = expected_delta(kind, lab, got["ts"]) * spec.width
        expected = np.clip(clean + delta, spec.hard_min, spec.hard_max)
        np.testing.assert_allclose(value, expected, atol=tol, rtol=0)
        # Ramps start near zero, so their first ticks may round back to the clean value.
        assert (value > clean).all() if kind in ("spike", "level_shift") else (value >= clean).all()
        assert value[-1] > clean[-1]
        if kind == "spike":
            assert (value > spec.normal_max).all()  # >= 1.5 band widths over a clean value
        if kind == "level_shift":
            assert (value > spec.normal_max).mean() > 0.9
    elif kind == "threshold_breach":
        assert spec.breach_threshold is not None
        assert (value > spec.breach_threshold).all()
        expected = np.minimum(
            np.maximum(clean, spec.breach_threshold) + lab["magnitude"] * spec.width, spec.hard_max
        )
        np.testing.assert_allclose(value, expected, atol=tol, rtol=0)
    elif kind == "stuck":
        assert len(np.unique(value)) == 1
        first = got["ts"] == lab["start_ts"]
        assert value[0] == clean[first.to_numpy()][0]  # frozen at the clean value it started on
    elif kind == "noise_burst":
        spread = np.std(value - clean)
        assert spread > 0.3 * lab["magnitude"] * spec.width
    else:
        raise AssertionError(kind)


def test_default_rates_give_about_a_hundred_labels_a_day() -> None:
    labels = simulate(FleetConfig(faults=FaultConfig.disabled()), START, END).labels
    assert 60 <= len(labels) <= 250  # 45 devices x 2.9/day = 130 expected
    assert set(labels["anomaly_type"]) == set(ANOMALY_TYPES)
    assert labels["label_id"].is_unique
    assert (labels["end_ts"] > labels["start_ts"]).all()
    assert labels["metrics"].map(len).min() >= 1
    vent = labels[labels["anomaly_type"] == "ventilation_failure"]
    assert all(m == ["co2", "temperature", "humidity"] for m in vent["metrics"])
