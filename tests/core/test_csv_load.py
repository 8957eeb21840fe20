"""core.csv_load against a real database: the CSV bad-input corpus through the loader, whole
files that are broken as files (BOM, delimiters, truncation, bad bytes, an oversize line), and
re-runs that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core import csv_load, ingest
from core.csv_load import load_csv_file
from core.csv_text import CsvFileError
from simulator import FleetConfig
from tests.bad_inputs import CORPUS_DIR, expectation, fill, outcome

FLEET = FleetConfig(sites=1, zones_per_site=1, devices_per_zone=2)  # devices 1 and 2


@pytest.fixture
def fleet(db: str) -> str:
    ingest.register_fleet(FLEET)
    return db


def corpus(tmp_path: Path, now: datetime) -> tuple[Path, list[str]]:
    text = fill((CORPUS_DIR / "readings.csv").read_text(), now)
    path = tmp_path / "readings.csv"
    path.write_text(text)
    return path, text.splitlines()


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    return (conn.execute("SELECT count(*) FROM telemetry.readings").fetchone()[0],
            conn.execute("SELECT count(*) FROM telemetry.quarantine").fetchone()[0])


def test_every_bad_line_is_quarantined_with_its_rule_and_the_good_rows_load(
        fleet, conn, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    path, lines = corpus(tmp_path, now)
    data = dict(enumerate(lines[1:], start=2))  # file line -> text
    expected = {n: expectation(text) for n, text in data.items() if expectation(text)}
    loaded = [n for n, text in data.items() if outcome(text) == "loaded"]
    duplicate = [n for n, text in data.items() if outcome(text) == "duplicate"]
    assert len(expected) > 40 and len(loaded) >= 6 and duplicate  # the corpus is all there

    result = load_csv_file(path, batch_rows=20)  # several batches: a key repeated across them
    got = {int(r.line): (r.field, r.rule) for r in result.rejected.itertuples()}
    assert got == expected
    assert result.rejected["reason"].str.len().min() > 10  # words, not only a code
    reasons = " ".join(result.rejected["reason"])
    assert "<script" not in reasons and "DROP TABLE" not in reasons and "<img" not in reasons
    assert (result.received, result.loaded, result.duplicate, result.quarantined) == (
        len(data), len(loaded), len(duplicate), len(expected))
    assert result.ignored_columns == ["expect"]

    stored, quarantined = counts(conn)
    assert (stored, quarantined) == (len(loaded), len(expected))
    rules = dict(conn.execute("SELECT rule, count(*) FROM telemetry.quarantine GROUP BY 1"))
    assert sum(rules.values()) == len(expected)
    assert rules == {rule: sum(1 for _, r in expected.values() if r == rule)
                     for rule in {r for _, r in expected.values()}}
    ledger = conn.execute(
        "SELECT sum(rows_received), sum(rows_loaded), sum(rows_duplicate),"
        " sum(rows_quarantined), count(*), min(source), max(source), min(status)"
        " FROM telemetry.batches").fetchone()
    assert ledger == (len(data), len(loaded), len(duplicate), len(expected),
                      len(result.batch_ids), "csv", "csv", "succeeded")
    # the stored values are the file's, to the last digit
    want = sorted(float(data[n].split(",")[3]) for n in loaded)
    assert sorted(v for (v,) in conn.execute("SELECT value FROM telemetry.readings")) == want
    # a line that was not a row is kept whole enough to find and fix
    raw = conn.execute("SELECT raw FROM telemetry.quarantine WHERE rule = 'malformed_line'"
                       " ORDER BY (raw->>'line')::int LIMIT 1").fetchone()[0]
    first_malformed = min(n for n, (_, rule) in expected.items() if rule == "malformed_line")
    assert raw == {"file": "readings.csv", "line": first_malformed,
                   "text": data[first_malformed]}

    again = load_csv_file(path, batch_rows=20)  # the same file again changes nothing
    assert (again.loaded, again.duplicate, again.quarantined) == (
        0, len(loaded) + len(duplicate), len(expected))
    assert counts(conn) == (stored, quarantined)


GOOD = ["device_id,metric,ts,value,unit",
        "1,temperature,{{now-60s}},21.5,degC",
        "2,co2,{{now-61s}},612,ppm",
        "1,humidity,{{now-62s}},44.25,pct",
        "2,occupancy,{{now-63s}},3,count"]


def good_text(now: datetime) -> str:
    return fill("\n".join(GOOD) + "\n", now)


@pytest.mark.parametrize(("name", "make"), [
    ("bom_crlf", lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode()),
    ("semicolon", lambda t: t.replace(",", ";").encode()),
    ("tab", lambda t: t.replace(",", "\t").encode()),
    ("pipe_no_final_newline", lambda t: t.replace(",", "|").rstrip("\n").encode()),
    ("blank_lines", lambda t: t.replace("\n", "\n\n", 2).encode()),
])
def test_file_variants_load_every_row(fleet, conn, tmp_path, name, make):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(make(good_text(datetime.now(UTC))))
    result = load_csv_file(path)
    assert (result.received, result.loaded, result.quarantined) == (4, 4, 0), name
    assert counts(conn) == (4, 0)


@pytest.mark.parametrize(("name", "tail", "rule"), [
    # the file ends in the middle of a row (a copy that was cut off)
    ("truncated", b"1,co2,2026-12-0", "malformed_line"),
    ("not_utf8", b"1,co2,\xff\xfe,500,ppm\n", "not_utf8"),
    ("mixed_delimiter", b"1;co2;2026-12-06T10:00:00Z;500;ppm\n", "malformed_line"),
    ("unclosed_quote", b'1,co2,"2026-12-06T10:00:00Z,500,ppm\n', "malformed_line"),
])
def test_a_broken_last_line_is_quarantined_and_the_rest_loads(fleet, conn, tmp_path, name,
                                                              tail, rule):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(good_text(datetime.now(UTC)).encode() + tail)
    result = load_csv_file(path)
    assert (result.received, result.loaded, result.quarantined) == (5, 4, 1)
    assert result.rejected[["line", "field", "rule"]].values.tolist() == [[6, "line", rule]]
    assert counts(conn) == (4, 1)


def test_an_oversize_line_is_quarantined_without_reading_it_into_a_row(fleet, conn, tmp_path):
    now = datetime.now(UTC)
    lines = good_text(now).splitlines()
    huge = fill("1,co2,{{now-70s}},", now) + "9" * (2 << 20) + ",ppm"  # 2 MiB: made here
    path = tmp_path / "oversize.csv"
    path.write_text("\n".join([*lines[:3], huge, *lines[3:]]) + "\n")
    result = load_csv_file(path)
    assert (result.received, result.loaded, result.quarantined) == (5, 4, 1)
    row = result.rejected.iloc[0]
    assert (row.line, row.rule) == (4, "oversize_line") and "over the" in row.reason
    text = conn.execute("SELECT raw->>'text' FROM telemetry.quarantine").fetchone()[0]
    assert len(text) <= 200  # the start of the line, not 2 MiB of it


def test_old_history_loads_with_a_wider_max_age(fleet, conn, tmp_path):
    old = datetime.now(UTC) - timedelta(days=45)
    path = tmp_path / "old.csv"
    path.write_text(good_text(old))
    assert load_csv_file(path).rejected["rule"].tolist() == ["stale_timestamp"] * 4
    assert load_csv_file(path, max_age_days=60).loaded == 4


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    (b"", "is empty"),
    (b"device_id,metric,value\n1,co2,5\n", "lacks the column(s) ts"),
    (b"device_id;metric;ts;value\n1;co2;x;5\n", "lacks the column(s) device_id, metric, ts, "
     "value"),
])
def test_a_file_that_cannot_be_loaded_says_why(fleet, conn, tmp_path, content, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    delimiter = "," if content and b";" in content else None
    with pytest.raises(CsvFileError) as err:
        load_csv_file(path, delimiter=delimiter)
    assert message in str(err.value)
    assert counts(conn) == (0, 0)


def test_a_failure_mid_file_keeps_whole_batches_and_a_rerun_completes(fleet, conn, tmp_path,
                                                                       monkeypatch):
    now = datetime.now(UTC).replace(microsecond=0)
    path, lines = corpus(tmp_path, now)
    data = dict(enumerate(lines[1:], start=2))
    loaded = [n for n, text in data.items() if outcome(text) == "loaded"]
    quarantine_refused, calls = csv_load.online_store.quarantine_refused, []

    def fails_in_the_second_batch(*args, **kwargs):  # after its readings were inserted
        calls.append(1)
        if len(calls) == 2:
            raise OSError("injected: the disk filled up")
        return quarantine_refused(*args, **kwargs)

    monkeypatch.setattr(csv_load.online_store, "quarantine_refused", fails_in_the_second_batch)
    with pytest.raises(OSError, match="injected"):
        load_csv_file(path, batch_rows=20)
    # batch 1 (rows 1-20 = lines 2-21) is stored whole; nothing of batch 2
    first = [n for n in loaded if n <= 21]
    assert 0 < len(first) < len(loaded)
    assert counts(conn)[0] == len(first)
    assert conn.execute("SELECT count(*) FROM telemetry.batches").fetchone()[0] == 1

    monkeypatch.setattr(csv_load.online_store, "quarantine_refused", quarantine_refused)
    result = load_csv_file(path, batch_rows=20)
    assert (result.loaded, result.duplicate) == (len(loaded) - len(first), len(first) + 1)
    expected = [n for n, text in data.items() if expectation(text)]
    assert counts(conn) == (len(loaded), len(expected))
