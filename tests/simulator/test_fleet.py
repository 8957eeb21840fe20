"""Fleet registry, configuration limits, the metric spec and the package's import hygiene."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from simulator import METRICS, AnomalyKind, FaultConfig, FleetConfig, build_fleet

ROOT = Path(__file__).resolve().parents[2]


def test_build_fleet_default() -> None:
    fleet = build_fleet(FleetConfig())
    assert len(fleet) == 45
    assert list(fleet.columns) == [
        "device_id",
        "device_name",
        "site",
        "zone",
        "device_kind",
        "metrics",
        "interval_seconds",
        "installed_at",
    ]
    assert fleet["device_id"].tolist() == list(range(1, 46))
    assert fleet["device_name"].is_unique
    assert fleet.loc[0, "device_name"] == "site-01/zone-01/dev-01"
    assert fleet.loc[44, "device_name"] == "site-03/zone-05/dev-03"
    assert not fleet.duplicated(["site", "zone", "device_name"]).any()
    assert fleet.groupby(["site", "zone"]).size().eq(3).all()
    assert fleet["metrics"].map(len).eq(4).all()
    assert fleet["installed_at"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")


def test_fleet_ids_are_stable_across_sizes() -> None:
    small = build_fleet(FleetConfig(sites=1))
    big = build_fleet(FleetConfig(sites=4))
    pd.testing.assert_frame_equal(small, big.iloc[: len(small)])


@pytest.mark.parametrize(
    "bad",
    [
        {"sites": 100, "zones_per_site": 10, "devices_per_zone": 11},  # 11,000 devices
        {"seed": -1},
        {"interval_seconds": 0},
        {"installed_at": "2026-01-01T00:00:00"},  # naive
        {"colour": "red"},
    ],
)
def test_config_limits(bad: dict) -> None:
    with pytest.raises(ValidationError):
        FleetConfig(**bad)


def test_more_config_limits() -> None:
    assert FleetConfig(sites=100, zones_per_site=10, devices_per_zone=10).n_devices == 10_000
    with pytest.raises(ValidationError):
        AnomalyKind(rate=1, magnitude=1, min_duration_s=60, max_duration_s=5 * 3600)
    with pytest.raises(ValidationError):
        AnomalyKind(rate=1, magnitude=1, min_duration_s=600, max_duration_s=60)
    with pytest.raises(ValidationError):
        FaultConfig(
            duplicate=0.1, late=0.1, out_of_order=0.1, null=0.1, impossible=0.1, unknown_device=0.1
        )
    with pytest.raises(ValidationError):
        FleetConfig().seed = 3  # frozen


def test_metrics_match_the_database_registry() -> None:
    migration = (ROOT / "migrations" / "versions" / "0001_spine_schema.py").read_text()
    num = r",\s+([-\d.]+)"
    rows = re.findall(r"\((\d+), '(\w+)',\s+'(\w+)'" + num * 4 + r",\s+(NULL|[-\d.]+)\)", migration)
    registry = [
        (int(i), name, unit, *map(float, nums), None if thr == "NULL" else float(thr))
        for i, name, unit, *nums, thr in rows
    ]
    ours = [
        (
            m.metric_id,
            m.metric,
            m.unit,
            m.normal_min,
            m.normal_max,
            m.hard_min,
            m.hard_max,
            m.breach_threshold,
        )
        for m in METRICS
    ]
    assert ours == registry


def test_simulator_imports_only_pure_libraries() -> None:
    allowed = {
        "numpy",
        "pandas",
        "pydantic",
        "simulator",
        "__future__",
        "dataclasses",
        "datetime",
        "enum",
        "typing",
        "collections",
        "functools",
        "math",
    }
    for path in (ROOT / "simulator").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
