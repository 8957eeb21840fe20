"""make loadtest: concurrent clients mixing ingestion and queries against the real API, with
every response checked and every reading accounted for.

    python -m bench.loadtest [--seconds 30] [--clients 100] [--server-workers 1]

Starts the API under uvicorn on a free 127.0.0.1 port over a scratch database (the configured
server: DATABASE_URL, else the embedded one), filled like `bench.bench_api` (the default fleet
of 45 devices, `--hours` of simulated readings, dbt marts, alerts). Then `--clients` asyncio
tasks, each with its own keep-alive connection (httpx.AsyncClient), send requests back to back
(no think time) for `--seconds`:

- ingestion clients (`--ingest-share`, default 30%) are gateways: each POST carries one zone's
  devices (their registered metrics) for its next 1, 5 or 10 minutes at 10 s, new readings
  after the scratch history (a fleet catching up). Every reading key is sent once, except
  deliberate re-sends: `--resend-share` of the POSTs repeat an acknowledged batch of the same
  client (a gateway that missed the ack), so all their good rows must come back as duplicates.
  `--bad-share` of the batches carry 1-3 bad rows of every kind the API or the loader refuses
  (unknown device or metric, impossible value, future, stale or invalid timestamp, missing
  field, wrong type, an in-batch key repeated with another value), each one unique.
- query clients pick a weighted mix of what the dashboard reads: KPIs, alerts, raw readings,
  devices and a device's live status, stats, heatmap, anomalies.

It fails (exit 1) unless:
1. every response has the expected status (200) and every POST's acknowledgement matches its
   batch (received, loaded, duplicate, rejected). Any other status, a timeout or a connection
   error is an error, counted by kind with a sample. The client never retries on an error.
2. no reading is lost: after the server has stopped, the ledger (telemetry.batches, source
   'api'), telemetry.readings and telemetry.quarantine agree with what the clients sent and
   what the API acknowledged: rows sent = ledger received = stored + quarantined + duplicate;
   stored = ledger loaded = acknowledged loaded = distinct good rows sent; duplicate = good
   rows re-sent; quarantine rows = distinct bad rows sent, rule by rule (a re-sent bad row is
   counted again in the ledger, stored once); no API batch failed or left running.

It prints latency p50/p90/p99/max and requests/s per kind, readings/s, the CPU each side used
(the client runs on the same 2 cores as the server and PostgreSQL, so it takes CPU from them),
and writes bench/out/loadtest-<UTC time>.json (git-ignored) and the server's log beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import results
from bench.bench_api import END, OUT, PLAUSIBLE, TOKEN, fill, free_port, start_server, stop_server
from bench.scratch import scratch_database
from core import rules

POST = "POST /readings"
# Rules of the API's own parser (the quarantine's rule names: a stable contract, so spelled out
# here rather than imported from the parser's module).
STALE_TIMESTAMP = "stale_timestamp"
INVALID_TIMESTAMP = "invalid_timestamp"
MISSING_FIELD = "missing_field"
INVALID_TYPE = "invalid_type"
INGEST_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
LAG_PROBE = 0.1  # seconds between wake-ups of the task that measures the client's own lag
TICK = timedelta(seconds=10)  # the fleet's reporting interval
SPANS = (6, 30, 60)  # ticks a gateway buffers before it posts: 1, 5 or 10 minutes
MAX_AGE = timedelta(days=20)  # ingested readings stay well inside the API's 30-day limit


# ---------------------------------------------------------------------------------------------
# Ingestion traffic.

@dataclass
class Gateway:
    """One zone's devices (id, registered metrics) and the next tick it has not sent."""

    name: str
    devices: list[tuple[int, list[str]]]
    next_tick: int = 0


