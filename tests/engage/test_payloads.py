"""Identify payloads as Engage sends them, built in SQL, checked against the Python reference."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa

from ctsync.destinations import SegmentHttpClient
from ctsync.engage.payloads import (
    DEFAULT_SPACE_ID,
    LIBRARY_VERSION,
    computation_id,
    identify_payload,
    iso_timestamp,
    payload_constants,
    payload_context_sql,
    payload_sql,
    space_id_from,
)
from ctsync.engage.run import sync_destination
from ctsync.engage.state import Dialect
from ctsync.errors import CtsyncError
from ctsync.warehouse.state import state_engine
from tests.engage.conftest import EngageData, users
from tests.servers.segment import SegmentServer

COMPUTATION = "(select cast(:cls as varchar) as computation_class, cast(:key as varchar) as computation_key)"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

BACKENDS = ("duckdb", "postgres")


@pytest.mark.parametrize(
    ("computation_class", "key", "value", "user_id", "anonymous_id"),
    [
        ("audience", "first_time_shopper", True, "u123", "a1"),
        ("audience", "dormant_shoppers", False, "u123", None),
        ("audience", "visitors", True, None, "anon-1"),
        ("trait", "total_revenue_180_days", 450.5, "u1", None),
        ("trait", "favourite_quote", 'say "hi"\\ \n ünïcode ✓', 'user "quoted"', None),
        ("trait", "gone", None, "u1", "a1"),
        ("trait", "tags", ["a", "b"], "u1", None),
    ],
)
def test_sql_payload_matches_the_python_reference(
    warehouse: str, computation_class: str, key: str, value: Any, user_id: str | None, anonymous_id: str | None
) -> None:
    engine = state_engine(warehouse)
    with engine.connect() as conn:
        dialect = Dialect.of(conn)
        built = conn.execute(
            sa.text(
                f"select {payload_sql(dialect, 'c', 'k')} from (select cast(:cls as varchar) as computation_class, "
                "cast(:key as varchar) as computation_key, cast(:user_id as varchar) as user_id, "
                "cast(:anonymous_id as varchar) as anonymous_id, cast(:value as varchar) as value, "
                "cast(:message_id as varchar) as message_id) as c "
                f"inner join ({payload_context_sql(dialect, COMPUTATION)}) as k "
                "on k.computation_class = c.computation_class and k.computation_key = c.computation_key"
            ),
            {
                "cls": computation_class,
                "key": key,
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "value": json.dumps(value),
                "message_id": "personas_0123",
                **payload_constants("spa_x", "2024-05-03T19:42:50.066Z"),
            },
        ).scalar_one()
    engine.dispose()
    expected = identify_payload(
        computation_class=computation_class,
        computation_key=key,
        value=value,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id="personas_0123",
        timestamp="2024-05-03T19:42:50.066Z",
        space_id="spa_x",
    )
    assert json.loads(built) == expected
    assert list(json.loads(built)) == list(expected)  # same key order too


def test_payload_shape_on_the_segment_server(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("first_time_shopper", users(123))

    sync_destination(
        "segment", warehouse=engage.warehouse, destination=segment, environ={"CTSYNC_SPACE_ID": "spa_o1E9"}
    )

    (message,) = segment_server.messages
    assert list(message) == ["type", "userId", "anonymousId", "traits", "context", "messageId", "timestamp"]
    assert message["type"] == "identify"
    assert (message["userId"], message["anonymousId"]) == ("u123", "a123")
    assert message["traits"] == {"first_time_shopper": True}
    assert message["context"] == {
        "personas": {
            "computation_class": "audience",
            "computation_id": computation_id("audience", "first_time_shopper"),
            "computation_key": "first_time_shopper",
            "namespace": "spa_o1E9",
            "space_id": "spa_o1E9",
        },
        "library": {"name": "ctsync", "version": LIBRARY_VERSION},
    }
    assert re.fullmatch(r"personas_[0-9a-f]{32}", message["messageId"])
    assert TIMESTAMP.fullmatch(message["timestamp"])
    (row,) = engage.outbox()
    assert json.loads(row["payload"]) == message  # stored before it was sent, exactly as sent


def test_the_library_version_is_the_installed_one() -> None:
    import ctsync

    assert LIBRARY_VERSION == ctsync.__version__


def test_computation_ids_are_deterministic_per_class_and_key() -> None:
    assert computation_id("audience", "vip") == computation_id("audience", "vip")
    assert computation_id("audience", "vip").startswith("aud_")
    assert computation_id("trait", "vip").startswith("tra_")
    assert computation_id("audience", "vip") != computation_id("audience", "vip2")
    assert len(computation_id("trait", "x")) == 28


def test_space_id_comes_from_the_environment_or_the_default() -> None:
    assert space_id_from({}) == DEFAULT_SPACE_ID
    assert space_id_from({"CTSYNC_SPACE_ID": " spa_abc "}) == "spa_abc"
    assert space_id_from({"CTSYNC_SPACE_ID": "spa_abc"}, "spa_explicit") == "spa_explicit"
    with pytest.raises(CtsyncError, match="CTSYNC_SPACE_ID"):
        space_id_from({"CTSYNC_SPACE_ID": 'spa"; drop'})


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    from datetime import datetime, timedelta, timezone

    moment = datetime(2024, 5, 3, 21, 42, 50, 66179, tzinfo=timezone(timedelta(hours=2)))
    assert iso_timestamp(moment) == "2024-05-03T19:42:50.066Z"
