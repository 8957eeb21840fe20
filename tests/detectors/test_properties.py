"""Property-based: any finite input up to 1e12 in size, any length, gives no exception and no
infinite or negative score (NaN only where there is not enough history yet).

1e12 is far beyond every metric's physical range (the loader refuses values outside it).
Beyond ~1e150 the rolling sums of squares overflow; `MAGNITUDE` says where this holds."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detectors import PCADetector, RobustZScore, RollingZScore, StuckDetector

MAGNITUDE = 1e12
FINITE = st.floats(-MAGNITUDE, MAGNITUDE, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def series(min_rows: int = 1) -> st.SearchStrategy[np.ndarray]:
    return st.integers(min_rows, 200).flatmap(
        lambda n: arrays(np.float64, (n, 2), elements=FINITE))


def check(score: np.ndarray, rows: int) -> None:
    assert score.shape[0] == rows
    assert not np.isinf(score).any()
    assert (score[~np.isnan(score)] >= 0).all()


@SETTINGS
@given(train=series(5), test=series())
def test_rolling_and_robust_z_take_any_finite_input(train: np.ndarray, test: np.ndarray) -> None:
    for detector in (RollingZScore(window=10), RobustZScore(window=10)):
        detector.fit(train)
        score = detector.decision_function(test)
        check(score, len(test))
        if len(test) > 20:  # past the warm-up every point is scored
            assert np.isfinite(score[20:]).all()


@SETTINGS
@given(train=series(5), test=series())
def test_stuck_detector_takes_any_finite_input(train: np.ndarray, test: np.ndarray) -> None:
    detector = StuckDetector().fit(train)
    check(detector.decision_function(test), len(test))


@SETTINGS
@given(train=st.integers(20, 200).flatmap(
           lambda n: arrays(np.float64, (n, 4), elements=FINITE)),
       test=st.integers(1, 100).flatmap(
           lambda n: arrays(np.float64, (n, 4), elements=FINITE)))
def test_pca_takes_any_finite_input(train: np.ndarray, test: np.ndarray) -> None:
    detector = PCADetector().fit(train)
    score = detector.decision_function(test)
    check(score, len(test))
    assert np.isfinite(score).all()
