"""The mass-change guard: a run that would exit most of an audience (null most of a trait) is refused
before anything is written or sent, until an operator allows it."""

from __future__ import annotations

from typing import Any

import pytest

from ctsync.destinations import SegmentHttpClient
from ctsync.engage.guard import MassChangeRefused
from ctsync.engage.run import SyncSummary, sync_destination
from ctsync.errors import CtsyncError
from tests.engage.conftest import EngageData, traits_sent, users
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def sync(engage: EngageData, segment: SegmentHttpClient, **options: Any) -> SyncSummary:
    return sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={}, **options)


def test_a_build_that_empties_an_audience_stops_the_sync_until_it_is_allowed(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(*range(150)))
    engage.audience("newsletter", users(1, 2))
    sync(engage, segment)
    engage.audience("vip", [])
    engage.audience("newsletter", users(1, 2, 3))
    state, outbox, requests = engage.state(), engage.outbox(), len(segment_server.requests)

    with pytest.raises(MassChangeRefused) as refused:
        sync(engage, segment)

    message = str(refused.value)
    assert "audience vip: 150 of 150 confirmed members would exit (100%)" in message
    assert "--allow-mass-change" in message and "newsletter" not in message
    assert [(c.computation_key, c.removed, c.confirmed) for c in refused.value.refused] == [("vip", 150, 150)]
    assert len(segment_server.requests) == requests  # nothing sent, not even the entry into newsletter
    assert engage.state() == state and engage.outbox() == outbox
    run = engage.runs()[-1]
    assert (run["status"], run["exited"], run["entered"], run["sent"]) == ("refused", 150, 1, 0)
    assert "audience vip: 150 of 150 confirmed members would exit" in run["error"]
    assert engage.sql(
        "select computation_key, exited, removed, confirmed, mass_change from ctsync.sync_run_computations "
        "where run_id = :run order by computation_key",
        run=run["run_id"],
    ) == [("newsletter", 0, 0, None, False), ("vip", 150, 150, 150, True)]
    assert engage.sql("select count(*) from ctsync.sync_locks") == [(0,)]

    with pytest.raises(MassChangeRefused):  # refused again: nothing changed
        sync(engage, segment)
    allowed = sync(engage, segment, allow_mass_change=True)

    assert (allowed.status, allowed.exited, allowed.entered, allowed.sent) == ("succeeded", 150, 1, 151)
    assert [c.computation_key for c in allowed.mass_changes] == ["vip"]
    assert allowed.mass_change is not None and allowed.mass_change.startswith("mass change allowed")
    assert sorted(v for _, _, v in traits_sent(segment_server, "vip"))[:150] == [False] * 150
    assert sync(engage, segment).changes == 0


def test_small_audiences_churn_freely(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("trial", users(*range(150)))
    engage.audience("pilot", users(*range(9)))
    sync(engage, segment)
    engage.audience("trial", users(*range(99, 150)))  # 99 of 150 leave: most, but fewer than 100 people
    engage.audience("pilot", [])  # emptied, but it had fewer than 10 members

    summary = sync(engage, segment)

    assert (summary.status, summary.exited, summary.mass_changes) == ("succeeded", 99 + 9, [])


def test_an_emptied_audience_is_refused_even_when_small(engage: EngageData, segment: SegmentHttpClient) -> None:
    """A model that selects nobody is the commonest broken build: emptying 10 confirmed members or more stops."""
    engage.audience("trial", users(*range(30)))
    sync(engage, segment)
    engage.audience("trial", [])

    with pytest.raises(MassChangeRefused, match="audience trial: 30 of 30 confirmed members would exit"):
        sync(engage, segment)
    with pytest.raises(MassChangeRefused):  # a higher floor does not let an audience empty
        sync(engage, segment, mass_change_floor=1000)
    assert sync(engage, segment, mass_change_share=1).exited == 30  # a share of 1 turns the guard off


def test_half_of_an_audience_may_leave_but_not_more(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(*range(400)))
    sync(engage, segment)
    engage.audience("vip", users(*range(200, 500)))  # 200 of 400 leave: 50%, not more

    assert sync(engage, segment).exited == 200

    engage.audience("vip", users(*range(351, 500)))  # 151 of 300 leave: over half
    with pytest.raises(MassChangeRefused, match="151 of 300 confirmed members would exit"):
        sync(engage, segment)


def test_the_limit_can_be_set_per_run_or_from_the_environment(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(*range(100)))
    sync(engage, segment)
    engage.audience("vip", users(*range(70, 100)))  # 70 of 100 leave: under the default floor

    with pytest.raises(MassChangeRefused, match="70 of 100"):
        sync(engage, segment, mass_change_floor=50)
    with pytest.raises(MassChangeRefused, match="70 of 100"):
        sync_destination(
            "segment",
            warehouse=engage.warehouse,
            destination=segment,
            environ={"CTSYNC_MASS_CHANGE_FLOOR": "10", "CTSYNC_MASS_CHANGE_SHARE": "0.6"},
        )
    with pytest.raises(CtsyncError, match="CTSYNC_MASS_CHANGE_SHARE must be a share"):
        sync_destination(
            "segment", warehouse=engage.warehouse, destination=segment, environ={"CTSYNC_MASS_CHANGE_SHARE": "half"}
        )
    with pytest.raises(CtsyncError, match="at most 1"):
        sync(engage, segment, mass_change_share=50)

    assert sync(engage, segment, mass_change_floor=50, mass_change_share=0.75).exited == 70


def test_a_trait_set_to_null_for_most_people_is_refused(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.trait("ltv", {(f"u{n}", f"a{n}"): n for n in range(300)})
    sync(engage, segment)
    engage.trait("ltv", {(f"u{n}", f"a{n}"): n + 1 for n in range(100)})  # 200 of 300 lose their value
    sent = len(segment_server.messages)

    with pytest.raises(MassChangeRefused) as refused:
        sync(engage, segment)

    assert "trait ltv: 200 of 300 confirmed values would be set to null (67%)" in str(refused.value)
    assert len(segment_server.messages) == sent
    [counts] = refused.value.summary.computations
    assert (counts.changed, counts.nulled, counts.removed, counts.confirmed) == (300, 200, 200, 300)


def test_a_retired_audience_is_not_a_mass_change(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    """Deleting an audience's model retires it: nothing is sent for it, so nothing is guarded."""
    engage.audience("vip", users(*range(150)))
    sync(engage, segment)
    engage.retire_audience("vip")
    requests = len(segment_server.requests)

    summary = sync(engage, segment)

    assert (summary.status, summary.exited, summary.retired_audiences) == ("succeeded", 0, ["vip"])
    assert len(segment_server.requests) == requests


def test_a_dry_run_shows_the_verdict_without_failing(engage: EngageData, segment: SegmentHttpClient) -> None:
    engage.audience("vip", users(*range(150)))
    sync(engage, segment)
    engage.audience("vip", users(1))

    summary = sync(engage, segment, dry_run=True)

    assert summary.status == "succeeded" and summary.exited == 149
    assert [(c.computation_key, c.removed, c.confirmed) for c in summary.mass_changes] == [("vip", 149, 150)]
    assert summary.mass_change is not None
    assert summary.mass_change.startswith("a real sync to 'segment' would be refused")
    assert "149 of 150 confirmed members would exit (99%)" in summary.mass_change
    assert engage.runs()[-1]["dry_run"] is True and engage.runs()[-1]["status"] == "succeeded"
    with pytest.raises(MassChangeRefused):
        sync(engage, segment)
