"""`simulate --stream`: the streaming client against a real uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from api.main import create_app
from cli.stream import simulate
from core import ingest
from flows.params import FleetParams
from simulator import simulate as simulate_fleet

TOKEN = "test-token-0123456789"
WAIT = 90.0  # seconds any run may take
app = typer.Typer()
app.command()(simulate)
runner = CliRunner()
START = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def fleet(fault_scale: float) -> FleetParams:
    return FleetParams(sites=1, zones_per_site=1, devices_per_zone=3, fault_scale=fault_scale)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int) -> Callable[[], None]:
    """uvicorn with the API on 127.0.0.1:port, in a thread; returns a stop function."""
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(WAIT)

    return stop


@pytest.fixture
def setup(db: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
    ingest.register_fleet(fleet(0).config())
    return conn, tmp_path / "spool", free_port()


def args(port: int, spool: Path, count: int, fault_scale: float = 0.0, *more: str) -> list[str]:
    return ["--stream", "--to", f"http://127.0.0.1:{port}", "--count", str(count),
            "--rate", "2000", "--sites", "1", "--zones-per-site", "1", "--devices-per-zone", "3",
            "--fault-scale", str(fault_scale), "--spool", str(spool), "--token", TOKEN,
            "--backoff-max", "0.3", "--flush-seconds", "0.05", "--batch", "50", *more]


def expected(count: int) -> set[tuple]:
    """The first `count` readings the clean fleet sends from START, in arrival order."""
    frame = simulate_fleet(fleet(0).config(), START, START + timedelta(hours=1)).readings
    head = frame.head(count)
    return {(int(d), int(m), t.to_pydatetime(), float(v)) for d, m, t, v in
            zip(head["device_id"], head["metric_id"], head["ts"], head["value"], strict=True)}


def stored(conn: psycopg.Connection) -> set[tuple]:
    return set(conn.execute("SELECT device_id, metric_id, ts, value FROM telemetry.readings"))


def ledger(conn: psycopg.Connection) -> tuple[int, ...]:
    return conn.execute(
        "SELECT coalesce(sum(rows_received), 0), coalesce(sum(rows_loaded), 0),"
        " coalesce(sum(rows_duplicate), 0), coalesce(sum(rows_quarantined), 0)"
        " FROM telemetry.batches WHERE source = 'api' AND status = 'succeeded'").fetchone()


def pending(spool: Path) -> list[Path]:
    return sorted((spool / "pending").glob("*.json"))


def test_every_reading_arrives_exactly_once(setup):
    conn, spool, port = setup
    stop = serve(port)
    try:
        result = runner.invoke(app, [*args(port, spool, 300), "--start",
                                     f"{START:%Y-%m-%dT%H:%M:%S}"])
    finally:
        stop()
    assert result.exit_code == 0, result.output
    assert "generated 300" in result.output and "still spooled 0" in result.output
    assert stored(conn) == expected(300)
    assert ledger(conn) == (300, 300, 0, 0)  # nothing sent twice
    assert pending(spool) == []


def _invoke_in_thread(argv: list[str]) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", runner.invoke(app, argv)),
                              daemon=True)
    thread.start()
    return thread, out


def test_the_spool_keeps_readings_until_the_api_comes_up(setup):
    conn, spool, port = setup
    count = 400
    thread, out = _invoke_in_thread([*args(port, spool, count, 30.0), "--start",
                                     f"{START:%Y-%m-%dT%H:%M:%S}", "--give-up-after", "60"])
    deadline = time.monotonic() + WAIT
    while sum(p.stat().st_size > 0 for p in pending(spool)) < count // 50:  # all generated
        assert thread.is_alive() and time.monotonic() < deadline, out
        time.sleep(0.05)
    time.sleep(0.5)  # a few failed attempts against the closed port
    assert ledger(conn) == (0, 0, 0, 0)
    stop = serve(port)
    try:
        thread.join(WAIT)
    finally:
        stop()
    result = out["result"]
    assert result.exit_code == 0, result.output
    assert "cannot deliver" in result.output and "delivering again" in result.output
    received, loaded, duplicate, quarantined = ledger(conn)
    assert received == count == loaded + duplicate + quarantined
    assert quarantined > 0  # the faults made some rows bad; they were kept, not dropped
    in_quarantine = conn.execute("SELECT count(*) FROM telemetry.quarantine").fetchone()[0]
    assert len(stored(conn)) == loaded and 0 < in_quarantine <= quarantined
    assert pending(spool) == []


def test_a_run_that_gives_up_leaves_its_readings_for_the_next_run(setup):
    conn, spool, port = setup
    first = runner.invoke(app, [*args(port, spool, 100), "--start",
                                f"{START:%Y-%m-%dT%H:%M:%S}", "--give-up-after", "0.5"])
    assert first.exit_code == 2, first.output
    assert "nothing delivered" in first.output and "still spooled 100" in first.output
    stop = serve(port)
    try:
        second = runner.invoke(app, args(port, spool, 50))  # resumes where the first stopped
    finally:
        stop()
    assert second.exit_code == 0, second.output
    assert "100 spooled readings first" in second.output
    assert stored(conn) == expected(150)  # contiguous: nothing lost, nothing repeated
    assert ledger(conn) == (150, 150, 0, 0)


def test_without_stream_the_command_says_what_to_use(tmp_path):
    result = runner.invoke(app, ["--spool", str(tmp_path)])
    assert result.exit_code != 0 and "simulate-and-load" in result.output


def test_a_wrong_token_stops_with_the_spool_kept(setup):
    conn, spool, port = setup
    stop = serve(port)
    try:
        argv = [*args(port, spool, 20), "--start", f"{START:%Y-%m-%dT%H:%M:%S}"]
        argv[argv.index(TOKEN)] = "wrong"
        result = runner.invoke(app, argv)
    finally:
        stop()
    assert result.exit_code == 2 and "refused the token" in result.output
    assert ledger(conn) == (0, 0, 0, 0) and pending(spool)


def test_a_wrong_url_stops_with_the_spool_kept(setup):
    _, spool, port = setup
    stop = serve(port)
    try:
        argv = [*args(port, spool, 20), "--start", f"{START:%Y-%m-%dT%H:%M:%S}"]
        argv[argv.index("--to") + 1] += "/api/v2/readings"
        result = runner.invoke(app, argv)
    finally:
        stop()
    assert result.exit_code == 2 and "not the ingestion endpoint" in result.output
    assert "still spooled 20" in result.output and len(pending(spool)) >= 1


def test_the_rate_paces_the_stream(setup):
    conn, spool, port = setup
    stop = serve(port)
    try:
        argv = [*args(port, spool, 60), "--start", f"{START:%Y-%m-%dT%H:%M:%S}"]
        argv[argv.index("2000")] = "40"
        began = time.monotonic()
        result = runner.invoke(app, argv)
        took = time.monotonic() - began
    finally:
        stop()
    assert result.exit_code == 0, result.output
    assert 1.2 <= took < 20 and ledger(conn)[0] == 60  # 60 readings at 40/s: about 1.5 s


def test_readings_are_not_sent_before_they_arrive():
    from cli.stream import Source

    config = fleet(0).config()
    start = datetime(2026, 11, 20, 10, tzinfo=UTC)
    source = Source(config, start, 0)
    assert source.take(100, start - timedelta(seconds=1)) == []
    first = source.take(1000, start + timedelta(seconds=15))
    frame = simulate_fleet(config, start, start + timedelta(minutes=1)).readings
    assert len(first) == int((frame["arrival_ts"] <= start + timedelta(seconds=15)).sum()) > 0
    assert source.take(1000, start + timedelta(seconds=15)) == []  # nothing new has arrived
