"""Telling a CleverTap export from other files, and reading a file whose gzip data breaks."""

from __future__ import annotations

import gzip

import pytest

from ctsync.exports.content import (
    KEPT_RAW_BYTES,
    MAX_LINE_BYTES,
    inflate,
    is_header_line,
    refusal,
    split_lines,
)

LINES = b"".join(b'{"eventName": "A", "n": %d}\n' % i for i in range(2000))


def test_inflate_reads_every_member_of_a_multi_member_file() -> None:
    data = gzip.compress(LINES[:1000]) + gzip.compress(LINES[1000:]) + b"\x00" * 8
    assert inflate(data).content == LINES and inflate(data).broken is None


def test_gzip_cut_short_keeps_everything_before_the_cut() -> None:
    data = gzip.compress(LINES)
    cut = inflate(data[: len(data) // 2])
    assert not cut.corrupt and "cut short" in (cut.broken or "")
    assert cut.content and LINES.startswith(cut.content)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.97])
def test_damaged_gzip_keeps_only_the_intact_members_before_it(where: float) -> None:
    first = gzip.compress(LINES[:1000])
    second = bytearray(gzip.compress(LINES[1000:]))
    position = int(len(second) * where)
    second[position : position + 16] = bytes(16)
    damaged = inflate(first + bytes(second))
    assert damaged.corrupt and "damaged" in (damaged.broken or "")
    assert damaged.content == LINES[:1000]


def test_bytes_after_the_gzip_data_are_reported() -> None:
    trailing = inflate(gzip.compress(LINES) + b"not gzip")
    assert trailing.corrupt and trailing.content == LINES and "not gzip" in (trailing.broken or "")


def test_split_lines_numbers_lines_and_names_their_problems() -> None:
    long_line = b'{"x": "' + b"y" * MAX_LINE_BYTES + b'"}'
    data = b"Header\n" + b'{"a": 1}\n\n' + b"\xff\xfe\n" + long_line + b"\n" + b'{"b": 2}'
    lines = split_lines(data, header=True)
    assert lines.header_lines == 1
    assert lines.line_numbers == [2, 4, 5, 6]
    assert lines.problems[0] is None and lines.problems[1] == "invalid UTF-8" and lines.problems[3] is None
    assert f"{len(long_line):,} bytes" in (lines.problems[2] or "") and len(lines.raw[2]) == KEPT_RAW_BYTES


def test_a_line_cut_by_a_gzip_break_is_reported() -> None:
    data = gzip.compress(LINES)
    lines = split_lines(data[: len(data) // 2], header=False)
    assert lines.problems[:-1] == [None] * (len(lines.problems) - 1)
    assert "cut off" in (lines.problems[-1] or "")


@pytest.mark.parametrize(
    ("name", "data", "named", "expected"),
    [
        ("a.json", b'{"eventName": "A"}\n', False, None),
        ("a.json", b"", False, None),
        ("a.json", b"App Launched\n" + b'{"eventName": "App Launched"}\n', False, None),
        ("a.csv", b"identity,email\nu1,a@x.com\n", False, "a CSV file"),
        ("a.csv.gzip", gzip.compress(b"identity,email\n"), False, "a CSV file"),
        ("a.txt", b"hello\nworld\n", False, "not JSON lines"),
        ("a.xml", b'<?xml version="1.0"?><a/>', False, "XML"),
        ("a.parquet", b"PAR1\x15\x04", False, "a Parquet file"),
        ("x.parquet.gzip", b"PAR1\x15\x04", False, "a Parquet file"),
        ("a.zip", b"PK\x03\x04rest", False, "a ZIP archive"),
        ("1-2-App-20240101-0-0.json", b"<html>error</html>", True, "XML or HTML"),
        ("1-2-App-20240101-0-0.json", b"garbage line\nmore garbage\n", True, None),
        ("a.bin", b"\x00\x01\x02\x03", False, "a binary file"),
    ],
)
def test_refusal_names_what_a_file_is(name: str, data: bytes, named: bool, expected: str | None) -> None:
    reason = refusal(name, data, named_export=named)
    assert (reason is None) == (expected is None), reason
    if expected is not None:
        assert expected in (reason or "")


def test_a_header_line_is_an_event_name() -> None:
    assert is_header_line(b"App Launched", "App-Launched")
    assert not is_header_line(b"Charged", "App-Launched")
    assert is_header_line(b"App Launched", None, b'{"eventName": "App Launched"}')
    assert not is_header_line(b"App Launch", None, b'{"eventName": "App Launched"}')
    assert not is_header_line(b"App Launched", None, b"not json")
    assert not is_header_line(b'{"eventName": "A"}', None, b'{"eventName": "A"}')
