"""One person, one story: when a person's key changes (a visitor signs in, ids are re-stitched), the
destination profile is never told ``false`` (or ``null``) for an audience (or trait) it still has,
whatever order the requests land in; a person who really left still gets their exit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctsync.destinations import Destination, SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from tests.engage.conftest import EngageData, Person, clevertap_client, traits_sent
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")
SEEDS = range(16)

BEFORE: dict[str, list[Person]] = {
    "visitors": [(None, f"anon-{n}") for n in range(1, 7)] + [("u7", "anon-7")],
}
PAGES_BEFORE: dict[Person, Any] = {(None, "anon-1"): 3, (None, "anon-2"): 5, (None, "anon-3"): 4}
AFTER: dict[str, list[Person]] = {
    "visitors": [
        ("u1", "anon-1"),  # signed in, still a visitor
        ("u2", "anon-2"),  # signed in, still a visitor, more pages viewed
        # anon-3 signed in as u3 and left: a real exit
        (None, "anon-4"),  # still anonymous
        # anon-5 left without signing in
        ("u6", "anon-6"),  # signed in, still a visitor
        (None, "anon-7"),  # u7's sign-in is gone from the data (rebuilt as of an earlier time)
    ],
}
PAGES_AFTER: dict[Person, Any] = {("u1", "anon-1"): 3, ("u2", "anon-2"): 6}
VISITOR_AT_THE_END = {1: True, 2: True, 3: False, 4: True, 5: False, 6: True, 7: True}
PAGES_AT_THE_END = {1: 3, 2: 6, 3: None}


def run(engage: EngageData, destination: Destination) -> SyncSummary:
    return sync_destination(destination.name, warehouse=engage.warehouse, destination=destination, environ={})


def publish(engage: EngageData, audiences: Mapping[str, list[Person]], pages: Mapping[Person, Any]) -> None:
    for key, members in audiences.items():
        engage.audience(key, members, include_anonymous=True)
    engage.trait("pages_viewed", pages)


def test_people_who_change_key_end_as_what_they_are_whatever_order_clevertap_applies_records(
    engage: EngageData,
) -> None:
    servers = [CleverTapServer(landing_seed=seed).start() for seed in SEEDS]
    clients = [
        clevertap_client(server, name=f"clevertap_{seed}", batch_size=2, concurrency=3)
        for seed, server in zip(SEEDS, servers, strict=True)
    ]
    try:
        publish(engage, BEFORE, PAGES_BEFORE)
        for server, client in zip(servers, clients, strict=True):
            assert run(engage, client).status == "succeeded"
            server.settle()

        publish(engage, AFTER, PAGES_AFTER)
        summaries = []
        for server, client in zip(servers, clients, strict=True):
            summaries.append(run(engage, client))
            server.settle()

        for seed, server in zip(SEEDS, servers, strict=True):
            for n, expected in VISITOR_AT_THE_END.items():
                profile = server.profile(object_id=f"anon-{n}") or {}
                assert profile.get("visitors") is expected, f"seed {seed}: anon-{n} is {profile}"
            for n, pages in PAGES_AT_THE_END.items():
                profile = server.profile(object_id=f"anon-{n}") or {}
                assert profile.get("pages_viewed") == pages, f"seed {seed}: anon-{n} is {profile}"
        # entries: none (everyone who stayed is a visitor already); exits: anon-3 and anon-5 only
        assert {(s.status, s.entered, s.exited) for s in summaries} == {("succeeded", 0, 2)}
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


def test_the_confirmed_state_moves_to_the_new_key(engage: EngageData, segment: SegmentHttpClient) -> None:
    publish(engage, BEFORE, PAGES_BEFORE)
    run(engage, segment)
    before = engage.state("segment")

    publish(engage, AFTER, PAGES_AFTER)
    summary = run(engage, segment)
    after = engage.state("segment")

    assert summary.status == "succeeded"
    assert after[("visitors", "user_id", "u1")] == before[("visitors", "anonymous_id", "anon-1")]
    assert after[("pages_viewed", "user_id", "u1")] == before[("pages_viewed", "anonymous_id", "anon-1")]
    assert after[("visitors", "anonymous_id", "anon-7")] == before[("visitors", "user_id", "u7")]
    assert after[("visitors", "anonymous_id", "anon-3")][0] is False  # left: the old key got its exit
    people = {(key, person) for key, _, person in after}
    assert ("visitors", "anon-1") not in people and ("visitors", "u7") not in people
    assert run(engage, segment).changes == 0


def test_segment_is_never_told_false_for_someone_still_in_the_audience(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    publish(engage, BEFORE, PAGES_BEFORE)
    run(engage, segment)
    first = len(segment_server.messages)

    publish(engage, AFTER, PAGES_AFTER)
    run(engage, segment)

    later = segment_server.messages[first:]
    visitors = {
        (m.get("userId"), m.get("anonymousId"), m["traits"]["visitors"]) for m in later if "visitors" in m["traits"]
    }
    assert visitors == {(None, "anon-3", False), (None, "anon-5", False)}
    pages = [
        (m.get("userId"), m.get("anonymousId"), m["traits"]["pages_viewed"])
        for m in later
        if "pages_viewed" in m["traits"]
    ]
    assert sorted(pages, key=str) == [("u2", "anon-2", 6), (None, "anon-3", None)]
    for n, expected in VISITOR_AT_THE_END.items():
        assert segment_server.traits_by_anonymous_id[f"anon-{n}"]["visitors"] is expected


def test_two_anonymous_ids_that_become_one_user_keep_the_newest_confirmation(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("visitors", [(None, "anon-1")], include_anonymous=True)
    run(engage, segment)
    engage.audience("visitors", [], include_anonymous=True)  # anon-1 leaves
    run(engage, segment)
    engage.audience("visitors", [(None, "anon-2")], include_anonymous=True)  # anon-2 joins, later
    run(engage, segment)
    first = len(segment_server.messages)

    engage.audience("visitors", [("u1", "anon-2")], include_anonymous=True)  # anon-2 signs in as u1
    moved = run(engage, segment)
    assert (moved.changes, len(segment_server.messages)) == (0, first)
    assert engage.state("segment")[("visitors", "user_id", "u1")][0] is True

    engage.audience("visitors", [("u1", "anon-1")], include_anonymous=True)  # u1 is last seen on anon-1 again
    again = run(engage, segment)

    assert again.changes == 0  # anon-1's exit is older than u1's (anon-2's) entry: nothing to undo
    assert {key for key in engage.state("segment")} == {("visitors", "user_id", "u1")}
    assert traits_sent(segment_server, "visitors")[first:] == []


def test_a_newer_exit_under_the_old_key_is_undone_by_an_entry(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("visitors", [("u1", "anon-9")], include_anonymous=True)
    run(engage, segment)
    engage.audience("visitors", [("u1", "anon-9"), (None, "anon-1")], include_anonymous=True)
    run(engage, segment)
    engage.audience("visitors", [("u1", "anon-9")], include_anonymous=True)  # anon-1 leaves, after u1 joined
    run(engage, segment)
    first = len(segment_server.messages)

    engage.audience("visitors", [("u1", "anon-1")], include_anonymous=True)  # anon-1 was u1's device
    summary = run(engage, segment)

    assert (summary.entered, summary.exited) == (1, 0)
    assert traits_sent(segment_server, "visitors")[first:] == [("u1", "anon-1", True)]
    assert segment_server.traits_by_anonymous_id["anon-1"] == {"visitors": True}


def test_an_entry_in_doubt_before_the_sign_in_is_resent_with_its_message_id(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("visitors", [(None, "anon-1")], include_anonymous=True)
    segment_server.time_out_next(3, hold_seconds=0.8, apply=True)  # it lands, no answer comes back
    assert run(engage, segment).failed == 1
    (in_doubt,) = segment_server.message_ids()[:1]

    engage.audience("visitors", [("u1", "anon-1")], include_anonymous=True)
    summary = run(engage, segment)

    assert (summary.entered, summary.exited, summary.sent) == (1, 0, 1)
    assert segment_server.message_ids()[-1] == in_doubt
    assert engage.state("segment") == {("visitors", "user_id", "u1"): (True, in_doubt)}
    assert all(value is True for _, _, value in traits_sent(segment_server, "visitors"))
