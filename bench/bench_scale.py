"""Scale benchmark: per-stage throughput of the whole pipeline on this machine, in one run.

    python -m bench.bench_scale [--sites 3 --zones-per-site 5 --devices-per-zone 3] [--hours 24]
                                [--history-days 0] [--no-flows] [--no-dask]

For one fleet (default: the default 45 devices at 10 s) it times, with the project's own
functions and no Prefect: simulate and load two periods of `--hours` in 1-hour chunks; dbt's
first build and an incremental build of the second period; Great Expectations on a 1-hour raw
batch and the period's KPIs; training; scoring an hour and the period; the alert and fleet
reports; then one micro-batch minute stage by stage as the micro-batch flow runs it (including
the 2-hour late-data reach that dbt and scoring re-process every minute); then the second period
scored in 2 shards on a local Dask cluster of 2 worker processes. With flows (default), under
Prefect (PREFECT_API_URL's server, or a temporary one): the micro-batch flow twice (the second
run is the steady state), and the score flow over one micro-batch's reach with threads, with
`task_runner="dask"` on a new LocalCluster, and on a standing cluster (TELEMETRY_DASK_ADDRESS).

`--history-days N` loads and builds N older days first, so the minute's dbt build (whose data
tests scan whole marts) runs against that much history.

Last, an estimate: each per-row stage's fixed and per-row cost from its two measured sizes
(the minute and the bulk period), summed into seconds per micro-batch minute for N devices.

Runs in a scratch database on the configured server and drops it. Prints a table and writes
bench/out/scale.json. docs/SCALING.md turns the figures into devices per machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bench.scratch import scratch_database

# The project's modules are imported inside functions: Dask's worker processes re-import this
# module (multiprocessing spawn), and should not pay for pandas, dbt or GX before they start.
OUT = Path(__file__).parent / "out"
T = TypeVar("T")
DAY0 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
LATE_REACH = timedelta(hours=2)  # what dbt and scoring re-process each micro-batch (flows/)
MINUTE = timedelta(minutes=1)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def timed_cpu(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Wall and this process's CPU seconds (all its threads): how much of the machine one
    process already keeps busy, beside its PostgreSQL backend."""
    cpu = time.process_time()
    out, wall = timed(fn)
    return out, wall, time.process_time() - cpu


class Stages:
    """Rows of the result table: stage -> seconds, units of work and the rate."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, int] = {}

    def add(self, name: str, seconds: float, work: int | None = None,
            unit: str = "rows", **extra: Any) -> None:
        row: dict[str, Any] = {"seconds": round(seconds, 3)}
        if work is not None:
            row.update({unit: work, f"{unit}_per_s": round(work / seconds) if seconds else None})
        row.update(extra)
        self.rows[name] = row


def machine() -> dict[str, Any]:
    from bench.results import machine as machine_now

    return {**machine_now(), "at": datetime.now(UTC).isoformat(timespec="seconds")}


def load_period(fleet: Any, start: datetime, end: datetime, stages: Stages,
                label: str) -> tuple[Any, Any, Any]:
    """Simulate and load [start, end) in 1-hour chunks; time the two apart; return the last
    chunk's window, batch and load result (for the raw-batch validation)."""
    from core import ingest
    from simulator import simulate

    sim_s = load_s = 0.0
    rows = loaded = 0
    last: tuple[Any, Any, Any] = (None, None, None)
    for piece in ingest.chunks(ingest.Window(start, end), timedelta(hours=1)):
        batch, s = timed(lambda p=piece: simulate(fleet, p.start, p.end))
        result, ls = timed(lambda p=piece, b=batch: ingest.load_simulated(b, p))
        sim_s, load_s = sim_s + s, load_s + ls
        rows, loaded = rows + len(batch.readings), loaded + result.rows_loaded
        last = (piece, batch, result)
    stages.add(f"simulate {label}", sim_s, rows)
    stages.add(f"load {label} (1 h chunks)", load_s, rows, loaded=loaded)
    return last


def readings_between(start: datetime, end: datetime) -> int:
    from core import db

    with db.connect() as conn:
        return conn.execute("SELECT count(*) FROM telemetry.readings WHERE ts >= %s AND ts < %s",
                            (start, end)).fetchone()[0]


def kpi_rows() -> int:
    """Rows in the KPI marts (what their tests scan)."""
    from core import db
    from core.quality import KPI_MODELS
    from core.settings import get_settings

    schema = get_settings().dbt_schema
    with db.connect() as conn:
        return sum(conn.execute(f'SELECT count(*) FROM "{schema}"."{model}"').fetchone()[0]
                   for model in KPI_MODELS)


