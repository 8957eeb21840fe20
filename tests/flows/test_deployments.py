"""prefect.yaml: every deployment points at a real flow, and every schedule parses."""

from __future__ import annotations

import importlib

import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule

from core.settings import PROJECT_ROOT


def deployments() -> list[dict]:
    return yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_entrypoint_is_a_flow_and_every_schedule_parses():
    names = set()
    for d in deployments():
        module, attr = d["entrypoint"].split(":")
        target = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")),
                         attr)
        assert isinstance(target, Flow), d["name"]
        names.add(target.name)
        for schedule in d.get("schedules", []):
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises if bad
            assert schedule["timezone"] == "UTC"
    assert {"micro-batch", "train", "drift-report", "report"} <= names


def test_drift_runs_before_training_each_night():
    crons = {d["name"]: d["schedules"][0]["cron"].split() for d in deployments()
             if d.get("schedules")}
    drift, train = ((int(crons[n][1]), int(crons[n][0])) for n in ("drift-report", "train"))
    assert drift < train  # (hour, minute), both daily
