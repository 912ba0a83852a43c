"""Segment's warehouse columns: SQL written for a Segment warehouse runs on ctsync's tables, on both engines."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.conftest import event, write_export
from tests.warehouse.conftest import columns, is_duckdb, query

SCHEMA = "clevertap_prod"
OPTIONS = LoadOptions(nickname="CleverTap_Prod")
END = datetime(2026, 11, 1, tzinfo=UTC)

SESSIONS_SQL = f"""
with events as (
    select id, anonymous_id, "timestamp", sent_at, context_device_manufacturer, context_os_version,
        lag("timestamp") over (partition by anonymous_id order by "timestamp", id) as previous_timestamp
    from {SCHEMA}.tracks
    where anonymous_id is not null
),
session_starts as (
    select *,
        case when previous_timestamp is null or "timestamp" > previous_timestamp + interval '30 minutes'
            then 1 else 0 end as is_session_start
    from events
),
numbered as (
    select *,
        sum(is_session_start) over (
            partition by anonymous_id order by "timestamp", id rows between unbounded preceding and current row
        ) as session_index
    from session_starts
)
select anonymous_id, session_index, min("timestamp") as session_start_at, max("timestamp") as session_end_at,
    max(sent_at) as sent_at, max(context_device_manufacturer) as device_manufacturer,
    max(context_os_version) as os_version, count(*) as events
from numbered
group by anonymous_id, session_index
order by anonymous_id, session_index
"""
"""A sessions model as written for Segment's ``tracks`` (30 minutes of inactivity end a session)."""

OLD_NAMES = {
    "context_device_make",
    "context_device_app_version",
    "context_device_os_version",
    "context_device_dpi",
    "context_device_dimensions_width",
    "context_device_dimensions_height",
    "context_traits_push_token",
    "ct_connected_to_wi_fi",
}


