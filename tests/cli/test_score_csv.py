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
        ("ts,v\n2024-01-01,1\n2024-01-02,1..5\n", ["--columns", "v"],
         "column 'v' is not numeric: '1..5' at row 2"),
        ("ts,v\n2024-01-01,1\n2024-13-45,2\n", [], "cannot parse timestamp '2024-13-45' in "
         "column 'ts' at row 2"),
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
