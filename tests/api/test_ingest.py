"""POST /api/v1/readings against a real database: the bad-input corpus, idempotency, limits."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import metrics
from api.main import create_app
from core import ingest
from core.csv_readings import typed_rows
from core.csv_text import read_text
from core.settings import get_settings
from simulator import FleetConfig
from tests.bad_inputs import CORPUS_DIR, expectation, fill

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CORPUS = json.loads((CORPUS_DIR / "readings.json").read_text())
FLEET = FleetConfig(sites=1, zones_per_site=1, devices_per_zone=2)  # devices 1 and 2
def row_text(case: dict, now: datetime) -> str:
    return fill(case["raw"] if "raw" in case else json.dumps(case["reading"]), now)


def valid_rows(n: int, now: datetime, metric: str = "temperature") -> list[str]:
    return [json.dumps({"device_id": 1 + i % 2, "metric": metric,
                        "ts": f"{now - timedelta(seconds=1000 + 10 * i):%Y-%m-%dT%H:%M:%SZ}",
                        "value": 20.0 + i / 10, "unit": "degC" if metric == "temperature"
                        else None})
            for i in range(n)]


def body(rows: list[str]) -> bytes:
    return ('{"readings": [' + ", ".join(rows) + "]}").encode()


def post(client: TestClient, content: bytes, **headers: str):
    return client.post("/api/v1/readings", content=content, headers={**AUTH, **headers})


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    return (conn.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0],
            conn.execute("SELECT count(*) FROM telemetry.quarantine").fetchone()[0])


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    ingest.register_fleet(FLEET)
    return client


def test_every_bad_row_is_refused_with_a_reason_and_nothing_else_is_lost(fleet, conn):
    now = datetime.now(UTC)
    good, bad = valid_rows(20, now), [row_text(c, now) for c in CORPUS["rows"]]
    pairs: list[tuple[str, dict | None]] = []
    for i, case in enumerate(CORPUS["rows"]):  # interleaved: refusals must not hurt neighbours
        if i < len(good):
            pairs.append((good[i], None))
        pairs.append((bad[i], case))
    pairs += [(text, None) for text in good[len(bad):]]
    rows = [text for text, _ in pairs]
    expected = {i: case for i, (_, case) in enumerate(pairs) if case}
    response = post(fleet, body(rows))
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["received"], out["loaded"], out["duplicate"]) == (len(rows), 20, 0)
    assert out["rejected"] == len(bad) == len(out["rejections"])
    got = {r["index"]: r for r in out["rejections"]}
    assert set(got) == set(expected)
    for index, case in expected.items():
        assert (got[index]["field"], got[index]["rule"]) == (case["field"], case["rule"]), \
            case["name"]
        assert got[index]["reason"]
    reasons = " ".join(r["reason"] for r in out["rejections"])
    assert "<script" not in reasons and "DROP TABLE" not in reasons and "<img" not in reasons

    readings, quarantined = counts(conn)
    assert (readings, quarantined) == (20, len(bad))
    by_rule = dict(conn.execute("SELECT rule, count(*) FROM telemetry.quarantine GROUP BY 1"))
    want: dict[str, int] = {}
    for case in CORPUS["rows"]:
        want[case["rule"]] = want.get(case["rule"], 0) + 1
    assert by_rule == want
    ledger = conn.execute("SELECT source, rows_received, rows_loaded, rows_duplicate,"
                          " rows_quarantined, status FROM telemetry.batches").fetchall()
    assert ledger == [("api", len(rows), 20, 0, len(bad), "succeeded")]

    again = post(fleet, body(rows))  # the same batch again changes nothing
    assert again.status_code == 200
    second = again.json()
    assert (second["loaded"], second["duplicate"], second["rejected"]) == (0, 20, len(bad))
    assert counts(conn) == (20, len(bad))
    last = conn.execute("SELECT rows_received, rows_loaded, rows_duplicate, rows_quarantined"
                        " FROM telemetry.batches ORDER BY batch_id DESC LIMIT 1").fetchone()
    assert last == (len(rows), 0, 20, len(bad))
    assert conn.execute("SELECT count(*) FROM telemetry.devices").fetchone()[0] == 2


def test_each_bad_row_alone_is_refused_not_a_500(fleet, conn):
    now = datetime.now(UTC)
    for case in CORPUS["rows"]:
        response = post(fleet, body([row_text(case, now)]))
        assert response.status_code == 200, (case["name"], response.text)
        out = response.json()
        assert out["loaded"] == 0 and out["rejected"] == 1, case["name"]
        rejection = out["rejections"][0]
        assert (rejection["index"], rejection["field"], rejection["rule"]) == (
            0, case["field"], case["rule"]), case["name"]
    assert counts(conn) == (0, len(CORPUS["rows"]))


@pytest.mark.parametrize("group", CORPUS["groups"], ids=lambda g: g["name"])
def test_readings_judged_together(fleet, conn, group):
    now = datetime.now(UTC)
    response = post(fleet, body([fill(json.dumps(r), now) for r in group["readings"]]))
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["loaded"], out["duplicate"]) == (group["loaded"], group["duplicate"])
    got = {str(r["index"]): {"field": r["field"], "rule": r["rule"]} for r in out["rejections"]}
    assert got == group["refused"]
    assert counts(conn) == (group["loaded"], len(group["refused"]))


def test_a_key_stored_earlier_with_another_value_is_refused_by_index(fleet, conn):
    now = datetime.now(UTC)
    first = valid_rows(3, now)
    assert post(fleet, body(first)).json()["loaded"] == 3
    changed = json.loads(first[1]) | {"value": 29.0}
    response = post(fleet, body([*valid_rows(5, now)[3:], json.dumps(changed), first[0]]))
    out = response.json()
    assert (out["loaded"], out["duplicate"], out["rejected"]) == (2, 1, 1)
    [rejection] = out["rejections"]
    assert (rejection["index"], rejection["rule"]) == (2, "conflicting_duplicate")
    assert "already stored with value 20.1" in rejection["reason"]
    stored = conn.execute("SELECT value FROM telemetry.readings WHERE value IN (20.1, 29.0)")
    assert [r[0] for r in stored] == [20.1]


@pytest.mark.parametrize("case", CORPUS["bodies"], ids=lambda c: c["name"])
def test_unusable_bodies_get_a_4xx_and_store_nothing(fleet, conn, case):
    config = get_settings()
    now = datetime.now(UTC)
    if "raw" in case:
        content = case["raw"].encode()
    elif "nested_depth" in case:
        content = b"[" * case["nested_depth"] + b"]" * case["nested_depth"]
    elif "readings_count" in case:
        content = body(valid_rows(config.api_max_batch + 1, now))
    else:
        content = b'{"readings": [' + b" " * config.api_max_body_bytes + b"]}"
    response = post(fleet, content)
    assert response.status_code == case["status"], response.text
    assert response.json()["detail"]
    assert counts(conn) == (0, 0)
    assert conn.execute("SELECT count(*) FROM telemetry.batches").fetchone()[0] == 0


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(fleet):
    limit = get_settings().api_max_body_bytes

    def pieces():
        yield b'{"readings": ['
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = fleet.post("/api/v1/readings", content=pieces(), headers=AUTH)
    assert response.status_code == 413


def test_gzip_bodies_are_inflated_under_the_same_limit(fleet, conn):
    now = datetime.now(UTC)
    packed = gzip.compress(body(valid_rows(4, now)))
    response = post(fleet, packed, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.json()["loaded"] == 4
    assert post(fleet, b"\x1f\x8b not gzip", **{"Content-Encoding": "gzip"}).status_code == 422
    bomb = gzip.compress(b" " * (get_settings().api_max_body_bytes + 10))
    assert post(fleet, bomb, **{"Content-Encoding": "gzip"}).status_code == 413


def test_writes_need_the_token(fleet, db, monkeypatch):
    content = body(valid_rows(1, datetime.now(UTC)))
    assert fleet.post("/api/v1/readings", content=content).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert fleet.post("/api/v1/readings", content=content, headers=wrong).status_code == 401
    monkeypatch.delenv("TELEMETRY_API_TOKEN")
    get_settings.cache_clear()
    with TestClient(create_app()) as closed:
        response = closed.post("/api/v1/readings", content=content, headers=AUTH)
    assert response.status_code == 403 and "TELEMETRY_API_TOKEN" in response.json()["detail"]


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_counters_and_batch_timings_are_exported(fleet):
    now = datetime.now(UTC)
    before = (_sample("readings_ingested_total"),
              _sample("readings_rejected_total", {"rule": "unknown_metric"}),
              _sample("batch_processing_seconds_count"))
    unknown = next(c for c in CORPUS["rows"] if c["name"] == "unknown metric")
    rows = [*valid_rows(3, now), row_text(unknown, now)]
    assert post(fleet, body(rows)).status_code == 200
    after = (_sample("readings_ingested_total"),
             _sample("readings_rejected_total", {"rule": "unknown_metric"}),
             _sample("batch_processing_seconds_count"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 1, 1]


def test_a_bare_array_with_metadata_offsets_and_no_unit_is_accepted(fleet, conn):
    when = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    rows = [{"device_id": 2, "metric": "co2", "value": 640, "metadata": {"fw": "1.2.3"},
             "ts": when.astimezone(timezone(timedelta(hours=1))).isoformat()},  # +01:00
            {"device_id": 2, "metric": "humidity", "value": 41.5, "unit": None,
             "ts": f"{when:%Y-%m-%dT%H:%M:%SZ}"}]
    response = post(fleet, json.dumps(rows).encode())
    assert response.status_code == 200 and response.json()["loaded"] == 2, response.text
    stamps = conn.execute("SELECT DISTINCT ts FROM telemetry.readings").fetchall()
    assert stamps == [(when,)]


def test_a_database_outage_is_a_503_not_a_500(fleet, db, monkeypatch):
    from core import db as core_db

    monkeypatch.setenv("DATABASE_URL", core_db.with_dbname(db, "no_such_database"))
    core_db.reset_caches()
    with TestClient(create_app()) as down:
        response = post(down, body(valid_rows(2, datetime.now(UTC))))
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_the_csv_corpus_gets_the_same_verdicts_as_through_load_csv(fleet, conn, tmp_path):
    """readings.csv's rows, typed as load-csv types them and sent as JSON (NaN and Infinity
    as the stdlib writes them): each row gets the field and rule its line expects."""
    path = tmp_path / "readings.csv"
    path.write_text(fill((CORPUS_DIR / "readings.csv").read_text(), datetime.now(UTC)))
    text = read_text(path)
    rows = typed_rows(text.frame, text.lines)  # lines that are not rows never reach the API
    lines = path.read_text().splitlines()
    response = post(fleet, json.dumps({"readings": rows}).encode())
    assert response.status_code == 200, response.text
    got = {rows[r["index"]]["line"]: (r["field"], r["rule"])
           for r in response.json()["rejections"]}
    want = {line: expectation(lines[line - 1]) for line in text.lines.tolist()
            if expectation(lines[line - 1])}
    assert got == want and len(want) >= 40
