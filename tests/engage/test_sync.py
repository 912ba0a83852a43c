"""What a destination receives: first syncs, reruns, entries and exits, traits, retired and anonymous."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from ctsync.destinations import Destination, SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from ctsync.errors import CtsyncError
from tests.engage.conftest import EngageData, traits_sent, users
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def run(engage: EngageData, destination: Destination, **options: Any) -> SyncSummary:
    return sync_destination(
        destination.name, warehouse=engage.warehouse, destination=destination, environ={}, **options
    )


def test_first_sync_sends_exactly_one_true_per_member(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("first_time_shopper", users(1, 2, 3))
    engage.audience("dormant_shoppers", users(3, 4))

    summary = run(engage, segment)

    assert (summary.entered, summary.exited, summary.sent, summary.status) == (5, 0, 5, "succeeded")
    assert Counter(traits_sent(segment_server, "first_time_shopper")) == Counter(
        [("u1", "a1", True), ("u2", "a2", True), ("u3", "a3", True)]
    )
    assert Counter(traits_sent(segment_server, "dormant_shoppers")) == Counter([("u3", "a3", True), ("u4", "a4", True)])
    assert len(set(segment_server.message_ids())) == 5


def test_unchanged_rerun_sends_nothing(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("first_time_shopper", users(1, 2))
    engage.trait("total_revenue_180_days", {("u1", "a1"): 450.0})
    run(engage, segment)
    requests = len(segment_server.requests)

    again = run(engage, segment)

    assert (again.changes, again.sent, again.status) == (0, 0, "succeeded")
    assert len(segment_server.requests) == requests


def test_changed_memberships_send_exactly_the_entries_and_exits(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("first_time_shopper", users(1, 2, 3))
    run(engage, segment)
    before = len(segment_server.messages)

    engage.audience("first_time_shopper", users(2, 3, 4, 5))
    summary = run(engage, segment)

    assert (summary.entered, summary.exited, summary.sent) == (2, 1, 3)
    assert Counter(traits_sent(segment_server, "first_time_shopper")[before:]) == Counter(
        [("u1", "a1", False), ("u4", "a4", True), ("u5", "a5", True)]
    )
    assert segment_server.traits_by_user_id["u1"] == {"first_time_shopper": False}


def test_exit_then_reentry_uses_a_new_message_id(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    run(engage, segment)
    engage.audience("vip", [])
    run(engage, segment)
    engage.audience("vip", users(1))
    run(engage, segment)

    assert [value for _, _, value in traits_sent(segment_server, "vip")] == [True, False, True]
    assert len(set(segment_server.message_ids())) == 3  # a repeat would be dropped by messageId dedup
    assert segment_server.traits_by_user_id["u1"] == {"vip": True}


def test_traits_are_sent_when_their_value_changes_and_null_when_gone(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("total_revenue_180_days", {("u1", "a1"): 450.0, ("u2", None): 10, ("u3", None): 3})
    engage.trait("favourite_colour", {("u1", "a1"): "blue"}, value_type="string")
    first = run(engage, segment)
    assert (first.traits_changed, first.sent) == (4, 4)

    engage.trait("total_revenue_180_days", {("u1", "a1"): 450.0, ("u2", None): 12})
    engage.trait("favourite_colour", {("u1", "a1"): "blue"}, value_type="string")
    second = run(engage, segment)

    assert (second.traits_changed, second.sent) == (2, 2)
    assert Counter(traits_sent(segment_server, "total_revenue_180_days")[3:]) == Counter(
        [("u2", None, 12), ("u3", None, None)]
    )
    assert segment_server.traits_by_user_id["u1"] == {"total_revenue_180_days": 450.0, "favourite_colour": "blue"}
    assert engage.state("segment")[("total_revenue_180_days", "user_id", "u3")][0] is None
    assert run(engage, segment).sent == 0  # a confirmed null stays quiet


def test_trait_payloads_carry_the_computation_context(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("last_seen", {("u1", None): "2024-05-03T19:42:50Z"}, value_type="timestamp")

    run(engage, segment)

    (message,) = segment_server.messages
    assert message["traits"] == {"last_seen": "2024-05-03T19:42:50Z"}
    assert message["context"]["personas"]["computation_class"] == "trait"
    assert message["context"]["personas"]["computation_id"].startswith("tra_")


def test_retired_audience_sends_nothing_and_is_reported(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("summer_sale", users(1, 2))
    engage.audience("vip", users(1))
    engage.trait("ltv", {("u1", None): 5})
    run(engage, segment)
    before = len(segment_server.messages)

    engage.retire_audience("summer_sale")
    engage.retire_trait("ltv")
    summary = run(engage, segment)

    assert len(segment_server.messages) == before
    assert (summary.exited, summary.sent) == (0, 0)
    assert summary.retired_audiences == ["summer_sale"]
    assert summary.retired_traits == ["ltv"]
    assert engage.runs()[-1]["retired_audiences"] == 1
    assert segment_server.traits_by_user_id["u2"] == {"summer_sale": True}  # Engage leaves the last value too


def test_a_recreated_audience_with_the_same_key_continues_from_the_confirmed_state(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2))
    run(engage, segment)
    engage.retire_audience("vip")
    run(engage, segment)

    engage.audience("vip", users(2, 3))
    summary = run(engage, segment)

    assert (summary.entered, summary.exited) == (1, 1)
    assert segment_server.traits_by_user_id["u1"] == {"vip": False}


def test_anonymous_only_people_are_synced_only_for_audiences_that_include_them(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    anonymous_only = [(None, "anon-1"), (None, "anon-2")]
    engage.audience("visitors", [*users(1), *anonymous_only], include_anonymous=True)
    engage.audience("buyers", [*users(1), *anonymous_only])  # dbt should not emit these; guarded anyway

    summary = run(engage, segment)

    assert (summary.entered, summary.sent) == (4, 4)
    assert Counter(traits_sent(segment_server, "visitors")) == Counter(
        [("u1", "a1", True), (None, "anon-1", True), (None, "anon-2", True)]
    )
    assert traits_sent(segment_server, "buyers") == [("u1", "a1", True)]
    anonymous = [m for m in segment_server.messages if "userId" not in m]
    assert {m["anonymousId"] for m in anonymous} == {"anon-1", "anon-2"}
    assert engage.state()[("visitors", "anonymous_id", "anon-1")][0] is True


def test_anonymous_only_trait_values_follow_the_trait_setting(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("pages_viewed", {("u1", "a1"): 3, (None, "anon-1"): 7})
    engage.trait("sessions", {("u1", "a1"): 1, (None, "anon-1"): 2})
    first = run(engage, segment)  # no include_anonymous column: what dbt published is synced
    assert Counter(traits_sent(segment_server, "pages_viewed")) == Counter([("u1", "a1", 3), (None, "anon-1", 7)])

    engage.sql("alter table engage.engage_traits add column include_anonymous boolean")
    engage.sql("update engage.engage_traits set include_anonymous = (trait_key = 'sessions')")
    second = run(engage, segment)

    assert (first.traits_changed, second.traits_changed) == (4, 1)
    assert traits_sent(segment_server, "pages_viewed")[-1] == (None, "anon-1", None)  # no longer allowed
    assert segment_server.traits_by_anonymous_id["anon-1"] == {"pages_viewed": None, "sessions": 2}


def test_a_person_leaving_only_by_the_anonymous_rule_gets_an_exit(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("visitors", [(None, "anon-1")], include_anonymous=True)
    run(engage, segment)

    engage.audience("visitors", [(None, "anon-1")], include_anonymous=False)
    summary = run(engage, segment)

    assert summary.exited == 1
    assert segment_server.traits_by_anonymous_id["anon-1"] == {"visitors": False}


def test_duplicate_rows_from_the_model_send_one_message(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", [("u1", "a1"), ("u1", "a1"), ("u1", None), ("", "a2"), (None, None)])

    summary = run(engage, segment)

    assert summary.sent == 1
    assert traits_sent(segment_server, "vip") == [("u1", "a1", True)]


def test_duplicate_rows_of_a_later_entry_send_one_message_with_the_largest_anonymous_id(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", [("u2", None)])
    run(engage, segment)

    engage.audience("vip", [("u2", None), ("u1", "a1"), ("u1", None), ("u1", "a0"), ("u1", "a1")])
    summary = run(engage, segment)

    assert (summary.entered, summary.exited) == (1, 0)
    assert traits_sent(segment_server, "vip") == [("u2", None, True), ("u1", "a1", True)]


def test_duplicate_trait_rows_of_one_person_count_as_their_largest_value(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("plan", {("u1", "a1"): "pro"}, value_type="string")
    run(engage, segment)

    engage.trait("plan", {("u1", "a1"): "pro", ("u1", None): "basic"}, value_type="string")  # "pro" > "basic"
    unchanged = run(engage, segment)
    engage.trait("plan", {("u1", "a1"): "basic", ("u1", None): "team"}, value_type="string")
    changed = run(engage, segment)

    assert (unchanged.traits_changed, changed.traits_changed) == (0, 1)
    assert traits_sent(segment_server, "plan") == [("u1", "a1", "pro"), ("u1", "a1", "team")]


def test_missing_dbt_tables_are_a_clear_error(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.sql("drop table engage.engage_traits")

    with pytest.raises(CtsyncError, match=r"engage\.engage_traits.*dbt build"):
        run(engage, segment)


def test_missing_warehouse_is_a_clear_error(tmp_path: Any, segment: SegmentHttpClient) -> None:
    with pytest.raises(CtsyncError, match="no warehouse"):
        sync_destination("segment", warehouse=str(tmp_path / "nope.duckdb"), destination=segment, environ={})


def test_every_run_is_recorded_with_its_counts(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(1, 2))
    engage.trait("ltv", {("u1", None): 1})
    run(engage, segment)
    engage.audience("vip", users(2, 3))
    run(engage, segment)

    first, second = engage.runs()
    assert (first["entered"], first["traits_changed"], first["sent"], first["status"]) == (2, 1, 3, "succeeded")
    assert (second["entered"], second["exited"], second["sent"], second["dry_run"]) == (1, 1, 2, False)
    assert second["finished_at"] >= second["started_at"]