def execute(warehouse: str, *statements: str) -> None:
    """Run writing SQL on either warehouse."""
    if is_duckdb(warehouse):
        import duckdb

        con = duckdb.connect(warehouse)
        try:
            for statement in statements:
                con.execute(statement)
        finally:
            con.close()
        return
    import psycopg2

    connection = psycopg2.connect(warehouse)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def records_of(folder: Path) -> list[dict[str, Any]]:
    """Every event record of the export files in ``folder`` (read independently of the loader)."""
    found = []
    for path in sorted(folder.glob("*.json.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            if line.startswith(b"{"):
                record = json.loads(line)
                if "eventName" in record:
                    found.append(record)
    return found


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    write_sample_export(folder, events=3000, users=150, seed=5, end=END)
    return folder


def test_a_segment_sessions_model_over_tracks_runs_on_the_sample(sample_dir: Path, warehouse: str) -> None:
    summary = load_export_files([str(sample_dir)], OPTIONS, warehouse=warehouse)
    assert not summary.problems

    sessions = query(warehouse, SESSIONS_SQL)

    # The same sessions, counted from the export files themselves.
    times: dict[str, list[datetime]] = defaultdict(list)
    devices: dict[str, tuple[str | None, str | None]] = {}
    for record in records_of(sample_dir):
        object_id = record["profile"]["objectId"]
        times[object_id].append(datetime.strptime(str(record["ts"]), "%Y%m%d%H%M%S").replace(tzinfo=UTC))
        device = record.get("deviceInfo") or {}
        if device.get("make"):
            devices[object_id] = (device["make"], device["osVersion"])
    expected_sessions = 0
    for moments in times.values():
        moments.sort()
        expected_sessions += 1 + sum(1 for a, b in pairwise(moments) if b - a > timedelta(minutes=30))
    assert len(sessions) == expected_sessions
    assert sum(row[7] for row in sessions) == sum(len(moments) for moments in times.values())

    run_time = END  # the sample names its files with their run time, END
    assert {row[4] for row in sessions} == {run_time}
    by_device = {(row[0], row[5], row[6]) for row in sessions if row[5] is not None}
    assert by_device == {(object_id, *devices[object_id]) for object_id, _, _ in by_device}
    assert {object_id for object_id, _, _ in by_device} == {o for o in devices if o in times}


def test_clevertap_fields_land_in_segments_columns(sample_dir: Path, warehouse: str) -> None:
    load_export_files([str(sample_dir)], OPTIONS, warehouse=warehouse)
    tracks = columns(warehouse, "tracks")
    assert not OLD_NAMES & set(tracks)
    assert {
        "sent_at": "TIMESTAMP WITH TIME ZONE",
        "context_library_name": "VARCHAR",
        "context_library_version": "VARCHAR",
        "context_device_manufacturer": "VARCHAR",
        "context_device_model": "VARCHAR",
        "context_app_version": "VARCHAR",
        "context_os_version": "VARCHAR",
        "context_device_token": "VARCHAR",
        "context_screen_width": "DOUBLE",
        "context_screen_height": "DOUBLE",
        "context_screen_density": "DOUBLE",
        "context_device_sdk_version": "BIGINT",
        "context_device_dimensions_unit": "VARCHAR",
    }.items() <= tracks.items()
    launched = columns(warehouse, "app_launched")
    assert "ct_connected_to_wifi" in launched and "ct_connected_to_wi_fi" not in launched

    expected: dict[tuple[str, ...], int] = defaultdict(int)
    wifi: dict[bool, int] = defaultdict(int)
    for record in records_of(sample_dir):
        device = record.get("deviceInfo") or {}
        if device.get("make"):
            width, height = device["dimensions"]["width"], device["dimensions"]["height"]
            values = (device["make"], device["osVersion"], device["appVersion"], device["sdkVersion"], device["dpi"])
            expected[(*values, width, height)] += 1
        props = record["eventProps"]
        for key in ("CT Connected To WiFi", "ct_connected_to_wifi"):
            if key in props:
                wifi[props[key]] += 1
    rows = query(
        warehouse,
        f"select context_device_manufacturer, context_os_version, context_app_version, context_device_sdk_version, "
        f"context_screen_density, context_screen_width, context_screen_height, count(*) from {SCHEMA}.tracks "
        "where context_device_manufacturer is not null group by 1, 2, 3, 4, 5, 6, 7",
    )
    assert {(*row[:4], round(row[4] * 160), row[5], row[6]): row[7] for row in rows} == expected
    assert (
        dict(query(warehouse, f"select ct_connected_to_wifi, count(*) from {SCHEMA}.app_launched group by 1")) == wifi
    )
    [(library, versions)] = query(
        warehouse, f"select min(context_library_name), min(context_library_version) from {SCHEMA}.tracks"
    )
    assert (library, versions) == ("clevertap-export", "1700000001")  # the sample's export request id


def test_spellings_tokens_and_numbers_each_have_one_column_and_lose_nothing(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    full = event("App Launched", 20240312094500, {"CT Connected To WiFi": True}, objectId="__g1", push_token="fcm:a")
    full["deviceInfo"] = {
        "make": "samsung",
        "model": "SM-G991B",
        "appVersion": "4.2.0",
        "sdkVersion": 60102,
        "osVersion": "14",
        "dpi": 420,
        "dimensions": {"width": 1080, "height": 2400, "unit": "px"},
    }
    odd = event("App Launched", 20240312094501, {"ct_connected_to_wifi": False}, objectId="__g2")
    odd["deviceInfo"] = {"dpi": "xhdpi", "sdkVersion": "6.1.2", "dimensions": {"width": 2.63, "unit": "in"}}
    both = event(
        "App Launched",
        20240312094502,
        {"CT Connected To WiFi": True, "ct_connected_to_wifi": False},
        objectId="__g3",
        push_token="fcm:profile",
    )
    both["deviceInfo"] = {"token": "fcm:device"}
    export_file("App Launched", [full, odd, both])

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert not summary.problems and summary.total("rows_rejected") == 0
    assert "ct_connected_to_wi_fi" not in columns(warehouse, "app_launched")
    rows = query(
        warehouse,
        "select anonymous_id, ct_connected_to_wifi, context_device_token, context_device_manufacturer, "
        "context_device_sdk_version, context_screen_density, context_screen_width, context_screen_height, "
        "context_device_dimensions_unit, sent_at, context_library_version, _unplaced_values "
        f"from {SCHEMA}.app_launched order by anonymous_id",
    )
    run_time = datetime.fromtimestamp(1710000000, UTC)  # the export_file fixture's run time
    unplaced = {row[0]: sorted((e["path"], e["value"]) for e in json.loads(row[-1] or "[]")) for row in rows}
    assert [row[:-1] for row in rows] == [
        ("__g1", True, "fcm:a", "samsung", 60102, 420 / 160, 1080.0, 2400.0, "px", run_time, "1700000001"),
        ("__g2", False, None, None, None, None, 2.63, None, "in", run_time, "1700000001"),
        ("__g3", True, "fcm:profile", None, None, None, None, None, None, run_time, "1700000001"),
    ]
    assert unplaced == {
        "__g1": [],
        "__g2": [("/deviceInfo/dpi", "xhdpi"), ("/deviceInfo/sdkVersion", "6.1.2")],
        "__g3": [("/deviceInfo/token", "fcm:device"), ("/eventProps/ct_connected_to_wifi", False)],
    }
    assert summary.unplaced_by_table == {"app_launched": 4}


def test_sent_at_is_null_when_the_file_name_has_no_run_time(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file("App Launched", [event("App Launched", 20240312094500, {"n": 1})])
    write_export(tmp_path / "export" / "web events.json.gz", [event("Page Viewed", 20240312094501, {"n": 2})])
    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)
    assert not summary.problems and summary.total("rows_inserted") == 2

    assert not {"sent_at", "context_library_version"} & set(columns(warehouse, "page_viewed"))
    assert {"sent_at", "context_library_version"} <= set(columns(warehouse, "app_launched"))
    assert columns(warehouse, "tracks")["sent_at"] == "TIMESTAMP WITH TIME ZONE"
    rows = query(
        warehouse,
        f"select event, sent_at, context_library_name, context_library_version from {SCHEMA}.tracks order by event",
    )
    assert rows == [
        ("app_launched", datetime.fromtimestamp(1710000000, UTC), "clevertap-export", "1700000001"),
        ("page_viewed", None, "clevertap-export", None),
    ]
