"""Rejections, 429/5xx, timeouts and dropped connections: nothing unacknowledged is confirmed,
and the next run finishes the job with the same messageIds."""

from __future__ import annotations

import json
from typing import Any

from ctsync.destinations import CleverTapUploadClient, Destination, SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from tests.engage.conftest import EngageData, clevertap_client, segment_client, traits_sent, users
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def run(engage: EngageData, destination: Destination, **options: Any) -> SyncSummary:
    return sync_destination(
        destination.name, warehouse=engage.warehouse, destination=destination, environ={}, **options
    )


def outbox_by_person(engage: EngageData, key: str) -> dict[str, dict[str, Any]]:
    return {row["person_id"]: row for row in engage.outbox() if row["computation_key"] == key}


def assert_confirmed_were_acknowledged(engage: EngageData, server: SegmentServer) -> None:
    accepted = {m["messageId"]: m for m in server.messages}
    for (key, _, person), (value, message_id) in engage.state().items():
        assert message_id in accepted, f"{key}/{person} confirmed by {message_id}, which the server never accepted"
        assert accepted[message_id]["traits"][key] == value


def test_rejected_records_are_not_confirmed_and_are_retried_with_the_same_message_id(
    engage: EngageData, clevertap_server: CleverTapServer, clevertap: CleverTapUploadClient
) -> None:
    clevertap_server.reject_identities = {"u2"}
    engage.audience("vip", users(1, 2, 3))

    first = run(engage, clevertap)

    assert (first.sent, first.rejected, first.status) == (2, 1, "incomplete")
    assert first.rejections[0][0] == "516"
    assert ("vip", "user_id", "u2") not in engage.state()
    rejected = outbox_by_person(engage, "vip")["u2"]
    assert (rejected["status"], rejected["last_code"]) == ("rejected", "516")
    assert "Rejected by the test server" in rejected["last_reason"]
    assert clevertap_server.profile(identity="u2") is None

    still = run(engage, clevertap)  # the destination still refuses: rejected again, still not confirmed
    assert (still.entered, still.sent, still.rejected, still.retried) == (1, 0, 1, 1)
    assert outbox_by_person(engage, "vip")["u2"]["message_id"] == rejected["message_id"]

    clevertap_server.reject_identities = set()
    fixed = run(engage, clevertap)

    assert (fixed.sent, fixed.rejected, fixed.retried, fixed.status) == (1, 0, 1, "succeeded")
    row = outbox_by_person(engage, "vip")["u2"]
    assert (row["message_id"], row["status"], row["handoffs"]) == (rejected["message_id"], "sent", 3)
    assert engage.state()[("vip", "user_id", "u2")] == (True, rejected["message_id"])
    assert clevertap_server.profile(identity="u2") == {"vip": True, "Identity": "u2"}


def test_a_rejected_change_that_is_no_longer_wanted_is_superseded(
    engage: EngageData, clevertap_server: CleverTapServer, clevertap: CleverTapUploadClient
) -> None:
    clevertap_server.reject_identities = {"u2"}
    engage.audience("vip", users(1, 2))
    run(engage, clevertap)
    clevertap_server.reject_identities = set()

    engage.audience("vip", users(1))
    summary = run(engage, clevertap)

    assert (summary.changes, summary.sent, summary.superseded) == (0, 0, 1)
    assert outbox_by_person(engage, "vip")["u2"]["status"] == "superseded"
    assert clevertap_server.profile(identity="u2") is None
    assert run(engage, clevertap).changes == 0  # refused means it never arrived: nothing to undo later either


def test_a_refusal_after_an_unanswered_attempt_still_counts_as_possibly_arrived(
    engage: EngageData, clevertap_server: CleverTapServer, clevertap: CleverTapUploadClient
) -> None:
    engage.audience("vip", users(1))
    clevertap_server.time_out_next(3, hold_seconds=0.8, apply=True)
    assert run(engage, clevertap).failed == 1  # applied, never answered
    clevertap_server.reject_identities = {"u1"}
    assert run(engage, clevertap).rejected == 1  # refused now; the first attempt may still have landed
    clevertap_server.reject_identities = set()

    engage.audience("vip", [])
    summary = run(engage, clevertap)

    assert (summary.exited, summary.sent) == (1, 1)
    assert clevertap_server.profile(identity="u1") == {"vip": False, "Identity": "u1"}


def test_429_and_5xx_are_retried_within_the_run(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2, 3))
    segment_server.fail_next(1, 429, retry_after=0)
    segment_server.fail_next(1, 503)

    summary = run(engage, segment)

    assert (summary.sent, summary.failed, summary.status) == (3, 0, "succeeded")
    assert summary.retried == 3  # each message needed more than one request
    assert [r.status for r in segment_server.requests] == [429, 503, 200]
    assert {row["attempts"] for row in engage.outbox()} == {3}
    assert_confirmed_were_acknowledged(engage, segment_server)