def storage() -> dict[str, int]:
    """Bytes on disk per stored reading: table and indexes of every readings partition."""
    from core import db

    with db.connect() as conn:
        size, rows = conn.execute(
            "SELECT sum(pg_total_relation_size(inhrelid)),"
            " (SELECT count(*) FROM telemetry.readings)"
            " FROM pg_inherits WHERE inhparent = 'telemetry.readings'::regclass").fetchone()
    return {"readings": rows, "bytes": int(size), "bytes_per_reading": round(size / rows)}


def direct_stages(fleet: Any, hours: int, history_days: int, reports_dir: Path,
                  stages: Stages) -> dict[str, Any]:
    """Every stage called directly (no Prefect); returns the micro-batch minute's split."""
    from core import ingest, quality, scoring
    from core.dbt_runner import run_dbt
    from reports.alert_report import write_alert_report
    from reports.fleet_report import write_fleet_report

    period = timedelta(hours=hours)
    d1, d2 = DAY0 + period, DAY0 + 2 * period
    label = f"{hours} h"
    ingest.register_fleet(fleet)
    first = "first"
    if history_days:  # older history in the marts: what dbt's tests scan on every build
        load_period(fleet, DAY0 - timedelta(days=history_days), DAY0, stages,
                    f"{history_days} d (history)")
        _, s = timed(lambda: run_dbt(["build"]))
        stages.add(f"dbt build, first ({history_days} d history)", s,
                   readings_between(DAY0 - timedelta(days=history_days), DAY0))
        first = "incremental"
    load_period(fleet, DAY0, d1, stages, f"{label} (training period)")
    _, s = timed(lambda: run_dbt(["build"]))
    stages.add(f"dbt build, {first} ({label})", s, readings_between(DAY0, d1))
    piece, batch, result = load_period(fleet, d1, d2, stages, label)
    stages.storage = storage()
    _, s = timed(lambda: run_dbt(["build"], rebuild_from=d1 - LATE_REACH))
    stages.add(f"dbt build, incremental ({label} + 2 h reach)", s,
               readings_between(d1 - LATE_REACH, d2))
    raw, s = timed(lambda: quality.validate_raw_batch(
        batch.readings, piece.start, piece.end, piece.end, result.batch_id,
        ingest.SIMULATOR_STREAM, "bench"))
    stages.add("GX raw batch (1 h)", s, len(batch.readings), status=raw.status)
    kpi, s = timed(lambda: quality.validate_kpis(d1, d2, "bench"))
    stages.add(f"GX KPIs ({label})", s, readings_between(d1, d2), targets=kpi.targets)
    trained, s = timed(lambda: scoring.train_models(DAY0, d1))
    stages.add(f"train ({label})", s, trained.rows)
    hour, s, cpu = timed_cpu(lambda: scoring.score_window(d1, d1 + timedelta(hours=1)))
    stages.add("score 1 h", s, hour.points, unit="points", split=hour.seconds,
               cpu_s=round(cpu, 2))
    whole, s, cpu = timed_cpu(lambda: scoring.score_window(d1, d2))
    stages.add(f"score {label}", s, whole.points, unit="points", split=whole.seconds,
               cpu_s=round(cpu, 2), anomalies=whole.anomalies, alerts_fired=whole.alerts_fired)
    scores, s = timed(lambda: quality.validate_scores(d1, d2, "bench"))
    stages.add(f"GX scores ({label})", s, targets=scores.targets)
    _, s = timed(lambda: write_alert_report(reports_dir, end=d2, run_id="bench"))
    stages.add("alert report (24 h)", s)
    _, s = timed(lambda: write_fleet_report(reports_dir, d1, d2, run_id="bench"))
    stages.add(f"fleet report ({label})", s)
    return micro_batch_minute(fleet, d2, reports_dir, stages)


