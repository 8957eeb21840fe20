"""Seeded, deterministic, labeled fleet simulator (pure numpy/pandas: no Prefect, DB or HTTP)."""

from simulator.anomalies import ANOMALY_TYPES, AnomalyConfig, AnomalyKind
from simulator.faults import FAULT_TYPES, FaultConfig
from simulator.fleet import FleetConfig, build_fleet
from simulator.metrics import METRICS, MetricSpec
from simulator.simulate import SimulatedBatch, simulate, simulate_clean

__all__ = [
    "ANOMALY_TYPES",
    "FAULT_TYPES",
    "METRICS",
    "AnomalyConfig",
    "AnomalyKind",
    "FaultConfig",
    "FleetConfig",
    "MetricSpec",
    "SimulatedBatch",
    "build_fleet",
    "simulate",
    "simulate_clean",
]
