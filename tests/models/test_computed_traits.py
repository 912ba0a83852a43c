"""Computed trait values from `dbt build` match values computed in Python from the raw files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.models.conftest import AS_OF, BuiltSample, Identity, RawEvent, query


def trait_values(built_sample: BuiltSample, key: str) -> dict[str, object]:
    rows = query(
        built_sample.warehouse,
        f"""
        select user_id, value, value_type, computed_at
        from engage.engage_computed_traits
        where trait_key = '{key}'
        """,
    )
    assert rows, f"no values for {key}"
    assert all(user_id is not None for user_id, *_ in rows), "anonymous people are not included by default"
    assert {computed_at for *_, computed_at in rows} == {AS_OF}
    values = {str(user_id): json.loads(str(value)) for user_id, value, _type, _at in rows}
    assert len(values) == len(rows), "a person has two values of one trait"
    return values


def identified(identity: Identity, values: dict[str, object]) -> dict[str, object]:
    return {person: value for person, value in values.items() if identity.people[person][0] is not None}


def test_trait_catalog(built_sample: BuiltSample) -> None:
    rows = query(built_sample.warehouse, "select trait_key, trait_name, value_type from engage.engage_traits")
    assert set(rows) == {
        ("lifetime_revenue", "Lifetime Revenue", "number"),
        ("last_app_version", "Last App Version", "string"),
        ("notification_clicks_last_30_days", "Notification Clicks Last 30 Days", "number"),
    }


def test_lifetime_revenue(built_sample: BuiltSample, raw_events: list[RawEvent], identity: Identity) -> None:
    totals: dict[str, float] = {}
    for e in raw_events:
        if e.name == "Charged" and e.at <= AS_OF and (person := identity.person_of(e)):
            totals[person] = totals.get(person, 0.0) + float(e.props.get("Amount", 0.0))  # type: ignore[arg-type]
    expected = identified(identity, totals)
    actual = trait_values(built_sample, "lifetime_revenue")
    assert set(actual) == set(expected)
    wrong = {p: (actual[p], round(expected[p], 2)) for p in expected if abs(actual[p] - expected[p]) > 0.0051}  # type: ignore[operator]
    assert not wrong, f"{len(wrong)} wrong totals, e.g. {list(wrong.items())[:3]}"


def test_last_app_version(built_sample: BuiltSample, raw_events: list[RawEvent], identity: Identity) -> None:
    latest: dict[str, tuple[datetime, set[str]]] = {}
    for e in raw_events:
        if e.name != "App Launched" or e.at > AS_OF or not (person := identity.person_of(e)):
            continue
        version = e.props.get("CT App Version") or e.props.get("ct_app_version") or e.device.get("appVersion")
        if version is None:
            continue
        at, versions = latest.get(person, (e.at, set()))
        if e.at > at:
            latest[person] = (e.at, {str(version)})
        elif e.at == at:
            latest[person] = (at, versions | {str(version)})  # same second: either is right
    expected = identified(identity, {person: versions for person, (_at, versions) in latest.items()})
    actual = trait_values(built_sample, "last_app_version")
    assert set(actual) == set(expected)
    wrong = {p: (actual[p], expected[p]) for p in expected if actual[p] not in expected[p]}  # type: ignore[operator]
    assert not wrong, f"{len(wrong)} wrong versions, e.g. {list(wrong.items())[:3]}"


def test_notification_clicks_last_30_days(
    built_sample: BuiltSample, raw_events: list[RawEvent], identity: Identity
) -> None:
    counts: dict[str, int] = {}
    for e in raw_events:
        if e.name == "Notification Clicked" and e.at <= AS_OF and (person := identity.person_of(e)):
            counts[person] = counts.get(person, 0) + (AS_OF - timedelta(days=30) < e.at)
    expected = identified(identity, counts)
    assert 0 in expected.values(), "the sample should have someone whose clicks aged out"
    assert trait_values(built_sample, "notification_clicks_last_30_days") == expected


def test_values_are_json_of_their_type(built_sample: BuiltSample) -> None:
    rows = query(built_sample.warehouse, "select value_type, value from engage.engage_computed_traits")
    for value_type, value in rows:
        parsed = json.loads(str(value))
        if value_type == "number":
            assert isinstance(parsed, int | float) and not isinstance(parsed, bool), value
        else:
            assert value_type == "string" and isinstance(parsed, str), value
