"""API benchmark: requests/s and latency of the REST API on uvicorn (one worker unless
--server-workers), against a trivial endpoint of the same server (/health, no database)
measured in the same run.

    python -m bench.bench_api [--seconds 10] [--connections 32] [--ingest-batches 200]

Starts the API on a free 127.0.0.1 port over a scratch database (simulated fleet, dbt marts,
alerts), loads it with wrk (Debian's package) for the GET endpoints and with a bounded
threaded client for POST /api/v1/readings (1,000-row batches, every batch new), prints a table
and writes bench/out/api.json. Loopback only; bounded in requests and time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import orjson
import pandas as pd

from bench.scratch import scratch_database
from core import db, dbt_runner, ingest
from simulator import FleetConfig, simulate

OUT = Path(__file__).parent / "out"
TOKEN = "bench-token"
END = datetime(2026, 11, 20, tzinfo=UTC)
FLEET = FleetConfig(seed=3)  # the default fleet: 45 devices
REFERENCE = "trivial /health (reference)"
INGEST = "POST /api/v1/readings x1000"
GETS = {
    REFERENCE: "/health",
    "/api/v1/kpis 100 rows": "/api/v1/kpis?grain=5m&limit=100",
    "/api/v1/alerts 100 rows": "/api/v1/alerts?limit=100",
}
PLAUSIBLE = {"co2": 520.0, "temperature": 21.0, "humidity": 45.0, "occupancy": 3.0}
LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(hours: float, marts: bool = True) -> None:
    """Readings, marts (unless `marts` is False: dbt's start-up is most of a short fill) and
    enough alerts for full 100-row pages."""
    ingest.register_fleet(FLEET)
    window = ingest.Window(END - timedelta(hours=hours), END)
    for piece in ingest.chunks(window, timedelta(hours=1)):
        ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)
    if marts:
        dbt_runner.run_dbt(["build"])
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
            " fired_at, last_seen_at, peak_score, reason)"
            " SELECT 'device', d.device_id, m, 'resolved', 'medium', t, t, t, 2.0, 'bench'"
            " FROM telemetry.devices d, unnest(ARRAY['co2', 'humidity']) m,"
            " generate_series(%s::timestamptz, %s::timestamptz, interval '1 hour') t",
            (END - timedelta(hours=hours), END))


def start_server(url: str, port: int, server_workers: int = 1,
                 log: IO[bytes] | None = None) -> subprocess.Popen:
    """The API under uvicorn on 127.0.0.1:`port` over `url`, once /ready answers 200; its
    warnings and tracebacks go to `log` (default: this process's stdout/stderr)."""
    env = {**os.environ, "DATABASE_URL": url, "TELEMETRY_API_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(server_workers),
         "--log-level", "warning", "--no-access-log"], env=env, start_new_session=True,
        stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError("the API did not become ready within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn finishes requests in flight), then wait."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {f"p{q}": round(float(v) * UNIT_MS[u], 2) for q, v, u in LATENCY.findall(out)}
    return {"rps": round(rps), **lat, "non_2xx": int(errors.group(1)) if errors else 0}


def ingest_batches(base: str, batches: int, workers: int) -> dict:
    """`batches` POSTs of 1,000 readings each, all new (successive 10-s ticks), `workers` at a
    time; readings/s over the wall time."""
    devices = list(range(1, 26))
    bodies = []
    for b in range(batches):
        ts0 = END + timedelta(hours=1) + timedelta(seconds=100 * b)
        # "Z" times, as devices send them (the parser's fast path)
        rows = [{"device_id": d, "metric": metric, "value": base + 0.1 * k + 0.01 * d,
                 "ts": (ts0 + timedelta(seconds=10 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")}
                for k in range(10) for d in devices for metric, base in PLAUSIBLE.items()]
        bodies.append(orjson.dumps({"readings": rows}))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    local = threading.local()
    failures: list[int] = []

    def post(body: bytes) -> int:
        if not hasattr(local, "client"):  # one keep-alive connection per sending thread
            local.client = httpx.Client(timeout=60)
        t = time.perf_counter()
        r = local.client.post(f"{base}/api/v1/readings", content=body, headers=headers)
        latencies.append(time.perf_counter() - t)
        if r.status_code >= 300 and not failures:
            print(f"POST /readings -> {r.status_code}: {r.text[:300]}", file=sys.stderr)
        if r.status_code >= 300:
            failures.append(r.status_code)
        return r.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(post, bodies))
    wall = time.perf_counter() - started
    lat = pd.Series(latencies) * 1000
    return {"batches": batches, "readings": batches * 1000, "seconds": round(wall, 2),
            "readings_per_s": round(batches * 1000 / wall),
            "p50": round(lat.quantile(0.5), 1), "p99": round(lat.quantile(0.99), 1),
            "non_2xx": sum(c >= 300 for c in codes)}


def measure(seconds: int = 10, connections: int = 32, batches: int = 200, workers: int = 1,
            hours: float = 3, server_workers: int = 1) -> dict:
    """Every endpoint's figures, from one server on a fresh scratch database."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    with scratch_database("bench_api") as url:
        fill(hours)
        port = free_port()
        server = start_server(url, port, server_workers)
        try:
            base = f"http://127.0.0.1:{port}"
            results = {name: wrk(base + path, seconds, connections)
                       for name, path in GETS.items()}
            results[INGEST] = ingest_batches(base, batches, workers)
        finally:
            stop_server(server)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ingest-batches", type=int, default=200)
    parser.add_argument("--ingest-workers", type=int, default=1)
    parser.add_argument("--hours", type=float, default=3, help="simulated hours loaded")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="uvicorn worker processes (telemetry api --workers)")
    args = parser.parse_args()
    try:
        results = measure(args.seconds, args.connections, args.ingest_batches,
                          args.ingest_workers, args.hours, args.server_workers)
    except RuntimeError as exc:
        sys.exit(str(exc))
    reference = results[REFERENCE]["rps"]
    print(f"{'stage':34} {'rps':>7} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}")
    for name, r in results.items():
        if "rps" in r:
            print(f"{name:34} {r['rps']:>7} {r['rps'] / reference:>6.2f} {r.get('p50', 0):>7}"
                  f" {r.get('p99', 0):>7} {r['non_2xx']:>7}")
    ingest_result = results[INGEST]
    print(f"{'POST /readings, 1,000-row batches':34} {ingest_result['readings_per_s']:>7} "
          f"readings/s, p50 {ingest_result['p50']} ms, p99 {ingest_result['p99']} ms, "
          f"non-2xx {ingest_result['non_2xx']}")
    OUT.mkdir(exist_ok=True)
    (OUT / "api.json").write_text(json.dumps(results, indent=1))
    print(f"written to {OUT / 'api.json'}")


if __name__ == "__main__":
    main()
