"""prefect.yaml: every deployment loads the way a worker loads it, shares the definitions, has a
parameter form with limits, and only the three scheduled ones have (parsing) schedules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from core.settings import PROJECT_ROOT

SCHEDULED = {"micro-batch": "* * * * *", "hourly-rollup": "7 * * * *", "nightly": "0 2 * * *"}


def config() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())


def deployments() -> list[dict]:
    return config()["deployments"]


def load(deployment: dict) -> Flow:
    # Prefect's own loader, as the worker's flow-run process uses it.
    return load_flow_from_entrypoint(deployment["entrypoint"])


def by_name(name: str) -> dict:
    return next(d for d in deployments() if d["name"] == name)


def test_every_entrypoint_is_a_flow_loaded_as_a_module():
    names = set()
    for d in deployments():
        # A file path entrypoint puts flows/ first on sys.path, where flows/reports.py shadows
        # the top-level reports package: the flow run would fail to import.
        assert ".py" not in d["entrypoint"] and d["entrypoint"].startswith("flows."), d["name"]
        target = load(d)
        assert isinstance(target, Flow), d["name"]
        names.add(target.name)
    assert len({d["name"] for d in deployments()}) == len(deployments())
    assert {"micro-batch", "hourly-rollup", "nightly", "backfill", "score", "report", "evaluate",
            "build-kpis", "simulate-and-load", "drift-report", "train", "retention"} <= names
    assert by_name("score-range")["entrypoint"] == by_name("score")["entrypoint"]


def test_deployments_share_the_definitions_and_build_nothing():
    raw = config()
    pool = raw["definitions"]["work_pools"]["local"]
    assert raw.get("build") is None and raw.get("push") is None  # offline: no image
    assert "set_working_directory" in str(raw["pull"])
    for d in deployments():
        assert d["work_pool"] == pool, d["name"]  # the anchor, not a copy
        assert d["tags"] == ["telemetry"]
    assert pool["job_variables"]["env"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_only_the_three_recurring_deployments_are_scheduled_and_their_crons_parse():
    scheduled = {}
    for d in deployments():
        for schedule in d.get("schedules", []):
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises if bad
            assert schedule["timezone"] == "UTC" and schedule["slug"]
            scheduled[d["name"]] = schedule["cron"]
    # drift-report, train, evaluate and retention run inside nightly: no second schedule.
    assert scheduled == SCHEDULED
    for name in SCHEDULED:
        limit = by_name(name)["concurrency_limit"]
        assert limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_nightly_evaluates_lite():
    """(Its step order is tested on a real run in test_orchestration.)"""
    from flows import maintenance

    lite = maintenance.NightlyParams().evaluate
    full = type(lite)()
    assert lite.days < full.days and lite.sites * lite.zones_per_site * lite.devices_per_zone \
        < full.sites * full.zones_per_site * full.devices_per_zone


def _numeric_fields(schema: dict) -> list[tuple[str, dict]]:
    out = []
    for model, spec in schema.get("definitions", {}).items():
        for field, fs in spec["properties"].items():
            types = {fs.get("type")} | {a.get("type") for a in fs.get("anyOf", [])}
            if types & {"integer", "number"}:
                out.append((f"{model}.{field}", fs))
    for field, fs in schema["properties"].items():
        if fs.get("type") in ("integer", "number"):
            out.append((field, fs))
    return out


def test_every_parameter_form_is_a_model_with_limits():
    for d in deployments():
        schema = parameter_schema(load(d).fn).model_dump()
        for field, fs in schema["properties"].items():
            # A pydantic model (a form section), or a plain bool/limited number.
            assert "$ref" in fs or fs.get("type") in ("boolean", "number", "integer"), (
                d["name"], field, fs)
        for field, fs in _numeric_fields(schema):
            bounds = set(fs) | {k for a in fs.get("anyOf", []) for k in a}
            assert bounds & {"minimum", "exclusiveMinimum"}, (d["name"], field)


@pytest.mark.parametrize(("name", "parameters"), [
    ("retention", {"params": {"keep_days": 0}}),
    ("retention", {"params": {"keep_days": 5000}}),
    ("nightly", {"params": {"retention": {"keep_days": 0}}}),
    ("hourly-rollup", {"params": {"horizon_minutes": 0}}),
    ("score-range", {"params": {"start": "2026-11-20T01:00:00Z",
                                "end": "2026-11-20T00:00:00Z"}}),
    ("backfill", {"params": {"days": 0}}),
    ("micro-batch", {"lock_wait_seconds": -1}),
    ("micro-batch", {"window": {"max_catch_up_hours": 0}}),
])
def test_bad_parameters_are_refused_before_a_run(name, parameters):
    with pytest.raises(ParameterTypeError):
        load(by_name(name)).validate_parameters(parameters)


def test_good_parameters_pass():
    start = datetime(2026, 11, 20, tzinfo=UTC)
    load(by_name("score-range")).validate_parameters(
        {"params": {"start": start.isoformat(), "end": "2026-11-20T06:00:00Z"}})
    load(by_name("retention")).validate_parameters({"params": {"keep_days": 7, "dry_run": True}})
