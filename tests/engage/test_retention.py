"""Outbox retention: old messages no run needs again leave the outbox; everything a run needs stays."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from ctsync.cli_sync import app
from ctsync.destinations import CleverTapUploadClient, Destination, SegmentHttpClient
from ctsync.engage.outbox import prune_outbox
from ctsync.engage.run import SyncSummary, resolve_keep_sent_days, sync_destination
from ctsync.engage.state import now
from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import state_engine
from tests.engage.conftest import EngageData, sync_environment, traits_sent, users
from tests.engage.test_outbox import crash_after_delivery
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def run(engage: EngageData, destination: Destination, **options: Any) -> SyncSummary:
    return sync_destination(
        destination.name, warehouse=engage.warehouse, destination=destination, environ={}, **options
    )


def age_outbox(engage: EngageData, days: int) -> None:
    """Every outbox message was last touched ``days`` days earlier than it was."""
    engage.sql(f"update ctsync.sync_outbox set updated_at = updated_at - interval '{days} days'")


def statuses(engage: EngageData) -> Counter[str]:
    return Counter(row["status"] for row in engage.outbox())


def prune(engage: EngageData, destination: str, *, older_than_days: int) -> int:
    engine = state_engine(parse_warehouse(engage.warehouse))
    try:
        with engine.begin() as conn:
            return prune_outbox(conn, destination, before=now() - timedelta(days=older_than_days))
    finally:
        engine.dispose()


def test_old_sent_messages_are_deleted_and_syncing_goes_on_as_before(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2, 3))
    run(engage, segment)
    engage.audience("vip", users(2, 3, 4))
    run(engage, segment)  # u1 exits, u4 enters: 5 sent messages in all
    newest = max(row["seq"] for row in engage.outbox())
    state = engage.state()
    age_outbox(engage, 40)

    summary = run(engage, segment, keep_sent_days=30)

    assert (summary.changes, summary.pruned) == (0, 4)
    assert [row["seq"] for row in engage.outbox()] == [newest]  # new messages number on from it
    assert engage.runs()[-1]["pruned"] == 4
    assert engage.state() == state  # confirmed state is never touched
    before = len(segment_server.messages)

    engage.audience("vip", users(3, 4, 5))
    after = run(engage, segment, keep_sent_days=30)

    # The old newest message is no longer the newest: it goes too.
    assert (after.entered, after.exited, after.sent, after.pruned) == (1, 1, 2, 1)
    assert Counter(traits_sent(segment_server, "vip")[before:]) == Counter([("u2", "a2", False), ("u5", "a5", True)])
    assert sorted(row["seq"] for row in engage.outbox()) == [newest + 1, newest + 2]
    assert run(engage, segment, keep_sent_days=30).changes == 0


def test_recent_messages_stay_and_zero_keeps_everything(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2, 3))
    run(engage, segment)
    age_outbox(engage, 20)

    assert run(engage, segment, keep_sent_days=30).pruned == 0
    age_outbox(engage, 400)
    assert run(engage, segment, keep_sent_days=0).pruned == 0
    assert statuses(engage) == Counter({"sent": 3})
    assert run(engage, segment).pruned == 2  # the default: 30 days


def test_rejected_and_pending_messages_are_never_deleted(
    engage: EngageData, clevertap_server: CleverTapServer, clevertap: CleverTapUploadClient
) -> None:
    clevertap_server.reject_identities = {"u2"}
    engage.audience("vip", users(1, 2, 3))
    run(engage, clevertap)
    age_outbox(engage, 90)

    summary = run(engage, clevertap, keep_sent_days=30)

    # This run resends u2's message with a new seq (refused again): u1's and u3's both go.
    assert (summary.retried, summary.rejected, summary.pruned) == (1, 1, 2)
    rejected = [row for row in engage.outbox() if row["status"] == "rejected"]
    assert [row["person_id"] for row in rejected] == ["u2"]

    clevertap_server.reject_identities = set()
    fixed = run(engage, clevertap, keep_sent_days=30)
    assert (fixed.sent, fixed.retried, fixed.status) == (1, 1, "succeeded")
    assert ("vip", "user_id", "u2") in engage.state()


def test_a_message_still_in_doubt_is_kept_until_a_later_one_is_confirmed(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    crash_after_delivery(engage, segment)  # the entry may have arrived: in doubt
    engage.audience("vip", [])
    crash_after_delivery(engage, segment)  # the entry is superseded by an exit, itself in doubt
    age_outbox(engage, 90)

    assert prune(engage, segment.name, older_than_days=30) == 0
    assert statuses(engage) == Counter({"superseded": 1, "pending": 1})

    summary = run(engage, segment)  # the exit is confirmed now: the old entry can no longer matter
    assert (summary.sent, summary.pruned) == (1, 1)
    assert statuses(engage) == Counter({"sent": 1})  # the exit, the newest message
    assert run(engage, segment).sent == 0
    assert segment_server.traits_by_user_id["u1"] == {"vip": False}


def test_retention_from_the_environment_and_bad_values() -> None:
    assert resolve_keep_sent_days(None, {}) == 30
    assert resolve_keep_sent_days(None, {"CTSYNC_KEEP_SENT_DAYS": " 7 "}) == 7
    assert resolve_keep_sent_days(0, {"CTSYNC_KEEP_SENT_DAYS": "7"}) == 0
    with pytest.raises(CtsyncError, match="CTSYNC_KEEP_SENT_DAYS must be a whole number of days"):
        resolve_keep_sent_days(None, {"CTSYNC_KEEP_SENT_DAYS": "a week"})
    with pytest.raises(CtsyncError, match=r"must be 0 \(keep every message\) or a number of days"):
        resolve_keep_sent_days(None, {"CTSYNC_KEEP_SENT_DAYS": "-1"})


def test_the_cli_reports_what_it_deleted(engage: EngageData, tmp_path: Any) -> None:
    engage.audience("vip", users(1, 2))
    out = tmp_path / "identify.jsonl"
    environment = sync_environment(CTSYNC_JSONL_PATH=str(out))
    first = CliRunner().invoke(app, ["sync", "-d", "jsonl", "--warehouse", engage.warehouse], env=environment)
    assert first.exit_code == 0, first.output
    age_outbox(engage, 10)

    result = CliRunner().invoke(
        app, ["sync", "-d", "jsonl", "--warehouse", engage.warehouse, "--keep-sent-days", "7"], env=environment
    )

    assert result.exit_code == 0, result.output
    assert "deleted 1 old messages no run needs again from the outbox" in " ".join(result.output.split())
    refused = CliRunner().invoke(
        app, ["sync", "-d", "jsonl", "--warehouse", engage.warehouse], env={**environment, "CTSYNC_KEEP_SENT_DAYS": "x"}
    )
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "Traceback" not in said
    assert "CTSYNC_KEEP_SENT_DAYS" in said and "integer" in said


def test_a_warehouse_synced_before_retention_existed(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(1, 2))
    run(engage, segment)
    engage.sql("alter table ctsync.sync_runs drop column pruned")  # as an older ctsync left it
    env = sync_environment()

    status = CliRunner().invoke(app, ["status", "--warehouse", engage.warehouse], env=env)  # reads only
    assert status.exit_code == 0, status.output
    age_outbox(engage, 40)
    summary = run(engage, segment)  # adds the column back

    assert summary.pruned == 1
    assert [row["pruned"] for row in engage.runs()] == [0, 1]
