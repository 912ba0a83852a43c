"""The event loader against a real DuckDB file."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ctsync.errors import CtsyncError
from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.events import IdentifierPriority
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.conftest import event, write_export
from tests.warehouse.conftest import columns, is_duckdb, query

SCHEMA = "clevertap_prod"
OPTIONS = LoadOptions(nickname="CleverTap_Prod")


def count_lines_by_event(folder: Path) -> Counter[str]:
    """Independent count: every JSON line of every event file, by its eventName."""
    counts: Counter[str] = Counter()
    for path in folder.iterdir():
        for line in gzip.decompress(path.read_bytes()).splitlines():
            record = json.loads(line) if line.startswith(b"{") else {}
            if "eventName" in record:
                counts[record["eventName"]] += 1
    return counts


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    write_sample_export(
        folder, events=6000, users=400, seed=11, end=datetime(2026, 11, 1, tzinfo=UTC), timezone="Asia/Kolkata"
    )
    return folder


def test_sample_loads_with_counts_matching_the_files(sample_dir: Path, warehouse: str) -> None:
    summary = load_export_files([str(sample_dir)], OPTIONS, warehouse=warehouse)
    expected = count_lines_by_event(sample_dir)
    users = 400  # one profile line each, in the profile export
    assert summary.total("lines_read") == sum(expected.values()) + users
    assert query(warehouse, f"select count(*) from {SCHEMA}.identifies")[0][0] == users
    assert summary.total("rows_rejected") == 0
    for name, count in expected.items():
        table = name.lower().replace(" ", "_")
        assert query(warehouse, f'select count(*) from {SCHEMA}."{table}"')[0][0] == count, name
    total, distinct = query(warehouse, f"select count(*), count(distinct id) from {SCHEMA}.tracks")[0]
    assert total == distinct == sum(expected.values())
    loads = query(warehouse, f"select status, count(*) from {SCHEMA}._loads group by 1")
    assert loads == [("loaded", len([f for f in summary.files if f.status == "loaded"]))]


def test_loading_the_same_files_again_changes_nothing(sample_dir: Path, warehouse: str) -> None:
    load_export_files([str(sample_dir)], OPTIONS, warehouse=warehouse)
    fingerprint = f"select count(*), md5(string_agg(id, ',' order by id)) from {SCHEMA}.tracks"
    before = query(warehouse, fingerprint)
    second = load_export_files([str(sample_dir)], OPTIONS, warehouse=warehouse)
    assert second.count("loaded") == 0
    assert {f.status for f in second.files} == {"skipped"}
    assert query(warehouse, fingerprint) == before


def test_overlapping_exports_add_only_new_events(
    tmp_path: Path, export_file: Callable[..., Path], warehouse: str
) -> None:
    base = [event("App Launched", 20240312094500 + i, {"n": i}, identity=f"u{i}") for i in range(10)]
    export_file("App Launched", base, request_id="1111")
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    overlap = base[5:] + [event("App Launched", 20240312100000 + i, {"n": 100 + i}, identity="u") for i in range(3)]
    export_file("App Launched", overlap, request_id="2222", folder=tmp_path / "second")
    summary = load_export_files([str(tmp_path / "second")], OPTIONS, warehouse=warehouse)
    assert summary.total("rows_loaded") == 8
    assert summary.total("rows_inserted") == 3
    assert query(warehouse, f"select count(*), count(distinct id) from {SCHEMA}.app_launched")[0] == (13, 13)


def test_identical_events_in_one_export_run_are_kept_but_not_across_exports(
    tmp_path: Path, export_file: Callable[..., Path], warehouse: str
) -> None:
    """Two identical events in one run's file series (one file or two chunks) are two events;
    the same events in another export run's files (an overlapping export) are not new."""
    twin = event("Charged", 20240312094500, {"Amount": 5}, identity="u1")
    other = event("Charged", 20240312094501, {"Amount": 6}, identity="u1")
    export_file("Charged", [twin, twin, other])  # file index 0 of the series
    export_file("Charged", [twin])  # file index 1: the third copy, in the next chunk
    export_file("Charged", [twin, twin, twin, other], request_id="1700000002", folder=tmp_path / "overlap")
    load_export_files([str(tmp_path / "export"), str(tmp_path / "overlap")], OPTIONS, warehouse=warehouse)
    assert query(warehouse, f"select count(*), count(distinct id) from {SCHEMA}.charged")[0] == (4, 4)


