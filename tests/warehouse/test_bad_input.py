"""Input a real export folder can hold: every file, line and value ends in a table, in ``_rejected`` with
its reason, in ``_unplaced_values``, or refused as a whole with a reason. Both warehouses."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.exports.content import KEPT_RAW_BYTES, MAX_LINE_BYTES
from ctsync.warehouse import structure
from ctsync.warehouse.loader import LoadOptions, LoadSummary, load_export_files
from tests.conftest import event, write_export
from tests.warehouse.conftest import columns, query

SCHEMA = "clevertap_prod"
OPTIONS = LoadOptions(nickname="CleverTap_Prod")


def statuses(summary: LoadSummary) -> dict[str, str]:
    return {Path(result.file.url).name: result.status for result in summary.files}


def loads_rows(warehouse: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        warehouse,
        f"select file_name, status, lines_read, rows_loaded, rows_rejected, rows_skipped, error from {SCHEMA}._loads",
    )
    return {str(row[0]): tuple(row[1:]) for row in rows}


def rejected(warehouse: str) -> list[tuple[Any, ...]]:
    return query(warehouse, f"select file, line_number, reason, length(raw) from {SCHEMA}._rejected order by 1, 2")


def test_a_line_longer_than_ctsync_loads_is_rejected_alone_and_everything_else_loads(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    too_long = event("Noted", 20240312094501, {"n": 2, "note": "x" * (50 * 1024 * 1024)})
    big_but_fine = event("Noted", 20240312094503, {"n": 4, "note": "y" * (20 * 1024 * 1024)})
    with_long = export_file(
        "Noted",
        [event("Noted", 20240312094500, {"n": 1}), too_long, event("Noted", 20240312094502, {"n": 3})],
        header="Noted",
    )
    export_file("Noted", [big_but_fine, event("Noted", 20240312094504, {"n": 5})])
    export_file("Other", [event("Other", 20240312094500, {"n": 6})], compress=False)
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert set(statuses(summary).values()) == {"loaded"} and not summary.problems
    assert (summary.total("lines_read"), summary.total("rows_loaded"), summary.total("rows_rejected")) == (6, 5, 1)
    assert query(warehouse, f"select n, length(note) from {SCHEMA}.noted order by n") == [
        (1, None),
        (3, None),
        (4, 20 * 1024 * 1024),
        (5, None),
    ]
    assert query(warehouse, f"select n from {SCHEMA}.other") == [(6,)]
    [(file, line_number, reason, raw_length)] = rejected(warehouse)
    assert (file, line_number, raw_length) == (str(with_long), 3, KEPT_RAW_BYTES)  # line 1 is the header
    size = len(json.dumps(too_long))
    assert f"{size:,} bytes" in reason and f"{MAX_LINE_BYTES:,}" in reason


def _complete_lines_before_break(data: bytes) -> int:
    """Independently of ctsync: the complete lines zlib inflates from a broken gzip stream."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    content = b""
    for start in range(0, len(data), 1024):
        try:
            content += decoder.decompress(data[start : start + 1024])
        except zlib.error:
            break
    return content.count(b"\n")


