"""Operations endpoints."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def test_health_ready_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["revision"] == ready["head"]
    exposition = client.get("/metrics")
    assert exposition.status_code == 200
    assert exposition.headers["content-type"].startswith("text/plain")
    for name in ("readings_ingested_total", "anomalies_detected_total", "alerts_open",
                 "http_request_duration_seconds_bucket", "batch_processing_seconds",
                 "active_devices"):
        assert name in exposition.text


def test_ready_says_when_migrations_are_pending(client, conn):
    conn.execute("UPDATE public.alembic_version SET version_num = '0002'")
    response = client.get("/ready")
    assert response.status_code == 503 and "telemetry db upgrade" in response.json()["status"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_metrics_pass_promtool_check(client, tmp_path):
    client.get("/api/v1/stats")  # some request series in the histogram
    client.get("/api/v1/no-such-route")
    exposition = tmp_path / "metrics.txt"
    exposition.write_bytes(client.get("/metrics").content)
    with exposition.open("rb") as stdin:
        result = subprocess.run(["promtool", "check", "metrics"], stdin=stdin,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""  # no lint findings


def test_a_blank_token_setting_refuses_writes(db, monkeypatch):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from core.settings import get_settings

    monkeypatch.setenv("TELEMETRY_API_TOKEN", "  ")
    get_settings.cache_clear()
    assert get_settings().api_token is None
    with TestClient(create_app()) as client:
        response = client.post("/api/v1/alerts/1/ack", json={"by": "x"},
                               headers={"Authorization": "Bearer "})
    assert response.status_code == 403
