"""Outbox reconciliation after a run died between delivery and commit, with the data changing meanwhile.

``DiesAfterDelivery`` hands the messages to a real Segment-compatible server and then raises
before any result reaches the engine: the state a crash "after the response, before the
commit" leaves behind, reproduced in-process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from ctsync.destinations import DeliveryResult, Destination, OutboundMessage, SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from tests.engage.conftest import EngageData, traits_sent, users
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


class Died(RuntimeError):
    pass


class DiesAfterDelivery:
    """Delivers through ``inner``, then dies instead of reporting (``deliver_first=False``: dies at once)."""

    kind = "segment"

    def __init__(self, inner: SegmentHttpClient, *, deliver_first: bool = True) -> None:
        self.name = inner.name
        self.inner = inner
        self.deliver_first = deliver_first

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        if self.deliver_first:
            for _ in self.inner.deliver(messages):
                pass
        raise Died("the process died before committing")
        yield []  # pragma: no cover (makes this a generator)

    def close(self) -> None:
        pass


def run(engage: EngageData, destination: Destination, **options: Any) -> SyncSummary:
    return sync_destination(
        destination.name, warehouse=engage.warehouse, destination=destination, environ={}, **options
    )


def crash_after_delivery(engage: EngageData, segment: SegmentHttpClient, *, deliver_first: bool = True) -> None:
    with pytest.raises(Died):
        run(engage, DiesAfterDelivery(segment, deliver_first=deliver_first))


def crash_after_outbox_commit(engage: EngageData, segment: SegmentHttpClient) -> None:
    def die_before_sending(phase: str, done: int, total: int) -> None:
        if phase == "send":
            raise Died("the process died after writing the outbox")

    with pytest.raises(Died):
        run(engage, segment, progress=die_before_sending)


def vip_values(server: SegmentServer) -> list[tuple[str, bool]]:
    """(messageId, value) of every accepted vip message for u1."""
    return [
        (m["messageId"], m["traits"]["vip"])
        for m in server.messages
        if m.get("userId") == "u1" and "vip" in m["traits"]
    ]


def test_a_crash_before_the_commit_resends_the_same_message_ids(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2))
    crash_after_delivery(engage, segment)
    assert engage.state() == {}
    assert engage.runs()[-1]["status"] == "failed"
    delivered = segment_server.message_ids()

    summary = run(engage, segment)

    assert (summary.entered, summary.sent, summary.retried, summary.superseded) == (2, 2, 2, 0)
    assert sorted(segment_server.message_ids()) == sorted(delivered * 2)
    assert {mid for _, mid in engage.state().values()} == set(delivered)


def test_a_delivered_unconfirmed_entry_gets_an_exit_when_the_person_leaves(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_delivery(engage, segment)
    engage.audience("vip", [])

    summary = run(engage, segment)

    assert (summary.exited, summary.superseded, summary.sent) == (1, 1, 1)
    assert [value for _, value in vip_values(segment_server)] == [True, False]
    assert segment_server.traits_by_user_id["u1"] == {"vip": False}
    assert run(engage, segment).sent == 0


def test_an_undelivered_entry_is_simply_superseded_when_the_person_leaves(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_delivery(engage, segment, deliver_first=False)  # handed over, never reached the server
    engage.audience("vip", [])

    summary = run(engage, segment)

    # It may have arrived as far as the engine knows, so an exit is sent: a false for someone
    # who never had the trait is harmless; a stale true would not be.
    assert (summary.exited, summary.superseded) == (1, 1)
    assert segment_server.traits_by_user_id["u1"] == {"vip": False}


def test_a_change_never_handed_over_is_dropped_silently_when_no_longer_wanted(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_outbox_commit(engage, segment)
    assert [(row["status"], row["handoffs"]) for row in engage.outbox()] == [("pending", 0)]
    engage.audience("vip", [])

    summary = run(engage, segment)

    assert (summary.changes, summary.superseded, summary.sent) == (0, 1, 0)
    assert segment_server.messages == []


def test_flip_back_after_two_unconfirmed_deliveries_sends_a_new_message(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_delivery(engage, segment)  # true arrived, unconfirmed
    engage.audience("vip", [])
    crash_after_delivery(engage, segment)  # false arrived, unconfirmed
    engage.audience("vip", users(1))

    summary = run(engage, segment)

    assert summary.entered == 1
    values = vip_values(segment_server)
    assert [value for _, value in values] == [True, False, True]
    assert len({mid for mid, _ in values}) == 3  # the last true is new: a repeat of the first would be deduplicated
    assert segment_server.traits_by_user_id["u1"] == {"vip": True}
    assert run(engage, segment).sent == 0


def test_flip_back_before_the_exit_was_sent_resends_the_original_entry(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_delivery(engage, segment)  # true arrived, unconfirmed
    engage.audience("vip", [])
    crash_after_outbox_commit(engage, segment)  # the exit is in the outbox, never handed over
    engage.audience("vip", users(1))

    summary = run(engage, segment)

    assert summary.entered == 1
    values = vip_values(segment_server)
    assert [value for _, value in values] == [True, True]
    assert len({mid for mid, _ in values}) == 1  # the same message again, not a second entry
    statuses = {row["value"]: row["status"] for row in engage.outbox()}
    assert statuses == {"true": "sent", "false": "superseded"}


def test_traits_in_doubt_are_corrected_too(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("ltv", {("u1", None): 10})
    run(engage, segment)
    engage.trait("ltv", {("u1", None): 20})
    crash_after_delivery(engage, segment)  # 20 arrived, unconfirmed; confirmed is still 10
    engage.trait("ltv", {("u1", None): 10})

    summary = run(engage, segment)

    assert summary.traits_changed == 1  # 10 again: equal to the confirmed value, but 20 may be there
    assert [value for _, _, value in traits_sent(segment_server, "ltv")] == [10, 20, 10]
    assert segment_server.traits_by_user_id["u1"] == {"ltv": 10}