@dataclass
class Batch:
    body: bytes
    rows: int
    good: int
    bad_by_rule: Counter[str]
    resent: bool = False

    @property
    def bad(self) -> int:
        return sum(self.bad_by_rule.values())

    def expected_ack(self) -> dict[str, int]:
        loaded, duplicate = (0, self.good) if self.resent else (self.good, 0)
        return {"received": self.rows, "loaded": loaded, "duplicate": duplicate,
                "rejected": self.bad}


class Traffic:
    """Batches of new readings for the registered fleet, and the bad rows mixed into them.

    Gateways take turns, so the fleet's clock advances evenly from `start`; a batch never
    reaches past `end` (None when the timeline is used up). One instance per event loop:
    nothing here awaits, so the cursors need no lock."""

    def __init__(self, devices: list[tuple[int, str, str, list[str]]],
                 hard_max: dict[str, float], start: datetime, end: datetime,
                 bad_share: float) -> None:
        zones: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
        for device_id, site, zone, metrics in devices:
            zones[f"{site}/{zone}"].append((device_id, list(metrics)))
        self.gateways = [Gateway(name, members) for name, members in sorted(zones.items())]
        self.hard_max = hard_max
        self.start, self.end = start, end
        self.bad_share = bad_share
        self.turn = 0
        self.serial = 0  # makes every bad row unique (quarantine keeps one row per payload)
        self.exhausted = False

    def next(self, rng: random.Random) -> Batch | None:
        gateway = self.gateways[self.turn % len(self.gateways)]
        self.turn += 1
        ticks = rng.choice(SPANS)
        first = gateway.next_tick
        if self.start + (first + ticks) * TICK > self.end:
            self.exhausted = True
            return None
        gateway.next_tick += ticks
        stamps = np.datetime_as_string(
            np.datetime64(self.start.replace(tzinfo=None), "s")
            + np.arange(first, first + ticks) * np.timedelta64(10, "s"), unit="s")
        rows: list[dict[str, Any]] = [
            {"device_id": device_id, "metric": metric, "ts": f"{ts}Z",
             "value": round(PLAUSIBLE[metric] * (0.9 + 0.2 * rng.random()), 3)}
            for ts in stamps for device_id, metrics in gateway.devices for metric in metrics]
        good = len(rows)
        bad: Counter[str] = Counter()
        if rng.random() < self.bad_share:
            good_rows = rows.copy()  # a bad row is a good one with one fault, never two
            for _ in range(rng.randint(1, 3)):
                rule, row = self._bad_row(rng, good_rows)
                bad[rule] += 1
                if rule == rules.CONFLICTING_DUPLICATE:
                    rows.append(row)  # after the row it repeats: the first one wins
                else:
                    rows.insert(rng.randrange(len(rows) + 1), row)
        return Batch(orjson.dumps({"readings": rows}), len(rows), good, bad)

    def _bad_row(self, rng: random.Random, rows: list[dict[str, Any]]
                 ) -> tuple[str, dict[str, Any]]:
        self.serial += 1
        n = self.serial
        like = rows[rng.randrange(len(rows))]
        now = datetime.now(UTC)
        kind = rng.choice(BAD_KINDS)
        row = {**like, "value": like["value"] + n * 1e-6}  # unique payload
        if kind == rules.UNKNOWN_DEVICE:
            row["device_id"] = 900_000 + n
        elif kind == rules.UNKNOWN_METRIC:
            row["metric"] = "pressure"
        elif kind == rules.IMPOSSIBLE_VALUE:
            row["value"] = self.hard_max[like["metric"]] * 10 + n
        elif kind == rules.FUTURE_TIMESTAMP:
            row["ts"] = f"{(now + timedelta(days=2, seconds=n)):%Y-%m-%dT%H:%M:%SZ}"
        elif kind == STALE_TIMESTAMP:
            row["ts"] = f"{(now - timedelta(days=45, seconds=-n)):%Y-%m-%dT%H:%M:%SZ}"
        elif kind == INVALID_TIMESTAMP:
            row["ts"] = f"yesterday-{n}"
        elif kind == MISSING_FIELD:
            del row["ts"]
        elif kind == INVALID_TYPE:
            row["value"] = f"high-{n}"
        elif kind == rules.CONFLICTING_DUPLICATE:
            row["value"] = like["value"] + 1 + n * 1e-6  # same key as `like`, another value
        return kind, row