def micro_batch_minute(fleet: Any, at: datetime, reports_dir: Path,
                       stages: Stages) -> dict[str, Any]:
    """One minute [at, at + 1 min) the way flows/pipeline.micro_batch runs it, stage by stage."""
    from core import ingest, quality, scoring
    from core.dbt_runner import run_dbt
    from reports.alert_report import write_alert_report
    from simulator import simulate

    window = ingest.Window(at, at + MINUTE)
    reach = ingest.Window(at - LATE_REACH, window.end)
    split: dict[str, float] = {}
    batch, split["simulate"] = timed(lambda: simulate(fleet, window.start, window.end))
    result, split["load"] = timed(lambda: ingest.load_simulated(batch, window))
    _, split["validate_raw"] = timed(lambda: quality.validate_raw_batch(
        batch.readings, window.start, window.end, window.end, result.batch_id,
        ingest.SIMULATOR_STREAM, "bench"))
    _, split["dbt"] = timed(lambda: run_dbt(["build"], rebuild_from=reach.start))
    _, split["validate_kpis"] = timed(lambda: quality.validate_kpis(reach.start, reach.end,
                                                                    "bench"))
    scored, split["score"] = timed(lambda: scoring.score_window(reach.start, reach.end))
    _, split["validate_scores"] = timed(lambda: quality.validate_scores(reach.start, reach.end,
                                                                        "bench"))
    _, split["report"] = timed(lambda: write_alert_report(reports_dir, end=reach.end,
                                                          run_id="bench"))
    total = sum(split.values())
    stages.add("micro-batch minute, direct (sum)", total, len(batch.readings),
               split={k: round(v, 3) for k, v in split.items()},
               scored_points=scored.points, score_split=scored.seconds)
    # The marts' tests read the latest build's rows (macros/test_scope.sql), not whole marts.
    tests, s = timed(lambda: run_dbt(["test"], rebuild_from=reach.start))
    stages.add("dbt test alone (the latest build's rows)", s, kpi_rows(),
               tests=len(tests.results))
    # KPI checks read whole 6-hour buckets: the readings behind the KPI rows they read.
    first_bucket = next(quality.buckets(reach.start, reach.end))[0]
    work = {"simulate": len(batch.readings), "load": len(batch.readings),
            "validate_raw": len(batch.readings), "dbt": readings_between(reach.start, reach.end),
            "validate_kpis": readings_between(first_bucket, reach.end), "score": scored.points}
    return {"rows": len(batch.readings), "scored_points": scored.points,
            "seconds": {k: round(v, 3) for k, v in split.items()}, "total": round(total, 3),
            "work": work}


def bulk_points(stages: Stages, hours: int) -> dict[str, tuple[int, float]]:
    """(work, seconds) of each per-row stage at bulk size: per 1-hour chunk for simulate and
    load (the size of one call), the whole period for the rest."""
    label, rows = f"{hours} h", stages.rows

    def point(name: str, unit: str = "rows", calls: int = 1) -> tuple[int, float]:
        return rows[name][unit] // calls, rows[name]["seconds"] / calls

    return {
        "simulate": point(f"simulate {label}", calls=hours),
        "load": point(f"load {label} (1 h chunks)", calls=hours),
        "validate_raw": point("GX raw batch (1 h)"),
        "dbt": point(f"dbt build, incremental ({label} + 2 h reach)"),
        "validate_kpis": point(f"GX KPIs ({label})"),
        "score": point(f"score {label}", unit="points"),
    }


def dask_stages(hours: int, workers: int, stages: Stages) -> None:
    """The scored period again in `workers` shards on the flows' LocalCluster configuration."""
    from distributed import Client, LocalCluster

    from core import scoring
    from flows import dask_runner

    d1, d2 = DAY0 + timedelta(hours=hours), DAY0 + timedelta(hours=2 * hours)
    kwargs = dask_runner.task_runner(workers).cluster_kwargs
    with ExitStack() as stack:
        client, s = timed(lambda: stack.enter_context(Client(stack.enter_context(
            LocalCluster(**kwargs)))))
        stages.add(f"dask: LocalCluster of {workers} processes up", s)
        # The first task in a fresh worker imports pandas, psycopg and the scoring code.
        _, s = timed(lambda: client.run(__import__, "core.scoring"))
        stages.add("dask: imports in each worker", s)
        futures, s = timed(lambda: client.gather([
            client.submit(scoring.score_window, d1, d2, shard, workers, pure=False)
            for shard in range(workers)]))
        stages.add(f"score {hours} h, {workers} shards on dask", s,
                   sum(f.points for f in futures), unit="points",
                   split=[f.seconds for f in futures])
        scoring.mark_scored(d2)


