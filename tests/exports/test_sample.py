"""ctsync sample: realistic, reproducible export files."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ctsync.exports import sample
from ctsync.exports.content import FileKind, first_lines
from ctsync.exports.files import parse_file_name
from ctsync.exports.sample import write_sample_export

END = datetime(2026, 11, 1, tzinfo=UTC)


def read_lines(folder: Path) -> tuple[Counter[str], list[dict[str, object]], int]:
    counts: Counter[str] = Counter()
    records: list[dict[str, object]] = []
    headers = 0
    for path in sorted(folder.iterdir()):
        if parse_file_name(str(path)).kind is not FileKind.EVENTS:
            continue
        lines = gzip.decompress(path.read_bytes()).splitlines()
        if lines and not lines[0].startswith(b"{"):
            headers += 1
            assert parse_file_name(str(path)).event_name_hint == lines[0].decode().replace(" ", "-")
            lines = lines[1:]
        for line in lines:
            record = json.loads(line)
            counts[str(record["eventName"])] += 1
            records.append(record)
    return counts, records, headers


def test_the_sample_is_realistic_and_its_counts_match_its_files(tmp_path: Path) -> None:
    summary = write_sample_export(tmp_path, events=5000, users=300, seed=3, end=END, timezone="Asia/Kolkata")
    counts, records, headers = read_lines(tmp_path)
    assert dict(counts) == summary.events_by_name and summary.events == 5000
    assert headers == len(summary.files)  # every file starts with the bare event name
    names = set(counts)
    assert {"App Launched", "Charged", "Notification Clicked", "UTM Visited", "App Installed"} <= names
    charged = next(r for r in records if r["eventName"] == "Charged")
    assert isinstance(charged["eventProps"]["Items"], list)  # type: ignore[index]
    clicked = next(r for r in records if r["eventName"] == "Notification Clicked")
    assert any(key.startswith("wzrk_") for key in clicked["eventProps"])  # type: ignore[attr-defined]
    assert all("sessionProps" in r for r in records if r["eventName"] == "UTM Visited")
    assert any("identity" not in r["profile"] for r in records)  # type: ignore[operator]
    spellings = {key for r in records for key in r["eventProps"]}  # type: ignore[attr-defined]
    assert {"CT App Version", "ct_app_version"} <= spellings
    ts = str(records[0]["ts"])
    assert len(ts) == 14 and datetime.strptime(ts, "%Y%m%d%H%M%S")
    assert summary.profile_file is not None and parse_file_name(str(summary.profile_file)).kind is FileKind.PROFILES


def test_the_same_seed_writes_the_same_bytes_and_memory_stays_bounded(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = write_sample_export(tmp_path / "a", events=3000, users=200, seed=9, end=END)
    second = write_sample_export(tmp_path / "b", events=3000, users=200, seed=9, end=END)
    assert [p.name for p in first.files] == [p.name for p in second.files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first.files, second.files, strict=True))
    monkeypatch.setattr(sample, "MAX_BUFFERED_BYTES", 50_000)  # forces many chunk files
    chunked = write_sample_export(tmp_path / "c", events=3000, users=200, seed=9, end=END)
    assert len(chunked.files) > len(first.files)
    counts, _, _ = read_lines(tmp_path / "c")
    assert dict(counts) == first.events_by_name


def test_first_lines_inflates_only_what_it_needs() -> None:
    header = b"Charged"
    long_line = b'{"eventName": "Charged", "pad": "' + b"x" * 300_000 + b'"}'
    rest = b"\n".join(os.urandom(64).hex().encode() for _ in range(50_000))
    data = gzip.compress(header + b"\n" + long_line + b"\n" + rest)
    assert first_lines(data, 2) == [header, long_line]
    assert first_lines(gzip.compress(b"only one line"), 2) == [b"only one line", b""]
    assert first_lines(data[: len(data) // 2], 1) == [header]  # a truncated file still yields its first line
    assert first_lines(b"plain\ntext\n", 3) == [b"plain", b"text", b""]
