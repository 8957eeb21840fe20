"""`telemetry score-csv` through typer: the summary, the output file and each error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.score_csv import score_csv

app = typer.Typer()
app.command("score-csv")(score_csv)
app.command("noop")(lambda: None)  # two commands: `score-csv` must be named, as in cli/main.py
runner = CliRunner()


def sample(tmp_path, n: int = 500) -> str:
    rng = np.random.default_rng(5)
    v = rng.normal(10, 1, n)
    v[400] += 15
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="10s")
                          .strftime("%Y-%m-%dT%H:%M:%S"), "v": v.round(3),
                          "w": rng.normal(0, 1, n).round(3)})
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_scores_a_file_and_prints_a_summary(tmp_path):
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["score-csv", sample(tmp_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("500 rows", "scored 2 column(s): v, w", "anomalies:", "top anomalies",
                 "2024-01-01T01:06:40", "written", str(out.name)):
        assert text in result.output
    back = pd.read_csv(out)
    assert list(back.columns) == ["timestamp", "v", "w", "anomaly_score", "is_anomaly",
                                  "anomaly_column"]
    assert back.loc[400, "is_anomaly"] == 1 and back.loc[400, "anomaly_column"] == "v"


def test_pca_and_options(tmp_path):
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["score-csv", sample(tmp_path), "-o", str(out), "--detector",
                                 "pca", "--columns", "v,w", "--train-rows", "300"])
    assert result.exit_code == 0, result.output
    assert "pca" in result.output and "in-sample" in result.output


def test_help_explains_causality_and_order():
    result = runner.invoke(app, ["score-csv", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "no look-ahead" in text and "original order" in text


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "file not found"),
        ("ts,v\n2024-01-01,1\n", ["--timestamp-col", "when"],
         "timestamp column 'when' not found; available columns: ts, v"),
        ("ts,v\n2024-01-01,1..5\n", ["--columns", "v"], "column 'v' has no usable values"),
        ("ts,v\n2024-13-45,2\n", [], "no row has a usable timestamp in column 'ts' (the "
         "first: '2024-13-45' on line 2)"),
        ("ts,name\n2024-01-01,a\n", [], "no numeric column to score"),
        ("ts,v\n2024-01-01,1\n", ["--columns", "v,nope"], "column(s) 'nope' not found"),
        ("ts,v\n2024-01-01,1\n", ["--detector", "magic"], "unknown detector 'magic'"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path, content, args, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["score-csv", str(path), "-o", str(tmp_path / "o.csv"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert result.output.strip().startswith("error:")
    assert not (tmp_path / "o.csv").exists()


def corpus_file(tmp_path, good: int = 300) -> tuple[str, list[str]]:
    """Good rows every 10 s (a noisy temperature and co2), with the lines of
    tests/data/bad_inputs/timeseries.csv spread among them, each at its own time."""
    from tests.bad_inputs import CORPUS_DIR

    header, *bad = (CORPUS_DIR / "timeseries.csv").read_text().splitlines()
    rng = np.random.default_rng(11)
    t0 = pd.Timestamp("2024-05-01T00:00:00Z")
    lines = [header]
    step = good // (len(bad) + 1)
    for i in range(good):
        lines.append(f"{t0 + pd.Timedelta(seconds=10 * i):%Y-%m-%dT%H:%M:%SZ},"
                     f"{rng.normal(21, 0.2):.2f},{rng.normal(600, 10):.0f},ok")
        if i % step == step - 1 and bad:
            stamp = t0 + pd.Timedelta(seconds=10 * i + 5)
            lines.append(bad.pop(0).replace("{{t}}", f"{stamp:%Y-%m-%dT%H:%M:%SZ}"))
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path), lines


def test_the_bad_input_corpus_is_rejected_line_by_line_and_the_rest_scored(tmp_path):
    from tests.bad_inputs import expectation

    path, lines = corpus_file(tmp_path)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["score-csv", path, "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected = {n: expectation(text) for n, text in enumerate(lines[1:], start=2)
                if expectation(text)}
    assert len(expected) >= 18
    rejected = pd.read_csv(tmp_path / "out.rejected.csv", dtype=str, keep_default_na=False)
    got = {int(r.line): (r.column or "line", r.rule) for r in rejected.itertuples()}
    assert got == expected
    assert (rejected["reason"].str.len() > 20).all()
    # a cell that could be read as a formula is neutralised in the rejected file
    assert not rejected["value"].str.match(r"[=+@]").any()
    assert rejected["value"].str.startswith("'=cmd").any()

    dropped = {n for n, (col, _) in expected.items() if col in ("timestamp", "line")}
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(scored) == len(lines) - 1 - len(dropped)
    score = scored["anomaly_score"].astype(float)
    assert score.between(0, 1).all()
    text = " ".join(result.output.split())
    assert f"rejected: {len(expected)} on {len(expected)} line(s)" in text
    assert "out.rejected.csv" in text
    assert runner.invoke(app, ["score-csv", path, "-o", str(out), "--strict"]).exit_code == 1


def _good_series(n: int = 120) -> str:
    rng = np.random.default_rng(3)
    t0 = pd.Timestamp("2024-05-01T00:00:00Z")
    rows = [f"{t0 + pd.Timedelta(seconds=10 * i):%Y-%m-%dT%H:%M:%SZ},{rng.normal(21, 0.2):.2f}"
            for i in range(n)]
    return "timestamp,temperature\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize(("name", "make"), [
    ("bom_crlf", lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode()),
    ("semicolon", lambda t: t.replace(",", ";").encode()),
    ("tab", lambda t: t.replace(",", "\t").encode()),
])
def test_file_variants_score_like_the_plain_file(tmp_path, name, make):
    plain, variant = tmp_path / "plain.csv", tmp_path / f"{name}.csv"
    plain.write_text(_good_series())
    variant.write_bytes(make(_good_series()))
    for src in (plain, variant):
        result = runner.invoke(app, ["score-csv", str(src), "-o", str(tmp_path / f"o-{src.name}")])
        assert result.exit_code == 0, result.output
    a = pd.read_csv(tmp_path / "o-plain.csv")
    b = pd.read_csv(tmp_path / f"o-{name}.csv")
    assert list(b.columns) == list(a.columns)
    assert (a["anomaly_score"] == b["anomaly_score"]).all() and len(a) == 120
    assert not (tmp_path / f"o-{name}.rejected.csv").exists()


@pytest.mark.parametrize(("name", "tail", "rule"), [
    ("truncated", b"2024-05-01T00:3", "malformed_line"),
    ("not_utf8", b"2024-05-01T09:00:00Z,2\xff\n", "not_utf8"),
    ("unclosed_quote", b'2024-05-01T09:00:00Z,"21.5\n', "malformed_line"),
    ("oversize", b"2024-05-01T09:00:00Z," + b"7" * (2 << 20) + b"\n", "oversize_line"),
])
def test_a_broken_last_line_is_rejected_and_the_rest_scored(tmp_path, name, tail, rule):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(_good_series().encode() + tail)
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["score-csv", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 120
    rejected = pd.read_csv(tmp_path / "o.rejected.csv")
    assert rejected[["line", "rule"]].values.tolist() == [[122, rule]]