def flow_stages(fleet_params: Any, hours: int, workers: int, stages: Stages) -> None:
    """Under Prefect (PREFECT_API_URL's server, or a temporary one): the micro-batch flow twice
    (warm-up, then the steady state); then the score flow over one micro-batch's reach (2 h +
    1 min) three ways: threads, a new LocalCluster, and a standing cluster
    (TELEMETRY_DASK_ADDRESS)."""
    from distributed import Client, LocalCluster

    from flows import dask_runner

    with ExitStack() as stack:
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            # A temporary server in a temporary home: the bench leaves no Prefect state behind.
            _, s = timed(lambda: stack.enter_context(prefect_test_harness(
                server_startup_timeout=90)))
            stages.add("prefect: temporary server up", s)
        from flows.detection import ScoreParams, score
        from flows.params import WindowParams
        from flows.pipeline import micro_batch

        at = DAY0 + timedelta(hours=2 * hours) + MINUTE  # after the direct micro-batch minute
        for label in ("warm-up", "steady state"):
            run, s = timed(lambda a=at: micro_batch(
                window=WindowParams(start=a, end=a + MINUTE), fleet=fleet_params))
            stages.add(f"micro-batch flow, 1 min ({label})", s, run.load.rows_received,
                       split=run.seconds, scored_points=run.score.points if run.score else 0)
            at += MINUTE
        reach = {"start": at - LATE_REACH - MINUTE, "end": at, "chunk_minutes": 24 * 60}
        run, s = timed(lambda: score(ScoreParams(**reach)))
        stages.add("score flow, 2 h reach, threads", s, run.points, unit="points",
                   runner=run.runner)
        sharded = {**reach, "shards": workers, "task_runner": "dask", "dask_workers": workers}
        run, s = timed(lambda: score(ScoreParams(**sharded)))
        stages.add(f"score flow, 2 h reach, {workers} shards, new LocalCluster", s, run.points,
                   unit="points", runner=run.runner)
        # A standing cluster, as TELEMETRY_DASK_ADDRESS names one (its workers already warm).
        kwargs = dask_runner.task_runner(workers).cluster_kwargs
        cluster = stack.enter_context(LocalCluster(**kwargs))
        stack.enter_context(Client(cluster)).run(__import__, "flows.tasks")
        os.environ[dask_runner.ADDRESS_ENV] = cluster.scheduler_address
        try:
            for label in ("1st", "2nd"):
                run, s = timed(lambda: score(ScoreParams(**sharded)))
                stages.add(f"score flow, 2 h reach, {workers} shards, standing cluster"
                           f" ({label})", s, run.points, unit="points", runner=run.runner)
        finally:
            os.environ.pop(dask_runner.ADDRESS_ENV, None)


# Work per device per micro-batch minute at 10 s and 4 metrics: 24 new rows; dbt and scoring
# re-process the 2-hour late-data reach (4 x 726 readings); KPI checks read whole 6-hour buckets
# and a 2-hour reach can touch two of them (up to 8 h: 4 x 2,880 readings' worth).
WORK_PER_DEVICE = {"simulate": 24, "load": 24, "validate_raw": 24, "dbt": 4 * 726,
                   "validate_kpis": 4 * 2880, "score": 4 * 726}


def capacity(minute: dict[str, Any], bulk: dict[str, tuple[int, float]],
             overhead_seconds: float | None) -> dict[str, Any]:
    """Devices at 10 s one machine carries: an estimate from this run's figures.

    Each per-row stage gets a line, seconds = fixed + per_row x work, through two measured
    sizes: the micro-batch minute and the bulk run. Stages without a per-row part (score
    checks, the alert report, Prefect's own overhead) count as fixed. One minute of N devices
    then takes sum(fixed) + N x sum(per_row x work per device); it must fit in 60 s."""
    lines: dict[str, dict[str, float]] = {}
    for stage, per_device in WORK_PER_DEVICE.items():
        small = (minute["work"][stage], minute["seconds"][stage])
        big = bulk[stage]
        # A noisy run can make the bulk point cheaper per row than the minute: no slope then.
        per_row = max((big[1] - small[1]) / (big[0] - small[0]), 0.0)
        fixed = max(small[1] - per_row * small[0], 0.0)
        lines[stage] = {"fixed_s": round(fixed, 4), "per_row_us": round(per_row * 1e6, 4),
                        "per_device_ms": round(per_row * per_device * 1e3, 4),
                        "ceiling_devices": (round((60 - fixed) / (per_row * per_device))
                                            if per_row else None)}
    other = {k: minute["seconds"][k] for k in ("validate_scores", "report")}
    if overhead_seconds is not None:
        other["prefect"] = max(overhead_seconds, 0.0)
    fixed = sum(v["fixed_s"] for v in lines.values()) + sum(other.values())
    per_device = sum(v["per_device_ms"] for v in lines.values()) / 1e3

    def minute_at(devices: int) -> float:
        return round(fixed + devices * per_device, 2)

    return {"work_per_device_per_minute": WORK_PER_DEVICE, "stages": lines,
            "other_fixed_s": other, "fixed_s": round(fixed, 2),
            "per_device_ms": round(per_device * 1e3, 3),
            "devices_in_60_s": max(round((60 - fixed) / per_device), 0),
            "minute_seconds_at": {n: minute_at(n) for n in (45, 450, 4500)}}


