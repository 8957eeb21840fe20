"""The one settings object, read from the environment (prefix TELEMETRY_) and a git-ignored .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELEMETRY_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TELEMETRY_DATABASE_URL"),
        description="PostgreSQL URL; unset = embedded server under data_dir/pg.",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="Embedded DB and state.")
    reports_dir: Path = Field(default=PROJECT_ROOT / "reports" / "out")
    dbt_project_dir: Path = Field(default=PROJECT_ROOT / "dbt")
    dbt_schema: str = Field(default="analytics", description="Schema dbt builds marts into.")
    dbt_threads: int = Field(default=2, ge=1, le=16)
    dbt_target_dir: Path = Field(
        default=PROJECT_ROOT / "dbt" / "target", description="dbt artifacts and logs."
    )

    # Fleet defaults (simulator); every flow parameter can override them.
    seed: int = Field(default=42, ge=0)
    sites: int = Field(default=3, ge=1, le=100)
    zones_per_site: int = Field(default=5, ge=1, le=100)
    devices_per_zone: int = Field(default=3, ge=1, le=100)
    interval_seconds: int = Field(default=10, ge=1, le=3600)

    # Loader rules.
    future_tolerance_seconds: int = Field(
        default=300, ge=0, description="Readings stamped later than arrival + this are rejected."
    )
    partitions_ahead_days: int = Field(default=3, ge=0, le=60)
    late_horizon_minutes: int = Field(
        default=120, ge=0, le=7 * 24 * 60, description="KPI windows this far back are rebuilt."
    )
    score_record_floor: float = Field(
        default=1.0, ge=0, description="Scores at or above this (1.0 = threshold) are stored."
    )
    quarantine_alert_share: float = Field(
        default=0.05, gt=0, le=1,
        description="A device whose rejected rows exceed this share of its expected readings"
        " in a scored window gets a data alert.",
    )
    quality_tolerance: float = Field(
        default=0.01, ge=0, le=1,
        description="Share of a batch's rows that may break a row-level expectation before it"
        " fails (GX `mostly` = 1 - this).",
    )
    quality_row_count_tolerance: float = Field(
        default=0.05, ge=0, le=1,
        description="Relative deviation of a batch's row count (and a KPI window's"
        " completeness) from the expected readings before the expectation fails.",
    )
    drift_reference_days: float = Field(
        default=7, gt=0, le=90, description="Drift: trailing clean period compared against."
    )
    drift_current_days: float = Field(default=1, gt=0, le=30, description="Drift: period tested.")
    drift_persist_runs: int = Field(
        default=3, ge=1, le=30,
        description="Consecutive drifted runs of a metric after which training re-baselines.",
    )
    # REST API.
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token for write endpoints; unset = writes refused.")
    api_host: str = Field(default="127.0.0.1")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_pool_size: int = Field(default=8, ge=1, le=100, description="Pooled DB connections.")
    api_page_max: int = Field(default=1000, ge=1, le=100_000, description="Largest page size.")
    api_max_body_bytes: int = Field(default=8_000_000, ge=1024, description="Request size cap.")
    api_max_batch: int = Field(default=10_000, ge=1, description="Readings per POST, at most.")
    api_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty = CORS off.")
    api_opentelemetry: bool = Field(
        default=False, description="FastAPI's native OpenTelemetry spans/metrics/logs.")
    prefect_ui_url: str = Field(default="http://127.0.0.1:4200", description="Linked from /.")
    api_max_reading_age_days: int = Field(
        default=30, ge=1, le=3650,
        description="POST /readings rejects readings older than this (each day of a batch's"
        " time span gets a partition; an ancient timestamp would create thousands).")
    detect_window: int = Field(
        default=60, ge=2, le=10_000, description="POST /detect: trailing window (points).")
    detect_k: float = Field(
        default=3.0, gt=0, le=1000, description="POST /detect: anomaly at |z| >= k.")
    detect_max_points: int = Field(
        default=1000, ge=1, le=100_000, description="POST /detect: points per request, at most.")
    anomaly_log_path: Path | None = Field(
        default=None, description="JSON-lines log of online anomalies; unset ="
        " data_dir/anomalies.jsonl.")
    api_run_mode: str = Field(
        default="auto", pattern="^(auto|prefect|in-process)$",
        description="POST /runs: 'prefect' creates a run of the deployment <flow>/<flow>;"
        " 'in-process' runs the flow in a background thread; 'auto' = prefect when"
        " PREFECT_API_URL is configured.")
    api_max_runs: int = Field(
        default=2, ge=1, le=32, description="In-process flow runs at once (more get 429).")
    sse_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Alert stream: seconds between polls.")
    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Alert stream: idle seconds per heartbeat.")
    stream_rate: float = Field(
        default=5.0, gt=0, le=100_000, description="simulate --stream: readings per second.")
    spool_dir: Path | None = Field(
        default=None, description="simulate --stream: unacknowledged readings on disk; unset"
        " = data_dir/spool.")
    chunk_minutes: int = Field(
        default=60, ge=1, le=24 * 60, description="Simulate/load chunk size for long windows."
    )


    @field_validator("api_token", mode="before")
    @classmethod
    def _blank_token_is_no_token(cls, value: object) -> object:
        # `TELEMETRY_API_TOKEN=` must not turn into an empty token that "" would match.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
