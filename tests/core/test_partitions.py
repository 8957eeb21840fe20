"""Daily partitions made by several sessions at once (API requests crossing into a new day
together): without a lock, two sessions creating the same day deadlocked (40P01), and the API
answered 503 for a batch it could have loaded. Found by `make loadtest`."""

import threading

import pandas as pd
import psycopg

from core import loader


def test_sessions_creating_the_same_new_days_at_once_all_succeed(db):
    errors: list[Exception] = []
    for round_ in range(8):
        day = pd.Timestamp("2027-01-01", tz="UTC") + pd.Timedelta(days=10 * round_)
        start = threading.Barrier(3)

        def create(day: pd.Timestamp = day, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                loader.ensure_partitions(day, day)
            except psycopg.Error as exc:
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    ahead = loader.get_settings().partitions_ahead_days
    with psycopg.connect(db) as conn:
        made = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'telemetry'"
                            " AND tablename LIKE 'readings_p2027%'").fetchone()[0]
    assert made == 8 * (1 + ahead)