def print_table(report: dict[str, Any]) -> None:
    fleet = report["fleet"]
    print(f"scale benchmark: {fleet['devices']} devices x 4 metrics every "
          f"{fleet['interval_seconds']} s = {fleet['readings_per_s']:g} readings/s; "
          f"{report['machine']['cores']} cores ({report['machine']['cpu']})")
    print(f"  {'stage':<52} {'seconds':>8} {'work':>11} {'per second':>12}")
    for name, row in report["stages"].items():
        unit = next((k for k in ("rows", "points") if k in row), None)
        work = f"{row[unit]:,}" if unit else ""
        rate = f"{row[unit + '_per_s']:,} {unit}" if unit and row[unit + "_per_s"] else ""
        print(f"  {name:<52} {row['seconds']:>8.2f} {work:>11} {rate:>12}")
    minute = report["micro_batch_minute"]
    print("  micro-batch minute split (s): "
          + ", ".join(f"{k} {v}" for k, v in minute["seconds"].items()))
    cap = report["capacity"]
    print("  first-order estimate (bulk slopes; docs/SCALING.md checks it at 450 devices),"
          " per stage: fixed s + ms per device per minute -> devices if it had the minute")
    for stage, line in cap["stages"].items():
        ceiling = f"{line['ceiling_devices']:>9,}" if line["ceiling_devices"] else "        -"
        print(f"    {stage:<14} {line['fixed_s']:>6.2f} s + {line['per_device_ms']:>7.3f} ms"
              f" -> {ceiling}")
    print(f"  all stages in sequence: {cap['fixed_s']} s fixed + {cap['per_device_ms']} ms per"
          f" device -> {cap['devices_in_60_s']:,} devices in 60 s; a minute of 45 / 450 / 4,500"
          " devices: " + " / ".join(f"{v} s" for v in cap["minute_seconds_at"].values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--zones-per-site", type=int, default=5)
    parser.add_argument("--devices-per-zone", type=int, default=3)
    parser.add_argument("--hours", type=int, default=24, help="training and scored period")
    parser.add_argument("--history-days", type=int, default=0,
                        help="days of older history loaded (and built by dbt) first")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--no-flows", action="store_true", help="skip the Prefect flow runs")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask stages")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)  # cluster start/stop chatter
    for name, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
                        ("PREFECT_LOGGING_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)

    from flows.params import FleetParams

    fleet_params = FleetParams(sites=args.sites, zones_per_site=args.zones_per_site,
                               devices_per_zone=args.devices_per_zone, interval_seconds=10)
    fleet = fleet_params.config()  # the flows' fleet: default seed and fault rates
    devices = args.sites * args.zones_per_site * args.devices_per_zone
    stages = Stages()
    before = machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        # dbt artifacts and reports go to a scratch dir, not the project's dbt/target.
        os.environ["TELEMETRY_DBT_TARGET_DIR"] = str(Path(tmp) / "dbt-target")
        os.environ["TELEMETRY_REPORTS_DIR"] = str(Path(tmp) / "reports")
        with scratch_database("bench_scale"):
            minute = direct_stages(fleet, args.hours, args.history_days, Path(tmp) / "reports",
                                   stages)
            if not args.no_dask:
                dask_stages(args.hours, args.dask_workers, stages)
            if not args.no_flows:
                flow_stages(fleet_params, args.hours, args.dask_workers, stages)
    steady = stages.rows.get("micro-batch flow, 1 min (steady state)")
    overhead = round(steady["seconds"] - minute["total"], 2) if steady else None
    report = {
        "machine": {**before, "load_average_after": machine()["load_average_1_5_15"]},
        "fleet": {"devices": devices, "metrics": 4, "interval_seconds": 10,
                  "readings_per_s": devices * 4 / 10, "hours": args.hours,
                  "history_days": args.history_days},
        "stages": stages.rows,
        "micro_batch_minute": {**minute, "prefect_overhead_seconds": overhead},
        "storage": stages.storage,
        "capacity": capacity(minute, bulk_points(stages, args.hours), overhead),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    print(f"  storage: {report['storage']['bytes_per_reading']} bytes per reading (table and"
          f" indexes, {report['storage']['readings']:,} readings)")
    print(f"total {report['total_seconds']} s; written: {OUT / 'scale.json'}")


if __name__ == "__main__":
    main()