def test_the_same_events_in_another_export_loaded_later_are_not_new(
    tmp_path: Path, export_file: Callable[..., Path], warehouse: str
) -> None:
    twin = event("Charged", 20240312094500, {"Amount": 5}, identity="u1")
    export_file("Charged", [twin, twin], request_id="1700000001", folder=tmp_path / "first")
    load_export_files([str(tmp_path / "first")], OPTIONS, warehouse=warehouse)
    later = event("Charged", 20240312100000, {"Amount": 7}, identity="u1")
    export_file("Charged", [twin, twin, later], request_id="1700000009", folder=tmp_path / "second")
    second = load_export_files([str(tmp_path / "second")], OPTIONS, warehouse=warehouse)
    assert second.total("rows_loaded") == 3 and second.total("rows_inserted") == 1


def test_timestamps_are_read_in_the_project_timezone_and_stored_as_utc(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file("App Launched", [event("App Launched", 20240312094512, identity="u1")])
    load_export_files(
        [str(tmp_path / "export")], LoadOptions(nickname="CleverTap_Prod", timezone="Asia/Kolkata"), warehouse=warehouse
    )
    stamp, original = query(warehouse, f"select timestamp, original_timestamp from {SCHEMA}.app_launched")[0]
    assert stamp == datetime(2024, 3, 12, 4, 15, 12, tzinfo=UTC)
    assert original == stamp


def test_daylight_saving_time_is_applied(export_file: Callable[..., Path], tmp_path: Path, warehouse: str) -> None:
    export_file(
        "App Launched",
        [
            event("App Launched", 20240115120000, identity="winter"),
            event("App Launched", 20240715120000, identity="summer"),
        ],
    )
    load_export_files(
        [str(tmp_path / "export")],
        LoadOptions(nickname="CleverTap_Prod", timezone="America/New_York"),
        warehouse=warehouse,
    )
    rows = dict(query(warehouse, f"select user_id, timestamp from {SCHEMA}.app_launched"))
    assert rows["winter"] == datetime(2024, 1, 15, 17, 0, tzinfo=UTC)
    assert rows["summer"] == datetime(2024, 7, 15, 16, 0, tzinfo=UTC)


def test_malformed_lines_are_quarantined_and_counts_reconcile(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    good = [event("App Launched", 20240312094500 + i, {"k": i}, identity=f"u{i}") for i in range(5)]
    lines: list[dict[str, Any] | str | bytes] = [
        good[0],
        "not json at all",
        good[1],
        '{"ts":20240312094512,"eventName":"App Launched"',  # truncated
        "[1, 2, 3]",
        json.dumps({"ts": 20240312094512, "profile": {}}),  # no eventName
        json.dumps({"eventName": "App Launched"}),  # no ts
        json.dumps({"ts": 20241332250000, "eventName": "App Launched"}),  # impossible date
        json.dumps({"ts": 2024031209, "eventName": "App Launched"}),  # too short
        json.dumps({"ts": 20240312094512, "eventName": "App Launched", "eventProps": "oops"}),
        b'{"ts":20240312094512,"eventName":"Bad \xff utf8"}',
        good[2],
        "",
        good[3],
        good[4],
    ]
    path = export_file("App Launched", lines, header="App Launched")
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    counts = summary.files[0].counts
    assert counts.header_lines == 1
    assert counts.rows_loaded == 5
    assert counts.rows_rejected == 9
    assert counts.lines_read == counts.rows_loaded + counts.rows_rejected == 14  # the blank line is not a line
    rejected = query(warehouse, f"select line_number, reason, raw, file from {SCHEMA}._rejected order by 1")
    assert [row[0] for row in rejected] == [3, 5, 6, 7, 8, 9, 10, 11, 12]
    by_line = {row[0]: row[1] for row in rejected}
    assert by_line[3] == "invalid JSON"
    assert by_line[5] == "invalid JSON"
    assert by_line[6] == "a JSON array, not an object"
    assert by_line[7] == "missing eventName"
    assert by_line[8] == "missing ts"
    assert "not a real date" in by_line[9]
    assert "14-digit" in by_line[10]
    assert by_line[11] == "eventProps is not a JSON object"
    assert by_line[12] == "invalid UTF-8"
    assert rejected[0][2] == "not json at all" and rejected[0][3] == str(path)
    assert query(warehouse, f"select count(*) from {SCHEMA}.app_launched")[0][0] == 5


def test_fast_and_exact_reads_give_the_same_ids(
    export_file: Callable[..., Path], tmp_path: Path, make_warehouse: Callable[[], str]
) -> None:
    rows = [
        event(
            "Notification Clicked",
            20240312094500 + i,
            {"wzrk_c2a": "buy", "n": i * 1.5, "tags": [1, "x"]},
            identity="u",
        )
        for i in range(20)
    ]
    export_file("Notification Clicked", rows, folder=tmp_path / "clean")
    export_file("Notification Clicked", [*rows, "garbage"], folder=tmp_path / "dirty")
    clean, dirty = make_warehouse(), make_warehouse()
    load_export_files([str(tmp_path / "clean")], OPTIONS, warehouse=clean)
    summary = load_export_files([str(tmp_path / "dirty")], OPTIONS, warehouse=dirty)
    assert summary.total("rows_rejected") == 1
    sql = f"select id from {SCHEMA}.notification_clicked order by id"
    assert query(clean, sql) == query(dirty, sql)


def test_region_must_match_the_workspace(export_file: Callable[..., Path], tmp_path: Path, warehouse: str) -> None:
    export_file("App Launched", [event("App Launched", 20240312094500)])
    options = LoadOptions(nickname="CleverTap_Prod", region="eu", workspace_region="us")
    with pytest.raises(CtsyncError, match="region"):
        load_export_files([str(tmp_path / "export")], options, warehouse=warehouse)
    if is_duckdb(warehouse):
        assert not os.path.exists(warehouse)
    else:
        assert query(warehouse, "select count(*) from information_schema.schemata where schema_name = ?", [SCHEMA]) == [
            (0,)
        ]


def test_hostile_event_names_become_their_own_table(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file("App Launched", [event("App Launched", 20240312094500)])
    export_file("x", [event('x"; drop table tracks; --', 20240312094501, {'a"b': 1})])
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    tables = {row[0] for row in query(warehouse, "select table_name from information_schema.tables")}
    assert {"x_drop_table_tracks", "app_launched", "tracks"} <= tables
    assert query(warehouse, f"select count(*) from {SCHEMA}.app_launched")[0][0] == 1
    assert query(warehouse, f"select event_text from {SCHEMA}.x_drop_table_tracks")[0][0] == 'x"; drop table tracks; --'
    assert query(warehouse, f"select count(*) from {SCHEMA}.tracks")[0][0] == 2


def test_properties_flatten_spellings_merge_and_reserved_names_are_prefixed(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file(
        "Charged",
        [
            event(
                "Charged",
                20240312094500,
                {
                    "CT App Version": "4.2",
                    "Amount": 300,
                    "Items": [{"Category": "books", "Quantity": 4}],
                    "Shipping": {"City": "Pune", "Express": True},
                    "id": "prop-id",
                    "userId": "prop-user",
                    "event": "prop-event",
                    "context": {"ip": "1.2.3.4"},
                },
                identity="u1",
            ),
            event("Charged", 20240312094501, {"ct_app_version": "4.3", "Amount": 12.5}, identity="u2"),
        ],
    )
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    cols = columns(warehouse, "charged")
    assert cols["amount"] == "DOUBLE"
    assert cols["shipping_express"] == "BOOLEAN"
    assert {"_id", "_user_id", "_event", "_context_ip", "ct_app_version", "shipping_city", "items"} <= set(cols)
    rows = query(
        warehouse,
        f"select user_id, id <> _id, _id, _user_id, ct_app_version, items, shipping_city, amount "
        f"from {SCHEMA}.charged order by user_id",
    )
    assert rows[0] == ("u1", True, "prop-id", "prop-user", "4.2", '[{"Category":"books","Quantity":4}]', "Pune", 300.0)
    assert rows[1][4] == "4.3" and rows[1][7] == 12.5


def test_schema_evolution_adds_columns_widens_and_keeps_misfits_in_a_variant(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file("Scored", [event("Scored", 20240312094500, {"points": 10, "flag": True, "code": "0123"})])
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert columns(warehouse, "scored")["points"] == "BIGINT"
    assert "points__v_varchar" not in columns(warehouse, "scored")
    export_file(
        "Scored",
        [
            event("Scored", 20240312094501, {"points": 2.5, "level": "gold"}),
            event("Scored", 20240312094502, {"points": "lots", "flag": "yes"}),
            event("Scored", 20240312094503, {"points": 7, "flag": False, "code": 123}),
        ],
        folder=tmp_path / "second",
    )
    load_export_files([str(tmp_path / "second")], OPTIONS, warehouse=warehouse)
    cols = columns(warehouse, "scored")
    assert cols["points"] == "DOUBLE"  # widened
    assert cols["level"] == "VARCHAR"  # new property, new column
    assert cols["code"] == "VARCHAR"
    rows = query(
        warehouse,
        f"select timestamp, points, points__v_varchar, flag, flag__v_varchar, code from {SCHEMA}.scored order by 1",
    )
    assert [row[1:] for row in rows] == [
        (10.0, None, True, None, "0123"),
        (2.5, None, None, None, None),
        (None, "lots", None, "yes", None),
        (7.0, None, False, None, "123"),
    ]


def test_identifier_priority(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str, make_warehouse: Callable[[], str]
) -> None:
    export_file(
        "App Launched",
        [
            event("App Launched", 20240312094500, objectId="o1", identity="id1", email="a@x.com"),
            event("App Launched", 20240312094501, objectId="o2", email="b@x.com", phone="+1"),
            event("App Launched", 20240312094502, objectId="o3", phone="+2"),
            event("App Launched", 20240312094503, objectId="o4"),
        ],
    )
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    rows = query(warehouse, f"select anonymous_id, user_id from {SCHEMA}.app_launched order by 1")
    assert rows == [("o1", "id1"), ("o2", "b@x.com"), ("o3", "+2"), ("o4", None)]
    other = make_warehouse()
    email_first = LoadOptions(
        nickname="CleverTap_Prod", identifiers=IdentifierPriority(user_id=("email",), anonymous_id="identity")
    )
    load_export_files([str(tmp_path / "export")], email_first, warehouse=other)
    rows = query(other, f"select user_id, anonymous_id from {SCHEMA}.app_launched order by timestamp")
    assert rows == [("a@x.com", "id1"), ("b@x.com", None), (None, None), (None, None)]


def test_plain_crlf_files_without_header_and_unnamed_files(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "misc"
    write_export(folder / "events.json", [event("App Launched", 20240312094500)], compress=False, newline=b"\r\n")
    write_export(folder / "more.json.gz", [event("App Launched", 20240312094501)], header="App Launched")
    summary = load_export_files([str(folder / "*.json*")], OPTIONS, warehouse=warehouse)
    assert summary.total("rows_inserted") == 2 and summary.total("rows_rejected") == 0


def test_a_byte_order_mark_at_the_start_of_a_file_is_not_part_of_its_first_line(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "bom"
    records = [event("App Launched", 20240312094500 + second, identity=f"u{second}") for second in range(3)]
    write_export(folder / "plain.json", [b"\xef\xbb\xbf" + json.dumps(records[0]).encode()], compress=False)
    write_export(folder / "header.json.gz", [b"\xef\xbb\xbfApp Launched", records[1], records[2]])
    summary = load_export_files([str(folder)], OPTIONS, warehouse=warehouse)
    assert not summary.failed, [f.error for f in summary.failed]
    assert (summary.total("rows_inserted"), summary.total("rows_rejected"), summary.total("header_lines")) == (3, 0, 1)
    rows = query(warehouse, f"select user_id from {SCHEMA}.app_launched order by 1")
    assert rows == [("u0",), ("u1",), ("u2",)]


def test_a_path_that_matches_nothing_is_an_error(tmp_path: Path, warehouse: str) -> None:
    with pytest.raises(CtsyncError, match="matches no file"):
        load_export_files([str(tmp_path / "missing" / "*.json.gz")], OPTIONS, warehouse=warehouse)
    with pytest.raises(CtsyncError, match="matches no file"):
        load_export_files([str(tmp_path / "missing")], OPTIONS, warehouse=warehouse)


def test_a_folder_or_file_whose_name_has_brackets_is_taken_as_named(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "exports [eu]"
    write_export(folder / "a.json.gz", [event("App Launched", 20240312094500, identity="u1")])
    lone = tmp_path / "one [1].json.gz"
    write_export(lone, [event("App Launched", 20240312094600, identity="u2")])

    summary = load_export_files([str(folder), str(lone)], OPTIONS, warehouse=warehouse)

    assert not summary.problems and summary.total("rows_inserted") == 2
    assert query(warehouse, f"select user_id from {SCHEMA}.app_launched order by 1") == [("u1",), ("u2",)]


def test_an_export_folder_with_no_files_yet_is_nothing_to_load(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    (tmp_path / "later").mkdir()
    assert load_export_files([str(tmp_path / "later")], OPTIONS, warehouse=warehouse).files == []
    export_file("App Launched", [event("App Launched", 20240312094500)])
    both = load_export_files([str(tmp_path / "export"), str(tmp_path / "later")], OPTIONS, warehouse=warehouse)
    assert [result.status for result in both.files] == ["loaded"]


def test_a_run_killed_mid_load_leaves_no_partial_rows(tmp_path: Path, warehouse: str) -> None:
    folder = tmp_path / "big"
    summary = write_sample_export(folder, events=60_000, users=2_000, seed=5, end=datetime(2026, 11, 1, tzinfo=UTC))
    expected = summary.events
    code = (
        "import sys; from ctsync.warehouse.loader import load_export_files, LoadOptions; "
        "load_export_files([sys.argv[1]], LoadOptions(nickname='CleverTap_Prod', batch_bytes=4_000_000), "
        "warehouse=sys.argv[2])"
    )
    for delay in (0.8, 1.6, 2.4):
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder), warehouse])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if is_duckdb(warehouse) and not os.path.exists(warehouse):
            continue
        tables = {row[0] for row in query(warehouse, "select table_name from information_schema.tables")}
        if "tracks" in tables:
            rows, committed = query(
                warehouse,
                f"select (select count(*) from {SCHEMA}.tracks), "
                f"(select coalesce(sum(rows_inserted), 0) from {SCHEMA}._loads "
                "where status = 'loaded' and kind = 'events')",
            )[0]
            assert rows == committed  # every row belongs to a file whose load committed
    final = load_export_files([str(folder)], OPTIONS, warehouse=warehouse)
    assert not final.failed
    assert query(warehouse, f"select count(*), count(distinct id) from {SCHEMA}.tracks")[0] == (expected, expected)
    statuses = dict(query(warehouse, f"select status, count(*) from {SCHEMA}._loads group by 1"))
    assert statuses.get("loading", 0) == 0
    shutil.rmtree(folder)


def test_a_file_loaded_for_some_days_is_read_again_for_others(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    from datetime import date

    export_file(
        "App Launched",
        [event("App Launched", 20240310120000 + i, identity="a") for i in range(3)]
        + [event("App Launched", 20240312120000 + i, identity="b") for i in range(2)],
    )
    march_12 = LoadOptions(nickname="CleverTap_Prod", days=(date(2024, 3, 12), date(2024, 3, 12)))
    first = load_export_files([str(tmp_path / "export")], march_12, warehouse=warehouse)
    assert (first.total("rows_inserted"), first.total("rows_skipped")) == (2, 3)
    again = load_export_files([str(tmp_path / "export")], march_12, warehouse=warehouse)
    assert again.count("loaded") == 0  # same filter: nothing to read
    everything = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert (everything.total("rows_loaded"), everything.total("rows_inserted")) == (5, 3)
    assert query(warehouse, f"select count(*) from {SCHEMA}.app_launched")[0][0] == 5


def test_names_longer_than_63_bytes_are_shortened_without_collisions(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    """PostgreSQL keeps 63 bytes of a name; both warehouses get the same shortened, distinct names."""
    stem = "Subscription Renewal Reminder Opened From The Lock Screen Widget On"
    long_event = stem + " Android Tablets"
    props = {stem + " Android": "a", stem + " iOS": "i", "short": 1}
    export_file("Long", [event(long_event, 20240312094500, props, identity="u1")])
    load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    from ctsync.naming import event_table, property_column

    table = event_table(long_event)
    assert len(table.encode()) <= 63
    cols = columns(warehouse, table)
    first, second = property_column((stem + " Android",)), property_column((stem + " iOS",))
    assert first != second and len(first.encode()) <= 63 and len(second.encode()) <= 63
    assert query(warehouse, f'select "{first}", "{second}", short, event_text from {SCHEMA}."{table}"') == [
        ("a", "i", 1, long_event)
    ]
    assert all(len(name.encode()) <= 63 for name in cols)


def test_a_key_found_in_one_row_of_thousands_gets_its_column(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    """Columns come from one row per distinct key list: a key only one row has must still be found."""

    def record(index: int, **extra: Any) -> dict[str, Any]:
        line = event("Viewed", 20240312000000 + index % 60, {"page": f"p{index}", "n": index}, identity=f"u{index}")
        line["deviceInfo"] = {"make": "Apple", "model": "iPhone"}
        line["sessionProps"] = {"utm_source": "mail"}
        for section, values in extra.items():
            line[section].update(values)
        return line

    lines = [record(index) for index in range(4000)]
    lines[2500] = record(
        2500,
        eventProps={"coupon": "SAVE10"},
        profile={"tier": "gold"},
        deviceInfo={"carrier": "Jio"},
        sessionProps={"utm_term": "shoes"},
    )
    reordered = record(3999)
    reordered["eventProps"] = {"n": 3999, "page": "p3999"}  # same keys, another order
    lines[3999] = reordered
    export_file("Viewed", lines)
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert summary.total("rows_inserted") == 4000
    cols = columns(warehouse, "viewed")
    assert {"coupon", "context_traits_tier", "context_device_carrier", "context_campaign_term"} <= set(cols)
    rows = query(
        warehouse,
        f"select n, coupon, context_traits_tier, context_device_carrier, context_campaign_term, page "
        f"from {SCHEMA}.viewed where coupon is not null or n = 3999 order by n",
    )
    assert rows == [(2500, "SAVE10", "gold", "Jio", "shoes", "p2500"), (3999, None, None, None, None, "p3999")]


def test_a_line_longer_than_the_json_readers_buffer_loads(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    """DuckDB's read_json buffers 16 MB objects; a 20 MB line still loads whole, with its neighbours."""
    note = "x" * (20 * 1024 * 1024)
    export_file(
        "Noted",
        [
            event("Noted", 20240312094500, {"n": 1}),
            event("Noted", 20240312094501, {"n": 2, "note": note}),
            event("Noted", 20240312094502, {"n": 3}),
        ],
    )
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert (summary.total("rows_inserted"), summary.total("rows_rejected")) == (3, 0)
    rows = query(warehouse, f"select n, length(note) from {SCHEMA}.noted order by n")
    assert rows == [(1, None), (2, len(note)), (3, None)]
