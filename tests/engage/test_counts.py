"""Counts per audience and trait: in the run's summary, stored with the run, and the full diff of a dry run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from ctsync.destinations import CleverTapUploadClient, Destination, SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from ctsync.errors import CtsyncError
from tests.engage.conftest import EngageData, users
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def run(engage: EngageData, destination: Destination, **options: Any) -> SyncSummary:
    return sync_destination(
        destination.name, warehouse=engage.warehouse, destination=destination, environ={}, **options
    )


def figures(summary: SyncSummary) -> dict[str, tuple[int, ...]]:
    """key -> (entered, exited, changed, sent, rejected, failed, pending)"""
    return {
        c.computation_key: (c.entered, c.exited, c.changed, c.sent, c.rejected, c.failed, c.pending)
        for c in summary.computations
    }


def stored(engage: EngageData, run_id: str) -> dict[str, tuple[int, ...]]:
    rows = engage.sql(
        "select computation_key, entered, exited, changed, sent, rejected, failed, pending "
        "from ctsync.sync_run_computations where run_id = :run",
        run=run_id,
    )
    return {key: tuple(counts) for key, *counts in rows}


def test_each_audience_and_trait_has_its_own_counts(
    engage: EngageData, clevertap_server: CleverTapServer, clevertap: CleverTapUploadClient
) -> None:
    clevertap_server.reject_identities = {"u2"}
    engage.audience("vip", users(1, 2, 3))
    engage.audience("newsletter", users(4))
    engage.trait("ltv", {("u1", "a1"): 5, ("u2", "a2"): 7})

    first = run(engage, clevertap)

    assert figures(first) == {
        "newsletter": (1, 0, 0, 1, 0, 0, 0),
        "vip": (3, 0, 0, 2, 1, 0, 0),
        "ltv": (0, 0, 2, 1, 1, 0, 0),
    }
    assert [c.computation_class for c in first.computations] == ["audience", "audience", "trait"]
    assert stored(engage, first.run_id) == figures(first)

    clevertap_server.reject_identities = set()
    engage.audience("vip", users(2, 3, 5))
    engage.trait("ltv", {("u2", "a2"): 7})
    second = run(engage, clevertap)

    assert figures(second) == {"vip": (2, 1, 0, 3, 0, 0, 0), "ltv": (0, 0, 2, 2, 0, 0, 0)}
    assert [(c.computation_key, c.nulled) for c in second.computations] == [("vip", 0), ("ltv", 1)]
    assert stored(engage, second.run_id) == figures(second)
    assert run(engage, clevertap).computations == []


def test_messages_the_destination_did_not_answer_are_counted_failed_and_pending(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    engage.trait("ltv", {("u1", "a1"): 5})
    segment_server.fail_next(10, 503)

    down = run(engage, segment)

    assert figures(down) == {"vip": (2, 0, 0, 0, 0, 2, 2), "ltv": (0, 0, 1, 0, 0, 1, 1)}
    segment_server.clear_faults()
    again = run(engage, segment)
    assert figures(again) == {"vip": (2, 0, 0, 2, 0, 0, 0), "ltv": (0, 0, 1, 1, 0, 0, 0)}


def test_a_dry_run_counts_what_it_would_send(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(1, 2))
    run(engage, segment)
    engage.audience("vip", users(2, 3, 4))

    summary = run(engage, segment, dry_run=True)

    assert figures(summary) == {"vip": (2, 1, 0, 0, 0, 0, 0)}
    assert stored(engage, summary.run_id) == figures(summary)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_dry_run_writes_the_whole_diff_to_a_file(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer, tmp_path: Path
) -> None:
    engage.audience("vip", users(*range(1, 4)))
    engage.trait("city", {("u1", "a1"): 'Pune, "West"', ("u2", "a2"): "Goa"}, value_type="string")
    run(engage, segment)
    engage.audience("vip", users(*range(2, 1002)))
    engage.audience("lurkers", [(None, "anon-1")], include_anonymous=True)
    engage.trait("city", {("u2", "a2"): "Goa"}, value_type="string")
    segment_server.fail_next(10, 503)
    run(engage, segment)  # these changes wait, pending, to be resent with their messageId
    engage.audience("vip", users(*range(3, 1003)))
    before = engage.outbox()
    out = tmp_path / "changes.csv"

    summary = run(engage, segment, dry_run=True, output=out, preview_limit=3)

    rows = read_csv(out)
    assert summary.output == str(out) and len(summary.preview) == 3
    assert list(rows[0]) == ["change", "computation_class", "computation_key", "user_id", "anonymous_id", "value",
                             "message"]  # fmt: skip
    assert len(rows) == summary.changes == 2 + 999 + 1 + 1
    by_person = {(row["computation_key"], row["user_id"] or row["anonymous_id"]): row for row in rows}
    assert by_person[("vip", "u2")] == {
        "change": "exited",
        "computation_class": "audience",
        "computation_key": "vip",
        "user_id": "u2",
        "anonymous_id": "a2",
        "value": "false",
        "message": "new",
    }
    assert by_person[("vip", "u1")]["message"] == by_person[("vip", "u4")]["message"] == "resend"
    assert by_person[("vip", "u1002")]["message"] == "new"
    assert (by_person[("lurkers", "anon-1")]["user_id"], by_person[("lurkers", "anon-1")]["change"]) == ("", "entered")
    assert json.loads(by_person[("city", "u1")]["value"]) is None
    assert by_person[("city", "u1")]["change"] == "changed"
    first_two = [(row["change"], row["computation_key"]) for row in rows[:2]]
    assert first_two == [("changed", "city"), ("entered", "lurkers")]
    assert engage.outbox() == before


def test_the_diff_file_keeps_quotes_and_commas(engage: EngageData, segment: SegmentHttpClient, tmp_path: Path) -> None:
    engage.trait("city", {("u1", "a1"): 'Pune, "West"'}, value_type="string")
    out = tmp_path / "changes.csv"

    run(engage, segment, dry_run=True, output=out)

    [row] = read_csv(out)
    assert json.loads(row["value"]) == 'Pune, "West"'


def test_the_diff_file_needs_a_dry_run_and_a_folder_that_exists(
    engage: EngageData, segment: SegmentHttpClient, tmp_path: Path
) -> None:
    engage.audience("vip", users(1))
    with pytest.raises(CtsyncError, match="add --dry-run"):
        run(engage, segment, output=tmp_path / "changes.csv")
    with pytest.raises(CtsyncError, match="does not exist"):
        run(engage, segment, dry_run=True, output=tmp_path / "nowhere" / "changes.csv")
    assert engage.sql("select count(*) from information_schema.tables where table_schema = 'ctsync'") == [(0,)]
