"""The dbt KPI marts against an independent pandas computation, late data and idempotence.

Every test builds the project into its own fresh database (the `db` fixture) with a small
fleet: 4 devices in 2 zones, co2 (breach threshold 1000) and occupancy (no threshold), 3 h at
10 s / 15 s with random gaps, spanning midnight (two daily partitions).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.dbt_runner import DbtError, DbtRun, run_dbt
from core.settings import get_settings

SCHEMA = "analytics"
START = dt.datetime(2026, 3, 1, 22, 30, tzinfo=dt.UTC)
HOURS = 3
HORIZON = pd.Timedelta(minutes=120)  # settings.late_horizon_minutes default
THRESHOLDS = {1: 1000.0, 4: None}  # co2, occupancy (from the migration's registry)
METRIC_NAMES = {1: "co2", 4: "occupancy"}
DEVICES = pd.DataFrame(
    {
        "device_id": [1, 2, 3, 4],
        "device_name": ["d1", "d2", "d3", "d4"],
        "site": ["s1", "s1", "s1", "s2"],
        "zone": ["z1", "z1", "z2", "z1"],
        "device_kind": ["env"] * 4,
        "metrics": [["co2", "occupancy"], ["co2", "occupancy"], ["co2"], ["co2", "occupancy"]],
        "interval_seconds": [10, 10, 15, 10],
        "installed_at": [START - dt.timedelta(days=30)] * 4,
    }
)
KEY = ["device_id", "metric_id", "window_start"]
ZONE_KEY = ["site", "zone", "metric_id", "window_start"]
STATS = [
    "reading_count",
    "mean",
    "min",
    "max",
    "stddev",
    "last_value",
    "breach_count",
    "expected_count",
    "completeness",
]
ZONE_STATS = [
    "device_count",
    "reading_count",
    "mean",
    "min",
    "max",
    "breach_count",
    "expected_count",
    "completeness",
]


# --- data -------------------------------------------------------------------------------------


def make_readings(seed: int = 7) -> pd.DataFrame:
    """Readings for the fleet; device 4 never reports occupancy (lowers zone completeness)."""
    rng = np.random.default_rng(seed)
    frames = []
    for dev in DEVICES.itertuples():
        step = dev.interval_seconds
        ts = pd.date_range(
            START, START + pd.Timedelta(hours=HOURS), freq=f"{step}s", inclusive="left"
        )
        for metric_id in (1, 4):
            if METRIC_NAMES[metric_id] not in dev.metrics or (dev.device_id, metric_id) == (4, 4):
                continue
            keep = rng.random(len(ts)) > 0.12  # random gaps
            if metric_id == 1:
                values = rng.normal(900.0, 80.0, len(ts))
            else:
                values = rng.poisson(6, len(ts)).astype(float)
            frames.append(
                pd.DataFrame(
                    {
                        "device_id": dev.device_id,
                        "metric_id": metric_id,
                        "ts": ts[keep],
                        "value": values[keep],
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True)
    # One 5-minute window with a single reading (stddev must be null there).
    lone = START + pd.Timedelta(minutes=40)
    in_lone = (df.device_id == 1) & (df.metric_id == 1) & (df.ts >= lone)
    in_lone &= df.ts < lone + pd.Timedelta(minutes=5)
    df = df[~in_lone | (df.ts == df[in_lone].ts.min())]
    return df.reset_index(drop=True)


def seed(url: str, readings: pd.DataFrame) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT telemetry.ensure_partitions('2026-02-27', '2026-03-03')").fetchall()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO telemetry.devices (device_id, device_name, site, zone, device_kind,"
                " metrics, interval_seconds, installed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        int(d.device_id),
                        d.device_name,
                        d.site,
                        d.zone,
                        d.device_kind,
                        d.metrics,
                        int(d.interval_seconds),
                        d.installed_at,
                    )
                    for d in DEVICES.itertuples()
                ],
            )
        insert_readings(conn, readings)


def insert_readings(conn: psycopg.Connection, readings: pd.DataFrame, batch_id: int = 1) -> None:
    with conn.cursor().copy(
        "COPY telemetry.readings (device_id, metric_id, ts, value, batch_id) FROM STDIN"
    ) as copy:
        for r in readings.itertuples():
            copy.write_row(
                (int(r.device_id), int(r.metric_id), r.ts.to_pydatetime(), float(r.value), batch_id)
            )


def read_table(url: str, table: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{SCHEMA}"."{table}"')
        cols = [c.name for c in cur.description]
        df = pd.DataFrame(cur.fetchall(), columns=cols)
    for col in ("window_start", "window_end", "built_at", "last_reading_at"):
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True)
    return df


# --- the independent computation ---------------------------------------------------------------


def expected_device_kpis(readings: pd.DataFrame, freq: str) -> pd.DataFrame:
    seconds = pd.Timedelta(freq).total_seconds()
    df = readings.sort_values("ts").copy()
    df["window_start"] = df.ts.dt.floor(freq)
    threshold = df.metric_id.map(THRESHOLDS).astype(float)
    df["breach"] = (df.value > threshold).astype(int)  # NaN threshold -> never
    g = df.groupby(KEY)
    out = pd.DataFrame(
        {
            "reading_count": g.value.size(),
            "mean": g.value.mean(),
            "min": g.value.min(),
            "max": g.value.max(),
            "stddev": g.value.std(ddof=1),
            "last_value": g.value.last(),
            "breach_count": g.breach.sum(),
        }
    ).reset_index()
    interval = out.device_id.map(DEVICES.set_index("device_id").interval_seconds)
    out["expected_count"] = seconds / interval
    out["completeness"] = out.reading_count / out.expected_count
    return out


def expected_zone_kpis(readings: pd.DataFrame) -> pd.DataFrame:
    seconds = 900.0
    df = readings.merge(DEVICES[["device_id", "site", "zone"]], on="device_id")
    df["window_start"] = df.ts.dt.floor("15min")
    df["breach"] = (df.value > df.metric_id.map(THRESHOLDS).astype(float)).astype(int)
    g = df.groupby(ZONE_KEY)
    out = pd.DataFrame(
        {
            "device_count": g.device_id.nunique(),
            "reading_count": g.value.size(),
            "mean": g.value.mean(),
            "min": g.value.min(),
            "max": g.value.max(),
            "breach_count": g.breach.sum(),
        }
    ).reset_index()

    def zone_expected(row: pd.Series) -> float:
        name = METRIC_NAMES[row.metric_id]
        members = DEVICES[(DEVICES.site == row.site) & (DEVICES.zone == row.zone)]
        members = members[members.metrics.map(lambda ms: name in ms)]
        return float((seconds / members.interval_seconds).sum())

    out["expected_count"] = out.apply(zone_expected, axis=1)
    out["completeness"] = out.reading_count / out.expected_count
    return out


def assert_frames_match(
    actual: pd.DataFrame, expected: pd.DataFrame, key: list[str], stats: list[str], label: str
) -> None:
    merged = actual.merge(expected, on=key, how="outer", suffixes=("", "_exp"), indicator=True)
    missing = merged[merged._merge != "both"]
    assert missing.empty, f"{label}: key sets differ:\n{missing[[*key, '_merge']].head()}"
    for col in stats:
        got = merged[col].astype(float).to_numpy()
        want = merged[f"{col}_exp"].astype(float).to_numpy()
        np.testing.assert_allclose(
            got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=f"{label}.{col}"
        )


def assert_marts_match(url: str, readings: pd.DataFrame) -> None:
    for table, freq in (("fct_kpi_5m", "5min"), ("fct_kpi_15m", "15min"), ("fct_kpi_1h", "1h")):
        actual = read_table(url, table)
        assert_frames_match(actual, expected_device_kpis(readings, freq), KEY, STATS, table)
        ends = actual.window_start + pd.Timedelta(freq)
        assert (actual.window_end == ends).all(), table
    zone = read_table(url, "fct_zone_kpi_15m")
    assert_frames_match(zone, expected_zone_kpis(readings), ZONE_KEY, ZONE_STATS, "zone")


def assert_all_passed(run: DbtRun) -> None:
    assert run.success
    bad = [r for r in run.results if r.status not in ("success", "pass")]
    assert not bad, bad
    kinds = {r.unique_id.split(".")[0] for r in run.results}
    assert kinds == {"model", "test"}


# --- tests --------------------------------------------------------------------------------------


def test_build_matches_pandas(db: str) -> None:
    readings = make_readings()
    seed(db, readings)

    run = run_dbt(["build"])

    assert_all_passed(run)
    row_rules = {r.unique_id.split(".")[2] for r in run.results if "_row_rules" in r.unique_id}
    assert row_rules == {f"{m}_row_rules" for m in ("dim_devices", "fct_kpi_5m", "fct_kpi_15m",
                                                     "fct_kpi_1h", "fct_zone_kpi_15m")}
    assert run.result("fct_kpi_5m").rows_affected == len(expected_device_kpis(readings, "5min"))
    assert_marts_match(db, readings)
    dim = read_table(db, "dim_devices").sort_values("device_id")
    assert dim.device_id.tolist() == [1, 2, 3, 4]
    assert dim.metric_count.tolist() == [2, 2, 1, 2]
    five = read_table(db, "fct_kpi_5m")
    assert five.stddev.isna().sum() >= 1  # the lone-reading window
    assert (five[five.metric_id == 4].breach_count == 0).all()  # no threshold, no breaches
    assert five[five.metric_id == 1].breach_count.sum() > 0


def test_late_data_lookback_and_idempotence(db: str) -> None:
    readings = make_readings()
    seed(db, readings)
    run_dbt(["build"])
    first = {
        t: read_table(db, t)
        for t in ("fct_kpi_5m", "fct_kpi_15m", "fct_kpi_1h", "fct_zone_kpi_15m")
    }

    # A run with no new data changes nothing but built_at.
    again = run_dbt(["build", "--select", "tag:kpi"])
    assert_all_passed(again)
    for table, before in first.items():
        after = read_table(db, table)
        key = ZONE_KEY if table.startswith("fct_zone") else KEY
        cols = [c for c in before.columns if c != "built_at"]
        pd.testing.assert_frame_equal(
            after[cols].sort_values(key).reset_index(drop=True),
            before[cols].sort_values(key).reset_index(drop=True),
            check_exact=False,
            rtol=1e-12,
            obj=table,
        )
    after_idempotent = read_table(db, "fct_kpi_5m")

    w_max = first["fct_kpi_5m"].window_start.max()
    bound = w_max - HORIZON  # lookback of the next run (max before it - horizon)
    late = pd.DataFrame(
        {
            "device_id": [1, 2, 1],
            "metric_id": [1, 1, 1],
            "ts": [
                w_max - pd.Timedelta(minutes=30) + pd.Timedelta(seconds=3),  # late, in horizon
                w_max + pd.Timedelta(minutes=10, seconds=1),  # new later window
                START + pd.Timedelta(seconds=3),  # late, outside horizon
            ],
            "value": [5000.0, 950.0, 7000.0],
        }
    )
    with psycopg.connect(db, autocommit=True) as conn:
        insert_readings(conn, late, batch_id=2)

    final = run_dbt(["build", "--select", "tag:kpi"])
    assert_all_passed(final)

    five = read_table(db, "fct_kpi_5m").set_index(KEY)
    prev = after_idempotent.set_index(KEY)
    in_window = (1, 1, w_max - pd.Timedelta(minutes=30))
    assert five.loc[in_window, "reading_count"] == prev.loc[in_window, "reading_count"] + 1
    assert five.loc[in_window, "max"] == 5000.0
    assert five.loc[in_window, "breach_count"] == prev.loc[in_window, "breach_count"] + 1
    assert five.loc[in_window, "mean"] != pytest.approx(prev.loc[in_window, "mean"])
    new_window = (2, 1, w_max + pd.Timedelta(minutes=10))
    assert five.loc[new_window, "reading_count"] == 1
    assert five.loc[new_window, "last_value"] == 950.0

    # Windows before the bound were not rebuilt at all (same built_at, same values), so the
    # reading that came later than the horizon is not counted; everything from it on was.
    old = five.index.get_level_values("window_start") < bound
    assert old.any() and (~old).any()
    pd.testing.assert_frame_equal(five[old].sort_index(), prev.loc[five[old].index].sort_index())
    assert (five[~old].built_at > prev.built_at.max()).all()
    outside = (1, 1, pd.Timestamp(START))
    assert five.loc[outside, "max"] < 7000.0

    # Every mart equals pandas on the rows it should have seen (all but the too-late one).
    assert_marts_match(db, pd.concat([readings, late.iloc[:2]], ignore_index=True))


def test_lookback_prunes_old_partitions(db: str) -> None:
    """The incremental bound is a plan-time constant, max(window_start) - the horizon var, so
    PostgreSQL skips older day partitions while planning."""
    readings = make_readings()
    seed(db, readings)
    with psycopg.connect(db, autocommit=True) as conn:  # older rows, two days behind
        older = readings[readings.device_id == 1].head(50).copy()
        older["ts"] -= pd.Timedelta(days=2)
        insert_readings(conn, older)
    run_dbt(["run"])
    # Incremental run with a 30-minute horizon: compiles the bound into the SQL.
    run = run_dbt(["run", "--select", "fct_kpi_5m"], vars={"late_horizon_minutes": 30})

    w_max = pd.Timestamp(START) + pd.Timedelta(hours=HOURS) - pd.Timedelta(minutes=5)
    bound = w_max - pd.Timedelta(minutes=30)  # 2026-03-02 00:55 UTC
    assert run.result("fct_kpi_5m").rows_affected == 6 * 7  # 6 series x windows 00:55..01:25
    compiled = next(Path(get_settings().dbt_target_dir).glob("compiled/**/fct_kpi_5m.sql"))
    sql = compiled.read_text()
    assert f"to_timestamp({int(bound.timestamp())})" in sql
    with psycopg.connect(db) as conn:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))
    scanned = sorted(set(re.findall(r"readings_(p\d{8}|default)", plan)))
    # 02-27..03-01 pruned; kept: the bound's day, the empty day ahead, and the default partition
    # (an open-ended range cannot exclude it).
    assert scanned == ["default", "p20260302", "p20260303"], plan


def test_failures_raise_dbt_error(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    readings = make_readings().head(200)
    seed(db, readings)
    with psycopg.connect(db, autocommit=True) as conn:  # a device missing from the registry
        insert_readings(
            conn, pd.DataFrame({"device_id": [99], "metric_id": [1], "ts": [START], "value": [1.0]})
        )

    with pytest.raises(DbtError) as err:
        run_dbt(["build"])
    failed = {r.unique_id.split(".")[2] for r in err.value.failed}
    assert any(name.startswith("relationships_fct_kpi_5m") for name in failed), failed
    assert "relationships_fct_kpi_5m" in str(err.value)

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    from core import db as core_db

    core_db.reset_caches()
    with pytest.raises(DbtError, match="could not run"):
        run_dbt(["run", "--select", "stg_metrics"])


def test_incremental_tests_check_the_latest_build_and_test_all_rows_checks_every_row(
    db: str,
) -> None:
    """The marts' tests read the rows the latest build wrote: a bad row in an old window (not
    rebuilt) passes an incremental build and fails with test_all_rows; a bad row the latest
    build wrote fails a plain `dbt test`."""
    seed(db, make_readings())
    run_dbt(["build"])
    with psycopg.connect(db, autocommit=True) as conn:
        index = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            (SCHEMA, "%__built_at")).fetchone()[0]
        assert index == 4  # one per incremental mart, from the post-hook
        conn.execute(f'UPDATE "{SCHEMA}".fct_kpi_15m SET reading_count = -1 '
                     "WHERE window_start = %s", (START,))  # 2 h before the lookback bound

    run_dbt(["build", "--select", "tag:kpi"])  # rebuilds the last 2 h only: the bad row stays
    with pytest.raises(DbtError) as err:
        run_dbt(["test", "--select", "fct_kpi_15m"], vars={"test_all_rows": True})
    assert _broken_rules(db, err.value) == {"reading_count >= 1"}

    with psycopg.connect(db, autocommit=True) as conn:  # a bad row in the latest build
        conn.execute(f'UPDATE "{SCHEMA}".fct_kpi_15m SET reading_count = -1 WHERE window_start '
                     f'= (SELECT max(window_start) FROM "{SCHEMA}".fct_kpi_15m)')
    with pytest.raises(DbtError) as err:
        run_dbt(["test", "--select", "fct_kpi_15m"])
    assert _broken_rules(db, err.value) == {"reading_count >= 1"}


def _broken_rules(db: str, err: DbtError) -> set[str]:
    """The rules the failing rows broke, read from the table the error message names."""
    [failed] = err.failed
    assert failed.unique_id.split(".")[2] == "fct_kpi_15m_row_rules"
    assert f"select * from {failed.failures_table}" in str(err)
    with psycopg.connect(db) as conn:
        rows = conn.execute(f"SELECT DISTINCT broken_rule FROM {failed.failures_table}")
        return {r[0] for r in rows}


def test_row_rules_name_the_first_rule_a_row_breaks(db: str) -> None:
    """One test per mart checks every row rule; nulls and each kind of broken rule come back
    named, and the rows that break nothing are not reported."""
    seed(db, make_readings())
    run_dbt(["build"])
    with psycopg.connect(db, autocommit=True) as conn:
        latest = f'(SELECT max(window_start) FROM "{SCHEMA}".fct_kpi_5m)'
        devices = conn.execute(f'SELECT DISTINCT device_id FROM "{SCHEMA}".fct_kpi_5m '
                               f"WHERE window_start = {latest} ORDER BY 1 LIMIT 3").fetchall()
        assert len(devices) == 3
        for (device,), change in zip(devices, ("metric = NULL", "min = max + 1",
                                               "completeness = 2.5"), strict=True):
            conn.execute(f'UPDATE "{SCHEMA}".fct_kpi_5m SET {change} '
                         f"WHERE window_start = {latest} AND device_id = %s", (device,))
    with pytest.raises(DbtError) as err:
        run_dbt(["test", "--select", "fct_kpi_5m"])
    [failed] = [r for r in err.value.failed if "fct_kpi_5m_row_rules" in r.unique_id]
    with psycopg.connect(db) as conn:
        broken = dict(conn.execute(f"SELECT broken_rule, count(DISTINCT device_id) "
                                   f"FROM {failed.failures_table} GROUP BY 1").fetchall())
    assert broken == {"metric is not null": 1, "min <= max": 1,
                      "completeness between 0 and 2": 1}
