"""Security promises: tokens never reach a log or a response, CORS is off unless configured."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core import ingest
from core.settings import get_settings
from tests.api.conftest import AUTH, TOKEN
from tests.api.test_ingest import FLEET, body, valid_rows

WRONG = "wrong-token-9876543210-zyxw"


def test_tokens_right_or_wrong_never_reach_a_log_or_a_response(client, caplog):
    ingest.register_fleet(FLEET)
    caplog.set_level(logging.DEBUG)  # every logger, at its most talkative
    content = body(valid_rows(3, datetime.now(UTC)))
    answers = [
        client.post("/api/v1/readings", content=content, headers=AUTH),
        client.post("/api/v1/readings", content=content,
                    headers={"Authorization": f"Bearer {WRONG}"}),
        client.post("/api/v1/readings", content=content,
                    headers={"Authorization": f"Basic {WRONG}"}),
        client.post("/api/v1/alerts/1/ack", json={"by": TOKEN, "note": WRONG}, headers=AUTH),
        client.get("/api/v1/runs", headers={"Authorization": f"Bearer {WRONG}"}),
    ]
    assert [a.status_code for a in answers[:3]] == [200, 401, 401]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records  # the requests were logged at all...
    assert TOKEN not in logged and WRONG not in logged  # ...without the secrets
    for answer in answers[1:3]:
        assert TOKEN not in answer.text and WRONG not in answer.text
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_cors_is_off_by_default(client):
    preflight = client.options("/api/v1/alerts", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_only_the_configured_origins(db, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TELEMETRY_API_CORS_ORIGINS", '["https://ops.example"]')
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        ok = client.options("/api/v1/alerts", headers={
            "Origin": "https://ops.example", "Access-Control-Request-Method": "GET"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = client.options("/api/v1/alerts", headers={
            "Origin": "https://ops.example", "Access-Control-Request-Method": "DELETE"})
        assert refused.status_code == 400  # only GET and POST are allowed