BAD_KINDS = (rules.UNKNOWN_DEVICE, rules.UNKNOWN_METRIC, rules.IMPOSSIBLE_VALUE,
             rules.FUTURE_TIMESTAMP, STALE_TIMESTAMP,
             INVALID_TIMESTAMP, MISSING_FIELD,
             INVALID_TYPE, rules.CONFLICTING_DUPLICATE)


# ---------------------------------------------------------------------------------------------
# Query traffic: what the dashboard and API users read, by weight.

Query = tuple[str, int, Callable[[random.Random], tuple[str, dict[str, Any]]]]


def query_mix(device_ids: list[int], hours: float, marts: bool = True) -> list[Query]:
    """The weighted mix; without `marts`, only what does not read the dbt marts."""
    def iso(t: datetime) -> str:
        return f"{t:%Y-%m-%dT%H:%M:%SZ}"

    recent = iso(END - timedelta(hours=min(hours, 1)))
    day_ago = iso(END - timedelta(hours=24))

    def device(rng: random.Random) -> int:
        return rng.choice(device_ids)

    mix: list[Query] = [
        ("GET /kpis device 5m", 20, lambda r: (
            "/api/v1/kpis", {"grain": "5m", "device_id": device(r), "limit": 100})),
        ("GET /kpis newest", 5, lambda r: (
            "/api/v1/kpis", {"grain": "5m", "order": "desc", "limit": 1})),
        ("GET /kpis fleet 1h", 5, lambda r: (
            "/api/v1/kpis", {"grain": "1h", "from": day_ago, "to": iso(END), "limit": 500})),
        ("GET /alerts", 10, lambda r: ("/api/v1/alerts", {"limit": 100})),
        ("GET /alerts open", 5, lambda r: ("/api/v1/alerts", {"state": "open", "limit": 100})),
        ("GET /readings device 1h", 15, lambda r: (
            "/api/v1/readings", {"device_id": device(r), "from": recent, "to": iso(END),
                                 "limit": 500})),
        ("GET /devices", 10, lambda r: ("/api/v1/devices", {"limit": 100})),
        ("GET /devices/{id}", 15, lambda r: (f"/api/v1/devices/{device(r)}", {})),
        ("GET /stats", 5, lambda r: ("/api/v1/stats", {})),
        ("GET /heatmap", 5, lambda r: ("/api/v1/heatmap", {"from": day_ago, "to": iso(END)})),
        ("GET /anomalies", 5, lambda r: ("/api/v1/anomalies", {"limit": 100})),
    ]
    return mix if marts else [q for q in mix if not q[0].startswith(READS_MARTS)]


READS_MARTS = ("GET /kpis", "GET /heatmap")


# ---------------------------------------------------------------------------------------------
# The clients.

@dataclass
class Sent:
    """Ingestion as the clients saw it: what they sent and what the API acknowledged."""

    posts: int = 0
    rows: int = 0
    good_new: int = 0  # distinct good readings (first sends)
    good_resent: int = 0  # good readings of deliberate re-sends: must come back as duplicates
    bad: int = 0  # bad rows in every POST, re-sends included
    bad_new: Counter[str] = field(default_factory=Counter)  # distinct bad rows, by rule
    acked_posts: int = 0
    acked: Counter[str] = field(default_factory=Counter)  # received/loaded/duplicate/rejected


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: Sent = field(default_factory=Sent)
    started: float = 0.0
    finished: float = 0.0
    timeline_exhausted: bool = False
    client_lag: list[float] = field(default_factory=list)  # seconds late, per wake-up

    def error(self, kind: str, what: str, sample: str) -> None:
        entry = self.errors.setdefault(f"{kind}: {what}", {"count": 0, "sample": sample})
        entry["count"] += 1

    @property
    def requests(self) -> int:
        return sum(map(len, self.latencies.values()))

    @property
    def error_count(self) -> int:
        return sum(e["count"] for e in self.errors.values())


