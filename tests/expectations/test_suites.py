"""The GX suites on simulated data: clean data passes; each injected fault fails the expectation
that is about it, with the simulator's own count of faulted rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from expectations import suites
from expectations.validate import SuiteResult, run_suite
from simulator import FAULT_TYPES, FaultConfig, FleetConfig, build_fleet, simulate
from simulator.metrics import METRICS

END = datetime(2026, 11, 20, 12, tzinfo=UTC)
START = END - timedelta(minutes=10)
TOL = suites.Tolerances(rows=0.01, row_count=0.05, future_seconds=300)
SPECS = [suites.MetricSpec(m.metric_id, m.metric, m.hard_min, m.hard_max) for m in METRICS]
LIMIT_CHECKS = {f"{m.metric}_within_physical_limits" for m in METRICS}


def raw_check(faults: FaultConfig, seed: int = 5) -> tuple[SuiteResult, pd.DataFrame]:
    config = FleetConfig(seed=seed, sites=1, zones_per_site=3, devices_per_zone=3, faults=faults)
    batch = simulate(config, START, END)
    registry = suites.RegistryParams.from_registry(build_fleet(config), SPECS)
    suite = suites.raw_batch_suite(registry, START, END, END, TOL)
    result = run_suite(suites.raw_batch_frame(batch.readings, registry), suite,
                       suites.KEY_COLUMNS[suites.RAW_BATCH])
    return result, batch.faults


def outcome(result: SuiteResult, name: str):
    return next(o for o in result.outcomes if o.expectation == name)


def test_clean_data_passes_every_expectation_with_nothing_unexpected():
    result, faults = raw_check(FaultConfig.disabled())
    assert faults.empty
    assert result.status == "passed"
    assert all(not o.unexpected_count for o in result.outcomes), result.failed()
    assert outcome(result, "row_count_as_expected").observed == 9 * 4 * 60


def test_default_fault_rates_stay_within_tolerance_but_are_counted():
    result, faults = raw_check(FaultConfig(), seed=11)
    assert result.status == "passed"
    counted = sum(o.unexpected_count or 0 for o in result.outcomes)
    assert counted > 0 and not faults.empty


def only(fault: str, rate: float) -> FaultConfig:
    return FaultConfig(**{name: (rate if name == fault else 0.0) for name in FAULT_TYPES})


# fault -> (expectation it breaks, severity)
BROKEN_BY = {
    "null": ("value_not_null", "error"),
    "unknown_device": ("device_known", "error"),
    "future_timestamp": ("ts_not_in_future", "error"),
    "impossible": (None, "error"),  # one of the *_within_physical_limits
    "late": ("ts_within_batch_window", "warning"),
    "out_of_order": ("ts_within_batch_window", "warning"),
    "duplicate": ("keys_unique", "warning"),
}


@pytest.mark.parametrize("fault", FAULT_TYPES)
def test_each_injected_fault_fails_its_expectation_with_the_simulators_count(fault):
    result, faults = raw_check(only(fault, 0.08))
    emitted = faults[faults["fault_type"] == fault]
    assert len(emitted) > 0
    name, severity = BROKEN_BY[fault]
    failed = {o.expectation for o in result.failed()}
    if fault == "impossible":
        assert failed and failed <= LIMIT_CHECKS
        counted = sum(outcome(result, n).unexpected_count for n in LIMIT_CHECKS)
        assert counted == len(emitted)
    else:
        # 8% more rows than the fleet sends also breaks the row count, as it should
        assert failed == ({name, "row_count_as_expected"} if fault == "duplicate" else {name})
        o = outcome(result, name)
        assert o.severity == severity
        # late rows are delivered 10-100 min after ts: all before this 10-minute window
        if fault in ("null", "unknown_device", "future_timestamp", "late"):
            assert o.unexpected_count == len(emitted)
        elif fault == "out_of_order":  # 30 s-5 min: only those crossing the window's start
            assert 0 < o.unexpected_count <= len(emitted)
        else:  # both copies of each key count
            assert o.unexpected_count % 2 == 0 and 0 < o.unexpected_count <= 2 * len(emitted)
        assert o.sample and {"device_id", "metric_id", "ts"} <= set(o.sample[0])
    assert result.status == severity


def test_a_silent_device_fails_the_row_count_as_a_warning():
    config = FleetConfig(seed=5, sites=1, zones_per_site=2, devices_per_zone=2,
                         faults=FaultConfig.disabled())
    batch = simulate(config, START, END)
    registry = suites.RegistryParams.from_registry(build_fleet(config), SPECS)
    quiet = batch.readings[batch.readings["device_id"] != batch.readings["device_id"].min()]
    result = run_suite(suites.raw_batch_frame(quiet, registry),
                       suites.raw_batch_suite(registry, START, END, END, TOL),
                       suites.KEY_COLUMNS[suites.RAW_BATCH])
    assert [o.expectation for o in result.failed()] == ["row_count_as_expected"]
    assert result.status == "warning"


def kpis(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    mean = rng.uniform(400, 800, n)
    return pd.DataFrame({
        "mart": "fct_kpi_5m", "device_id": np.arange(n) % 3, "metric": "co2",
        "window_start": pd.date_range(START, periods=n, freq="5min"),
        "reading_count": 30, "mean": mean, "min": mean - 5, "max": mean + 5,
        "stddev": 2.0, "breach_count": 0, "completeness": 1.0})


def test_kpi_suite_passes_sane_windows_and_names_each_broken_rule():
    suite = suites.kpi_suite(TOL)
    keys = suites.KEY_COLUMNS[suites.KPI]
    assert run_suite(suites.kpi_frame(kpis()), suite, keys).status == "passed"
    # identical values: mean = sum / n may exceed max in the last bit, which is not a failure
    flat = kpis().assign(min=0.1, max=0.1, mean=0.1 * 3 / 3 + 1e-17)
    assert run_suite(suites.kpi_frame(flat), suite, keys).status == "passed"

    broken = kpis()
    broken.loc[2, "mean"] = broken.loc[2, "max"] + 1
    broken.loc[4, "breach_count"] = -1
    broken.loc[5:11, "completeness"] = 0.5
    result = run_suite(suites.kpi_frame(broken), suite, keys)
    failed = {o.expectation: o for o in result.failed()}
    assert set(failed) == {"mean_within_min_max", "breach_count_non_negative", "window_complete"}
    assert failed["mean_within_min_max"].unexpected_count == 1
    assert failed["window_complete"].unexpected_count == 7
    assert failed["window_complete"].severity == "warning"
    assert result.status == "error"


def test_scores_suite_requires_a_model_version():
    scores = pd.DataFrame({"device_id": [1, 2], "metric": "co2",
                           "ts": pd.date_range(START, periods=2, freq="10s"),
                           "score": [1.2, 3.0], "model_id": [7, None],
                           "severity": ["low", "high"], "baseline_std": [1.0, 2.0]})
    result = run_suite(scores, suites.scores_suite(), suites.KEY_COLUMNS[suites.SCORES])
    assert [(o.expectation, o.unexpected_count) for o in result.failed()] == [
        ("model_version_present", 1)]
    assert result.failed()[0].sample[0]["device_id"] == 2


def test_a_suite_that_cannot_run_is_a_failed_result_not_an_exception():
    result = run_suite(pd.DataFrame({"x": [1]}), suites.scores_suite(), ["device_id"])
    assert result.status == "error"
    assert all(not o.success for o in result.outcomes)
    assert any(o.message for o in result.outcomes)
