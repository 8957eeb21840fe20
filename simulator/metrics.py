"""The metric registry the simulator draws against; it mirrors telemetry.metrics row for row.

The loader and the expectations read the same numbers from the database, so a value that differs
here would make the simulator's "normal" data fail validation. tests/simulator checks the two
against the migration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricSpec:
    metric_id: int
    metric: str
    unit: str
    normal_min: float
    normal_max: float
    hard_min: float  # physically possible range; outside it a reading is a data fault
    hard_max: float
    breach_threshold: float | None  # alert threshold for KPI breach counts; None = no alert

    @property
    def width(self) -> float:
        """Width of the normal band: anomaly magnitudes are stated in these units."""
        return self.normal_max - self.normal_min


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(1, "co2", "ppm", 400.0, 800.0, 0.0, 10000.0, 1000.0),
    MetricSpec(2, "temperature", "degC", 18.0, 26.0, -40.0, 85.0, 30.0),
    MetricSpec(3, "humidity", "pct", 30.0, 60.0, 0.0, 100.0, 80.0),
    MetricSpec(4, "occupancy", "count", 0.0, 20.0, 0.0, 1000.0, None),
)
METRIC_BY_ID: dict[int, MetricSpec] = {m.metric_id: m for m in METRICS}
METRIC_BY_NAME: dict[str, MetricSpec] = {m.metric: m for m in METRICS}
METRIC_NAMES: tuple[str, ...] = tuple(m.metric for m in METRICS)
