"""core.csv_scoring: round trip, causality, unsorted input, multivariate, parsing errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.csv_scoring import CsvInputError, load_csv, score_frame, top_anomalies, write_csv
from detectors import Fusion

N = 3_000
SPIKES = (700, 1_200, 1_203, 2_100, 2_700)  # 1_203: a spike right after another one
SHIFT = 1_600  # level change onset
SIGMA = 0.5


def telemetry(n: int = N, seed: int = 7) -> pd.DataFrame:
    """Irregular sampling (8-12 s, one 30-minute gap), a trend, a level change of +8 sigma, a
    daily cycle, five spikes of +/-10..14 sigma and a few empty cells."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(8, 12, n)
    steps[1_000] = 1_800.0  # a gap in time
    t = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(np.cumsum(steps), unit="s")
    i = np.arange(n)
    x = 20 + 0.002 * i + 2 * np.sin(2 * np.pi * i / 8640) + rng.normal(0, SIGMA, n)
    x[SHIFT:] += 8 * SIGMA
    for j, k in enumerate(SPIKES):
        x[k] += (-1) ** j * (10 + j) * SIGMA
    text = np.round(x, 3).astype(str).astype(object)
    text[[50, 51, 1_500, 2_500]] = ""  # gaps in the value column
    return pd.DataFrame({"timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "device": "d-007",
                         "temperature": text})


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def scored_file(tmp_path, frame, name="in.csv", **kwargs) -> pd.DataFrame:
    f, ts, cols, _, _ = load_csv(write(frame, tmp_path / name))
    return score_frame(f, ts, cols, **kwargs)


def test_round_trip_flags_spikes_and_the_shift_onset_and_little_else(tmp_path):
    frame = telemetry()
    src = write(frame, tmp_path / "in.csv")
    f, ts, cols, _, _ = load_csv(src)
    assert ts == "timestamp" and cols == ["temperature"]  # "device" is text: not scored
    out = write_csv(score_frame(f, ts, cols), tmp_path / "out.csv")
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(back.columns) == [*frame.columns, "anomaly_score", "is_anomaly"]
    # the input cells come back as the same text, in the same order
    pd.testing.assert_frame_equal(back[frame.columns], frame.astype(str), check_dtype=False)
    score = back["anomaly_score"].astype(float).to_numpy()
    flag = back["is_anomaly"].astype(int).to_numpy()
    assert ((score >= 0) & (score <= 1)).all()
    assert (flag == (score >= 0.5)).all()
    assert flag[list(SPIKES)].all(), "every spike, including the one 3 rows after another"
    assert flag[SHIFT] == 1, "the level change onset"
    # Normal rows: everything except the spikes' rows and the level change's transient (the
    # robust half keeps flagging it until the trailing median catches up: <= window/2 rows).
    # Gaussian noise at |z| >= 5 alarms on < 0.01% of rows; with the trend, the daily cycle and
    # window-estimation error, 1% is a generous bound that still fails on a miscalibrated
    # threshold (measured: 0.03% of these rows at |z| >= 4, 3.9% at |z| >= 2).
    normal = np.ones(N, dtype=bool)
    normal[list(SPIKES)] = False
    normal[SHIFT : SHIFT + 31] = False
    assert flag[normal].mean() < 0.01
    # empty cells and the warm-up get no verdict: score 0
    assert score[[50, 51, 1_500, 2_500]].max() == 0 and score[:30].max() == 0


def test_scores_are_causal_appending_rows_changes_nothing_before_them(tmp_path):
    frame = telemetry()
    m = 2_000
    head = scored_file(tmp_path, frame.iloc[:m], "head.csv")
    full = scored_file(tmp_path, frame, "full.csv")
    pd.testing.assert_frame_equal(head, full.iloc[:m])
    # an explicit training prefix shorter than the head: the same holds
    head = scored_file(tmp_path, frame.iloc[:m], "head.csv", train_rows=500)
    full = scored_file(tmp_path, frame, "full.csv", train_rows=500)
    pd.testing.assert_frame_equal(head, full.iloc[:m])


def test_unsorted_input_is_written_back_in_its_order_with_the_sorted_scores(tmp_path):
    frame = telemetry()
    perm = np.random.default_rng(3).permutation(N)
    shuffled = frame.iloc[perm].reset_index(drop=True)
    ordered = scored_file(tmp_path, frame, "sorted.csv")
    mixed = scored_file(tmp_path, shuffled, "shuffled.csv").reset_index(drop=True)
    assert (mixed["timestamp"].to_numpy() == shuffled["timestamp"].to_numpy()).all()
    expected = ordered.iloc[perm].reset_index(drop=True)
    pd.testing.assert_frame_equal(mixed, expected)
    assert any("not in timestamp order" in note for note in mixed.attrs["scoring"]["notes"])


