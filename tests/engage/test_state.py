"""The sync tables: created on first use, new columns added to tables of an earlier version."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ctsync.destinations import SegmentHttpClient
from ctsync.engage.run import sync_destination
from ctsync.engage.state import Dialect, create_state_tables
from ctsync.errors import CtsyncError
from ctsync.warehouse.state import state_engine
from tests.engage.conftest import EngageData, users

BACKENDS = ("duckdb", "postgres")


def test_tables_of_an_earlier_version_get_the_new_columns(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(1))
    sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    engage.sql("alter table ctsync.sync_outbox drop column unanswered")

    engage.audience("vip", users(1, 2))
    summary = sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})

    assert summary.sent == 1
    assert [row["unanswered"] for row in engage.outbox()] == [0, 0]


def test_creating_the_tables_twice_changes_nothing(engage: EngageData) -> None:
    engine = state_engine(engage.warehouse)
    try:
        with engine.begin() as conn:
            create_state_tables(conn)
        with engine.begin() as conn:
            create_state_tables(conn)
            columns = conn.execute(
                sa.text(
                    "select count(*) from information_schema.columns "
                    "where table_schema = 'ctsync' and table_name = 'sync_outbox'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert columns == 22


def test_only_duckdb_and_postgresql_hold_the_state() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(CtsyncError, match="DuckDB or PostgreSQL"):
        Dialect.of(conn)