def test_persistent_5xx_leaves_messages_pending_for_the_next_run_with_the_same_ids(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2, 3))
    segment_server.fail_next(10, 503)

    failed = run(engage, segment)

    assert (failed.sent, failed.failed, failed.status, failed.pending) == (0, 3, "incomplete", 3)
    assert failed.stopped_early is not None
    assert engage.state() == {}
    pending_ids = {row["message_id"] for row in engage.outbox()}
    assert {row["status"] for row in engage.outbox()} == {"pending"}

    segment_server.clear_faults()
    recovered = run(engage, segment)

    assert (recovered.entered, recovered.sent, recovered.retried, recovered.status) == (3, 3, 3, "succeeded")
    assert set(segment_server.message_ids()) == pending_ids
    assert_confirmed_were_acknowledged(engage, segment_server)


def test_a_timed_out_request_that_was_applied_is_resent_with_the_same_message_id(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    segment_server.time_out_next(3, hold_seconds=0.8, apply=True)  # every attempt lands, no answer comes back

    first = run(engage, segment)

    assert (first.sent, first.failed) == (0, 2)
    assert engage.state() == {}
    assert len(segment_server.messages) == 6  # applied three times, never acknowledged

    second = run(engage, segment)

    assert second.sent == 2
    assert len(set(segment_server.message_ids())) == 2  # repeats only of the same two messageIds
    assert_confirmed_were_acknowledged(engage, segment_server)


def test_an_applied_but_unconfirmed_entry_is_taken_back_when_the_person_leaves(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    segment_server.time_out_next(3, hold_seconds=0.8, apply=True)
    run(engage, segment)
    assert segment_server.traits_by_user_id["u1"] == {"vip": True}  # there, but never confirmed

    engage.audience("vip", users(2))
    summary = run(engage, segment)

    assert (summary.entered, summary.exited, summary.superseded) == (1, 1, 1)
    assert segment_server.traits_by_user_id["u1"] == {"vip": False}
    assert segment_server.traits_by_user_id["u2"] == {"vip": True}
    assert run(engage, segment).sent == 0


def test_dropped_connections_are_retried(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    segment_server.drop_next(1)
    segment_server.drop_next(1, apply=True)

    summary = run(engage, segment)

    assert (summary.sent, summary.status) == (2, "succeeded")
    assert [r.fault for r in segment_server.requests] == ["drop", "drop", None]
    assert len(segment_server.messages) == 4  # the applied drop and the final success
    assert_confirmed_were_acknowledged(engage, segment_server)


def test_a_4xx_batch_is_rejected_then_retried_next_run(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    segment_server.fail_next(1, 400, body={"code": "invalid_request", "message": "temporarily refused"})

    first = run(engage, segment)

    assert (first.sent, first.rejected) == (0, 2)
    assert first.rejections == [("400", "HTTP 400: temporarily refused", 2)]
    ids = {row["message_id"] for row in engage.outbox()}

    second = run(engage, segment)
    assert (second.sent, second.retried) == (2, 2)
    assert set(segment_server.message_ids()) == ids


def test_a_wrong_write_key_stops_the_run_and_confirms_nothing(
    engage: EngageData, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(*range(1, 41)))
    with segment_client(segment_server, write_key="wrong", max_batch_messages=10) as wrong:
        summary = run(engage, wrong)

    assert summary.sent == 0
    assert summary.rejected + summary.failed == 40
    assert summary.stopped_early is not None
    assert engage.state() == {}
    assert len(segment_server.requests) <= 3  # no hammering with a key that cannot work

    with segment_client(segment_server, max_batch_messages=10) as right:
        assert run(engage, right).sent == 40


def test_oversized_and_invalid_messages_are_rejected_without_blocking_the_rest(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.trait("bio", {("u1", None): "x" * 40_000, ("u2", None): "short"}, value_type="string")
    engage.trait("score", {("u3", None): 1})
    engage.sql("update engage.engage_computed_traits set value = '{not json' where user_id = 'u3'")

    summary = run(engage, segment)

    assert (summary.sent, summary.rejected) == (1, 2)
    codes = {row["person_id"]: row["last_code"] for row in engage.outbox() if row["status"] == "rejected"}
    assert codes == {"u1": "too_large", "u3": "invalid_payload"}
    assert traits_sent(segment_server, "bio") == [("u2", None, "short")]


def test_clevertap_trait_mapping_and_addressing(engage: EngageData, clevertap_server: CleverTapServer) -> None:
    engage.audience("vip", [("u1", "a1"), ("u2", None), (None, "anon-3")], include_anonymous=True)
    engage.trait("gender", {("u2", None): "female"}, value_type="string")
    with clevertap_client(clevertap_server) as client:
        summary = run(engage, client)

    assert summary.sent == 4
    by_target = {(r.get("identity"), r.get("objectId")): r["profileData"] for r in clevertap_server.records}
    assert by_target[(None, "a1")] == {"vip": True, "Identity": "u1"}
    assert by_target[("u2", None)] in ({"vip": True}, {"Gender": "F"})
    assert by_target[(None, "anon-3")] == {"vip": True}
    assert clevertap_server.profile(identity="u2") == {"vip": True, "Gender": "F"}
    assert all(isinstance(r["ts"], int) for r in clevertap_server.records)
    assert json.loads(engage.outbox()[0]["payload"])["type"] == "identify"
