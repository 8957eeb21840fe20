"""Fusion severities and the unit-interval mapping."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import Fusion, to_unit_interval

LIMITS = {"co2": 1000.0, "temperature": 30.0, "humidity": 80.0}


def test_severity_rules() -> None:
    scores = {
        "rolling": np.array([0.1, 1.5, 0.2, 1.2, 2.5, 0.3, np.nan]),
        "pca": np.array([0.2, 0.1, 0.3, 1.1, 0.1, 0.2, np.nan]),
    }
    values = {
        "co2": np.array([500, 1200, np.nan, 600, 700, 800, np.nan]),
        "temperature": np.array([21, 22, 31, 22, 22, 22, np.nan]),
    }
    out = Fusion(limits=LIMITS).combine(scores, values)
    assert list(out["severity"]) == ["none", "critical", "high", "high", "medium", "none", "none"]
    assert list(out["reason"]) == [
        "",
        "limit+detector",
        "limit",
        "multi-detector",
        "strong-detector",
        "",
        "",
    ]
    assert list(out["fired_by"]) == ["", "rolling", "", "rolling,pca", "rolling", "", ""]
    assert list(out["breached"]) == ["", "co2", "temperature", "", "", "", ""]
    np.testing.assert_allclose(out["score"][:6], [0.7, 1.5, 31 / 30, 1.2, 2.5, 0.8])
    assert np.isnan(out["score"].iloc[6])


def test_single_weak_detector_is_low_and_limits_are_parameters() -> None:
    out = Fusion(limits={"co2": 2000.0}).combine(
        {"robust": np.array([1.0, 1.99])}, {"co2": np.array([1500.0, 2500.0])}
    )
    assert list(out["severity"]) == ["low", "critical"]
    assert Fusion().combine({"robust": np.array([0.5])})["severity"].iloc[0] == "none"


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError):
        Fusion(limits=LIMITS).combine({"a": np.zeros(3)}, {"co2": np.zeros(4)})


def test_to_unit_interval() -> None:
    got = to_unit_interval(np.array([0.0, 1.0, 2.0, np.inf, np.nan, -1.0]))
    np.testing.assert_allclose(got, [0.0, 0.5, 0.75, 1.0, np.nan, 0.0])
    x = np.linspace(0, 20, 101)
    assert (np.diff(to_unit_interval(x)) > 0).all()
