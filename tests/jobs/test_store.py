"""Export status and edit rules, stored in the warehouse's ctsync schema (a real DuckDB file)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ctsync.errors import CtsyncError
from ctsync.jobs.definitions import ExportJob
from ctsync.jobs.store import (
    ExportFilter,
    ExportStatus,
    ExportStore,
    RunCounts,
    RunStatus,
)
from tests.postgres import fresh_database

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_job(name: str = "events", **overrides: Any) -> ExportJob:
    entry: dict[str, Any] = {
        "name": name,
        "nickname": "CT",
        "location": "/data/clevertap",
        "data_type": "all_system_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    entry.update(overrides)
    return ExportJob.model_validate(entry)


def one_time(name: str = "once", **overrides: Any) -> ExportJob:
    return make_job(name, frequency={"one_time": {"day": "2026-11-10"}}, **overrides)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExportStore]:
    """The same tests on a DuckDB file and, with CTSYNC_TEST_POSTGRES_URL, on a fresh PostgreSQL database."""
    if request.param == "duckdb":
        yield ExportStore.open(str(tmp_path / "warehouse.duckdb"))
        return
    with fresh_database() as url:
        yield ExportStore.open(url)


def complete_run(store: ExportStore, name: str, at: datetime, status: RunStatus = RunStatus.SUCCEEDED) -> ExportStatus:
    export = store.get(name)
    run = store.start_run(name, at, export.window)
    return store.finish_run(run, at + timedelta(minutes=5), status, RunCounts(files_loaded=1, rows_loaded=10))


# -- registering and the state machine ---------------------------------------------------


def test_new_exports_are_registered_as_pending(store: ExportStore) -> None:
    plan = store.sync([make_job(), one_time()], NOW)
    assert [job.name for job, _ in plan.created] == ["events", "once"]
    exports = store.exports()
    assert {name: export.status for name, export in exports.items()} == {
        "events": ExportStatus.PENDING,
        "once": ExportStatus.PENDING,
    }
    assert exports["once"].window == (date(2026, 11, 10), date(2026, 11, 10))
    assert exports["events"].window is None
    assert exports["events"].job == make_job()
    # the state lives in the ctsync schema of the warehouse itself
    with store.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names(schema="ctsync"))
        statuses = connection.execute(sa.text("select name, status from ctsync.export_jobs order by name")).all()
    assert tables >= {"export_jobs", "export_runs"}
    assert statuses == [("events", "PENDING"), ("once", "PENDING")]
    assert store.sync([make_job(), one_time()], NOW + timedelta(days=1)).created == ()


def test_a_one_time_month_is_fixed_when_the_export_is_created(store: ExportStore) -> None:
    store.sync([make_job("october", frequency={"one_time": "previous_month"})], NOW)
    later = store.sync([make_job("october", frequency={"one_time": "previous_month"})], NOW + timedelta(days=30))
    assert later.problems == ()
    assert store.get("october").window == (date(2026, 10, 1), date(2026, 10, 31))


def test_a_new_one_time_export_outside_60_days_is_not_registered(store: ExportStore) -> None:
    plan = store.sync([make_job("old", frequency={"one_time": {"day": "2026-08-01"}})], NOW)
    assert plan.problem_for("old") is not None
    assert "more than 60 days ago" in (plan.problem_for("old") or "")
    assert store.exports() == {}


def test_a_one_time_export_runs_once_then_is_done(store: ExportStore) -> None:
    store.sync([one_time()], NOW)
    run = store.start_run("once", NOW, (date(2026, 11, 10), date(2026, 11, 10)))
    assert store.get("once").status is ExportStatus.RUNNING
    assert store.runs("once")[0].status is RunStatus.RUNNING
    counts = RunCounts(files_loaded=3, lines_read=100, rows_loaded=80, rows_inserted=70, rows_skipped=20)
    assert store.finish_run(run, NOW + timedelta(minutes=1), RunStatus.SUCCEEDED, counts) is ExportStatus.DONE
    export = store.get("once")
    assert (export.status, export.last_run_status, export.is_due(NOW + timedelta(days=1))) == (
        ExportStatus.DONE,
        RunStatus.SUCCEEDED,
        False,
    )
    (recorded,) = store.runs("once")
    assert (recorded.status, recorded.counts, recorded.days) == (
        RunStatus.SUCCEEDED,
        counts,
        (date(2026, 11, 10), date(2026, 11, 10)),
    )
    assert recorded.finished_at == NOW + timedelta(minutes=1)
    with pytest.raises(CtsyncError, match="'once' is DONE: a one-time export runs once"):
        store.start_run("once", NOW + timedelta(hours=1), None)


def test_a_failed_one_time_run_leaves_it_pending(store: ExportStore) -> None:
    store.sync([one_time()], NOW)
    assert complete_run(store, "once", NOW, RunStatus.FAILED) is ExportStatus.PENDING
    assert store.get("once").is_due(NOW + timedelta(minutes=10))
    assert complete_run(store, "once", NOW + timedelta(minutes=10)) is ExportStatus.DONE


def test_a_recurring_export_goes_back_to_pending_and_is_due_after_its_interval(store: ExportStore) -> None:
    store.sync([make_job(frequency={"recurring": {"every_hours": 6}})], NOW)
    assert store.get("events").is_due(NOW)  # never ran
    assert complete_run(store, "events", NOW) is ExportStatus.PENDING
    export = store.get("events")
    assert export.due_at() == NOW + timedelta(hours=6)
    assert not export.is_due(NOW + timedelta(hours=5, minutes=59))
    assert export.is_due(NOW + timedelta(hours=6))
    assert complete_run(store, "events", NOW + timedelta(hours=6)) is ExportStatus.PENDING
    assert len(store.runs("events")) == 2


def test_a_running_export_cannot_start_twice(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    store.start_run("events", NOW, None)
    with pytest.raises(CtsyncError, match="'events' is already RUNNING"):
        store.start_run("events", NOW, None)
    assert not store.get("events").is_due(NOW + timedelta(days=1))
    # its process (this one) is alive: it is not taken for a crash
    assert store.recover_crashed(NOW + timedelta(hours=1)) == []


def test_stop(store: ExportStore) -> None:
    store.sync([make_job(), one_time()], NOW)
    assert store.stop("events", NOW) is True
    assert store.get("events").status is ExportStatus.STOPPED
    assert store.get("events").stopped_at == NOW
    assert store.stop("events", NOW) is False
    assert not store.get("events").is_due(NOW + timedelta(days=2))
    with pytest.raises(CtsyncError, match="'events' is STOPPED and never runs again"):
        store.start_run("events", NOW, None)
    complete_run(store, "once", NOW)
    with pytest.raises(CtsyncError, match=r"'once' is DONE .*nothing to stop"):
        store.stop("once", NOW)
    with pytest.raises(CtsyncError, match="no export named 'nope'"):
        store.stop("nope", NOW)


def test_stopping_a_running_export_keeps_it_stopped_when_the_run_ends(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    run = store.start_run("events", NOW, None)
    assert store.stop("events", NOW + timedelta(minutes=1))
    final = store.finish_run(run, NOW + timedelta(minutes=2), RunStatus.SUCCEEDED, RunCounts(rows_loaded=5))
    assert final is ExportStatus.STOPPED
    assert store.get("events").status is ExportStatus.STOPPED
    assert store.runs("events")[0].counts.rows_loaded == 5


def test_a_run_of_another_machine_is_taken_as_crashed_only_once_stale(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    run = store.start_run("events", NOW, None)
    with store.engine.begin() as connection:
        connection.execute(sa.text("update ctsync.export_runs set runner_host = 'another-machine'"))
    assert store.recover_crashed(NOW + timedelta(hours=23)) == []
    assert store.get("events").status is ExportStatus.RUNNING
    (crashed,) = store.recover_crashed(NOW + timedelta(hours=25))
    assert (crashed.run_id, crashed.status) == (run.run_id, RunStatus.CRASHED)
    assert "stopped without recording its result" in (crashed.error or "")
    export = store.get("events")
    assert (export.status, export.last_run_status) == (ExportStatus.PENDING, RunStatus.CRASHED)
    assert export.is_due(NOW + timedelta(hours=25))  # a crashed run is retried right away
    assert store.runs("events")[0].status is RunStatus.CRASHED


# -- CleverTap's edit rules ------------------------------------------------------------------


def test_an_allowed_edit_is_stored_for_the_next_run(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    edited = make_job(location="/data/elsewhere", frequency={"recurring": {"every_hours": 12}})
    plan = store.sync([edited], NOW + timedelta(hours=1))
    assert plan.problems == ()
    assert plan.edited == ((edited, ("frequency", "location")),)
    export = store.get("events")
    assert (export.job.location, export.every_hours) == ("/data/elsewhere", 12)
    assert export.updated_at == NOW + timedelta(hours=1)
    assert export.created_at == NOW


def test_an_edit_while_running_applies_to_the_next_run(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    run = store.start_run("events", NOW, None)
    assert store.sync([make_job(location="/new")], NOW).problems == ()
    assert run.definition["location"] == "/data/clevertap"
    store.finish_run(run, NOW, RunStatus.SUCCEEDED, RunCounts())
    assert store.runs("events")[0].definition["location"] == "/data/clevertap"
    assert store.get("events").job.location == "/new"


def test_switching_events_to_profiles_is_refused(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    plan = store.sync([make_job(data_type="user_profiles")], NOW)
    assert plan.problem_for("events") == (
        "export 'events': cannot switch between events and profiles (data_type all_system_events -> "
        "user_profiles); CleverTap never changes an export from events to profiles or back. Set data_type back "
        "to all_system_events, or stop this export and add a new one with another name"
    )
    assert store.get("events").data_type == "all_system_events"


def test_switching_profiles_to_events_is_refused_but_between_event_types_is_allowed(store: ExportStore) -> None:
    store.sync([make_job("people", data_type="user_profiles"), make_job()], NOW)
    plan = store.sync([make_job("people", data_type="all_events"), make_job(data_type="engagement_events")], NOW)
    assert "cannot switch between events and profiles" in (plan.problem_for("people") or "")
    assert plan.problem_for("events") is None
    assert store.get("events").data_type == "engagement_events"


def test_a_one_time_export_cannot_be_edited_even_while_pending(store: ExportStore) -> None:
    store.sync([one_time()], NOW)
    plan = store.sync([one_time(location="/other")], NOW)
    assert plan.problem_for("once") == (
        "export 'once' is a one-time export and cannot be edited, whatever its status (changed: location); put its "
        "stored definition back (see 'ctsync exports show once') or add a new export with another name"
    )
    assert store.get("once").job.location == "/data/clevertap"


def test_a_done_export_cannot_be_edited(store: ExportStore) -> None:
    store.sync([one_time()], NOW)
    complete_run(store, "once", NOW)
    problem = store.sync([one_time(nickname="Other")], NOW).problem_for("once")
    assert problem is not None
    assert problem.startswith("export 'once' is DONE and cannot be edited (changed: nickname)")


def test_a_stopped_export_cannot_be_edited(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    store.stop("events", NOW)
    problem = store.sync([make_job(frequency={"recurring": {"every_hours": 8}})], NOW).problem_for("events")
    assert problem is not None
    assert problem.startswith("export 'events' is STOPPED and cannot be edited (changed: frequency)")
    assert store.get("events").every_hours == 6


def test_a_recurring_export_cannot_become_one_time(store: ExportStore) -> None:
    store.sync([make_job()], NOW)
    problem = store.sync([make_job(frequency={"one_time": "current_month"})], NOW).problem_for("events")
    assert "a recurring export cannot become a one-time export" in (problem or "")


def test_an_unchanged_done_or_stopped_export_is_not_a_problem(store: ExportStore) -> None:
    store.sync([one_time(), make_job()], NOW)
    complete_run(store, "once", NOW)
    store.stop("events", NOW)
    assert store.sync([one_time(), make_job()], NOW + timedelta(days=1)).problems == ()


# -- listing: filters and pagination ----------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    """25 exports: 10 recurring events, 5 recurring profiles, 10 one-time events (4 DONE), 2 stopped."""
    store = ExportStore.open(str(tmp_path_factory.mktemp("many") / "warehouse.duckdb"))
    jobs = [make_job(f"rec-{i:02}") for i in range(10)]
    jobs += [make_job(f"prof-{i:02}", data_type="user_profiles") for i in range(5)]
    jobs += [one_time(f"once-{i:02}", data_type="engagement_events") for i in range(10)]
    for batch in range(5):  # created in five rounds, a minute apart
        store.sync(jobs[: (batch + 1) * 5], NOW + timedelta(minutes=batch))
    for i in range(4):
        complete_run(store, f"once-{i:02}", datetime(2026, 11, 1 + i, 9, tzinfo=UTC))
    complete_run(store, "rec-00", datetime(2026, 11, 3, 23, 59, tzinfo=UTC))
    store.stop("rec-08", NOW)
    store.stop("rec-09", NOW)
    return store


def names(store: ExportStore, filters: ExportFilter | None = None, **kwargs: Any) -> list[str]:
    return [export.name for export in store.list_page(filters, **kwargs).exports]


def test_list_filters(many: ExportStore) -> None:
    assert many.list_page(ExportFilter(data_type="profiles")).total == 5
    assert many.list_page(ExportFilter(data_type="events")).total == 20
    assert many.list_page(ExportFilter(data_type="engagement_events")).total == 10
    assert many.list_page(ExportFilter(status=ExportStatus.DONE)).total == 4
    assert sorted(names(many, ExportFilter(status=ExportStatus.STOPPED))) == ["rec-08", "rec-09"]
    assert many.list_page(ExportFilter(frequency="one-time")).total == 10
    assert many.list_page(ExportFilter(frequency="recurring", status=ExportStatus.PENDING)).total == 13
    by_date = ExportFilter(exported_from=date(2026, 11, 2), exported_to=date(2026, 11, 3))
    assert sorted(names(many, by_date)) == ["once-01", "once-02", "rec-00"]
    assert sorted(names(many, ExportFilter(exported_from=date(2026, 11, 4)))) == ["once-03"]
    assert many.list_page(ExportFilter(exported_to=date(2026, 10, 31))).total == 0
    combined = ExportFilter(data_type="events", frequency="one-time", exported_to=date(2026, 11, 2))
    assert sorted(names(many, combined)) == ["once-00", "once-01"]


def test_list_pages_newest_first(many: ExportStore) -> None:
    first = many.list_page()
    assert (first.total, first.page, first.pages, first.per_page, len(first.exports)) == (25, 1, 2, 20, 20)
    # newest first; exports created together by name
    assert [export.name for export in first.exports[:5]] == [f"once-{i:02}" for i in range(5, 10)]
    second = many.list_page(page=2)
    assert [export.name for export in second.exports] == [f"rec-{i:02}" for i in range(5)]
    assert many.list_page(per_page=10, page=3).pages == 3
    assert len(many.list_page(per_page=10, page=3).exports) == 5
    assert len(many.list_page(per_page=40).exports) == 25
    seen = [e.name for page in (1, 2, 3) for e in many.list_page(per_page=10, page=page).exports]
    assert len(seen) == len(set(seen)) == 25


@pytest.mark.parametrize("per_page", [5, 15, 25, 50])
def test_only_cleverTaps_page_sizes(many: ExportStore, per_page: int) -> None:
    with pytest.raises(CtsyncError, match=f"items per page must be 10, 20, 30 or 40 .*not {per_page}"):
        many.list_page(per_page=per_page)


def test_a_page_past_the_end_is_refused(many: ExportStore) -> None:
    with pytest.raises(CtsyncError, match=r"there is no page 3: 25 export.* so the last page is 2"):
        many.list_page(page=3)
    with pytest.raises(CtsyncError, match="starts at 1"):
        many.list_page(page=0)


def test_bad_list_filters_are_refused(many: ExportStore) -> None:
    with pytest.raises(CtsyncError, match="--type 'custom' is not a type; use events, profiles or a data type"):
        many.list_page(ExportFilter(data_type="custom"))
    with pytest.raises(CtsyncError, match="--exported-from 2026-11-05 is after --exported-to 2026-11-01"):
        many.list_page(ExportFilter(exported_from=date(2026, 11, 5), exported_to=date(2026, 11, 1)))


def test_an_empty_warehouse_lists_nothing(store: ExportStore) -> None:
    page = store.list_page()
    assert (page.total, page.pages, page.exports) == (0, 1, ())
    assert store.runs() == []
