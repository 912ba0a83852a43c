"""A dry run computes the diff and shows it; it sends nothing and leaves state and outbox alone."""

from __future__ import annotations

from ctsync.destinations import SegmentHttpClient
from ctsync.engage.run import sync_destination
from tests.engage.conftest import EngageData, users
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def snapshot(engage: EngageData) -> tuple[object, object]:
    return sorted(engage.state().items()), engage.outbox()


def test_dry_run_shows_the_changes_and_writes_nothing(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2))
    engage.trait("ltv", {("u1", "a1"): 5})
    sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    engage.audience("vip", users(2, 3))
    engage.trait("ltv", {("u1", "a1"): 6})
    before = snapshot(engage)
    requests = len(segment_server.requests)

    summary = sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={}, dry_run=True)

    assert (summary.dry_run, summary.entered, summary.exited, summary.traits_changed, summary.sent) == (
        True,
        1,
        1,
        1,
        0,
    )
    assert [(p.change, p.computation_key, p.user_id, p.value) for p in summary.preview] == [
        ("changed", "ltv", "u1", "6"),
        ("entered", "vip", "u3", "true"),
        ("exited", "vip", "u1", "false"),
    ]
    assert len(segment_server.requests) == requests
    assert snapshot(engage) == before
    assert engage.runs()[-1]["dry_run"] is True
    assert engage.runs()[-1]["entered"] == 1

    real = sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    assert (real.entered, real.exited, real.traits_changed, real.sent) == (1, 1, 1, 3)


def test_dry_run_on_a_fresh_warehouse_creates_no_messages(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(1, 2, 3))

    summary = sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={}, dry_run=True)

    assert summary.entered == 3
    assert len(summary.preview) == 3
    assert engage.outbox() == []
    assert engage.state() == {}
    assert engage.sql("select count(*) from ctsync.sync_locks") == [(0,)]


def test_dry_run_preview_is_limited(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(*range(50)))

    summary = sync_destination(
        "segment", warehouse=engage.warehouse, destination=segment, environ={}, dry_run=True, preview_limit=5
    )

    assert summary.entered == 50
    assert len(summary.preview) == 5