def test_a_truncated_gzip_loads_its_lines_before_the_break_and_a_complete_copy_loads_the_rest(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    records = [
        event("Viewed", 20240312090000 + i % 60 + (i // 60) * 100, {"n": i, "pad": f"{i:x}" * 40}) for i in range(600)
    ]
    path = export_file("Viewed", records)
    complete = path.read_bytes()
    export_file("Fine", [event("Fine", 20240312090000, {"n": 1})])
    path.write_bytes(complete[: len(complete) * 3 // 5])
    before_break = _complete_lines_before_break(path.read_bytes())
    assert 0 < before_break < 600

    first = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert statuses(first) == {
        path.name: "truncated",
        next(p.name for p in (tmp_path / "export").iterdir() if p != path): "loaded",
    }
    [problem] = first.problems
    assert "cut short" in (problem.error or "") and f"byte {len(complete) * 3 // 5:,}" in (problem.error or "")
    status, lines_read, rows_loaded, rows_rejected, rows_skipped, _ = loads_rows(warehouse)[path.name]
    assert (status, rows_loaded, rows_skipped) == ("truncated", before_break, 0)
    assert lines_read == rows_loaded + rows_rejected and rows_rejected == 1  # the line cut in two
    assert "cut off" in rejected(warehouse)[0][2]
    assert query(warehouse, f"select count(*) from {SCHEMA}.viewed")[0][0] == before_break

    again = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert set(statuses(again).values()) == {"skipped"}  # the same truncated content is not read twice

    path.write_bytes(complete)
    rest = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert statuses(rest)[path.name] == "loaded" and not rest.problems
    assert rest.total("rows_inserted") == 600 - before_break
    assert query(warehouse, f"select count(*), count(distinct id), count(distinct n) from {SCHEMA}.viewed") == [
        (600, 600, 600)
    ]


def test_damaged_gzip_data_loads_only_its_intact_members_never_what_the_damage_decompresses_to(
    tmp_path: Path, warehouse: str
) -> None:
    """Inflating damaged deflate data can yield plausible lines (copies of earlier ones) before zlib notices:
    none of a damaged member may load. A file of two gzip members, the second damaged, loads the first."""
    records = [
        event("Viewed", 20240312090000 + i % 60, {"n": i, "pad": f"{i:x}" * 50}, identity=f"u{i}") for i in range(400)
    ]
    text = [json.dumps(record).encode() + b"\n" for record in records]
    intact, damaged = gzip.compress(b"".join(text[:150])), bytearray(gzip.compress(b"".join(text[150:])))
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    two_members = tmp_path / "export" / "viewed.json.gz"
    two_members.parent.mkdir(parents=True)
    two_members.write_bytes(intact + bytes(damaged))
    one_member = bytearray(gzip.compress(b"".join(text)))
    one_member[len(one_member) // 2 : len(one_member) // 2 + 64] = bytes(64)
    (tmp_path / "export" / "other.json.gz").write_bytes(bytes(one_member))
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    results = {Path(result.file.url).name: result for result in summary.files}
    assert {name: result.status for name, result in results.items()} == {
        "viewed.json.gz": "corrupt",
        "other.json.gz": "corrupt",
    }
    assert all("damaged" in (result.error or "") for result in results.values())
    assert (results["viewed.json.gz"].counts.rows_loaded, results["other.json.gz"].counts.rows_loaded) == (150, 0)
    assert query(warehouse, f"select count(*), min(n), max(n) from {SCHEMA}.viewed") == [(150, 0, 149)]
    assert all(result.counts.reconciles() for result in results.values())

    two_members.write_bytes(b"".join(gzip.compress(line) for line in text))  # an intact copy arrives
    rest = load_export_files([str(two_members)], OPTIONS, warehouse=warehouse)
    assert [result.status for result in rest.files] == ["loaded"] and rest.total("rows_inserted") == 250
    assert query(warehouse, f"select count(*), count(distinct n) from {SCHEMA}.viewed") == [(400, 400)]


def test_values_without_a_column_of_their_own_are_kept_and_counted(tmp_path: Path, warehouse: str) -> None:
    lines = [
        '{"ts":20240312094500,"eventName":"Order","eventName":"Second Name","profile":{"identity":"u1"},'
        '"eventProps":{"a":1,"a":2,"a":3,"Order Count":5,"order_count":6,"ORDER COUNT":5,"Nested":{"x":"p","x":"q"}},'
        '"unexpected":{"k":true}}',
        '{"ts":20240312094501,"eventName":"Order","profile":{"identity":"u2","Email":"a@x.com","email":"b@x.com"},'
        '"eventProps":{"a":7,"order_count":8}}',
    ]
    write_export(tmp_path / "export" / "orders.json.gz", lines)
    write_export(
        tmp_path / "export" / "profiles.json",
        ['{"identity":"u1","Email":"a@x.com","email":"c@x.com","Name":"A","Name":"B"}'],
        compress=False,
    )
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert not summary.problems and summary.total("rows_rejected") == 0
    rows = query(
        warehouse,
        f'select user_id, a, order_count, nested_x, context_traits_email, _unplaced_values from {SCHEMA}."order" '
        "order by user_id",
    )
    (u1, a1, count1, nested1, email1, unplaced1), (u2, a2, count2, _, email2, unplaced2) = rows
    assert (u1, a1, count1, nested1, email1) == ("u1", 1, 5, "p", None)  # the first occurrence, the first spelling
    assert sorted((entry["path"], json.dumps(entry["value"])) for entry in json.loads(unplaced1)) == sorted(
        [
            ("/eventName", '"Second Name"'),
            ("/eventProps/a", "2"),
            ("/eventProps/a", "3"),
            ("/eventProps/order_count", "6"),  # ORDER COUNT holds 5, the value kept: not repeated
            ("/eventProps/Nested/x", '"q"'),
            ("/unexpected", '{"k": true}'),
        ]
    )
    assert (u2, a2, count2, email2) == ("u2", 7, 8, "a@x.com")
    assert [(entry["path"], entry["value"]) for entry in json.loads(unplaced2)] == [("/profile/email", "b@x.com")]
    identity_rows = query(warehouse, f"select email, name, _unplaced_values from {SCHEMA}.identifies")
    [(email, name, unplaced)] = identity_rows
    assert (email, name) == ("a@x.com", "A")
    assert sorted((entry["path"], entry["value"]) for entry in json.loads(unplaced)) == [
        ("/Name", "B"),
        ("/email", "c@x.com"),
    ]
    assert "_unplaced_values" not in columns(warehouse, "users")
    assert summary.unplaced_by_table == {"order": 7, "identifies": 2}


def test_a_key_only_rows_past_the_sample_hold_still_gets_its_column(
    tmp_path: Path, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(structure, "SAMPLE_ROWS", 20)
    records = [event("Late", 20240312090000 + i % 60, {"n": i}, identity=f"u{i}") for i in range(60)]
    records[50]["eventProps"]["rare"] = "kept"
    records[55]["eventProps"]["Discount"] = {"Code": "X1"}
    records[5]["eventProps"]["Discount"] = {"Code": None}
    write_export(tmp_path / "export" / "late.json.gz", records)
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    found = f"select n, rare, discount_code from {SCHEMA}.late where rare is not null or discount_code is not null"
    assert query(warehouse, found + " order by n") == [
        (50, "kept", None),
        (55, None, "X1"),
    ]


def test_files_that_are_not_clevertap_exports_are_refused_with_their_reason(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "export"
    write_export(
        folder / "1700000001-1710000000-App-Launched-20240312-0-0.json.gz", [event("App Launched", 20240312094500)]
    )
    (folder / "users.csv").write_text("identity,email\nu1,a@x.com\n")
    (folder / "events.csv.gzip").write_bytes(gzip.compress(b"eventName,ts\nApp Launched,20240312094500\n"))
    (folder / "events.xml").write_text('<?xml version="1.0"?><events><event/></events>')
    pq.write_table(pa.table({"eventName": ["App Launched"]}), folder / "events.parquet")
    (folder / "notes.txt").write_text("exported by the data team\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    summary = load_export_files([str(folder)], OPTIONS, warehouse=warehouse)
    assert statuses(summary) == {
        "1700000001-1710000000-App-Launched-20240312-0-0.json.gz": "loaded",
        "users.csv": "unsupported",
        "events.csv.gzip": "unsupported",
        "events.xml": "unsupported",
        "events.parquet": "unsupported",
        "notes.txt": "unsupported",
        ".DS_Store": "skipped",
    }
    recorded = loads_rows(warehouse)
    assert {name: row[0] for name, row in recorded.items()} == {
        name: status for name, status in statuses(summary).items() if status != "skipped"
    }
    assert "a CSV file" in recorded["users.csv"][-1] and "a CSV file" in recorded["events.csv.gzip"][-1]
    assert "XML" in recorded["events.xml"][-1] and "a Parquet file" in recorded["events.parquet"][-1]
    assert "not JSON lines" in recorded["notes.txt"][-1]
    assert query(warehouse, f"select count(*) from {SCHEMA}.app_launched")[0][0] == 1

    result = CliRunner().invoke(app, ["load", str(folder), "--nickname", "CleverTap_Prod", "--warehouse", warehouse])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "5 unsupported" in output and "unsupported" in output and "users.csv" in output


def test_the_first_line_is_a_header_only_when_it_is_the_event_name(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "export"
    named = write_export(
        folder / "1700000001-1710000000-App-Launched-20240312-0-0.json.gz",
        [event("App Launched", 20240312094500)],
        header="Generated by a script",
    )
    unnamed_header = write_export(
        folder / "a.json", [event("Charged", 20240312094500)], header="Charged", compress=False
    )
    unnamed_other = write_export(folder / "b.json", [event("Charged", 20240312094501)], header="Charge", compress=False)
    numeric = write_export(
        folder / "c.json",
        ['{"ts":20240312094502,"eventName":123,"eventProps":{}}', event("Charged", 20240312094503)],
        compress=False,
    )
    summary = load_export_files([str(folder)], OPTIONS, warehouse=warehouse)
    assert set(statuses(summary).values()) == {"loaded"}
    assert summary.total("header_lines") == 1
    assert rejected(warehouse) == sorted(
        [
            (str(named), 1, "invalid JSON", len("Generated by a script")),
            (str(unnamed_other), 1, "invalid JSON", len("Charge")),
            (
                str(numeric),
                1,
                "eventName must be a JSON string, got 123",
                len('{"ts":20240312094502,"eventName":123,"eventProps":{}}'),
            ),
        ]
    )
    assert str(unnamed_header) not in {row[0] for row in rejected(warehouse)}
    assert query(warehouse, f"select count(*) from {SCHEMA}.charged")[0][0] == 3
    assert summary.reconciles
