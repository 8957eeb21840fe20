"""The load test's machinery: its traffic, its accounting, and a short run of it (5 clients,
2 s) against the real API over a real database, which must account for every reading."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from bench import bench_api, loadtest

DEVICES = [(1, "s1", "z1", ["co2", "humidity"]), (2, "s1", "z1", ["temperature"]),
           (3, "s1", "z2", ["co2", "occupancy"])]
HARD_MAX = {"co2": 10000, "temperature": 85, "humidity": 100, "occupancy": 1000}


def faults(row: dict) -> list[str]:
    """What is wrong with a row the traffic generated (its good rows are stamped in the run's
    window, after 2026-11-20)."""
    ts = row.get("ts")
    return [name for name, broken in (
        ("device", row["device_id"] >= 900_000),
        ("metric", row["metric"] not in HARD_MAX),
        ("value type", not isinstance(row["value"], float)),
        ("value", isinstance(row["value"], float) and row["value"] > HARD_MAX.get(
            row["metric"], float("inf"))),
        ("ts missing", ts is None),
        ("ts", ts is not None and not ts.startswith("2026-11-2"))) if broken]


def test_traffic_sends_every_good_key_once_and_bad_rows_with_one_fault_each():
    start = datetime(2026, 11, 20, tzinfo=UTC)
    traffic = loadtest.Traffic(DEVICES, HARD_MAX, start, start + timedelta(days=1),
                               bad_share=1.0)
    rng = random.Random(0)
    keys: Counter = Counter()
    bad: Counter = Counter()
    for _ in range(300):
        batch = traffic.next(rng)
        rows = orjson.loads(batch.body)["readings"]
        assert len(rows) == batch.rows == batch.good + batch.bad
        found = [faults(r) for r in rows]
        assert max(map(len, found)) <= 1  # never two faults: the rule each breaks is known
        assert sum(map(len, found)) == batch.bad - batch.bad_by_rule["conflicting_duplicate"]
        keys.update((r["device_id"], r["metric"], r["ts"]) for r, f in zip(rows, found, strict=True)
                    if not f)
        bad.update(batch.bad_by_rule)
    assert len(keys) == sum(keys.values()) - bad["conflicting_duplicate"]
    assert set(bad) == set(loadtest.BAD_KINDS)


def test_traffic_stops_at_the_end_of_its_timeline():
    start = datetime(2026, 11, 20, tzinfo=UTC)
    traffic = loadtest.Traffic(DEVICES, HARD_MAX, start, start + timedelta(minutes=30), 0)
    batches = iter(lambda: traffic.next(random.Random(1)), None)
    assert sum(b.rows for b in batches) <= 2 * 5 * 180 and traffic.exhausted


def test_accounting_flags_one_lost_reading():
    sent = loadtest.Sent(posts=2, rows=10, good_new=9, bad=1, bad_new=Counter(unknown_device=1),
                         acked_posts=2, acked=Counter(received=10, loaded=9, rejected=1))
    db = {"batches": 2, "failed": 0, "running": 0, "received": 10, "loaded": 9, "duplicate": 0,
          "quarantined": 1, "stored": 9, "quarantine_rows": {"unknown_device": 1}}
    assert all(c.ok for c in loadtest.checks(sent, db))
    lost = {**db, "stored": 8}
    failed = {c.name for c in loadtest.checks(sent, lost) if not c.ok}
    assert "distinct good rows sent = stored readings" in failed
    assert "rows sent = stored + ledger quarantined + ledger duplicate" in failed


def test_a_short_run_against_the_api_loses_nothing(db, tmp_path):
    bench_api.fill(0.25, marts=False)  # no dbt: its start-up would triple the test's time
    opts = loadtest.parse_args(["--clients", "5", "--seconds", "2", "--hours", "0.25",
                                "--bad-share", "0.5", "--resend-share", "0.3"])
    result = loadtest.run_against(db, opts, tmp_path / "server.log", marts=False)
    assert result["errors"] == 0, result["error_kinds"]
    assert [c for c in result["checks"] if not c["ok"]] == []
    assert result["passed"]
    ingestion = result["ingestion"]
    assert ingestion["posts"] > 0 and result["database"]["stored"] > 0
    assert result["clients"] == {"total": 5, "ingestion": 2, "query": 3}
    assert any(kind.startswith("GET") for kind in result["kinds"])
    assert not any(kind.startswith(loadtest.READS_MARTS) for kind in result["kinds"])
