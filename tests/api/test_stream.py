"""GET /api/v1/alerts/stream: server-sent events of alert changes (every read bounded in time)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
import uvicorn

from api.main import create_app
from api.routes import alert_actions
from core import detection_store, ingest
from detectors import alerts as alert_machine
from simulator import FleetConfig

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = pd.Timestamp("2026-11-20T10:00:00Z")
WAIT = 15.0  # seconds any single expectation may take


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_SSE_POLL_SECONDS", "0.2")
    monkeypatch.setenv("TELEMETRY_SSE_HEARTBEAT_SECONDS", "0.5")


def fire_alert(conn: psycopg.Connection, device_id: int, metric: str = "co2") -> int:
    key = ("device", device_id, metric)
    state, changes = alert_machine.advance(None, pd.date_range(T0, periods=3, freq="10s"),
                                           np.array([1.5, 2.0, 2.5]))
    alert_id = None
    for change in changes:
        alert_id = detection_store.apply_transition(conn, key, alert_id, change) or alert_id
    detection_store.save_alert_state(conn, key, state.to_dict(), alert_id)
    return int(alert_id)


class Events:
    """Reads a text/event-stream in a thread; `next` waits (bounded) for a matching event."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.queue: queue.Queue[dict[str, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self.thread.start()

    def _read(self, lines: Iterator[str]) -> None:
        event: dict[str, str] = {}
        try:
            for line in lines:
                if not line:
                    if event:
                        self.queue.put(event)
                    event = {}
                    continue
                name, _, value = line.partition(":")
                name = name or "comment"
                event[name] = (event.get(name, "") + value.strip()) if name == "comment" \
                    else value.strip()
        except Exception:  # the test closed the stream under the reader
            pass
        finally:
            self.queue.put(None)

    def next(self, want) -> dict[str, str]:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if event is None:
                raise AssertionError("the stream ended")
            if want(event):
                return event
        raise AssertionError(f"no matching event within {WAIT}s")


def is_alert(alert_id: int, **fields):
    def match(event: dict[str, str]) -> bool:
        if event.get("event") != "alert":
            return False
        data = json.loads(event["data"])
        return data["alert_id"] == alert_id and all(data[k] == v for k, v in fields.items())
    return match


@pytest.fixture
def fleet(client, conn) -> psycopg.Connection:
    ingest.register_fleet(FleetConfig(sites=1, zones_per_site=1, devices_per_zone=3))
    return conn


def test_new_and_changed_alerts_arrive_old_ones_are_not_replayed(client, fleet):
    old = fire_alert(fleet, device_id=1)
    with client.stream("GET", "/api/v1/alerts/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response.iter_lines())
        assert events.next(lambda e: "retry" in e)["retry"] == "3000"
        new = fire_alert(fleet, device_id=2)
        event = events.next(lambda e: e.get("event") == "alert")
        data = json.loads(event["data"])
        assert data["alert_id"] == new and data["state"] == "firing"
        assert data["device_name"] == "site-01/zone-01/dev-02"
        assert event["id"].endswith(f":{new}")
        assert client.post(f"/api/v1/alerts/{old}/ack", headers=AUTH,
                           json={"by": "ops", "note": "on it"}).status_code == 200
        acked = events.next(is_alert(old, acknowledged_by="ops"))
        assert json.loads(acked["data"])["ack_note"] == "on it"
        assert "keep-alive" in events.next(lambda e: "comment" in e)["comment"]


def test_reconnecting_with_last_event_id_resumes_after_it(client, fleet):
    first = fire_alert(fleet, device_id=1)
    with client.stream("GET", "/api/v1/alerts/stream") as response:
        events = Events(response.iter_lines())
        events.next(lambda e: "retry" in e)
        client.post(f"/api/v1/alerts/{first}/ack", headers=AUTH, json={"by": "ops"})
        seen = events.next(is_alert(first, acknowledged_by="ops"))["id"]
    missed = fire_alert(fleet, device_id=3)  # while disconnected
    with client.stream("GET", "/api/v1/alerts/stream",
                       headers={"Last-Event-ID": seen}) as response:
        events = Events(response.iter_lines())
        event = events.next(lambda e: e.get("event") == "alert")
        assert json.loads(event["data"])["alert_id"] == missed  # not `first` again


def settle(done) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_stream_ends_when_the_client_disconnects(db, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
    port = _free_port()
    app = create_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        settle(lambda: server.started)
        url = f"http://127.0.0.1:{port}/api/v1/alerts/stream"
        assert alert_actions.open_streams(app) == 0
        with httpx.stream("GET", url, timeout=WAIT) as response:
            assert response.status_code == 200
            # Hold the iterator: a dropped one, once collected, closes the connection.
            lines = response.iter_lines()
            next(lines)  # the stream is open...
            assert alert_actions.open_streams(app) == 1  # counted before its first byte
        # ...and no longer once the client has gone.
        settle(lambda: alert_actions.open_streams(app) == 0)
    finally:
        server.should_exit = True
        thread.join(WAIT)
