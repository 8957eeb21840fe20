"""Row rules without a database: precedence, repeats and reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import rules

T = pd.Timestamp("2026-11-20T10:00:00Z")
REGISTRY = rules.Registry(
    device_ids=np.array([1, 2, 3]),
    metrics={1: rules.MetricLimits(1, "co2", "ppm", 0, 10000),
             3: rules.MetricLimits(3, "humidity", "pct", 0, 100)},
)


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["device_id", "metric_id", "ts", "value"])


def check(rows: list[tuple]) -> rules.Verdict:
    return rules.check(frame(rows), REGISTRY, T, future_tolerance_s=300)


def test_the_first_broken_rule_is_the_one_recorded():
    verdict = check([
        (99, 1, T, np.nan),                          # null beats unknown device
        (99, 3, T, 150.0),                           # unknown device beats impossible value
        (1, 3, T + pd.Timedelta(hours=1), 101.0),    # impossible beats future
        (1, 1, T + pd.Timedelta(seconds=299), 500.0),  # inside the tolerance: fine
        (2, 1, T + pd.Timedelta(seconds=301), 500.0),  # just past it
    ])
    assert verdict.rejected["rule"].tolist() == [
        rules.NULL_VALUE, rules.UNKNOWN_DEVICE, rules.IMPOSSIBLE_VALUE, rules.FUTURE_TIMESTAMP]
    assert len(verdict.clean) == 1


def test_repeats_split_into_duplicates_and_conflicts_first_one_wins():
    verdict = check([(1, 1, T, 500.0), (1, 1, T, 500.0), (1, 1, T, 510.0), (2, 1, T, 500.0)])
    assert verdict.in_batch_duplicates == 1
    assert verdict.clean["value"].tolist() == [500.0, 500.0]
    (reason,) = verdict.rejected["reason"]
    assert "value 500" in reason and "510" in reason and "first one was kept" in reason


def test_reasons_name_the_field_and_the_limit():
    verdict = check([(1, 3, T, 130.0), (1, 7, T, 1.0)])
    impossible, unknown = verdict.rejected["reason"]
    assert "humidity = 130 pct" in impossible and "[0, 100]" in impossible
    assert "metric_id 7" in unknown and "co2" in unknown


def test_a_clean_batch_passes_untouched():
    rows = [(d, 1, T + pd.Timedelta(seconds=10 * i), 400.0 + i) for d in (1, 2) for i in range(5)]
    verdict = check(rows)
    assert verdict.rejected.empty and verdict.in_batch_duplicates == 0
    assert len(verdict.clean) == 10
