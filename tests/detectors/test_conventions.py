"""Contract tests every detector must pass: sign convention, predict, causality, state, clone."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from detectors import (
    Detector,
    PCADetector,
    RobustZScore,
    RollingZScore,
    SeasonalZScore,
    StuckDetector,
)

RNG_SEED = 20260101


def _series(n: int = 600, k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(RNG_SEED)  # per test: order-independent
    x = rng.normal(size=(n, k)).cumsum(axis=0) * 0.05 + rng.normal(size=(n, k))
    x = np.round(x, 1)
    x[rng.random(x.shape) < 0.02] = np.nan
    x[400, 0] += 25.0  # a spike
    x[450:, 1] += 15.0  # a level shift
    x[500:560, 2] = 1.5  # a stuck sensor
    return x


def _seasonal_frame(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)  # per test: order-independent
    ts = pd.date_range(datetime(2026, 1, 5, tzinfo=UTC), periods=n, freq="10min")
    frames = []
    for s in range(2):
        value = 10 + np.sin(np.arange(n) / 24) + rng.normal(scale=0.3, size=n)
        value[500] += 20.0
        value[rng.random(n) < 0.02] = np.nan
        frames.append(pd.DataFrame({"ts": ts, "value": value, "series": f"d{s}", "group": "g"}))
    return pd.concat(frames, ignore_index=True)


def _pca_frame(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)  # per test: order-independent
    base = rng.normal(size=(n, 1))
    x = np.hstack([base, 2 * base, -base, 0.5 * base]) + 0.1 * rng.normal(size=(n, 4))
    x[300] = [3, -6, 3, 0]  # breaks the correlation
    x[rng.random(n) < 0.02, 2] = np.nan
    return x, np.arange(n) % 3


# name -> (factory, training data, scoring data, kwargs for scoring, slicer for a prefix)
Case = tuple[Callable[[], Detector], object, object, dict, Callable[[object, int], object]]


def _cases() -> dict[str, Case]:
    x = _series()
    f = _seasonal_frame()
    p, g = _pca_frame()
    rows = lambda a, m: a[:m]  # noqa: E731
    return {
        "rolling": (RollingZScore, x[:300], x, {}, rows),
        "robust": (RobustZScore, x[:300], x, {}, rows),
        "stuck": (StuckDetector, x[:300], x, {}, rows),
        "seasonal": (SeasonalZScore, f, f, {}, lambda a, m: a.iloc[:m]),
        "pca": (PCADetector, (p[:400], {"groups": g[:400]}), p, {"groups": g}, rows),
    }


CASES = _cases()


def _fit(name: str) -> Detector:
    factory, train, *_ = CASES[name]
    if isinstance(train, tuple):
        return factory().fit(train[0], **train[1])
    return factory().fit(train)


def _state_snapshot(det: Detector) -> str:
    return json.dumps(det.to_state(), sort_keys=True)


@pytest.mark.parametrize("name", list(CASES))
def test_unfitted_detector_refuses_to_score(name: str) -> None:
    factory, _, data, kwargs, _ = CASES[name]
    with pytest.raises(NotFittedError):
        factory().decision_function(data, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_sign_convention_and_predict(name: str) -> None:
    _, _, data, kwargs, _ = CASES[name]
    det = _fit(name)
    score = np.asarray(det.decision_function(data, **kwargs), dtype=float)
    pred = det.predict(data, **kwargs)
    assert pred.dtype.kind == "i" and set(np.unique(pred)) <= {0, 1}
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(pred, (score >= 1.0).astype(int))
    assert (pred[np.isnan(score)] == 0).all()
    assert np.nanmin(score) >= 0.0
    assert np.nanmax(score) >= 1.0  # each fixture holds an anomaly this detector should see
    assert (np.nan_to_num(score) < 1.0).mean() > 0.5  # and mostly normal points


@pytest.mark.parametrize("name", list(CASES))
def test_scores_are_causal(name: str) -> None:
    _, _, data, kwargs, prefix = CASES[name]
    det = _fit(name)
    full = np.asarray(det.decision_function(data, **kwargs))
    for m in (1, 17, 333):
        kw = {k: v[:m] for k, v in kwargs.items()}
        part = np.asarray(det.decision_function(prefix(data, m), **kw))
        np.testing.assert_array_equal(part, full[:m])


@pytest.mark.parametrize("name", list(CASES))
def test_scoring_leaves_fitted_state_alone(name: str) -> None:
    _, _, data, kwargs, _ = CASES[name]
    det = _fit(name)
    before = _state_snapshot(det)
    det.decision_function(data, **kwargs)
    det.predict(data, **kwargs)
    det.score_samples(data, **kwargs)
    assert _state_snapshot(det) == before


@pytest.mark.parametrize("name", list(CASES))
def test_state_round_trips_through_json(name: str) -> None:
    _, _, data, kwargs, _ = CASES[name]
    det = _fit(name)
    state = json.loads(json.dumps(det.to_state(), allow_nan=False))
    again = Detector.from_state(state)
    assert type(again) is type(det)
    np.testing.assert_array_equal(
        again.decision_function(data, **kwargs), det.decision_function(data, **kwargs)
    )


@pytest.mark.parametrize("name", list(CASES))
def test_clone_gives_an_unfitted_copy_with_the_same_params(name: str) -> None:
    det = _fit(name)
    copy = clone(det)
    assert copy.get_params() == det.get_params()
    assert not any(a.endswith("_") and not a.startswith("_") for a in vars(copy))


@pytest.mark.parametrize("name", ["rolling", "robust", "stuck"])
def test_nan_input_gives_nan_score_and_1d_input_keeps_shape(name: str) -> None:
    _, _, data, _, _ = CASES[name]
    det = _fit(name)
    score = det.decision_function(data)
    assert np.isnan(score[np.isnan(data)]).all()
    factory, train, *_ = CASES[name]
    one = factory().fit(train[:, 0]).decision_function(data[:, 0])
    np.testing.assert_array_equal(one, factory().fit(train[:, :1]).decision_function(data)[:, 0])
