"""Alembic, driven from Python: `telemetry db upgrade` and the tests call these."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from core.db import sqlalchemy_url
from core.settings import PROJECT_ROOT


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


def upgrade(revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(url), revision)


def current(url: str | None = None) -> None:
    command.current(alembic_config(url))
