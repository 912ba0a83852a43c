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
    engage_integrations,
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
ORIGINAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

BACKENDS = ("duckdb", "postgres")


@pytest.mark.parametrize(
    ("computation_class", "key", "value", "user_id", "anonymous_id", "email"),
    [
        ("audience", "first_time_shopper", True, "u123", "a1", "jane@example.com"),
        ("audience", "dormant_shoppers", False, "u123", None, None),
        ("audience", "visitors", True, None, "anon-1", None),
        ("trait", "total_revenue_180_days", 450.5, "u1", None, 'odd"quote@example.com'),
        ("trait", "favourite_quote", 'say "hi"\\ \n ünïcode ✓', 'user "quoted"', None, None),
        ("trait", "gone", None, "u1", "a1", "x@example.com"),
        ("trait", "tags", ["a", "b"], "u1", None, None),
        ("trait", "email", "computed@example.com", "u1", None, "profile@example.com"),
    ],
)
def test_sql_payload_matches_the_python_reference(
    warehouse: str,
    computation_class: str,
    key: str,
    value: Any,
    user_id: str | None,
    anonymous_id: str | None,
    email: str | None,
) -> None:
    engine = state_engine(warehouse)
    with engine.connect() as conn:
        dialect = Dialect.of(conn)
        built = conn.execute(
            sa.text(
                f"select {payload_sql(dialect, 'c', 'k', 'e.email')} from ("
                "select cast(:cls as varchar) as computation_class, "
                "cast(:key as varchar) as computation_key, cast(:user_id as varchar) as user_id, "
                "cast(:anonymous_id as varchar) as anonymous_id, cast(:value as varchar) as value, "
                "cast(:message_id as varchar) as message_id) as c "
                f"inner join ({payload_context_sql(dialect, COMPUTATION)}) as k "
                "on k.computation_class = c.computation_class and k.computation_key = c.computation_key "
                "cross join (select cast(:email as varchar) as email) as e"
            ).bindparams(sa.bindparam("email", email)),
            {
                "cls": computation_class,
                "key": key,
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "value": json.dumps(value),
                "message_id": "personas_0123",
                **payload_constants(
                    "spa_x",
                    "2024-05-03T19:42:50.066Z",
                    original_timestamp="2024-05-03T19:42:50.066179Z",
                    integrations=engage_integrations("clevertap"),
                ),
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
        original_timestamp="2024-05-03T19:42:50.066179Z",
        space_id="spa_x",
        email=email,
        integrations=engage_integrations("clevertap"),
    )
    assert json.loads(built) == expected
    assert list(json.loads(built)) == list(expected)  # same key order too


def test_payload_shape_on_the_segment_server(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("first_time_shopper", users(123, 124))
    engage.emails({"u123": "jane@example.com", "u999": "other@example.com"})

    sync_destination(
        "segment", warehouse=engage.warehouse, destination=segment, environ={"CTSYNC_SPACE_ID": "spa_o1E9"}
    )

    message, without_email = sorted(segment_server.messages, key=lambda m: m["userId"])
    assert list(message) == [
        "type",
        "userId",
        "anonymousId",
        "traits",
        "context",
        "integrations",
        "messageId",
        "timestamp",
        "originalTimestamp",
    ]
    assert message["type"] == "identify"
    assert (message["userId"], message["anonymousId"]) == ("u123", "a123")
    assert message["traits"] == {"first_time_shopper": True, "email": "jane@example.com"}
    assert without_email["traits"] == {"first_time_shopper": True}  # no email known for u124
    assert message["integrations"] == {"All": True, "Warehouses": {"all": False}}
    assert ORIGINAL_TIMESTAMP.fullmatch(message["originalTimestamp"])
    assert message["originalTimestamp"][:23] == message["timestamp"][:23]
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
    stored = {json.loads(row["payload"])["messageId"]: json.loads(row["payload"]) for row in engage.outbox()}
    assert stored[message["messageId"]] == message  # stored before it was sent, exactly as sent


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


def test_a_value_clevertap_would_refuse_is_left_out_and_counted_in_the_run(
    engage: EngageData, clevertap: Any, clevertap_server: Any
) -> None:
    engage.trait("gender", {("u1", None): "other", ("u2", None): "female"}, value_type="string")
    engage.emails({"u1": "one@example.com"})

    summary = sync_destination("clevertap", warehouse=engage.warehouse, destination=clevertap)

    assert (summary.sent, summary.rejected, summary.values_left_out) == (2, 0, 1)
    assert summary.left_out_reasons == [
        ("Gender: the gender is neither M nor F (CleverTap refuses other values with 514)", 1)
    ]
    assert clevertap_server.profile(identity="u1") == {"Email": "one@example.com"}
    assert clevertap_server.profile(identity="u2") == {"Gender": "F"}
    (run,) = engage.runs()
    assert run["values_left_out"] == 1
