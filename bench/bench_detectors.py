"""Detector benchmark: raw detector throughput, and scoring one simulated day from the database.

    python -m bench.bench_detectors [--points 10000000]

Writes bench/out/detectors.json. Runs in a scratch database on the configured server.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.scratch import scratch_database
from core import ingest, scoring
from detectors import PCADetector, RollingZScore
from simulator import FleetConfig, simulate

OUT = Path(__file__).parent / "out"


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def raw_throughput(points: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    series = 180  # the default fleet's device x metric series
    x = rng.normal(500, 20, (points // series, series))
    z = RollingZScore(window=60).fit(x[:1000])
    rolling = points / best_of(lambda: z.decision_function(x))
    vectors = rng.normal(0, 1, (points // 4, 4)) @ rng.normal(0, 1, (4, 4))
    pca = PCADetector().fit(vectors[:100_000])
    pca_rate = len(vectors) / best_of(lambda: pca.decision_function(vectors))
    return {"rolling_z_points_per_s": round(rolling), "pca_vectors_per_s": round(pca_rate)}


def scoring_day() -> dict[str, float]:
    with scratch_database("bench_detect"):
        config = FleetConfig()
        ingest.register_fleet(config)
        day0 = datetime(2026, 10, 5, tzinfo=UTC)
        for piece in ingest.chunks(ingest.Window(day0, day0 + timedelta(days=2)),
                                   timedelta(hours=6)):
            ingest.load_simulated(simulate(config, piece.start, piece.end), piece)
        t = time.perf_counter()
        trained = scoring.train_models(day0, day0 + timedelta(days=1))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        summary = scoring.score_window(day0 + timedelta(days=1), day0 + timedelta(days=2))
        score_s = time.perf_counter() - t
        return {"train_rows": trained.rows, "train_seconds": round(train_s, 2),
                "score_points": summary.points, "score_seconds": round(score_s, 2),
                "score_points_per_s": round(summary.points / score_s),
                "anomalies": summary.anomalies, "alerts_fired": summary.alerts_fired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    args = parser.parse_args()
    report = {"raw": raw_throughput(args.points), "database_day": scoring_day()}
    OUT.mkdir(exist_ok=True)
    (OUT / "detectors.json").write_text(json.dumps(report, indent=2))
    raw, day = report["raw"], report["database_day"]
    print(f"rolling z-score      {raw['rolling_z_points_per_s']:>12,} points/s")
    print(f"PCA scoring (4 dims) {raw['pca_vectors_per_s']:>12,} vectors/s")
    print(f"one simulated day from the database: {day['score_points']:,} points scored in "
          f"{day['score_seconds']} s ({day['score_points_per_s']:,}/s); training on the day "
          f"before: {day['train_seconds']} s; {day['anomalies']:,} anomalous points, "
          f"{day['alerts_fired']} alerts fired")
    print(f"written: {OUT / 'detectors.json'}")


if __name__ == "__main__":
    main()
