"""The dashboard at / in a real headless Chromium, served by a real uvicorn over the test's own
database; plus its static routes through the TestClient."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import uvicorn

from api.main import create_app
from core import ingest
from core.dbt_runner import run_dbt
from core.settings import get_settings
from detectors.alerts import AlertState
from simulator import FleetConfig, simulate
from tests.api.conftest import TOKEN

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
END = datetime(2026, 11, 20, tzinfo=UTC)
FLEET = FleetConfig(sites=1, zones_per_site=2, devices_per_zone=2)  # 4 devices


# ---------- static routes (no browser) ----------

def test_static_routes_serve_only_their_files_and_stay_out_of_the_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "{{config}}" not in page.text and "default-src 'self'" in page.headers[
        "content-security-policy"]
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and "max-age" in plotly.headers["cache-control"]
    assert plotly.text.lstrip().startswith("/**") and "plotly.js" in plotly.text[:200]
    again = client.get("/static/plotly.min.js", headers={"If-None-Match": plotly.headers["etag"]})
    assert again.status_code == 304
    for name in ("dashboard.js", "dashboard.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200
    for bad in ("..%2Fdeps.py", "%2E%2E%2Froutes%2Fdashboard.py", ".hidden.js", "dashboard.html",
                "nope.js", "../routes/dashboard.py"):
        assert client.get(f"/static/{bad}").status_code == 404, bad
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/static/{name}", "/static/plotly.min.js"} & set(paths)


def test_page_and_scripts_name_no_external_host():
    static = Path(__file__).resolve().parents[2] / "api" / "static"
    for path in static.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and (
            "https://" not in text), path.name


# ---------- a real server and browser ----------

@contextmanager
def serve() -> Iterator[str]:
    """uvicorn in a thread on a free loopback port, with the environment the test set."""
    get_settings.cache_clear()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning",
                                           timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class PageWatch:
    """Everything that went wrong on a page, and every URL it asked for."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.responses: list[tuple[int, str]] = []
        self.urls: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: r.status >= 400 and self.responses.append((r.status, r.url)))
        page.route("**/*", self._route)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} @ {message.location.get('url')}")

    def _failed(self, request: Any) -> None:
        # The open alert stream is cut when the page closes; anything else failing is a bug.
        if not request.url.endswith("/alerts/stream"):
            self.errors.append(f"requestfailed: {request.url} {request.failure}")

    def _route(self, route: Any) -> None:
        self.urls.append(route.request.url)
        route.continue_()

    def external(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                and urlsplit(u).hostname not in LOOPBACK]


