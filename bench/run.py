"""make bench: every stage of the pipeline beside the machine's own limit, in one run.

    python -m bench [--rows 1000000] [--compare bench/results/<earlier>.json] [--skip api]

Each stage runs with its raw reference in the same process and moment (numpy for the pure
stages; plain COPY, a hand-written GROUP BY and COPY-to-numpy on the same PostgreSQL server for
the database stages; a trivial endpoint on the same API server), so the ratio column says how
close the pipeline comes to what this machine can do, whatever else the machine is doing.

Stages: simulate; rolling, robust and seasonal z-scores; PCA; the idempotent load and its
re-run; dbt's full KPI build (5 min, 15 min, 1 h); the scoring read; end to end (simulate >
load > dbt > score > alerts) over `--rows` faulty readings; dbt's one-minute incremental; the
micro-batch flow under Prefect; the API (/kpis, /alerts, 1,000-row POST /readings, with wrk).

The database stages run in a scratch database on the configured server (DATABASE_URL, else the
embedded one) and drop it. Results: a table on stdout and bench/results/<UTC time>.json
(ignored by git). docs/PERFORMANCE.md holds the latest figures and what they mean.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import compute_stages, results
from bench.db_stages import Refs
from bench.results import StageResult

PARTS = ("compute", "database", "flows", "api")
DAY0 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="readings per stage (default 1M; the full run is 10000000)")
    parser.add_argument("--batch-rows", type=int, default=100_000,
                        help="rows per loader batch and per reference COPY (default 100k)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each pure stage; the best counts (default 3)")
    parser.add_argument("--compare", type=Path, metavar="FILE",
                        help="an earlier bench/results/*.json to show the change against")
    parser.add_argument("--skip", action="append", default=[], choices=PARTS,
                        help="leave out a part (repeatable): compute, database, flows, api")
    parser.add_argument("--api-seconds", type=int, default=10,
                        help="wrk duration per GET endpoint (default 10)")
    parser.add_argument("--api-batches", type=int, default=200,
                        help="1,000-row POST /readings batches (default 200)")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="uvicorn worker processes of the API under test (default 1)")
    parser.add_argument("--out", type=Path, default=results.RESULTS_DIR,
                        help="where the result JSON goes (default bench/results)")
    args = parser.parse_args(argv)
    if args.rows < 10_000:
        parser.error("--rows must be at least 10000")
    if args.compare and not args.compare.is_file():
        parser.error(f"--compare: no such file {args.compare}")
    return args


def api_results(seconds: int, batches: int, server_workers: int = 1) -> list[StageResult]:
    from bench import bench_api

    figures = bench_api.measure(seconds=seconds, batches=batches, server_workers=server_workers)
    ref = figures[bench_api.REFERENCE]
    out = []
    for name, r in figures.items():
        if name == bench_api.INGEST:
            continue
        requests = round(r["rps"] * seconds)
        result = StageResult(f"API GET {name}", requests, seconds,
                             "" if name == bench_api.REFERENCE else "trivial /health, same server",
                             None if name == bench_api.REFERENCE else seconds,
                             round(ref["rps"] * seconds),
                             goal=">= 3k rps, p99 < 50 ms",
                             extra={k: r[k] for k in ("p50", "p90", "p99", "non_2xx") if k in r})
        if name != bench_api.REFERENCE:
            result.judge(lambda x, r=r: x.rate >= 3000 and r["p99"] < 50 and not r["non_2xx"])
        out.append(result)
    ingest = figures[bench_api.INGEST]
    out.append(StageResult("API POST /readings, 1,000-row batches", ingest["readings"],
                           ingest["seconds"], goal=">= 50k readings/s",
                           extra={k: ingest[k] for k in ("p50", "p99", "non_2xx", "batches")},
                           ).judge(lambda x: x.rate >= 50e3 and not ingest["non_2xx"]))
    return out


def run(args: argparse.Namespace, console: Console) -> list[StageResult]:

    out: list[StageResult] = []
    refs = Refs()
    columns = (TextColumn("{task.description:<40}"), BarColumn(), TextColumn(
        "{task.completed:,.0f}/{task.total:,.0f}"), TimeElapsedColumn())
    parts = [p for p in PARTS if p not in args.skip]
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("bench", total=len(parts))
        if "compute" in parts:
            progress.update(overall, description="simulator and detectors")
            sim = compute_stages.simulate_stage(args.rows, args.repeats)
            zs = compute_stages.trailing_z_stages(args.rows, args.repeats)
            seasonal = compute_stages.seasonal_stage(args.rows, args.repeats)
            pca = compute_stages.pca_stage(args.rows, args.repeats)
            out += [sim, *zs, seasonal, pca]
            refs.add("simulate", sim.reference_seconds, sim.rows)
            refs.add("rolling z", zs[0].reference_seconds, zs[0].rows)
            refs.add("pca", pca.reference_seconds, pca.rows * 4)  # a vector is 4 readings
            progress.advance(overall)
        if "database" in parts:
            progress.update(overall, description="database stages")
            out += database(args, progress, refs, flows="flows" in parts)
            progress.advance(overall, 2 if "flows" in parts else 1)
        if "api" in parts:
            progress.update(overall, description=f"API (wrk, {args.api_seconds} s per endpoint)")
            try:
                out += api_results(args.api_seconds, args.api_batches, args.api_workers)
            except RuntimeError as exc:  # e.g. no wrk: the other stages still count
                console.print(f"[red]API part not measured: {exc}[/red]")
            progress.advance(overall)
    return out


def database(args: argparse.Namespace, progress: Progress, refs: Refs,
             flows: bool) -> list[StageResult]:
    from bench.db_stages import database_stages
    from bench.scratch import scratch_database

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        # dbt artifacts and reports of the bench go to a scratch dir, not the project's.
        os.environ["TELEMETRY_DBT_TARGET_DIR"] = str(tmp / "dbt-target")
        os.environ["TELEMETRY_REPORTS_DIR"] = str(tmp / "reports")
        stack.enter_context(scratch_database("bench"))
        if flows and not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            # A temporary Prefect server in a temporary home: no state left behind.
            stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        return database_stages(args.rows, args.batch_rows, progress, flows, DAY0, refs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
                        ("PREFECT_LOGGING_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    console = Console(stderr=True)
    before = results.machine()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    stages = run(args, console)
    meta = {"at": at, "rows_requested": args.rows, "batch_rows": args.batch_rows,
            "repeats": args.repeats, "skipped": args.skip, "api_workers": args.api_workers,
            "machine": before,
            "load_average_after": results.machine()["load_average_1_5_15"],
            "total_seconds": round(time.perf_counter() - started, 1)}
    path = results.write(stages, meta, args.out)
    print(f"bench: {args.rows:,} readings per stage; {before['cores']} cores ({before['cpu']});"
          f" load average before {before['load_average_1_5_15']}")
    print(results.table(stages))
    print("references:")
    print(results.references(stages))
    if args.compare:
        print(results.compare(stages, json.loads(args.compare.read_text())))
    missed = [s.stage for s in stages if s.met is False]
    print(f"{len(stages)} stages in {meta['total_seconds']} s; goals missed: "
          f"{', '.join(missed) if missed else 'none'}")
    print(f"written: {path}  (compare a later run: python -m bench --compare {path})")
    print("what the figures mean and how to reproduce them: docs/PERFORMANCE.md")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
