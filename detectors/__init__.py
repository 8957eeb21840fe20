"""Anomaly detectors: scikit-learn style estimators over arrays and frames (pure, no I/O).

Sign convention, the same for every detector in this package:

    decision_function(X)  a NORMALIZED score: higher = more anomalous, and 1.0 = the detector's
                          own alarm threshold (so scores of different detectors are comparable
                          and can be fused); NaN = no verdict (a gap, too little history).
    predict(X)            int 0/1 = decision_function(X) >= 1.0, NaN -> 0.
    score_samples(X)      the raw statistic (|z|, robust |z|, run length, (SPE, T2)).

Estimator rules: __init__ only stores parameters; fit learns attributes ending in "_" and returns
self; scoring checks is-fitted and never changes fitted state; to_state() / from_state() give a
JSON-safe round trip of parameters and fitted state. Streams are scored causally (the score at t
uses only positions <= t), NaN inputs are gaps (skipped in windows, NaN score at the gap).

    RollingZScore   trailing mean/std z-score            spikes, level-shift onsets, noise bursts
    RobustZScore    trailing median/MAD z-score          close repeated spikes, same as above
    StuckDetector   run length of a repeated value       stuck (frozen) sensors
    SeasonalZScore  per-series time-of-week baselines    level shifts / drifts for their duration,
                                                         threshold breaches, ventilation failures
    PCADetector     SPE + Hotelling T2 across metrics    ventilation failure (broken correlation)
    GapDetector     silence longer than k x the cadence  dropouts (missing data, device-level)
    Fusion          scores + static limits -> severity
    to_unit_interval  1 - 2**-score for reports (threshold -> 0.5)
"""

from detectors.base import ALARM, Detector, alarm
from detectors.frames import wide_readings
from detectors.fusion import SEVERITIES, Fusion
from detectors.gaps import GapDetector
from detectors.normalize import to_unit_interval
from detectors.pca import PCADetector
from detectors.robust import RobustZScore
from detectors.rolling import RollingZScore
from detectors.seasonal import SeasonalZScore
from detectors.stuck import StuckDetector

__all__ = [
    "ALARM",
    "SEVERITIES",
    "Detector",
    "Fusion",
    "GapDetector",
    "PCADetector",
    "RobustZScore",
    "RollingZScore",
    "SeasonalZScore",
    "StuckDetector",
    "alarm",
    "to_unit_interval",
    "wide_readings",
]
