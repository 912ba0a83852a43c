"""Export job definitions: every validation rule, each refused with a message naming the export and field."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from ctsync.errors import CtsyncError
from ctsync.exports.catalog import CATALOG_FILE, EventCatalog, load_event_catalog
from ctsync.jobs.definitions import (
    ExportConfigError,
    ExportJob,
    load_export_jobs,
    one_time_window,
    parse_exports,
    read_exports_file,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> EventCatalog:
    return load_event_catalog(REPO / CATALOG_FILE)


def job(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "daily-events",
        "nickname": "CleverTap_Prod",
        "location": "s3://bucket/clevertap/",
        "data_type": "all_system_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


def problems_of(catalog: EventCatalog, *entries: dict[str, Any]) -> list[str]:
    jobs, problems = parse_exports({"exports": list(entries)}, catalog)
    assert len(jobs) == len(entries) - len({problem.split(":")[0] for problem in problems})
    return problems


def only_problem(catalog: EventCatalog, entry: dict[str, Any]) -> str:
    problems = problems_of(catalog, entry)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_complete_export_and_its_defaults(catalog: EventCatalog) -> None:
    (parsed,), problems = parse_exports(
        {
            "exports": [
                job(
                    region="EU",
                    timezone="Asia/Kolkata",
                    data_type="selected_events",
                    events=["App Launched", "UTM Visited"],
                    user_id_fields=["email", "identity"],
                    anonymous_id_field="clevertapId",
                    frequency={"one_time": {"from": "2026-10-01", "to": "2026-10-15"}},
                )
            ]
        },
        catalog,
    )
    assert problems == []
    assert (parsed.region, parsed.timezone, parsed.events) == ("eu", "Asia/Kolkata", ("App Launched", "UTM Visited"))
    assert parsed.user_id_fields == ("email", "identity")
    assert parsed.anonymous_id_field == "clevertapId"
    assert parsed.frequency.kind == "one-time"
    assert parsed.frequency.one_time is not None
    assert parsed.frequency.one_time.window(date(2026, 11, 20)) == (date(2026, 10, 1), date(2026, 10, 15))
    defaults = ExportJob.model_validate(job())
    assert (defaults.region, defaults.timezone, defaults.anonymous_id_field) == ("us", "UTC", "objectId")
    assert defaults.user_id_fields == ("identity", "email", "phone")
    assert defaults.frequency.every_hours == 6
    assert defaults.kind == "events"


def test_the_stored_definition_reads_back_as_the_same_job(catalog: EventCatalog) -> None:
    for frequency in (
        {"one_time": "previous_month"},
        {"one_time": {"day": "2026-11-01"}},
        {"one_time": {"from": "2026-11-01", "to": "2026-11-03"}},
        {"recurring": {"every_hours": 12}},
    ):
        original = ExportJob.model_validate(job(frequency=frequency))
        assert original.definition()["frequency"] == frequency
        assert ExportJob.from_definition(original.definition()) == original


@pytest.mark.parametrize("hours", [2, 3, 25, 48])
def test_recurrence_outside_4_to_24_hours_is_refused(catalog: EventCatalog, hours: int) -> None:
    assert only_problem(catalog, job(frequency={"recurring": {"every_hours": hours}})) == (
        f"export 'daily-events': frequency: recurring every {hours} hours is not allowed; "
        "CleverTap recurs every 4 to 24 hours"
    )


@pytest.mark.parametrize("hours", [4, 24])
def test_recurrence_of_4_and_24_hours_is_allowed(catalog: EventCatalog, hours: int) -> None:
    assert problems_of(catalog, job(frequency={"recurring": {"every_hours": hours}})) == []


@pytest.mark.parametrize("hours", ["6h", 6.5, True])
def test_recurrence_must_be_whole_hours(catalog: EventCatalog, hours: object) -> None:
    message = only_problem(catalog, job(frequency={"recurring": {"every_hours": hours}}))
    assert "export 'daily-events': frequency: recurring every_hours must be a whole number of hours from 4 to 24" in (
        message
    )


def test_a_range_longer_than_60_days_is_refused(catalog: EventCatalog) -> None:
    message = only_problem(catalog, job(frequency={"one_time": {"from": "2026-08-01", "to": "2026-10-15"}}))
    assert message.startswith("export 'daily-events': frequency: one_time from 2026-08-01 to 2026-10-15 covers 76 days")
    assert "at most the last 60 days" in message
    assert problems_of(catalog, job(frequency={"one_time": {"from": "2026-08-01", "to": "2026-09-29"}})) == []


def test_a_range_that_ends_before_it_starts_is_refused(catalog: EventCatalog) -> None:
    assert "one_time from 2026-11-05 is after to 2026-11-01" in only_problem(
        catalog, job(frequency={"one_time": {"from": "2026-11-05", "to": "2026-11-01"}})
    )


@pytest.mark.parametrize(
    ("frequency", "message"),
    [
        ("weekly", "frequency must be one of {one_time: {day: YYYY-MM-DD}}"),
        ({"one_time": "last_week"}, "one_time 'last_week' is not a one-time period; use previous_month"),
        ({"one_time": {"day": "2026-13-01"}}, "one_time day '2026-13-01' is not a date; write it as YYYY-MM-DD"),
        ({"one_time": {"from": "2026-11-01"}}, "one_time must be {day: YYYY-MM-DD}, {from: YYYY-MM-DD, to:"),
        ({"recurring": {"hours": 6}}, "write recurring as {recurring: {every_hours: N}} with N from 4 to 24"),
        ({"one_time": "previous_month", "recurring": {"every_hours": 6}}, "frequency must be one of"),
    ],
)
def test_malformed_frequencies_say_what_is_allowed(catalog: EventCatalog, frequency: object, message: str) -> None:
    problem = only_problem(catalog, job(frequency=frequency))
    assert problem.startswith("export 'daily-events': frequency")
    assert message in problem


def test_a_bad_date_in_the_yaml_file_names_its_export(tmp_path: Path, catalog: EventCatalog) -> None:
    config = tmp_path / "ctsync.yml"
    config.write_text(
        textwrap.dedent(
            """\
            exports:
              - name: once
                nickname: CT
                location: /data
                data_type: all_events
                frequency: {one_time: {day: 2026-02-30}}
            """
        )
    )
    assert read_exports_file(config, catalog).problems == (
        "export 'once': frequency: one_time day '2026-02-30' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-01",
    )


def test_a_non_system_event_under_selected_events_is_refused(catalog: EventCatalog) -> None:
    message = only_problem(
        catalog, job(data_type="selected_events", events=["App Launched", "Charged", "Notification Delivered"])
    )
    assert message.startswith(
        "export 'daily-events': events: 'Charged' is not a system event; 'Notification Delivered' is not a system event"
    )
    assert "selected_events takes system events only" in message
    assert "use data_type all_events" in message


def test_an_unknown_event_under_selected_events_gets_a_suggestion(catalog: EventCatalog) -> None:
    message = only_problem(catalog, job(data_type="selected_events", events=["app launched"]))
    assert "'app launched' is not a CleverTap event in the catalog (did you mean 'App Launched'?)" in message


def test_selected_events_needs_events_and_others_take_none(catalog: EventCatalog) -> None:
    assert "data_type selected_events needs at least one system event" in only_problem(
        catalog, job(data_type="selected_events")
    )
    assert "data_type selected_events needs at least one system event" in only_problem(
        catalog, job(data_type="selected_events", events=[])
    )
    assert "events is only used with data_type selected_events (this export's data_type is all_events)" in (
        only_problem(catalog, job(data_type="all_events", events=["App Launched"]))
    )
    assert "'App Launched' is listed twice" in only_problem(
        catalog, job(data_type="selected_events", events=["App Launched", "App Launched"])
    )


def test_an_unknown_data_type_is_refused(catalog: EventCatalog) -> None:
    assert only_problem(catalog, job(data_type="custom_events")) == (
        "export 'daily-events': data_type 'custom_events' is not a data type; use one of all_system_events, "
        "selected_events, engagement_events, user_profiles, all_events"
    )


def test_every_data_type_is_accepted(catalog: EventCatalog) -> None:
    for data_type in ("all_system_events", "engagement_events", "user_profiles", "all_events"):
        assert problems_of(catalog, job(data_type=data_type)) == []
    assert ExportJob.model_validate(job(data_type="user_profiles")).kind == "profiles"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"region": "asia"}, "region must be us or eu (the region of the Segment workspace), not 'asia'"),
        ({"timezone": "Mars/Base"}, "timezone 'Mars/Base' is not an IANA timezone"),
        ({"user_id_fields": ["identity", "custom"]}, "user_id_fields: 'custom' cannot be a user ID field"),
        ({"user_id_fields": ["email", "email"]}, "user_id_fields: email is listed twice"),
        ({"user_id_fields": []}, "user_id_fields must list at least one of identity, email, phone"),
        ({"nickname": "!!!"}, "nickname: the nickname '!!!' has no ASCII letter or digit"),
        ({"nickname": "  "}, "nickname must be set: the source nickname"),
        ({"location": ""}, "location must be set: the folder, glob or URL of the export files"),
        ({"colour": "red"}, "colour is not a setting of an export; the settings are name, nickname, region"),
    ],
)
def test_field_problems_name_the_export_and_the_field(
    catalog: EventCatalog, overrides: dict[str, Any], message: str
) -> None:
    problem = only_problem(catalog, job(**overrides))
    assert problem.startswith("export 'daily-events': ")
    assert message in problem


def test_missing_fields_say_what_to_write(catalog: EventCatalog) -> None:
    problems = problems_of(catalog, {"nickname": "CT"})
    assert problems == [
        "exports entry 1: name is required: a unique name for the export, e.g. daily-events",
        "exports entry 1: location is required: the folder, glob or URL of the export files, "
        "e.g. s3://bucket/clevertap/events/",
        "exports entry 1: data_type is required: one of all_system_events, selected_events, engagement_events, "
        "user_profiles, all_events",
        "exports entry 1: frequency is required: {one_time: {day: YYYY-MM-DD}}, {one_time: {from: YYYY-MM-DD, "
        "to: YYYY-MM-DD}}, {one_time: previous_month}, {one_time: current_month} or {recurring: {every_hours: N}} "
        "with N from 4 to 24",
    ]


def test_a_duplicate_name_is_refused(catalog: EventCatalog) -> None:
    jobs, problems = parse_exports(
        {"exports": [job(), job(location="/other"), job(name="other")]},
        catalog,
    )
    assert [j.name for j in jobs] == ["daily-events", "other"]
    assert problems == [
        "export 'daily-events': name is used by exports entries 1 and 2; each export needs a unique name"
    ]


def test_the_whole_file_is_checked_and_every_problem_reported(tmp_path: Path, catalog: EventCatalog) -> None:
    config = tmp_path / "ctsync.yml"
    config.write_text(
        textwrap.dedent(
            """\
            destinations: {}
            exports:
              - name: fine
                nickname: CT
                location: /data
                data_type: all_events
                frequency: {recurring: {every_hours: 4}}
              - name: daily-events
                nickname: CT
                location: /data
                data_type: all_system_events
                frequency: {recurring: {every_hours: 2}}
              - name: picked
                nickname: CT
                location: /data
                data_type: selected_events
                events: [Charged]
                frequency: {one_time: previous_month}
              - name: fine
                nickname: CT
                location: /data
                data_type: all_events
                frequency: {recurring: {every_hours: 4}}
              - just a string
            """
        )
    )
    with pytest.raises(ExportConfigError) as caught:
        load_export_jobs(config, catalog)
    assert caught.value.problems == (
        "export 'daily-events': frequency: recurring every 2 hours is not allowed; CleverTap recurs every 4 to 24 "
        "hours",
        "export 'picked': events: 'Charged' is not a system event; selected_events takes system events only "
        f"(is_system_event in {catalog.display_path}), or use data_type all_events to load every event in the files",
        "export 'fine': name is used by exports entries 1 and 4; each export needs a unique name",
        "exports entry 5: must be a mapping with name, nickname, location, data_type and frequency",
    )
    assert str(caught.value).startswith(f"{config}: 4 problems in exports:\n  - export 'daily-events'")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("exports: [\n", "is not valid YAML"),
        ("- a\n- b\n", "must be a mapping with an exports: list"),
        ("exports: {a: 1}\n", "exports must be a list of exports"),
    ],
)
def test_a_broken_file_is_refused(tmp_path: Path, catalog: EventCatalog, content: str, message: str) -> None:
    config = tmp_path / "ctsync.yml"
    config.write_text(content)
    with pytest.raises(CtsyncError, match=message):
        load_export_jobs(config, catalog)


def test_a_missing_file_says_how_to_create_it(tmp_path: Path, catalog: EventCatalog) -> None:
    with pytest.raises(
        CtsyncError, match=r"does not exist; create it with an exports: section \(see docs/exports.md\)"
    ):
        load_export_jobs(tmp_path / "ctsync.yml", catalog)


def test_a_file_without_exports_has_none(tmp_path: Path, catalog: EventCatalog) -> None:
    config = tmp_path / "ctsync.yml"
    config.write_text("destinations: {}\n")
    assert load_export_jobs(config, catalog) == []


# -- one-time windows: at most the last 60 days, nothing in the future ---------------------


def window(frequency: object, now: datetime = NOW, timezone: str = "UTC") -> tuple[date, date]:
    return one_time_window(ExportJob.model_validate(job(frequency=frequency, timezone=timezone)), now)


def test_one_time_windows_resolve_against_today() -> None:
    assert window({"one_time": {"day": "2026-11-20"}}) == (date(2026, 11, 20), date(2026, 11, 20))
    assert window({"one_time": "current_month"}) == (date(2026, 11, 1), date(2026, 11, 20))
    assert window({"one_time": "previous_month"}) == (date(2026, 10, 1), date(2026, 10, 31))
    assert window({"one_time": "previous_month"}, datetime(2026, 3, 10, tzinfo=UTC)) == (
        date(2026, 2, 1),
        date(2026, 2, 28),
    )
    # exactly 60 days back is the earliest day allowed
    assert window({"one_time": {"from": "2026-09-21", "to": "2026-11-19"}}) == (date(2026, 9, 21), date(2026, 11, 19))


def test_a_future_day_is_refused() -> None:
    with pytest.raises(CtsyncError) as caught:
        window({"one_time": {"day": "2026-11-21"}})
    assert str(caught.value) == (
        "export 'daily-events': frequency: one-time 2026-11-21 is in the future (today is 2026-11-20); a one-time "
        "export covers days up to today; use a recurring export for data still to come"
    )
    with pytest.raises(CtsyncError, match="is in the future"):
        window({"one_time": {"from": "2026-11-10", "to": "2026-11-25"}})


def test_today_is_the_exports_own_timezone() -> None:
    late = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # already 21 November in Kolkata
    assert window({"one_time": {"day": "2026-11-21"}}, late, "Asia/Kolkata") == (date(2026, 11, 21),) * 2
    with pytest.raises(CtsyncError, match=r"in the future \(today is 2026-11-20\)"):
        window({"one_time": {"day": "2026-11-21"}}, late, "UTC")


def test_a_day_older_than_60_days_is_refused() -> None:
    with pytest.raises(CtsyncError) as caught:
        window({"one_time": {"from": "2026-09-20", "to": "2026-10-01"}})
    assert str(caught.value) == (
        "export 'daily-events': frequency: one-time 2026-09-20 to 2026-10-01 starts 2026-09-20, more than 60 days "
        "ago; CleverTap one-time exports cover at most the last 60 days (from 2026-09-21 to 2026-11-20)"
    )
    with pytest.raises(CtsyncError, match="more than 60 days ago"):
        window({"one_time": {"day": "2026-01-05"}})
