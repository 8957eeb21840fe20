"""Flow parameters: pydantic models with limits, so the Prefect UI refuses bad values."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, model_validator

from core.settings import get_settings
from simulator import FAULT_TYPES, FaultConfig, FleetConfig

MAX_DEVICES = 10_000


class FleetParams(BaseModel):
    """The simulated fleet; unset fields come from TELEMETRY_* settings."""

    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="default TELEMETRY_SEED")
    sites: int | None = Field(None, ge=1, le=100)
    zones_per_site: int | None = Field(None, ge=1, le=100)
    devices_per_zone: int | None = Field(None, ge=1, le=100)
    interval_seconds: int | None = Field(None, ge=1, le=3600)
    fault_scale: float = Field(
        1.0, ge=0, le=100, description="multiplies the simulator's data-fault rates "
        "(0 = clean data, 20 = a bad day for the quality checks)")

    @model_validator(mode="after")
    def _fleet_size(self) -> FleetParams:
        c = self.resolved()
        total = c["sites"] * c["zones_per_site"] * c["devices_per_zone"]
        if total > MAX_DEVICES:
            raise ValueError(f"fleet of {total} devices exceeds the limit of {MAX_DEVICES}")
        return self

    def resolved(self) -> dict[str, int]:
        s = get_settings()
        return {name: getattr(self, name) if getattr(self, name) is not None else getattr(s, name)
                for name in ("seed", "sites", "zones_per_site", "devices_per_zone",
                             "interval_seconds")}

    def config(self) -> FleetConfig:
        defaults = FaultConfig()
        faults = FaultConfig(**{name: getattr(defaults, name) * self.fault_scale
                                for name in FAULT_TYPES})
        return FleetConfig(**self.resolved(), faults=faults)


class WindowParams(BaseModel):
    """An event-time window; unset start = the stream's watermark, unset end = now."""

    start: datetime | None = None
    end: datetime | None = None
    chunk_minutes: int = Field(60, ge=1, le=24 * 60, description="simulate/load piece size")
    max_catch_up_hours: int = Field(
        48, ge=1, le=24 * 31, description="a run covers at most this much of a gap"
    )

    @model_validator(mode="after")
    def _ordered(self) -> WindowParams:
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class BackfillParams(BaseModel):
    days: float = Field(1, gt=0, le=90, description="days of history before `end`")
    end: datetime | None = Field(None, description="default: the start of today (UTC)")
    chunk_minutes: int = Field(180, ge=5, le=24 * 60)
