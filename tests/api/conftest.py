"""An API client over a fresh database of the test's own (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import get_settings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with its lifespan (pool) running, writes allowed with AUTH."""
    monkeypatch.setenv("TELEMETRY_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(create_app()) as test_client:
        yield test_client