def multivariate(n: int = 4_000, seed: int = 11) -> tuple[pd.DataFrame, int]:
    """co2 and humidity follow occupancy; humidity has a spike at row `at` (co2 normal)."""
    rng = np.random.default_rng(seed)
    occ = np.clip(np.sin(np.arange(n) / 200) * 10 + 10, 0, None)
    frame = pd.DataFrame({
        "time": (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 60, unit="s"))
        .strftime("%Y-%m-%d %H:%M:%S"),
        "co2": 400 + 30 * occ + rng.normal(0, 10, n),
        "humidity": 40 + 0.8 * occ + rng.normal(0, 0.5, n),
    })
    at = n * 3 // 4
    frame.loc[at, "humidity"] += 12
    return frame, at


@pytest.mark.parametrize("detector", ["auto", "pca", "rolling", "robust", "fusion"])
def test_multivariate_names_the_column_with_the_spike(tmp_path, detector):
    frame, at = multivariate()
    out = scored_file(tmp_path, frame, detector=detector)
    assert out["is_anomaly"].iloc[at] == 1
    assert out["anomaly_column"].iloc[at] == "humidity"
    assert out["anomaly_score"].between(0, 1).all()
    # the row is the top anomaly
    top = top_anomalies(out, "time", 5)
    assert top["line"].iloc[0] == at + 2  # header on line 1 and top["column"].iloc[0] == "humidity"
    if detector == "pca":
        assert out.attrs["scoring"]["train_rows"] == 4_000  # min(rows, 10,000): in-sample
        assert "in-sample" in out.attrs["scoring"]["description"]
        assert out["is_anomaly"].mean() < 0.02  # quantile 0.995 of SPE and of T2


def test_fused_score_is_fusions_max(tmp_path):
    frame, _ = multivariate(600)
    f, ts, cols, _, _ = load_csv(write(frame, tmp_path / "in.csv"))
    both = {c: score_frame(f, ts, [c])["anomaly_score"].to_numpy() for c in cols}
    fused = score_frame(f, ts, cols)["anomaly_score"].to_numpy()
    # to_unit_interval is monotone, so the max commutes with it
    np.testing.assert_array_equal(fused, Fusion().combine(both)["score"].to_numpy())


def test_fewer_rows_than_the_window_are_scored_with_a_note(tmp_path):
    frame = telemetry().iloc[:40]
    out = scored_file(tmp_path, frame)
    assert len(out) == 40 and out["anomaly_score"].between(0, 1).all()
    assert any("fewer than the window" in n for n in out.attrs["scoring"]["notes"])


def test_quoted_cells_survive_and_numeric_epoch_timestamps_sort(tmp_path):
    frame = pd.DataFrame({"ts": np.arange(200, 0, -1) * 10, "site": 'a,"b"',
                          "v": np.round(np.random.default_rng(1).normal(size=200), 4)})
    f, ts, cols, _, _ = load_csv(write(frame, tmp_path / "in.csv"))
    assert (ts, cols) == ("ts", ["v"])
    out = write_csv(score_frame(f, ts, cols), tmp_path / "out.csv")
    back = pd.read_csv(out)
    assert (back["site"] == 'a,"b"').all() and (back["ts"] == frame["ts"]).all()


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("ts,v\n2024-01-01,1\n2024-01-02,x\n2024-01-03,y\n", {}, "no numeric column"),
        ("ts,v\n2024-01-01,x\n", {"columns": ["v"]}, "column 'v' has no usable values"),
        ("ts,v\nnow,1\nyesterday,2\n", {"timestamp_col": "ts"},
         "no row has a usable timestamp in column 'ts' (the first: 'now' on line 2)"),
        ("ts;v\n2024-01-01;1\n", {"delimiter": ","}, "split on the ',' delimiter"),
        ("ts,v\n2024-01-01\n", {}, "no data rows (1 line(s) rejected, first: line 2 has 1"),
        ("when,v\n2024-01-01,1\n", {"timestamp_col": "at"}, "available columns: when, v"),
        ("a,b\nx,1\ny,2\n", {}, "no timestamp column found"),
        ("ts,v\n2024-01-01,1\n", {"columns": ["w"]}, "'w' not found"),
        ("ts,v\n", {}, "no data rows"),
    ],
)
def test_input_errors_name_the_problem(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CsvInputError, match=None) as err:
        load_csv(path, **kwargs)
    assert message in str(err.value)


def test_auto_detects_a_timestamp_column_by_its_values(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,recorded,v\n1,2024-01-01 10:00,1.5\n2,2024-01-01 10:05,2.5\n")
    assert load_csv(path)[1:3] == ("recorded", ["id", "v"])
