"""A warehouse an earlier ctsync loaded (CleverTap's device column names, as text; two WiFi columns) is
upgraded by the next load: nothing is lost, and later loads append to Segment's columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.warehouse.conftest import columns, is_duckdb, query
from tests.warehouse.test_segment_columns import OLD_NAMES, SESSIONS_SQL, execute

SCHEMA = "clevertap_prod"
OPTIONS = LoadOptions(nickname="CleverTap_Prod")

TODAY_TO_OLD = {
    "context_device_manufacturer": ("context_device_make", None),
    "context_app_version": ("context_device_app_version", None),
    "context_os_version": ("context_device_os_version", None),
    "context_device_token": ("context_traits_push_token", None),
    "context_device_sdk_version": ("context_device_sdk_version", "cast({} as varchar)"),
    "context_screen_width": ("context_device_dimensions_width", "cast(cast({} as bigint) as varchar)"),
    "context_screen_height": ("context_device_dimensions_height", "cast(cast({} as bigint) as varchar)"),
    "context_screen_density": ("context_device_dpi", "cast(cast(round({} * 160) as bigint) as varchar)"),
}
"""Today's column -> the column an earlier ctsync wrote (and how its text was written)."""

STANDARD = (
    "id",
    "user_id",
    "anonymous_id",
    "event",
    "event_text",
    "timestamp",
    "original_timestamp",
    "received_at",
    "uuid_ts",
)
"""The standard columns an earlier ctsync wrote (no sent_at, no context_library_*)."""

DEVICE_SQL = (
    "select id, context_device_manufacturer, context_app_version, context_os_version, context_device_token, "
    f"context_device_sdk_version, context_screen_width, context_screen_height, context_screen_density "
    f"from {SCHEMA}.tracks"
)


def write_old_layout(warehouse: str) -> None:
    """Turn a warehouse loaded today into the one an earlier ctsync wrote from the same files: its column
    names and text types, the spaced WiFi spelling in a column of its own, and its ``tracks`` view."""
    tables = [
        str(row[0])
        for row in query(
            warehouse,
            "select distinct table_name from information_schema.columns "
            "where table_schema = ? and column_name = 'event_text' and table_name <> 'tracks'",
            [SCHEMA],
        )
    ]
    statements = [f"drop view {SCHEMA}.tracks"]
    for table in tables:
        present = columns(warehouse, table)
        for today, (old, written) in TODAY_TO_OLD.items():
            if today not in present:
                continue
            if written is not None:
                statements.append(
                    f"alter table {SCHEMA}.{table} alter column {today} type varchar using {written.format(today)}"
                )
            if old != today:
                statements.append(f"alter table {SCHEMA}.{table} rename column {today} to {old}")
        for column in ("sent_at", "context_library_name", "context_library_version"):
            statements.append(f"alter table {SCHEMA}.{table} drop column {column}")
    # Files with the spaced spelling filled a column of their own.
    statements += [
        f"alter table {SCHEMA}.app_launched add column ct_connected_to_wi_fi boolean",
        f"update {SCHEMA}.app_launched set ct_connected_to_wi_fi = ct_connected_to_wifi, ct_connected_to_wifi = null "
        "where ct_session_id % 2 = 0",
    ]
    execute(warehouse, *statements)
    context = sorted(
        {column for table in tables for column in columns(warehouse, table) if column.startswith("context_")}
    )
    selects = []
    for table in tables:
        present = columns(warehouse, table)
        parts = [f'"{c}"' if c in present else f'null::varchar as "{c}"' for c in (*STANDARD, *context)]
        selects.append(f"select {', '.join(parts)} from {SCHEMA}.{table}")
    execute(warehouse, f"create view {SCHEMA}.tracks as " + " union all ".join(selects))


