"""GapDetector: the package conventions (normalized score, predict, state) on timestamps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from detectors import Detector, GapDetector


def _stamps() -> pd.DatetimeIndex:
    t = pd.date_range("2026-01-05", periods=200, freq="10s", tz="UTC")
    return t.delete([10, 50]).delete(range(97, 140))  # lost readings, then a long silence


def test_score_is_normalized_and_predict_follows_it() -> None:
    det = GapDetector(factor=3.0).fit(_stamps())
    score = det.decision_function(_stamps())
    assert np.isnan(score[0])
    assert np.nanmax(score) == pytest.approx(440 / 30)
    assert (det.predict(_stamps()) == (np.nan_to_num(score) >= 1.0)).all()
    assert det.predict(_stamps()).sum() == 1  # a lost reading is not a silence


def test_gaps_until_end_and_state_round_trip() -> None:
    det = GapDetector(factor=3.0).fit(_stamps())
    until = _stamps()[-1] + pd.Timedelta(minutes=5)
    found = det.gaps(_stamps(), until=until)
    assert len(found) == 2 and found["end_ts"].iloc[-1] == until
    again = Detector.from_state(json.loads(json.dumps(det.to_state())))
    pd.testing.assert_frame_equal(again.gaps(_stamps()), det.gaps(_stamps()))


def test_unfitted_and_bad_factor() -> None:
    with pytest.raises(NotFittedError):
        GapDetector().decision_function(_stamps())
    with pytest.raises(ValueError):
        GapDetector(factor=0.5).fit(_stamps())
