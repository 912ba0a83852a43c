"""Audience memberships from `dbt build` match memberships computed in Python from the raw files."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import pytest

from tests.models.conftest import AS_OF, BuiltSample, Identity, RawEvent, query

Members = set[tuple[str | None, str | None]]


def in_last_days(at: datetime, days: int) -> bool:
    return AS_OF - timedelta(days=days) < at <= AS_OF


def people_with(events: Iterable[RawEvent], identity: Identity, keep: Callable[[RawEvent], bool]) -> set[str]:
    return {person for e in events if keep(e) and (person := identity.person_of(e)) is not None}


def last_at(events: Iterable[RawEvent], identity: Identity, name: str) -> dict[str, datetime]:
    latest: dict[str, datetime] = {}
    for e in events:
        if e.name == name and e.at <= AS_OF and (person := identity.person_of(e)) is not None:
            latest[person] = max(e.at, latest.get(person, e.at))
    return latest


def expected_people(key: str, events: list[RawEvent], identity: Identity) -> set[str]:
    if key == "order_completed_last_30days":
        return people_with(events, identity, lambda e: e.name == "Charged" and in_last_days(e.at, 30))
    if key == "push_engaged_last_7_days":
        return people_with(events, identity, lambda e: e.name == "Notification Clicked" and in_last_days(e.at, 7))
    if key == "dormant_users":
        installed = people_with(events, identity, lambda e: e.name == "App Installed" and e.at <= AS_OF)
        launched = people_with(events, identity, lambda e: e.name == "App Launched" and in_last_days(e.at, 14))
        return installed - launched
    if key == "uninstalled_users":
        uninstalled = last_at(events, identity, "App Uninstalled")
        last_launch = last_at(events, identity, "App Launched")
        return {p for p, at in uninstalled.items() if p not in last_launch or at > last_launch[p]}
    if key == "acquired_by_utm_campaign":
        return people_with(
            events,
            identity,
            lambda e: e.name == "UTM Visited" and e.at <= AS_OF and bool(e.session.get("utm_campaign")),
        )
    if key == "cart_abandoners_last_7_days":
        added: dict[str, datetime] = {}
        for e in events:
            if e.name == "Added To Cart" and in_last_days(e.at, 7) and (person := identity.person_of(e)):
                added[person] = max(e.at, added.get(person, e.at))
        charged = last_at(events, identity, "Charged")
        return {p for p, at in added.items() if p not in charged or charged[p] < at}
    raise AssertionError(f"no expectation written for audience {key}")


EXAMPLES = {
    "order_completed_last_30days": ("Order Completed Last 30days", False),
    "push_engaged_last_7_days": ("Push Engaged Last 7 Days", False),
    "dormant_users": ("Dormant Users", False),
    "uninstalled_users": ("Uninstalled Users", False),
    "acquired_by_utm_campaign": ("Acquired By UTM Campaign", False),
    "cart_abandoners_last_7_days": ("Cart Abandoners Last 7 Days", True),
}


def test_every_audience_model_is_in_the_catalog(built_sample: BuiltSample) -> None:
    rows = query(
        built_sample.warehouse, "select audience_key, audience_name, include_anonymous from engage.engage_audiences"
    )
    catalog = {key: (name, include) for key, name, include in rows}
    assert catalog == EXAMPLES


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_memberships_match_the_raw_files(
    key: str, built_sample: BuiltSample, raw_events: list[RawEvent], identity: Identity
) -> None:
    include_anonymous = EXAMPLES[key][1]
    expected: Members = set()
    for person in expected_people(key, raw_events, identity):
        user_id, anonymous_id = identity.people[person]
        if user_id is not None or include_anonymous:
            expected.add((user_id, anonymous_id))
    rows = query(
        built_sample.warehouse,
        f"""
        select user_id, anonymous_id, is_member, computed_at, audience_name
        from engage.engage_audience_memberships
        where audience_key = '{key}'
        """,
    )
    actual: Members = {(user_id, anonymous_id) for user_id, anonymous_id, *_ in rows}
    assert expected, f"the sample should give {key} members; the expectation is empty"
    assert len(rows) == len(actual), "a person appears twice in one audience"
    assert actual == expected, (
        f"{key}: {len(actual - expected)} unexpected members, e.g. {sorted(actual - expected, key=str)[:3]}; "
        f"{len(expected - actual)} missing, e.g. {sorted(expected - actual, key=str)[:3]}"
    )
    assert {(is_member, computed_at, name) for _u, _a, is_member, computed_at, name in rows} == {
        (True, AS_OF, EXAMPLES[key][0])
    }


def test_anonymous_people_appear_only_where_included(built_sample: BuiltSample, identity: Identity) -> None:
    rows = query(
        built_sample.warehouse,
        """
        select audience_key, count(*) filter (where user_id is null)
        from engage.engage_audience_memberships
        group by 1
        """,
    )
    anonymous = dict(rows)
    assert anonymous.pop("cart_abandoners_last_7_days") > 0, "the sample has anonymous cart abandoners"
    assert set(anonymous.values()) == {0}


def test_identity_flags_the_same_anonymous_only_people(built_sample: BuiltSample, identity: Identity) -> None:
    rows = query(built_sample.warehouse, "select person_id, user_id, anonymous_id from analytics.int_people_resolved")
    assert {person: (user_id, anonymous_id) for person, user_id, anonymous_id in rows} == identity.people
    assert any(user_id is None for user_id, _ in identity.people.values())