async def _request(client: httpx.AsyncClient, tally: Tally, kind: str, method: str, url: str,
                   **kw: Any) -> httpx.Response | None:
    """One request, timed; anything but a 200 is recorded as an error (never retried)."""
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kw)
    except httpx.TimeoutException as exc:
        tally.latencies[kind].append(time.perf_counter() - started)
        tally.error(kind, f"timeout ({type(exc).__name__})", f"{method} {url}: {exc!r}")
        return None
    except httpx.HTTPError as exc:
        tally.latencies[kind].append(time.perf_counter() - started)
        tally.error(kind, type(exc).__name__, f"{method} {url}: {exc!r}")
        return None
    tally.latencies[kind].append(time.perf_counter() - started)
    if response.status_code != 200:
        tally.error(kind, f"HTTP {response.status_code}",
                    f"{method} {response.request.url}: {response.text[:400]}")
        return None
    return response


async def ingest_client(client: httpx.AsyncClient, seed: int, traffic: Traffic, tally: Tally,
                        deadline: float, resend_share: float) -> None:
    rng = random.Random(seed)
    acked: Batch | None = None  # the last acknowledged batch: the one a re-send repeats
    while time.perf_counter() < deadline:
        if acked is not None and rng.random() < resend_share:
            batch = Batch(acked.body, acked.rows, acked.good, acked.bad_by_rule, True)
            acked = None
        else:
            batch = traffic.next(rng)
            if batch is None:
                tally.timeline_exhausted = True
                return
        s = tally.sent
        s.posts += 1
        s.rows += batch.rows
        s.bad += batch.bad
        if batch.resent:
            s.good_resent += batch.good
        else:
            s.good_new += batch.good
            s.bad_new.update(batch.bad_by_rule)
        response = await _request(client, tally, POST, "POST", "/api/v1/readings",
                                  content=batch.body, headers=INGEST_HEADERS)
        if response is None:
            continue
        ack = orjson.loads(response.content)
        got = {k: ack.get(k) for k in ("received", "loaded", "duplicate", "rejected")}
        s.acked_posts += 1
        s.acked.update(got)
        if got != batch.expected_ack():
            tally.error(POST, "acknowledgement differs from the batch",
                        f"batch {ack.get('batch_id')}: expected {batch.expected_ack()},"
                        f" got {got}")
        elif not batch.resent:
            acked = batch


async def query_client(client: httpx.AsyncClient, seed: int, mix: list[Query], tally: Tally,
                       deadline: float) -> None:
    rng = random.Random(seed)
    kinds = [q[0] for q in mix]
    weights = [q[1] for q in mix]
    build = {q[0]: q[2] for q in mix}
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        path, params = build[kind](rng)
        await _request(client, tally, kind, "GET", path, params=params)


def client_split(clients: int, ingest_share: float) -> tuple[int, int]:
    """(ingestion clients, query clients): at least one of each from two clients on."""
    if clients < 2:
        return clients, 0
    ingest = min(clients - 1, max(1, round(clients * ingest_share)))
    return ingest, clients - ingest


