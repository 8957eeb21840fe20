"""RollingZScore, RobustZScore and StuckDetector on synthetic series with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors import RobustZScore, RollingZScore, StuckDetector


def _rng(seed: int = 7) -> np.random.Generator:
    # A fresh generator per use: results must not depend on which tests ran before (xdist).
    return np.random.default_rng(seed)


def _noise(n: int = 1000) -> np.ndarray:
    return 20.0 + _rng().normal(scale=1.0, size=n)


def test_rolling_matches_pandas_trailing_mean_and_std() -> None:
    x = _noise(3000).reshape(-1, 3)
    x[_rng().random(x.shape) < 0.05] = np.nan
    got = RollingZScore(window=40).fit(x).score_samples(x)
    ref = pd.DataFrame(x).rolling(40, min_periods=20)
    mean, std = ref.mean().shift(1).to_numpy(), ref.std().shift(1).to_numpy()
    want = np.abs(x - mean) / std
    np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)


def test_rolling_is_accurate_far_from_zero() -> None:
    x = 1e6 + _noise(500)  # large offset: naive cumulative sums of squares would cancel
    got = RollingZScore(window=30).fit(x).score_samples(x)
    s = pd.Series(x).rolling(30, min_periods=15)
    want = np.abs(x - s.mean().shift(1)) / s.std().shift(1)
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_spike_level_shift_and_noise_burst_are_found() -> None:
    x = _noise()
    x[300] += 10.0  # spike
    x[600:] += 8.0  # level shift
    x[800:830] += _rng(8).normal(scale=6.0, size=30)  # noise burst
    for det in (RollingZScore(), RobustZScore()):
        s = det.fit(x[:250]).decision_function(x)
        assert s[300] > 2.0
        assert s[600] > 2.0  # at the onset of the shift
        assert (s[800:830] >= 1.0).sum() >= 5
        assert (s[100:290] >= 1.0).mean() < 0.02  # quiet on plain noise


def test_trailing_window_excludes_the_current_point_and_min_periods() -> None:
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 100.0])
    z = RollingZScore(window=4, min_periods=2, threshold=1.0).fit(x[:6]).score_samples(x)
    assert np.isnan(z[:2]).all()  # fewer than 2 points before
    assert z[-1] > 50  # 100 vs a window of 0/1: the spike is not in its own baseline


def test_constant_window_then_jump_is_finite() -> None:
    x = np.r_[_noise(200), np.full(100, 20.0), 21.0]
    for det in (RollingZScore(), RobustZScore()):
        s = det.fit(x[:200]).decision_function(x)
        assert np.isfinite(s[-1]) and s[-1] >= 1.0
    flat = np.full(100, 5.0)
    s = RollingZScore().fit(flat).decision_function(np.r_[flat, 6.0])
    assert np.isfinite(s[-1]) and s[-1] > 1.0


def test_robust_finds_two_close_spikes_the_rolling_window_masks() -> None:
    x = _noise(400)
    x[300] += 30.0
    x[305] += 10.0
    rolling = RollingZScore(window=60).fit(x[:250]).decision_function(x)
    robust = RobustZScore(window=60).fit(x[:250]).decision_function(x)
    assert robust[300] >= 1.0 and robust[305] >= 1.0
    assert rolling[300] >= 1.0 and rolling[305] < 1.0  # the first spike inflated the std


def test_stuck_values_are_found_by_the_stuck_detector_only() -> None:
    x = np.round(_noise(2000), 1)
    x[1500:1600] = x[1500]
    stuck = StuckDetector().fit(x[:1000])
    s = stuck.decision_function(x)
    assert (s[:1500] < 1.0).all()
    assert (s[1500 + int(stuck.alarm_run_[0]) - 1 : 1600] >= 1.0).all()
    # a mean/std window sees a flat line as perfectly normal: documented, not its job
    assert (RollingZScore().fit(x[:1000]).decision_function(x)[1560:1600] < 1.0).all()


def test_stuck_run_skips_gaps() -> None:
    x = np.array([1.0, 1.0, np.nan, 1.0, 2.0, 2.0, np.nan, 2.0, 3.0])
    run = StuckDetector().fit(x).score_samples(x)
    np.testing.assert_array_equal(run, [1, 2, np.nan, 3, 1, 2, np.nan, 3, 1])


def test_gaps_do_not_poison_window_statistics() -> None:
    x = _noise(400)
    y = x.copy()
    y[100:110] = np.nan
    for det in (RollingZScore(), RobustZScore()):
        s = det.fit(x[:100]).decision_function(y)
        assert np.isnan(s[100:110]).all()
        assert np.isfinite(s[110:]).all()
