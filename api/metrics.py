"""Prometheus metrics of the API process (one registry, so tests can read it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

READINGS_INGESTED = Counter(
    "readings_ingested", "Readings accepted through POST /api/v1/readings.", registry=REGISTRY)
READINGS_REJECTED = Counter(
    "readings_rejected", "Readings rejected (quarantined) through the API, by rule.", ["rule"],
    registry=REGISTRY)
ANOMALIES_DETECTED = Counter(
    "anomalies_detected", "Anomalies found by POST /api/v1/detect.", registry=REGISTRY)
ALERTS_OPEN = Gauge(
    "alerts_open", "Open alerts by severity (read from the database at scrape time).",
    ["severity"], registry=REGISTRY)
ACTIVE_DEVICES = Gauge(
    "active_devices", "Devices with a reading in the last 15 minutes of loaded data.",
    registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds", "Request latency by route template and method.",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BATCH_SECONDS = Histogram(
    "batch_processing_seconds", "Seconds to validate and load one ingested batch.",
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