async def drive(base: str, opts: argparse.Namespace, traffic: Traffic, mix: list[Query],
                progress: Callable[[Tally, float], None] | None = None) -> Tally:
    """All clients at once for opts.seconds; requests in flight at the end complete."""
    tally = Tally()
    ingest, queries = client_split(opts.clients, opts.ingest_share)
    # Built before the clock starts (each builds an SSL context, ~10 ms of CPU, even for
    # http://); their connections open with their first request, inside the run.
    ssl_context = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base, timeout=opts.timeout, limits=limits,
                                 verify=ssl_context) for _ in range(opts.clients)]
    lag: list[float] = []
    try:
        tally.started = time.perf_counter()
        deadline = tally.started + opts.seconds
        tasks = [asyncio.create_task(ingest_client(clients[i], opts.seed * 1000 + i, traffic,
                                                   tally, deadline, opts.resend_share))
                 for i in range(ingest)]
        tasks += [asyncio.create_task(query_client(clients[i], opts.seed * 1000 + i, mix, tally,
                                                   deadline))
                  for i in range(ingest, ingest + queries)]
        every = asyncio.gather(*tasks)
        while not every.done():
            if progress:
                progress(tally, time.perf_counter() - tally.started)
            asked = time.perf_counter()
            await asyncio.wait([every], timeout=LAG_PROBE)
            if not every.done():  # how late the client's own event loop woke this task up
                lag.append(time.perf_counter() - asked - LAG_PROBE)
        every.result()
        tally.finished = time.perf_counter()
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    tally.client_lag = lag
    if progress:
        progress(tally, tally.finished - tally.started)
    return tally


# ---------------------------------------------------------------------------------------------
# Accounting, after the server has stopped.

@dataclass
class Check:
    name: str
    expected: Any
    actual: Any

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def database_counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        ledger = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status = 'failed'),"
            " count(*) FILTER (WHERE status = 'running'),"
            " coalesce(sum(rows_received) FILTER (WHERE status = 'succeeded'), 0),"
            " coalesce(sum(rows_loaded) FILTER (WHERE status = 'succeeded'), 0),"
            " coalesce(sum(rows_duplicate) FILTER (WHERE status = 'succeeded'), 0),"
            " coalesce(sum(rows_quarantined) FILTER (WHERE status = 'succeeded'), 0)"
            " FROM telemetry.batches WHERE source = 'api'").fetchone()
        stored = conn.execute(
            "SELECT count(*) FROM telemetry.readings WHERE batch_id IN"
            " (SELECT batch_id FROM telemetry.batches WHERE source = 'api')").fetchone()[0]
        quarantine = dict(conn.execute(
            "SELECT rule, count(*) FROM telemetry.quarantine WHERE batch_id IN"
            " (SELECT batch_id FROM telemetry.batches WHERE source = 'api') GROUP BY rule"
        ).fetchall())
        failures = conn.execute(
            "SELECT left(error, 300), count(*) FROM telemetry.batches"
            " WHERE source = 'api' AND status <> 'succeeded' GROUP BY 1 ORDER BY 2 DESC"
            " LIMIT 5").fetchall()
    keys = ("batches", "failed", "running", "received", "loaded", "duplicate", "quarantined")
    return {**dict(zip(keys, map(int, ledger), strict=True)), "stored": int(stored),
            "quarantine_rows": {k: int(v) for k, v in sorted(quarantine.items())},
            "failed_errors": {str(error): int(n) for error, n in failures}}


def checks(sent: Sent, db: dict[str, Any]) -> list[Check]:
    quarantine_rows = sum(db["quarantine_rows"].values())
    bad_unique = sum(sent.bad_new.values())
    return [
        Check("API batches in the ledger = POSTs acknowledged", sent.acked_posts, db["batches"]),
        Check("POSTs acknowledged = POSTs sent", sent.posts, sent.acked_posts),
        Check("API batches failed or left running", 0, db["failed"] + db["running"]),
        Check("rows sent = ledger rows_received", sent.rows, db["received"]),
        Check("rows sent = stored + ledger quarantined + ledger duplicate", sent.rows,
              db["stored"] + db["quarantined"] + db["duplicate"]),
        Check("distinct good rows sent = stored readings", sent.good_new, db["stored"]),
        Check("stored readings = ledger rows_loaded", db["stored"], db["loaded"]),
        Check("stored readings = acknowledged loaded", db["stored"], sent.acked["loaded"]),
        Check("good rows re-sent = ledger rows_duplicate", sent.good_resent, db["duplicate"]),
        Check("ledger rows_duplicate = acknowledged duplicate", db["duplicate"],
              sent.acked["duplicate"]),
        Check("bad rows sent = ledger rows_quarantined", sent.bad, db["quarantined"]),
        Check("ledger rows_quarantined = acknowledged rejected", db["quarantined"],
              sent.acked["rejected"]),
        Check("distinct bad rows sent = quarantine rows", bad_unique, quarantine_rows),
        Check("quarantine rows by rule", dict(sorted(sent.bad_new.items())),
              db["quarantine_rows"]),
        Check("distinct rows sent = stored + quarantine rows", sent.good_new + bad_unique,
              db["stored"] + quarantine_rows),
    ]


