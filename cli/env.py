"""Process defaults the CLI sets before Prefect or dbt are imported (each overridable)."""

from __future__ import annotations

import os

from core.settings import get_settings


def apply_defaults(verbose: bool = False) -> None:
    data_dir = get_settings().data_dir
    # Prefect's own state (ephemeral server DB, local results) stays inside the project.
    os.environ.setdefault("PREFECT_HOME", str(data_dir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
