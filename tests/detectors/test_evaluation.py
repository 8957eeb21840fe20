"""Backtest metrics on hand-made labels and alerts with known answers."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from detectors.evaluation import (
    error_breakdown,
    event_scores,
    label_mask,
    match_events,
    pointwise_scores,
)

DAY0 = pd.Timestamp("2024-03-01", tz="UTC")
NAT = pd.NaT
TOL = timedelta(minutes=5)


def at(hhmm: str, day: int = 0) -> pd.Timestamp:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return DAY0 + pd.Timedelta(days=day, hours=hours, minutes=minutes)


def make_labels(rows: list[tuple]) -> pd.DataFrame:
    """rows: (device_id, metrics, anomaly_type, start, end)."""
    frame = pd.DataFrame(
        rows, columns=["device_id", "metrics", "anomaly_type", "start_ts", "end_ts"]
    )
    frame.insert(0, "label_id", [f"l{i}" for i in range(len(rows))])
    frame["device_id"] = frame["device_id"].astype(np.int32)
    frame["magnitude"] = 1.0
    for column in ("start_ts", "end_ts"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def make_alerts(rows: list[tuple]) -> pd.DataFrame:
    """rows: (device_id, metric, start, end)."""
    frame = pd.DataFrame(rows, columns=["device_id", "metric", "start_ts", "end_ts"])
    for column in ("start_ts", "end_ts"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


@pytest.fixture
def labels() -> pd.DataFrame:
    return make_labels(
        [
            (1, ["co2"], "spike", at("10:00"), at("10:05")),
            (
                1,
                ["co2", "temperature", "humidity"],
                "ventilation_failure",
                at("12:00"),
                at("13:00"),
            ),
            (2, ["humidity"], "drift", at("00:00", 1), at("06:00", 1)),
            (3, ["co2"], "dropout", at("02:00"), at("02:30")),
            (4, ["temperature"], "spike", at("05:00"), at("05:01")),
        ]
    )


@pytest.fixture
def alerts() -> pd.DataFrame:
    return make_alerts(
        [
            (1, "co2", at("10:02"), at("10:04")),  # spike, 2 min
            (1, "humidity", at("12:10"), at("12:20")),  # ventilation via one of its metrics, 10 min
            (2, "multi", at("03:00", 1), NAT),  # drift, still open, 3 h
            (3, "multi", at("02:05"), at("02:40")),  # data alert over the dropout, 5 min
            (4, "co2", at("05:00"), at("05:10")),  # wrong metric: false alarm
            (5, "co2", at("08:00"), at("08:10")),  # no label on device 5: false alarm
            (1, "co2", at("11:00"), at("11:05")),  # 55 min before the ventilation label
        ]
    )


def test_match_events_per_label(labels: pd.DataFrame, alerts: pd.DataFrame) -> None:
    matched = match_events(labels, alerts, TOL, range_end=at("00:00", 2))
    assert matched["label_id"].tolist() == labels["label_id"].tolist()
    assert matched["detected"].tolist() == [True, True, True, True, False]
    assert matched["n_alerts"].tolist() == [1, 1, 1, 1, 0]
    minutes = matched["time_to_detect"].dt.total_seconds() / 60
    assert minutes.iloc[:4].tolist() == [2, 10, 180, 5]
    assert pd.isna(matched["time_to_detect"].iloc[4]) and pd.isna(matched["first_alert_ts"].iloc[4])
    assert matched["first_alert_ts"].iloc[0] == at("10:02")


def test_event_scores_known_values(labels: pd.DataFrame, alerts: pd.DataFrame) -> None:
    table = event_scores(labels, alerts, TOL, at("00:00"), at("00:00", 2), device_count=5)
    overall = table.loc["overall"]
    assert overall["recall"] == pytest.approx(4 / 5)
    assert overall["precision"] == pytest.approx(4 / 7)
    assert overall["f1"] == pytest.approx(2 / 3)
    assert (overall["n_false_alarms"], overall["n_alerts"], overall["n_true_alerts"]) == (3, 7, 4)
    assert overall["false_alarms_per_device_day"] == pytest.approx(3 / (5 * 2))
    assert overall["median_time_to_detect"] == pd.Timedelta(minutes=7.5)
    assert table.loc["spike", "recall"] == pytest.approx(0.5)
    assert table.loc["spike", "median_time_to_detect"] == pd.Timedelta(minutes=2)
    assert table.loc["dropout", "recall"] == 1.0
    assert math.isnan(table.loc["spike", "precision"])  # alerts carry no anomaly type
    assert list(table.index) == ["drift", "dropout", "spike", "ventilation_failure", "overall"]


def test_event_scores_count_only_what_overlaps_the_range(labels: pd.DataFrame) -> None:
    alerts = make_alerts(
        [
            (1, "co2", at("10:01"), at("10:02")),
            (9, "co2", at("23:00", -1), at("23:30", -1)),  # before the range: ignored
        ]
    )
    table = event_scores(labels.iloc[:1], alerts, TOL, at("00:00"), at("00:00", 1), 1)
    assert table.loc["overall", "n_alerts"] == 1
    assert table.loc["overall", "precision"] == 1.0
    assert table.loc["overall", "false_alarms_per_device_day"] == 0.0


def test_event_scores_without_alerts_or_labels(labels: pd.DataFrame) -> None:
    table = event_scores(labels, make_alerts([]), TOL, at("00:00"), at("00:00", 2), 5)
    assert table.loc["overall", "recall"] == 0.0
    assert math.isnan(table.loc["overall", "precision"]) and math.isnan(table.loc["overall", "f1"])
    empty = event_scores(labels.iloc[:0], make_alerts([]), TOL, at("00:00"), at("00:00", 1), 1)
    assert math.isnan(empty.loc["overall", "recall"])
    with pytest.raises(ValueError, match="range_end"):
        event_scores(labels, make_alerts([]), TOL, at("00:00", 1), at("00:00"), 5)


@pytest.mark.parametrize(
    ("start", "end", "hit"),
    [
        (at("09:50"), at("09:55"), False),  # ends exactly at label start - tolerance (exclusive)
        (at("09:50"), at("09:56"), True),
        (at("10:10"), at("10:20"), False),  # starts exactly at label end + tolerance (exclusive)
        (at("10:09"), at("10:20"), True),
        (at("10:09"), NAT, True),  # open
        (at("10:20"), NAT, False),  # open but starts after the window
        (at("09:58"), at("09:58"), True),  # zero-length: the instant counts
    ],
)
def test_tolerance_edges(start: pd.Timestamp, end: pd.Timestamp, hit: bool) -> None:
    labels = make_labels([(1, ["co2"], "spike", at("10:00"), at("10:05"))])
    matched = match_events(labels, make_alerts([(1, "co2", start, end)]), TOL)
    assert matched["detected"].tolist() == [hit]


def test_alert_before_label_start_detects_with_zero_delay() -> None:
    labels = make_labels([(1, ["co2"], "level_shift", at("10:00"), at("11:00"))])
    alerts = make_alerts([(1, "co2", at("09:57"), at("10:30")), (1, "co2", at("10:20"), NAT)])
    matched = match_events(labels, alerts, TOL)
    assert matched["first_alert_ts"].iloc[0] == at("09:57")
    assert matched["time_to_detect"].iloc[0] == pd.Timedelta(0)
    assert matched["n_alerts"].iloc[0] == 2


def test_open_alert_is_clipped_at_range_end() -> None:
    labels = make_labels([(1, ["co2"], "drift", at("10:00"), at("11:00"))])
    alerts = make_alerts([(1, "co2", at("08:00"), NAT)])
    assert match_events(labels, alerts, TOL)["detected"].all()  # open forever
    assert not match_events(labels, alerts, TOL, range_end=at("09:00"))["detected"].any()


def test_multi_metric_label_matches_any_metric_or_multi() -> None:
    labels = make_labels(
        [(1, ["co2", "temperature"], "ventilation_failure", at("10:00"), at("11:00"))]
    )
    cases = {
        (1, "temperature"): True,
        (1, "co2"): True,
        (1, "multi"): True,
        (1, "humidity"): False,
        (2, "multi"): False,
    }
    for (device, metric), hit in cases.items():
        alerts = make_alerts([(device, metric, at("10:30"), at("10:40"))])
        assert match_events(labels, alerts, TOL)["detected"].tolist() == [hit], (device, metric)


def test_one_alert_can_detect_several_labels_and_counts_once() -> None:
    labels = make_labels(
        [
            (1, ["co2"], "spike", at("10:00"), at("10:01")),
            (1, ["humidity"], "noise_burst", at("10:02"), at("10:03")),
        ]
    )
    alerts = make_alerts([(1, "multi", at("10:00"), at("10:10"))])
    table = event_scores(labels, alerts, TOL, at("00:00"), at("00:00", 1), 1)
    assert table.loc["overall", "recall"] == 1.0
    assert (table.loc["overall", "n_alerts"], table.loc["overall", "n_true_alerts"]) == (1, 1)


def test_pointwise_scores_tiny_example() -> None:
    scores = pointwise_scores([1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0])
    assert scores == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    none_predicted = pointwise_scores([True, False], [False, False])
    assert math.isnan(none_predicted.precision) and none_predicted.recall == 0.0
    assert none_predicted.f1 == 0.0
    with pytest.raises(ValueError, match="same shape"):
        pointwise_scores([1, 0], [1])


def test_label_mask_marks_readings_inside_a_label_for_their_metric() -> None:
    labels = make_labels(
        [
            (1, ["co2"], "drift", at("10:00"), at("12:00")),
            (1, ["co2", "humidity"], "spike", at("10:30"), at("10:40")),  # inside the drift
            (2, ["co2"], "dropout", at("10:00"), at("10:30")),  # no readings: nothing to mark
        ]
    )
    readings = pd.DataFrame(
        {
            "device_id": [1, 1, 1, 1, 1, 1, 2, 3],
            "metric": ["co2", "co2", "humidity", "humidity", "co2", "temperature", "co2", "co2"],
            "ts": [
                at("11:00"),  # drift only, after the spike ended
                at("12:00"),  # end is exclusive
                at("10:35"),
                at("10:40"),
                at("09:59"),
                at("10:35"),  # metric not in any label
                at("10:31"),
                at("10:35"),
            ],
        }
    )
    expected = [True, False, True, False, False, False, False, False]
    assert label_mask(readings, labels).tolist() == expected
    assert label_mask(readings.iloc[:0], labels).tolist() == []


def test_error_breakdown_by_type_and_by_site(labels: pd.DataFrame, alerts: pd.DataFrame) -> None:
    matched = match_events(labels, alerts, TOL)
    by_type = error_breakdown(matched)
    assert by_type.loc["spike"].tolist() == [2, 1, 0.5]
    assert by_type.index[0] == "spike"  # most missed first
    matched["site_id"] = matched["device_id"].map({1: "a", 2: "a", 3: "b", 4: "b"})
    by_site = error_breakdown(matched, by="site_id")
    assert by_site["n_missed"].to_dict() == {"b": 1, "a": 0}
    with pytest.raises(KeyError, match="zone_id"):
        error_breakdown(matched, by="zone_id")