# ---------------------------------------------------------------------------------------------
# CPU: the client shares the machine with the server and PostgreSQL.

def _group_cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in a process group (the uvicorn server and its
    workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    def __init__(self, server_pgid: int) -> None:
        self.pgid = server_pgid

    def __enter__(self) -> CpuMeter:
        self.wall = time.perf_counter()
        self.client = time.process_time()
        self.server = _group_cpu_seconds(self.pgid)
        self.machine = _machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        busy, total = (a - b for a, b in zip(_machine_busy(), self.machine, strict=True))
        cores = os.cpu_count() or 1
        self.figures = {
            "cores": cores,
            "client_cores": round((time.process_time() - self.client) / wall, 2),
            "server_cores": round((_group_cpu_seconds(self.pgid) - self.server) / wall, 2),
            "machine_busy_cores": round(cores * busy / total, 2) if total else None,
        }
        rest = self.figures["machine_busy_cores"] or 0
        self.figures["postgres_and_others_cores"] = round(
            max(rest - self.figures["client_cores"] - self.figures["server_cores"], 0), 2)


# ---------------------------------------------------------------------------------------------
# One run.

def fleet(url: str) -> tuple[list[tuple[int, str, str, list[str]]], dict[str, float]]:
    with psycopg.connect(url) as conn:
        devices = conn.execute("SELECT device_id, site, zone, metrics FROM telemetry.devices"
                               " ORDER BY device_id").fetchall()
        hard_max = dict(conn.execute("SELECT metric, hard_max FROM telemetry.metrics"))
    return devices, hard_max


def run_against(url: str, opts: argparse.Namespace, server_log: Path | None = None,
                progress: Callable[[Tally, float], None] | None = None,
                marts: bool = True) -> dict[str, Any]:
    """Server up over a filled database (`marts`: with the dbt marts built), clients for
    opts.seconds, server down, accounting."""
    devices, hard_max = fleet(url)
    now = datetime.now(UTC)
    # New readings after the scratch history, never older than MAX_AGE, never in the future.
    start = max(END, (now - MAX_AGE).replace(minute=0, second=0, microsecond=0))
    traffic = Traffic(devices, hard_max, start, now - timedelta(minutes=1), opts.bad_share)
    mix = query_mix([d[0] for d in devices], opts.hours, marts)
    port = free_port()
    log = server_log.open("wb") if server_log else None
    try:
        server = start_server(url, port, opts.server_workers, log=log)
        try:
            with CpuMeter(server.pid) as cpu:
                tally = asyncio.run(drive(f"http://127.0.0.1:{port}", opts, traffic, mix,
                                          progress))
        finally:
            stop_server(server)  # waits for requests in flight: the database is final after
    finally:
        if log:
            log.close()
    counts = database_counts(url)
    return summarize(tally, counts, checks(tally.sent, counts), cpu.figures, opts)


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.quantile(np.array(values) * 1000, [0.5, 0.9, 0.99])
    return {"p50_ms": round(q[0], 1), "p90_ms": round(q[1], 1), "p99_ms": round(q[2], 1),
            "max_ms": round(max(values) * 1000, 1)}


def summarize(tally: Tally, counts: dict[str, Any], found: list[Check], cpu: dict[str, Any],
              opts: argparse.Namespace) -> dict[str, Any]:
    wall = tally.finished - tally.started
    errors_by_kind: Counter[str] = Counter()
    for name, entry in tally.errors.items():
        errors_by_kind[name.split(": ", 1)[0]] += entry["count"]
    kinds = {}
    for kind in sorted(tally.latencies, key=lambda k: (k != POST, k)):
        values = tally.latencies[kind]
        kinds[kind] = {"requests": len(values), "errors": errors_by_kind[kind],
                       "rps": round(len(values) / wall, 1), **_ms(values)}
    everything = [v for values in tally.latencies.values() for v in values]
    ingest, queries = client_split(opts.clients, opts.ingest_share)
    s = tally.sent
    notes = []
    if tally.timeline_exhausted:
        notes.append("the ingestion timeline (history end to now) ran out before the end:"
                     " ingestion clients stopped early")
    return {
        "passed": tally.error_count == 0 and all(c.ok for c in found) and s.posts > 0,
        "seconds": round(wall, 2),
        "clients": {"total": opts.clients, "ingestion": ingest, "query": queries},
        "requests": tally.requests, "errors": tally.error_count,
        "rps": round(tally.requests / wall, 1),
        "latency": _ms(everything),
        "kinds": kinds,
        "error_kinds": tally.errors,
        "ingestion": {
            "posts": s.posts, "rows_sent": s.rows, "good_rows_new": s.good_new,
            "good_rows_resent": s.good_resent, "bad_rows_sent": s.bad,
            "bad_rows_distinct": dict(sorted(s.bad_new.items())),
            "acknowledged": {"posts": s.acked_posts, **dict(s.acked)},
            "rows_sent_per_s": round(s.rows / wall), "stored_per_s": round(counts["stored"] / wall),
        },
        "database": counts,
        "checks": [{**asdict(c), "ok": c.ok} for c in found],
        "cpu": cpu,
        "client_loop_lag": _ms(tally.client_lag),
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------
# Output.

def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k} {v:,}" for k, v in value.items()) or "none"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def report(console: Console, result: dict[str, Any]) -> None:
    table = Table(title=f"{result['clients']['total']} clients ({result['clients']['ingestion']}"
                  f" ingesting, {result['clients']['query']} querying) for "
                  f"{result['seconds']} s", title_justify="left")
    for column in ("kind", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms",
                   "max ms"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    rows = [*result["kinds"].items(), ("all", {
        "requests": result["requests"], "errors": result["errors"], "rps": result["rps"],
        **result["latency"]})]
    for kind, k in rows:
        table.add_row(kind, _fmt(k["requests"]),
                      f"[red]{k['errors']}[/]" if k["errors"] else "0", _fmt(k["rps"]),
                      *(_fmt(k.get(f"{q}_ms")) for q in ("p50", "p90", "p99", "max")),
                      end_section=kind == POST)
    console.print(table)
    ing = result["ingestion"]
    console.print(
        f"ingestion: {ing['posts']:,} POSTs, {ing['rows_sent']:,} rows sent"
        f" ({ing['rows_sent_per_s']:,}/s), {result['database']['stored']:,} stored"
        f" ({ing['stored_per_s']:,}/s), {ing['good_rows_resent']:,} re-sent on purpose,"
        f" {ing['bad_rows_sent']:,} bad rows sent ({sum(ing['bad_rows_distinct'].values()):,}"
        " distinct)")
    accounting = Table(title="accounting (after the server stopped)", title_justify="left")
    for column in ("check", "expected", "actual", ""):
        accounting.add_column(column)
    for c in result["checks"]:
        accounting.add_row(c["name"], _fmt(c["expected"]), _fmt(c["actual"]),
                           "[green]ok[/]" if c["ok"] else "[red]MISMATCH[/]")
    console.print(accounting)
    for name, entry in result["error_kinds"].items():
        console.print(f"[red]error[/] {name}: {entry['count']:,}, e.g. {entry['sample']}")
    for error, n in result["database"]["failed_errors"].items():
        console.print(f"[red]failed API batches[/] in the ledger: {n:,} x {error}")
    cpu = result["cpu"]
    console.print(
        f"CPU (cores of {cpu['cores']}): client {cpu['client_cores']}, API server"
        f" {cpu['server_cores']}, PostgreSQL and everything else"
        f" {cpu['postgres_and_others_cores']}; machine busy {cpu['machine_busy_cores']}. The"
        " client shares these cores with the server: the figures are the whole machine's,"
        " not the server's alone.")
    lag = result["client_loop_lag"]
    if lag:
        console.print(
            f"client event-loop lag (part of every latency above): p50 {lag['p50_ms']} ms,"
            f" p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms")
    for note in result["notes"]:
        console.print(f"[yellow]note[/] {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="duration (default 30)")
    parser.add_argument("--clients", type=int, default=100,
                        help="concurrent clients, one connection each (default 100)")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="uvicorn worker processes of the API (default 1)")
    parser.add_argument("--ingest-share", type=float, default=0.3,
                        help="share of the clients that post readings (default 0.3)")
    parser.add_argument("--bad-share", type=float, default=0.2,
                        help="share of batches carrying 1-3 bad rows (default 0.2)")
    parser.add_argument("--resend-share", type=float, default=0.05,
                        help="share of POSTs re-sending an acknowledged batch (default 0.05)")
    parser.add_argument("--hours", type=float, default=3,
                        help="simulated history loaded before the run (default 3)")
    parser.add_argument("--timeout", type=float, default=30,
                        help="seconds before a request counts as timed out (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where the JSON and the server log go (default bench/out)")
    opts = parser.parse_args(argv)
    if opts.seconds <= 0 or opts.clients < 1 or opts.server_workers < 1:
        parser.error("--seconds, --clients and --server-workers must be positive")
    if opts.hours < 0.25:
        parser.error("--hours must be at least 0.25")
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # make's log or a pipe: wide enough for the tables
        console = Console(width=140)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    opts.out.mkdir(parents=True, exist_ok=True)
    json_path = opts.out / f"loadtest-{stamp}.json"
    server_log = opts.out / f"loadtest-{stamp}-server.log"
    before = results.machine()
    with scratch_database("loadtest") as url:
        with console.status(f"filling a scratch database ({opts.hours:g} h of the default fleet,"
                            " dbt marts)"):
            fill(opts.hours)
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(f"{opts.clients} clients", total=opts.seconds, status="")

            def progress(tally: Tally, elapsed: float) -> None:
                bar.update(task, completed=min(elapsed, opts.seconds), status=(
                    f"{tally.requests:,} requests ({tally.requests / max(elapsed, 1e-9):,.0f}/s),"
                    f" {tally.sent.rows:,} rows sent, {tally.error_count:,} errors"))

            result = run_against(url, opts, server_log, progress)
    database = "embedded" if not os.environ.get("DATABASE_URL") else "DATABASE_URL's server"
    result = {"at": stamp, "machine": {
        **before, "load_average_after": results.machine()["load_average_1_5_15"],
        "database": database}, "options": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in vars(opts).items()},
        "server_log": str(server_log), **result}
    json_path.write_text(json.dumps(result, indent=1))
    report(console, result)
    server_errors = sum("Traceback" in line or "ERROR" in line
                        for line in server_log.read_text(errors="replace").splitlines())
    if server_errors:
        console.print(f"[red]the server logged {server_errors} error lines[/]: {server_log}")
    verdict = "[bold green]PASS[/]" if result["passed"] else "[bold red]FAIL[/]"
    mismatches = sum(not c["ok"] for c in result["checks"])
    console.print(f"{verdict}: {result['errors']:,} errors, {mismatches} accounting mismatches;"
                  f" {result['rps']:,} requests/s,"
                  f" {result['ingestion']['stored_per_s']:,} readings stored/s. JSON: {json_path}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
