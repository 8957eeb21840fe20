"""The console script: help on every command, and status/run against a real database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.settings import get_settings

runner = CliRunner()
COMMANDS = [[], ["db"], ["db", "upgrade"], ["db", "url"], ["backfill"], ["run"], ["status"],
            ["demo"], ["dbt"], ["alerts"], ["alerts", "ack"], ["alerts", "resolve"],
            ["evaluate"], ["score-csv"], ["simulate"], ["api"], ["quality"], ["report"],
            ["report", "all"], ["report", "alerts"], ["report", "evaluation"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_explains_itself(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output.splitlines()) > 3


def test_status_on_an_empty_database_says_what_to_do(db):
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "not built yet" in result.output and "readings 0" in result.output


def test_run_refuses_an_unknown_flow(db):
    result = runner.invoke(app, ["run", "nightly-magic"])
    assert result.exit_code != 0
    assert "unknown flow" in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_demo_runs_end_to_end_and_says_where_to_look_next(db, monkeypatch):
    for name, value in {"SITES": "1", "ZONES_PER_SITE": "1", "DEVICES_PER_ZONE": "2"}.items():
        monkeypatch.setenv(f"TELEMETRY_{name}", value)
    get_settings.cache_clear()
    result = runner.invoke(app, ["demo", "--days", "0.05", "--no-detect"])
    assert result.exit_code == 0, result.output
    assert "rows received / loaded" in result.output and "fct_kpi_5m" in result.output
    assert "telemetry status" in result.output
    index = get_settings().reports_dir / "index.html"
    assert "reports:" in result.output and index.is_file()
    assert "drift" in result.output and "not judged" in result.output  # 0.05 days: no week
    again = runner.invoke(app, ["backfill", "--days", "0.05"])
    assert again.exit_code == 0, again.output
    assert " 0 loaded" in again.output and "duplicate" in again.output


def test_alerts_on_a_fresh_database_and_a_missing_id(db):
    assert "no open alerts" in runner.invoke(app, ["alerts"]).output
    result = runner.invoke(app, ["alerts", "ack", "7", "--by", "ops"])
    assert result.exit_code == 1 and "no alert with id 7" in result.output


def test_evaluate_prints_the_table_and_stores_the_rows(db, conn):
    result = runner.invoke(app, ["evaluate", "--days", "0.5", "--train-days", "1",
                                 "--sites", "1", "--zones", "1", "--devices", "2"])
    assert result.exit_code == 0, result.output
    assert "fused" in result.output and "telemetry.evaluations" in result.output
    rows = conn.execute("SELECT detector, anomaly_type, f1 FROM telemetry.evaluations").fetchall()
    assert {"fused", "rolling_z", "baseline_static"} <= {r[0] for r in rows}
    assert any(r[1] == "all" for r in rows)