@contextmanager
def dashboard(browser: Any, base: str) -> Iterator[tuple[Any, PageWatch]]:
    """The page after its first full load; closed (ending its alert stream) on the way out."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    watch = PageWatch(page)
    try:
        page.goto(base + "/", wait_until="domcontentloaded")
        page.wait_for_selector("body[data-loaded='true']")
        yield page, watch
    finally:
        page.close()


# ---------- known rows ----------

def load_fleet(conn: psycopg.Connection) -> None:
    ingest.register_fleet(FLEET)
    start = END - timedelta(hours=2)
    for piece in ingest.chunks(ingest.Window(start, END), timedelta(hours=1)):
        ingest.load_simulated(simulate(FLEET, piece.start, piece.end), piece)
    run_dbt(["build"])


def insert_open_alert(conn: psycopg.Connection, device_id: int, metric: str) -> tuple[int, int]:
    """A firing alert (and the alert machine's matching memory) plus the anomalous readings
    behind it, taken from the loaded rows; returns (alert_id, anomalies)."""
    points = conn.execute(
        "SELECT r.ts, r.value FROM telemetry.readings r JOIN telemetry.metrics m USING (metric_id)"
        " WHERE r.device_id = %s AND m.metric = %s AND r.ts >= %s ORDER BY r.ts LIMIT 3",
        (device_id, metric, END - timedelta(minutes=40))).fetchall()
    opened, last = points[0][0], points[-1][0]
    alert_id = conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
        " fired_at, last_seen_at, peak_score, peak_ts, reason, detectors)"
        " VALUES ('device', %s, %s, 'firing', 'high', %s, %s, %s, 4.2, %s,"
        " 'the fused detector score reached its threshold', '{fused}') RETURNING alert_id",
        (device_id, metric, opened, opened, last, last)).fetchone()[0]
    memory = AlertState(state="firing", opened_at=opened, fired_at=opened, last_above_ts=last,
                        last_ts=last, peak_score=4.2, peak_ts=last, max_severity="high",
                        n_points=len(points), n_above_fire=len(points))
    conn.execute("INSERT INTO telemetry.alert_states (kind, device_id, metric, state, alert_id)"
                 " VALUES ('device', %s, %s, %s, %s)",
                 (device_id, metric, json.dumps(memory.to_dict()), alert_id))
    for ts, value in points:
        conn.execute(
            "INSERT INTO telemetry.scores (detector, device_id, metric, ts, value, baseline_mean,"
            " baseline_std, score, is_anomaly, severity, reason)"
            " VALUES ('fused', %s, %s, %s, %s, %s, 0.5, 4.2, true, 'high', 'test')",
            (device_id, metric, ts, value, value - 2.0))
    return alert_id, len(points)


# ---------- browser tests ----------

def test_dashboard_on_a_fresh_database_says_there_is_nothing_yet(db, chromium, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
    with serve() as base, dashboard(chromium, base) as (page, watch):
        assert "No open alerts" in page.inner_text("#alerts-empty")
        assert "No devices registered yet" in page.inner_text("#fleet")
        # Checked before the page closes: closing aborts whatever is still in flight.
        assert watch.errors == [] and watch.responses == []
        assert watch.urls and watch.external() == []


def test_dashboard_shows_the_open_alert_its_chart_and_acknowledges_it(
        db, conn, chromium, monkeypatch):
    started = time.monotonic()
    monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
    monkeypatch.setenv("TELEMETRY_PREFECT_UI_URL", "http://127.0.0.1:4299")
    load_fleet(conn)
    device_id, device_name, site, zone = conn.execute(
        "SELECT device_id, device_name, site, zone FROM telemetry.devices"
        " ORDER BY device_id DESC LIMIT 1").fetchone()
    alert_id, anomalies = insert_open_alert(conn, device_id, "temperature")
    other_device = conn.execute("SELECT min(device_id) FROM telemetry.devices").fetchone()[0]

    with serve() as base, dashboard(chromium, base) as (page, watch):
        row = page.locator(f"#alerts tr[data-alert-id='{alert_id}']")
        # The name is shown without the place it repeats ("site-01/zone-02/dev-02").
        shown = row.inner_text()
        assert device_name.rsplit("/", 1)[-1] in shown and f"{site} / {zone}" in shown
        assert "temperature" in shown and "firing" in shown
        assert page.get_attribute("#prefect-link", "href") == "http://127.0.0.1:4299"
        assert "No reports yet" in page.inner_text("#reports")
        page.wait_for_selector("#live.on")  # the alert stream is connected

        # The only open alert picks the chart: KPI traces plus one red marker per anomaly.
        traces = page.evaluate("() => document.getElementById('kpi-chart').data.map("
                               "t => ({name: t.name, n: (t.x || []).length}))")
        kpi = [t for t in traces if t["name"].startswith("mean")]
        assert kpi and kpi[0]["n"] > 0
        assert {"name": "anomaly", "n": anomalies} in traces
        assert page.locator("#kpi-chart .main-svg").count() > 0  # plotly drew it

        # Without a token the API's own refusal is shown (a 401 the test provokes) ...
        ack_url = f"{base}/api/v1/alerts/{alert_id}/ack"
        with page.expect_response(ack_url) as refused:
            row.locator("button.ack").click()
        page.wait_for_selector("#alert-message.error")
        assert refused.value.status == 401
        assert refused.value.json()["detail"] in page.inner_text("#alert-message")
        assert watch.responses == [(401, ack_url)]
        watch.responses.clear()
        watch.errors = [e for e in watch.errors if not ("401" in e and ack_url in e)]

        # ... and with it the alert is acknowledged in the database.
        page.fill("#token", TOKEN)
        page.fill("#actor", "browser-test")
        row.locator("button.ack").click()
        page.wait_for_selector("#alert-message.ok")
        acked = conn.execute("SELECT acknowledged_by, state FROM telemetry.alerts"
                             " WHERE alert_id = %s", (alert_id,)).fetchone()
        assert acked == ("browser-test", "firing")
        page.wait_for_selector(f"#alerts tr[data-alert-id='{alert_id}'] button.ack:disabled")
        assert page.evaluate("() => localStorage.getItem('telemetry.apiToken')") == TOKEN

        # An alert raised while the page is open arrives over the stream, not a reload.
        late_id = insert_open_alert(conn, other_device, "humidity")[0]
        page.wait_for_selector(f"#alerts tr[data-alert-id='{late_id}']", timeout=10_000)
        assert watch.errors == [] and watch.responses == []
        assert watch.external() == []
    assert time.monotonic() - started < 60
