"""The benchmark's result rows, table, JSON file and comparison (pure: no database)."""

import json

import pytest

from bench import results
from bench.results import StageResult


def test_rate_reference_rate_and_ratio():
    r = StageResult("load", 1_000_000, 2.0, "COPY", 1.0)
    assert r.rate == 500_000
    assert r.reference_rate == 1_000_000
    assert r.ratio == pytest.approx(0.5)


def test_reference_rows_can_differ_from_the_stage_rows():
    r = StageResult("api", 30_000, 10.0, "trivial", 10.0, reference_rows=90_000)
    assert r.ratio == pytest.approx(1 / 3)


def test_no_reference_gives_no_ratio_and_the_table_says_so():
    r = StageResult("micro-batch", 1000, 4.0, goal="<= 5 s").judge(lambda x: x.seconds <= 5)
    assert r.reference_rate is None and r.ratio is None and r.met is True
    line = results.table([r]).splitlines()[-1]
    assert "micro-batch" in line and " - " in line and line.endswith("met")


def test_a_missed_goal_is_shouted_in_the_table():
    r = StageResult("simulate", 10, 1.0, goal=">= 10M").judge(lambda x: x.rate >= 10e6)
    assert r.met is False
    assert results.table([r]).splitlines()[-1].endswith("MISSED")


def test_write_then_compare_against_the_written_file(tmp_path):
    earlier = [StageResult("load", 1000, 1.0), StageResult("gone", 1, 1.0)]
    path = results.write(earlier, {"at": "then", "rows_requested": 1000}, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["stages"][0]["rate"] == 1000.0 and saved["at"] == "then"
    now = [StageResult("load", 1000, 0.5), StageResult("new stage", 1, 1.0)]
    text = results.compare(now, saved)
    load_line = next(line for line in text.splitlines() if "load" in line)
    assert "+100.0%" in load_line
    assert "new" in next(line for line in text.splitlines() if "new stage" in line)


def test_human_units():
    assert results.human(12_300_000) == "12.30M"
    assert results.human(1_500) == "1.50k"
    assert results.human(None) == "-"
