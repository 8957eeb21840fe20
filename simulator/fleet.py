"""The fleet: its configuration (a flow parameter) and the device registry it implies."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.anomalies import AnomalyConfig
from simulator.faults import FaultConfig
from simulator.metrics import METRIC_NAMES

MAX_DEVICES = 10_000
DEVICE_KIND = "env-sensor"


class FleetConfig(BaseModel):
    """Everything a simulated range depends on: same config + same range = same batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=42, ge=0, description="Root of every random draw.")
    sites: int = Field(default=3, ge=1, le=100)
    zones_per_site: int = Field(default=5, ge=1, le=100)
    devices_per_zone: int = Field(default=3, ge=1, le=100)
    interval_seconds: int = Field(default=10, ge=1, le=3600, description="Reading cadence.")
    installed_at: datetime = Field(
        default=datetime(2026, 1, 1, tzinfo=UTC),
        description="Start of reporting; readings sit on installed_at + k x interval.",
    )
    anomalies: AnomalyConfig = Field(default_factory=AnomalyConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)

    @field_validator("installed_at")
    @classmethod
    def _utc_whole_seconds(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("installed_at must be timezone-aware")
        if value.microsecond:
            raise ValueError("installed_at must be a whole second")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _fleet_size(self) -> FleetConfig:
        if self.n_devices > MAX_DEVICES:
            raise ValueError(f"fleet has {self.n_devices} devices; at most {MAX_DEVICES}")
        return self

    @property
    def n_devices(self) -> int:
        return self.sites * self.zones_per_site * self.devices_per_zone

    def clean(self) -> FleetConfig:
        """The same fleet with anomalies and faults switched off (baselines, tests)."""
        return self.model_copy(
            update={"anomalies": AnomalyConfig.disabled(), "faults": FaultConfig.disabled()}
        )


def build_fleet(config: FleetConfig) -> pd.DataFrame:
    """One row per device, ids 1..N in (site, zone, device) order; the telemetry.devices shape."""
    n = config.n_devices
    ids = pd.RangeIndex(n)
    per_site = config.zones_per_site * config.devices_per_zone
    site = ids // per_site + 1
    zone = ids % per_site // config.devices_per_zone + 1
    dev = ids % config.devices_per_zone + 1
    sites = pd.Series([f"site-{s:02d}" for s in site])
    zones = pd.Series([f"zone-{z:02d}" for z in zone])
    return pd.DataFrame(
        {
            "device_id": (ids + 1).astype("int32"),
            "device_name": sites + "/" + zones + pd.Series([f"/dev-{d:02d}" for d in dev]),
            "site": sites,
            "zone": zones,
            "device_kind": DEVICE_KIND,
            "metrics": [list(METRIC_NAMES) for _ in range(n)],
            "interval_seconds": config.interval_seconds,
            "installed_at": pd.Timestamp(config.installed_at),
        }
    )
