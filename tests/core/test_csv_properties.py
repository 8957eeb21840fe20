"""Property-based (hypothesis, derandomized): any file of lines, whatever bytes they hold, is
read without an exception other than the documented one, and every data line is accounted
for: a row or a named rejection (blank lines hold no data). score-csv's reading and scoring
take any cells the same way."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.csv_scoring import CsvInputError, load_csv, score_frame
from core.csv_text import CsvFileError, read_text

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
CELLS = st.one_of(
    st.sampled_from(["", "1", "-2.5", "1e400", "NaN", "inf", "abc", "2024-01-01T00:00:00Z",
                     "'; DROP TABLE x; --", "<script>", "=cmd", " 7 ", "\u00e9"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters='"\r\n'), max_size=8),
)
# a data line: cells joined by a delimiter (sometimes not the header's), or raw bytes
LINES = st.one_of(
    st.tuples(st.lists(CELLS, min_size=1, max_size=4), st.sampled_from([",", ",", ";", "\t"]))
    .map(lambda cells_sep: cells_sep[1].join(cells_sep[0]).encode()),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b and b'"' not in b),
)


def write(data: bytes) -> Path:
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as handle:
        handle.write(data)
    return Path(handle.name)


@SETTINGS
@given(lines=st.lists(LINES, max_size=30), bom=st.booleans(), crlf=st.booleans())
def test_every_data_line_is_a_row_or_a_named_rejection(lines, bom, crlf):
    end = b"\r\n" if crlf else b"\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + end.join([b"ts,a,b", *lines]) + end
    path = write(data)
    try:
        text = read_text(path, max_line_bytes=64)
    finally:
        path.unlink()
    data_lines = [n for n, line in enumerate(lines, start=2) if line.strip(b"\r")]
    seen = sorted([*text.lines.tolist(), *(r.line for r in text.rejected)])
    assert seen == data_lines  # no quotes here: one line, one row or one rejection
    assert all(r.reason for r in text.rejected)
    assert (text.frame.shape[1]) == 3


@SETTINGS
@given(rows=st.lists(st.tuples(CELLS, CELLS), min_size=1, max_size=40))
def test_score_csv_reads_and_scores_any_cells(rows):
    lines = [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z,{a},{b}" for i, (a, b) in
             enumerate(rows)]
    path = write(("ts,a,b\n" + "\n".join(lines) + "\n").encode())
    try:
        frame, ts, cols, rejected, _ = load_csv(path)
    except (CsvInputError, CsvFileError):
        return  # a whole-file problem (no numeric column, ...), said in one line
    finally:
        path.unlink()
    scored = score_frame(frame, ts, cols)
    score = scored["anomaly_score"].to_numpy(dtype=float)
    assert np.isfinite(score).all() and ((score >= 0) & (score <= 1)).all()
    assert len(scored) + (rejected["column"] == "").sum() == len(rows)
