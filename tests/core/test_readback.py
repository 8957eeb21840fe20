"""Binary COPY read-back returns exactly what the loader stored."""

from __future__ import annotations

import pandas as pd
import pytest

from core import ingest, readback
from simulator import FleetConfig, simulate

START = pd.Timestamp("2026-11-20T00:00:00Z").to_pydatetime()
END = pd.Timestamp("2026-11-20T01:00:00Z").to_pydatetime()


def test_read_back_equals_loaded_rows_and_shards_partition_devices(conn):
    config = FleetConfig(sites=1, zones_per_site=2, devices_per_zone=2)
    ingest.register_fleet(config)
    batch = simulate(config, START, END)
    ingest.load_simulated(batch, ingest.Window(START, END))
    stored = pd.DataFrame(
        conn.execute("SELECT device_id, metric_id, ts, value FROM telemetry.readings"
                     " WHERE ts >= %s AND ts < %s ORDER BY 1, 2, 3", (START, END)).fetchall(),
        columns=["device_id", "metric_id", "ts", "value"])
    got = readback.read_readings(START, END)
    assert len(got) == len(stored) > 0
    assert got["value"].tolist() == stored["value"].tolist()
    assert got["ts"].tolist() == pd.to_datetime(stored["ts"], utc=True).tolist()
    assert got["device_id"].tolist() == stored["device_id"].tolist()
    assert got["metric_id"].tolist() == stored["metric_id"].tolist()
    assert got.dtypes.astype(str).tolist() == ["int32", "int16", "datetime64[ns, UTC]", "float64"]
    assert readback.read_readings(END, END + pd.Timedelta(hours=1)).empty
    parts = [readback.read_readings(START, END, shard=i, shards=3) for i in range(3)]
    assert sum(len(p) for p in parts) == len(got)
    assert set().union(*(set(p["device_id"]) for p in parts)) == set(got["device_id"])
    assert all(set(p["device_id"]).isdisjoint(q["device_id"])
               for i, p in enumerate(parts) for q in parts[i + 1:])


def test_bad_shard_is_refused(db):
    with pytest.raises(ValueError, match="shard must be in"):
        readback.read_readings(START, END, shard=3, shards=3)
