"""Loader benchmark: rows/s of the idempotent loader against raw keyed COPY, in the same run.

    python -m bench.bench_loader --rows 1000000 [--batch-rows 100000]

Runs in a scratch database on the configured server (DATABASE_URL or the embedded one) and
drops it afterwards. Prints a table and writes bench/out/loader.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.scratch import scratch_database
from core import db, loader, store
from core.copy_binary import readings_buffer

OUT = Path(__file__).parent / "out"


def synthetic_fleet(devices: int) -> pd.DataFrame:
    return pd.DataFrame({
        "device_id": range(1, devices + 1),
        "device_name": [f"bench-{i}" for i in range(1, devices + 1)],
        "site": "bench", "zone": "bench", "device_kind": "env-sensor",
        "metrics": [["co2", "temperature", "humidity", "occupancy"]] * devices,
        "interval_seconds": 10, "installed_at": pd.Timestamp("2026-01-01", tz="UTC"),
    })


def readings_for(rows: int, devices: int, start: pd.Timestamp) -> pd.DataFrame:
    """Time-ordered readings for `devices` x 4 metrics every 10 s (the simulator's shape)."""
    per_tick = devices * 4
    ticks = -(-rows // per_tick)
    ts = start + pd.to_timedelta(np.repeat(np.arange(ticks) * 10, per_tick), unit="s")
    frame = pd.DataFrame({
        "device_id": np.tile(np.repeat(np.arange(1, devices + 1, dtype=np.int32), 4), ticks),
        "metric_id": np.tile(np.arange(1, 5, dtype=np.int16), devices * ticks),
        "ts": ts,
    }).iloc[:rows]
    frame["value"] = np.random.default_rng(0).uniform(30, 60, len(frame))
    return frame.reset_index(drop=True)


def run(rows: int, batch_rows: int, devices: int) -> dict:
    with scratch_database("bench_loader"):
        with db.connect() as conn:
            store.upsert_devices(conn, synthetic_fleet(devices))
            conn.commit()
        start = pd.Timestamp("2026-11-01", tz="UTC")
        frame = readings_for(rows, devices, start)
        batches = [frame.iloc[i : i + batch_rows] for i in range(0, len(frame), batch_rows)]
        ref = frame["ts"].max() + pd.Timedelta(minutes=1)
        results = {}
        for label in ("first load", "re-run (all duplicate)"):
            t = time.perf_counter()
            loaded = dup = 0
            for part in batches:
                r = loader.load_readings(part, source="backfill", stream="bench",
                                         reference_time=ref)
                loaded, dup = loaded + r.rows_loaded, dup + r.rows_duplicate
            secs = time.perf_counter() - t
            results[label] = {"seconds": round(secs, 2), "rows_per_s": round(rows / secs),
                              "loaded": loaded, "duplicate": dup}
        # The pipeline's own shape: a simulated day of the default fleet (late rows, faults,
        # labels) loaded in 1-hour chunks, as the backfill flow does.
        from core import ingest
        from simulator import FleetConfig, simulate

        config = FleetConfig()
        ingest.register_fleet(config)
        day = pd.Timestamp("2026-10-01", tz="UTC")
        windows = list(ingest.chunks(ingest.Window(day.to_pydatetime(),
                                                   (day + pd.Timedelta(days=1)).to_pydatetime()),
                                     pd.Timedelta(hours=1).to_pytimedelta()))
        sims = [simulate(config, w.start, w.end) for w in windows]
        received = sum(len(b.readings) for b in sims)
        t = time.perf_counter()
        for w, b in zip(windows, sims, strict=True):
            ingest.load_simulated(b, w)
        secs = time.perf_counter() - t
        results["simulated day, 1 h chunks"] = {"seconds": round(secs, 2),
                                                "rows_per_s": round(received / secs),
                                                "received": received}
        # The machine's own limit in the same run: one raw binary COPY into a keyed,
        # day-partitioned table, with no validation or idempotency.
        with db.connect() as conn:
            conn.execute("CREATE TABLE raw_limit (LIKE telemetry.readings INCLUDING ALL)")
            conn.commit()
            payload = readings_buffer(frame, 1)
            t = time.perf_counter()
            with conn.cursor().copy("COPY raw_limit (device_id, metric_id, ts, value, batch_id)"
                                    " FROM STDIN (FORMAT binary)") as cp:
                cp.write(payload)
            conn.commit()
            secs = time.perf_counter() - t
            results["raw keyed COPY (limit)"] = {"seconds": round(secs, 2),
                                                 "rows_per_s": round(rows / secs)}
        return {"rows": rows, "batch_rows": batch_rows, "devices": devices,
                "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=45)
    args = parser.parse_args()
    report = run(args.rows, args.batch_rows, args.devices)
    OUT.mkdir(exist_ok=True)
    (OUT / "loader.json").write_text(json.dumps(report, indent=2))
    print(f"loader benchmark: {args.rows:,} rows in batches of {args.batch_rows:,}")
    for label, r in report["results"].items():
        print(f"  {label:<26} {r['rows_per_s']:>10,} rows/s  ({r['seconds']} s)")
    print(f"written: {OUT / 'loader.json'}")


if __name__ == "__main__":
    main()
