"""`telemetry load-csv` through typer over a real database: summary, rejected file, exit codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from core import ingest
from simulator import FleetConfig
from tests.bad_inputs import CORPUS_DIR, expectation, fill

runner = CliRunner()


@pytest.fixture
def fleet(db: str) -> str:
    ingest.register_fleet(FleetConfig(sites=1, zones_per_site=1, devices_per_zone=2))
    return db


def test_loads_the_corpus_lists_every_rejected_line_and_exits_0(fleet, tmp_path):
    text = fill((CORPUS_DIR / "readings.csv").read_text(), datetime.now(UTC))
    path = tmp_path / "readings.csv"
    path.write_text(text)
    result = runner.invoke(app, ["load-csv", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    expected = {n: expectation(line) for n, line in enumerate(text.splitlines()[1:], start=2)
                if expectation(line)}
    out = " ".join(result.output.split())
    assert f"{len(text.splitlines()) - 1} data lines" in out and "quarantined by rule" in out
    assert "ignored column(s): expect" in out and "telemetry run build-kpis" in out
    rejected = pd.read_csv(tmp_path / "readings.rejected.csv")
    assert {r.line: (r.field, r.rule) for r in rejected.itertuples()} == expected

    strict = runner.invoke(app, ["load-csv", str(path), "--strict"])
    assert strict.exit_code == 1  # rows were rejected (again): a pipeline can stop on it


def test_a_clean_file_removes_a_stale_rejected_file(fleet, tmp_path):
    path = tmp_path / "clean.csv"
    path.write_text(fill("device_id,metric,ts,value\n1,co2,{{now-60s}},600\n",
                         datetime.now(UTC)))
    (tmp_path / "clean.rejected.csv").write_text("line,field,rule,reason\n2,x,y,z\n")
    result = runner.invoke(app, ["load-csv", str(path), "--strict"])
    assert result.exit_code == 0, result.output
    assert "1 loaded" in result.output and not (tmp_path / "clean.rejected.csv").exists()


def test_a_wrong_delimiter_is_named_with_what_to_do(fleet, tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("device_id;metric;ts;value\n1;co2;2026-12-06T10:00:00Z;600\n")
    result = runner.invoke(app, ["load-csv", str(path), "--delimiter", ","])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert out.startswith("error:") and "pass --delimiter" in out


def test_help_explains_the_format_and_the_rejections():
    result = runner.invoke(app, ["load-csv", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    for words in ("device_id, metric, ts, value", "rejected.csv", "changes nothing",
                  "received = loaded + duplicate + quarantined"):
        assert words in text
