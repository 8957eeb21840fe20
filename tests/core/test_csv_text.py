"""core.csv_text: both read paths give rows with their file lines, and name every bad line."""

from __future__ import annotations

import pytest

from core.csv_text import CsvFileError, read_text, sniff_delimiter


def read(tmp_path, data: bytes, **kwargs):
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return read_text(path, **kwargs)


@pytest.mark.parametrize("data", [
    b"ts,v\n1,2\n3,4\n5,6\n",  # the fast path
    b"ts,v\n1,2\n\n3,4\n5,6\n",  # a blank line: the tolerant path
])
def test_rows_keep_their_file_lines(tmp_path, data):
    text = read(tmp_path, data)
    assert text.frame.values.tolist() == [["1", "2"], ["3", "4"], ["5", "6"]]
    assert text.lines.tolist() == ([2, 3, 4] if b"\n\n" not in data else [2, 4, 5])
    assert text.rejected == []


def test_a_quoted_value_over_two_lines_shifts_the_next_rows_lines(tmp_path):
    text = read(tmp_path, b'ts,v\n1,"a\nb"\n3,4\n')
    assert text.frame.values.tolist() == [["1", "a\nb"], ["3", "4"]]
    assert text.lines.tolist() == [2, 4]


def test_every_bad_line_is_named_and_the_good_ones_kept(tmp_path):
    text = read(tmp_path, b"ts,v\n1,2\n3\n4,\xff\n5,6,7\n" + b"8" * 40 + b",9\n10,11\n",
                max_line_bytes=32)
    assert text.frame.values.tolist() == [["1", "2"], ["10", "11"]]
    assert text.lines.tolist() == [2, 7]
    assert [(r.line, r.rule) for r in text.rejected] == [
        (3, "malformed_line"), (4, "not_utf8"), (5, "malformed_line"), (6, "oversize_line")]
    assert text.rejected[0].text == "3" and "header has 2" in text.rejected[0].reason


@pytest.mark.parametrize(("header", "delimiter"), [
    ("ts,v", ","), ("ts;v", ";"), ("ts\tv", "\t"), ("ts|v", "|"), ("ts", ","),
    ('"a;b",c', ","),  # a quoted semicolon is not a delimiter
])
def test_the_delimiter_is_sniffed_from_the_header(header, delimiter):
    assert sniff_delimiter(header) == delimiter


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty"), (b"\n\n", "is empty"), (b"a,a\n1,2\n", "duplicate column names"),
    (b"\xff\xfe,x\n", "not UTF-8"),
])
def test_files_that_cannot_be_read_say_why(tmp_path, data, message):
    with pytest.raises(CsvFileError, match=message):
        read(tmp_path, data)