def test_the_next_load_moves_an_earlier_ctsyncs_columns_to_segments_names(tmp_path: Path, warehouse: str) -> None:
    first, later = tmp_path / "first", tmp_path / "later"
    write_sample_export(first, events=1500, users=120, seed=21, end=datetime(2026, 10, 1, tzinfo=UTC))
    write_sample_export(later, events=600, users=60, seed=22, end=datetime(2026, 11, 1, tzinfo=UTC))
    assert not load_export_files([str(first)], OPTIONS, warehouse=warehouse).problems
    expected = {row[0]: row[1:] for row in query(warehouse, DEVICE_SQL)}
    wifi = dict(query(warehouse, f"select id, ct_connected_to_wifi from {SCHEMA}.app_launched"))

    write_old_layout(warehouse)
    assert {"context_device_make", "context_device_dpi"} <= set(columns(warehouse, "tracks"))
    assert "ct_connected_to_wi_fi" in columns(warehouse, "app_launched")
    # Two values the new columns cannot take: a dpi that is no number, a row holding both WiFi spellings.
    [(bad_dpi,)] = query(
        warehouse,
        f"select min(id) from {SCHEMA}.app_launched "
        "where context_device_dpi is not null and ct_connected_to_wi_fi is null",
    )
    [(conflict, spaced)] = query(
        warehouse,
        f"select id, ct_connected_to_wi_fi from {SCHEMA}.app_launched where ct_connected_to_wi_fi is not null "
        "order by id limit 1",
    )
    execute(
        warehouse,
        f"update {SCHEMA}.app_launched set context_device_dpi = 'xhdpi' where id = '{bad_dpi}'",
        f"update {SCHEMA}.app_launched set ct_connected_to_wifi = {'false' if spaced else 'true'} "
        f"where id = '{conflict}'",
    )
    if not is_duckdb(warehouse):  # views over the tables: PostgreSQL will not change a column they read
        execute(
            warehouse,
            "create schema analytics",
            f"create view analytics.devices as select id, context_device_make, context_device_dpi "
            f"from {SCHEMA}.app_launched",
            "create view analytics.apple_devices as "
            "select * from analytics.devices where context_device_make = 'Apple'",
            f"create view analytics.stg_tracks as select id, context_device_make from {SCHEMA}.tracks",
            f"create view analytics.wifi as select id, ct_connected_to_wi_fi from {SCHEMA}.app_launched",
        )

    summary = load_export_files([str(later)], OPTIONS, warehouse=warehouse)

    assert not summary.problems and summary.total("rows_inserted") > 0
    assert "app_launched.context_device_make -> context_device_manufacturer" in summary.upgrade.moved
    assert "app_launched.ct_connected_to_wi_fi -> ct_connected_to_wifi" in summary.upgrade.moved
    assert summary.upgrade.unplaced_values == 2
    for table in ("tracks", "app_launched", "charged", "notification_clicked"):
        present = columns(warehouse, table)
        assert not OLD_NAMES & set(present), table
    assert columns(warehouse, "app_launched")["context_screen_density"] == "DOUBLE"
    assert columns(warehouse, "app_launched")["context_device_sdk_version"] == "BIGINT"

    # Every value the earlier layout held is where a load today puts it.
    after = {row[0]: row[1:] for row in query(warehouse, DEVICE_SQL)}
    expected[bad_dpi] = (*expected[bad_dpi][:-1], None)
    assert {event_id: after[event_id] for event_id in expected} == expected
    after_wifi = dict(query(warehouse, f"select id, ct_connected_to_wifi from {SCHEMA}.app_launched"))
    wifi[conflict] = not spaced
    assert {event_id: after_wifi[event_id] for event_id in wifi} == wifi
    unplaced = dict(
        query(warehouse, f"select id, _unplaced_values from {SCHEMA}.app_launched where _unplaced_values is not null")
    )
    entries = {event_id: json.loads(text) for event_id, text in unplaced.items()}
    assert {event_id: [(e["path"], e["value"]) for e in found] for event_id, found in entries.items()} == {
        bad_dpi: [(None, "xhdpi")],
        conflict: [(None, spaced)],
    }
    assert "context_device_dpi" in entries[bad_dpi][0]["reason"]
    assert "ct_connected_to_wi_fi" in entries[conflict][0]["reason"]

    # Later loads append to Segment's columns, and Segment SQL runs over old and new rows alike.
    # (Rows loaded before the upgrade have no sent_at: nothing recorded which file they came from.)
    [(total, with_sent_at, new_manufacturers)] = query(
        warehouse,
        f"select count(*), count(sent_at), count(case when sent_at is not null then context_device_manufacturer end) "
        f"from {SCHEMA}.tracks",
    )
    new_events = sum(count for table, count in summary.inserted_by_event.items() if table != "identifies")
    assert total == len(expected) + new_events
    assert with_sent_at == new_events and new_manufacturers > 0
    sessions = query(warehouse, SESSIONS_SQL)
    assert sum(row[7] for row in sessions) == total

    if not is_duckdb(warehouse):
        assert sorted(summary.upgrade.views_left_out) == ["analytics.stg_tracks", "analytics.wifi"]
        devices = dict(query(warehouse, "select id, context_device_make from analytics.devices"))
        assert devices[bad_dpi] == expected[bad_dpi][0]
        assert query(warehouse, "select count(*) from analytics.apple_devices")[0][0] > 0

    again = load_export_files([str(later)], OPTIONS, warehouse=warehouse)
    assert again.upgrade.moved == [] and again.total("rows_inserted") == 0


@pytest.mark.parametrize("folded", [False, True])
def test_identifies_and_users_fold_the_wifi_spelling_too(tmp_path: Path, warehouse: str, folded: bool) -> None:
    """Profile traits follow the same spelling rule: an old ``ct_connected_to_wi_fi`` trait column moves."""
    profiles = tmp_path / "export" / "100000000-1700000001-1710000000-3-json"
    profiles.parent.mkdir(parents=True)
    spelled = {"identity": "u1", "CT Connected To WiFi": True}
    profiles.write_text(json.dumps(spelled) + "\n")
    assert not load_export_files([str(profiles)], OPTIONS, warehouse=warehouse).problems
    assert columns(warehouse, "users")["ct_connected_to_wifi"] == "BOOLEAN"
    statements = []
    for table in ("identifies", "users"):
        statements.append(f"alter table {SCHEMA}.{table} rename column ct_connected_to_wifi to ct_connected_to_wi_fi")
        if folded:  # a later file of the earlier ctsync had the snake spelling
            statements.append(f"alter table {SCHEMA}.{table} add column ct_connected_to_wifi boolean")
    execute(warehouse, *statements)

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)

    assert "users.ct_connected_to_wi_fi -> ct_connected_to_wifi" in summary.upgrade.moved
    for table in ("identifies", "users"):
        assert "ct_connected_to_wi_fi" not in columns(warehouse, table)
        assert query(warehouse, f"select ct_connected_to_wifi from {SCHEMA}.{table}") == [(True,)]
