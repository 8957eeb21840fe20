"""Stages with no database: the simulator and the detectors, each beside a bare numpy reference
of the same shape. Best of `repeats` runs (the first run of a fresh process pays page faults
and imports, not the algorithm)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from bench.results import StageResult

SERIES = 180  # the default fleet's device x metric series
WINDOW = 60  # the detectors' window: 10 minutes at 10 s


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def fleet_window(rows: int, start: datetime) -> tuple[object, datetime, datetime]:
    """The default fleet and a window of whole hours holding about `rows` readings."""
    from simulator import FleetConfig

    config = FleetConfig()
    per_second = config.n_devices * 4 / config.interval_seconds
    hours = max(1, -(-int(rows / per_second) // 3600))
    return config, start, start + timedelta(hours=hours)


def simulate_stage(rows: int, repeats: int) -> StageResult:
    from simulator import simulate

    config, start, end = fleet_window(rows, datetime(2026, 10, 5, tzinfo=UTC))
    n = len(simulate(config, start, end).readings)
    seconds = best_of(lambda: simulate(config, start, end), repeats)
    rng = np.random.default_rng(0)

    def reference() -> None:  # the same five columns, random
        rng.integers(1, 46, n, dtype=np.int32)
        rng.integers(1, 5, n, dtype=np.int16)
        rng.normal(500, 20, n)
        np.arange(n, dtype=np.int64) * 10_000_000_000
        rng.integers(0, 10**9, n)

    ref = best_of(reference, repeats)
    return StageResult("simulate readings (default fleet)", n, seconds,
                       "numpy random: 5 columns of the same length", ref,
                       goal=">= 10M readings/s").judge(lambda r: r.rate >= 10e6)


def _cumsum_rolling_mean(x: np.ndarray) -> np.ndarray:
    c = np.cumsum(x, axis=0)
    return (c[WINDOW:] - c[:-WINDOW]) / WINDOW


def trailing_z_stages(points: int, repeats: int) -> list[StageResult]:
    from detectors import RobustZScore, RollingZScore

    rng = np.random.default_rng(0)
    x = rng.normal(500, 20, (points // SERIES, SERIES))
    ref = best_of(lambda: _cumsum_rolling_mean(x), repeats)
    reference = "numpy cumsum rolling mean, same array"
    out = []
    for name, detector, goal in (
            ("rolling z-score", RollingZScore(window=WINDOW), ">= 20M points/s"),
            ("robust z-score (median/MAD)", RobustZScore(window=WINDOW), "state the figure")):
        detector.fit(x[:1000])
        seconds = best_of(lambda d=detector: d.decision_function(x), repeats)
        result = StageResult(name, x.size, seconds, reference, ref, goal=goal)
        out.append(result.judge(lambda r: r.rate >= 20e6) if goal.startswith(">=") else result)
    return out


def seasonal_stage(points: int, repeats: int) -> StageResult:
    from detectors import SeasonalZScore

    rng = np.random.default_rng(1)
    ticks = points // SERIES
    ts = pd.Timestamp("2026-10-05", tz="UTC") + pd.to_timedelta(
        np.repeat(np.arange(ticks) * 10, SERIES), unit="s")
    frame = pd.DataFrame({"ts": ts, "value": rng.normal(500, 20, ticks * SERIES),
                          "series": np.tile(np.arange(SERIES), ticks),
                          "group": np.tile(np.arange(SERIES) % 4, ticks)})
    detector = SeasonalZScore().fit(frame)
    seconds = best_of(lambda: detector.decision_function(frame), repeats)
    values = frame["value"].to_numpy().reshape(ticks, SERIES)
    ref = best_of(lambda: _cumsum_rolling_mean(values), repeats)
    return StageResult("seasonal z-score (time-of-week)", len(frame), seconds,
                       "numpy cumsum rolling mean, same values", ref, goal="state the figure")


def pca_stage(points: int, repeats: int) -> StageResult:
    from detectors import PCADetector

    rng = np.random.default_rng(2)
    mixing = rng.normal(0, 1, (4, 4))
    vectors = rng.normal(0, 1, (points // 4, 4)) @ mixing
    detector = PCADetector().fit(vectors[:100_000])
    seconds = best_of(lambda: detector.decision_function(vectors), repeats)
    ref = best_of(lambda: vectors @ mixing, repeats)
    return StageResult("PCA score (4 metrics)", len(vectors), seconds,
                       "numpy matrix product (n x 4) @ (4 x 4)", ref,
                       goal=">= 10M vectors/s").judge(lambda r: r.rate >= 10e6)
