"""Golden regression test: fixed seed + fixed data -> the scores committed in golden/scores.json.

A change to any detector's numbers fails this test. If the change is deliberate, regenerate the
file and review its diff before committing:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/detectors/test_golden.py

Data: simulate(FleetConfig(seed=7, sites=1, zones_per_site=1, devices_per_zone=2)) from Monday
2026-01-12 06:00 UTC for 6 h (anomalies and faults on), detectors fitted on the clean week before.
Stored per detector: summary statistics and 200 scores at evenly spaced positions; compared with
rtol 1e-6 (NaN must match NaN).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors import (
    PCADetector,
    RobustZScore,
    RollingZScore,
    SeasonalZScore,
    StuckDetector,
    wide_readings,
)
from simulator import FleetConfig, simulate, simulate_clean

GOLDEN = Path(__file__).parent / "golden" / "scores.json"
METRICS = ["co2", "temperature", "humidity", "occupancy"]
CFG = FleetConfig(seed=7, sites=1, zones_per_site=1, devices_per_zone=2)
DAY0 = datetime(2026, 1, 12, 6, tzinfo=UTC)
SAMPLES = 200


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    long = wide.melt(["device_id", "ts"], METRICS, var_name="metric", value_name="value")
    long["series"] = long["device_id"].astype(str) + ":" + long["metric"]
    long["group"] = long["metric"]
    return long


def _scores() -> dict[str, np.ndarray]:
    history = wide_readings(simulate_clean(CFG, DAY0 - timedelta(days=7), DAY0).readings)
    now = wide_readings(simulate(CFG, DAY0, DAY0 + timedelta(hours=6)).readings)
    now = now[now["device_id"] <= CFG.n_devices].reset_index(drop=True)
    out: dict[str, list[np.ndarray]] = {"rolling": [], "robust": [], "stuck": []}
    for device, rows in now.groupby("device_id").indices.items():
        train = history.loc[history["device_id"] == device, METRICS].to_numpy()
        x = now.loc[rows, METRICS].to_numpy()
        out["rolling"].append(RollingZScore().fit(train).decision_function(x).ravel())
        out["robust"].append(RobustZScore().fit(train).decision_function(x).ravel())
        out["stuck"].append(StuckDetector().fit(train).decision_function(x).ravel())
    scores = {k: np.concatenate(v) for k, v in out.items()}
    scores["seasonal"] = SeasonalZScore().fit(_long(history)).decision_function(_long(now))
    pca = PCADetector().fit(history[METRICS].dropna(), groups=history.dropna()["device_id"])
    scores["pca"] = pca.decision_function(now[METRICS], groups=now["device_id"])
    scores["pca_contrib"] = pca.contributions(now[METRICS], groups=now["device_id"]).ravel()
    return scores


def _summary(s: np.ndarray) -> dict[str, object]:
    idx = np.linspace(0, len(s) - 1, SAMPLES).round().astype(int)
    finite = s[np.isfinite(s)]
    return {
        "n": len(s),
        "n_nan": int(np.isnan(s).sum()),
        "n_alarm": int((finite >= 1.0).sum()),
        "mean": float(finite.mean()),
        "max": float(finite.max()),
        "quantiles": [float(q) for q in np.quantile(finite, [0.5, 0.9, 0.99])],
        "sample_index": idx.tolist(),
        "sample": [None if np.isnan(v) else float(v) for v in s[idx]],
    }


@pytest.fixture(scope="module")
def summaries() -> dict[str, dict[str, object]]:
    return {name: _summary(s) for name, s in _scores().items()}


def test_scores_match_golden(summaries: dict[str, dict[str, object]]) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(summaries, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"golden file regenerated: {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(golden) == sorted(summaries)
    for name, want in golden.items():
        got = summaries[name]
        for key in ("n", "n_nan", "n_alarm", "sample_index"):
            assert got[key] == want[key], (name, key)
        for key in ("mean", "max", "quantiles", "sample"):
            g = np.array(got[key], dtype=float)
            w = np.array(want[key], dtype=float)
            np.testing.assert_allclose(g, w, rtol=1e-6, equal_nan=True, err_msg=f"{name}.{key}")
