"""Export jobs end to end: a sample export loaded into a real DuckDB file through run_export/run_due_exports.

Expected counts are computed here from the raw export files and the seed CSV, independently
of the loader and of ctsync's catalog code.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.exports.catalog import CATALOG_FILE, EventCatalog, load_event_catalog
from ctsync.exports.files import FileKind
from ctsync.exports.sample import write_sample_export
from ctsync.jobs.definitions import ExportJob
from ctsync.jobs.runner import ExportRunResult, load_options_for, run_due_exports, run_export
from ctsync.jobs.store import ExportStatus, ExportStore, RunStatus

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / CATALOG_FILE
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = END) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Sample:
    folder: Path
    event_files: list[Path]
    profile_file: Path
    by_event: Counter[str]
    by_event_day: Counter[tuple[str, date]]
    profiles: int

    def events(self, names: set[str] | None = None, days: tuple[date, date] | None = None) -> int:
        return sum(
            count
            for (name, day), count in self.by_event_day.items()
            if (names is None or name in names) and (days is None or days[0] <= day <= days[1])
        )


def raw_records(path: Path) -> list[dict[str, Any]]:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]  # skips the event-name header line


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    folder = tmp_path_factory.mktemp("sample")
    written = write_sample_export(folder, events=1200, users=80, end=END, days=12, seed=11)
    assert written.profile_file is not None
    by_event_day: Counter[tuple[str, date]] = Counter()
    for path in written.files:
        for record in raw_records(path):
            ts = str(record["ts"])
            by_event_day[(record["eventName"], date(int(ts[:4]), int(ts[4:6]), int(ts[6:8])))] += 1
    by_event: Counter[str] = Counter()
    for (name, _day), count in by_event_day.items():
        by_event[name] += count
    profiles = len(raw_records(written.profile_file))
    return Sample(folder, list(written.files), written.profile_file, by_event, by_event_day, profiles)


@pytest.fixture(scope="module")
def small(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few of the sample's event files, for tests about statuses rather than data."""
    folder = tmp_path_factory.mktemp("small")
    for path in sample.event_files[:12]:
        shutil.copy(path, folder)
    return folder


@pytest.fixture(scope="module")
def seed_lists() -> dict[str, set[str]]:
    """The system and engagement lists read straight from the seed CSV."""
    with SEED.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "system": {row["event_name"] for row in rows if row["is_system_event"] == "true"},
        "engagement": {row["event_name"] for row in rows if row["is_engagement_event"] == "true"},
    }


@pytest.fixture(scope="module")
def catalog() -> EventCatalog:
    return load_event_catalog(SEED)


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse.duckdb")


def export(name: str, location: Path | str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "nickname": f"CT {name}",
        "location": str(location),
        "data_type": "all_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    entry.update(overrides)
    return entry


def write_config(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"exports": list(entries)}, sort_keys=False))
    return path


def run(name: str, config: Path, warehouse: str, catalog: EventCatalog, clock: Clock, **kwargs: Any) -> ExportRunResult:
    return run_export(
        name, config=config, warehouse=warehouse, workspace_region="us", catalog=catalog, clock=clock, **kwargs
    )


def tracks_by_event(warehouse: str, schema: str) -> Counter[str]:
    con = duckdb.connect(warehouse, read_only=True)
    try:
        rows = con.execute(f'select event_text, count(*) from "{schema}".tracks group by 1').fetchall()
    finally:
        con.close()
    return Counter({str(name): int(count) for name, count in rows})


def table_names(warehouse: str, schema: str) -> set[str]:
    con = duckdb.connect(warehouse, read_only=True)
    try:
        rows = con.execute("select table_name from information_schema.tables where table_schema = ?", [schema])
        return {str(row[0]) for row in rows.fetchall()}
    finally:
        con.close()


# -- data types --------------------------------------------------------------------------------


def test_each_data_type_loads_exactly_its_events(
    sample: Sample, seed_lists: dict[str, set[str]], catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    selected = {"App Launched", "UTM Visited"}
    config = write_config(
        tmp_path / "ctsync.yml",
        export("system", sample.folder, data_type="all_system_events"),
        export("engagement", sample.folder, data_type="engagement_events"),
        export("selected", sample.folder, data_type="selected_events", events=sorted(selected)),
        export("everything", sample.folder, data_type="all_events"),
    )
    total = sum(sample.by_event.values())
    expected = {
        "system": {n: c for n, c in sample.by_event.items() if n in seed_lists["system"]},
        "engagement": {n: c for n, c in sample.by_event.items() if n in seed_lists["engagement"]},
        "selected": {n: c for n, c in sample.by_event.items() if n in selected},
        "everything": dict(sample.by_event),
    }
    # the sample must tell the types apart for this test to mean anything
    sizes = [sum(counts.values()) for counts in expected.values()]
    assert len(set(sizes)) == 4 and 0 < min(sizes)
    assert "Charged" in expected["everything"] and "App Launched" not in expected["engagement"]
    for name, wanted in expected.items():
        result = run(name, config, warehouse, catalog, Clock())
        assert result.ok, result.error
        assert result.counts.rows_loaded == sum(wanted.values()), name
        assert result.counts.rows_skipped == total - sum(wanted.values()), name
        assert (result.counts.rows_rejected, result.counts.files_failed) == (0, 0)
        assert result.counts.lines_read == total
        assert tracks_by_event(warehouse, f"ct_{name}") == Counter(wanted), name
        assert result.export_status is ExportStatus.PENDING


def test_user_profiles_loads_the_profile_file_only(
    sample: Sample, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("people", sample.folder, data_type="user_profiles"))
    result = run("people", config, warehouse, catalog, Clock())
    assert result.ok, result.error
    assert result.counts.files_loaded == 1
    assert result.counts.files_skipped == len(sample.event_files)
    assert result.counts.rows_loaded == sample.profiles
    tables = table_names(warehouse, "ct_people")
    assert "identifies" in tables
    assert not tables & {"tracks", "app_launched", "charged"}


def test_an_events_export_skips_the_profile_file(
    sample: Sample, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("everything", sample.folder))
    result = run("everything", config, warehouse, catalog, Clock())
    assert result.counts.files_loaded == len(sample.event_files)
    assert result.counts.lines_read == sum(sample.by_event.values())
    assert "identifies" not in table_names(warehouse, "ct_everything")


def test_load_options_follow_the_data_type(catalog: EventCatalog, seed_lists: dict[str, set[str]]) -> None:
    def options(**overrides: Any) -> Any:
        job = ExportJob.model_validate(export("x", "/data", **overrides))
        window = (date(2026, 11, 1), date(2026, 11, 3))
        return load_options_for(job, window, "us", catalog)

    assert options(data_type="all_system_events").events == seed_lists["system"]
    assert options(data_type="engagement_events").events == seed_lists["engagement"]
    assert options(data_type="selected_events", events=["Reply Sent"]).events == {"Reply Sent"}
    everything = options(data_type="all_events", user_id_fields=["email"], anonymous_id_field="clevertapId")
    assert (everything.events, everything.kinds, everything.days) == (
        None,
        {FileKind.EVENTS},
        (date(2026, 11, 1), date(2026, 11, 3)),
    )
    assert (everything.identifiers.user_id, everything.identifiers.anonymous_id) == (("email",), "clevertapId")
    assert (everything.export_job, everything.nickname) == ("x", "CT x")
    profiles = options(data_type="user_profiles")
    assert (profiles.events, profiles.kinds, profiles.days) == (None, {FileKind.PROFILES}, None)


# -- one-time windows --------------------------------------------------------------------------


def test_a_one_time_day_loads_that_local_day_and_is_done(
    sample: Sample, seed_lists: dict[str, set[str]], catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    day = date(2026, 11, 10)
    config = write_config(
        tmp_path / "ctsync.yml",
        export("day", sample.folder, frequency={"one_time": {"day": day.isoformat()}}),
        export(
            "week",
            sample.folder,
            data_type="engagement_events",
            frequency={"one_time": {"from": "2026-11-05", "to": "2026-11-11"}},
        ),
        export("month", sample.folder, data_type="all_system_events", frequency={"one_time": "current_month"}),
    )
    clock = Clock()
    wanted = {
        "day": sample.events(None, (day, day)),
        "week": sample.events(seed_lists["engagement"], (date(2026, 11, 5), date(2026, 11, 11))),
        "month": sample.events(seed_lists["system"], (date(2026, 11, 1), date(2026, 11, 20))),
    }
    assert 0 < wanted["week"] < wanted["month"]
    for name, count in wanted.items():
        result = run(name, config, warehouse, catalog, clock)
        assert result.ok, result.error
        assert result.counts.rows_loaded == count, name
        assert result.export_status is ExportStatus.DONE
        assert sum(tracks_by_event(warehouse, f"ct_{name}").values()) == count
    with pytest.raises(CtsyncError, match="'day' is DONE: a one-time export runs once"):
        run("day", config, warehouse, catalog, clock)
    due = run_due_exports(config=config, warehouse=warehouse, workspace_region="us", catalog=catalog, clock=clock)
    assert due.results == ()


# -- statuses across runs ------------------------------------------------------------------------


def due(config: Path, warehouse: str, catalog: EventCatalog, clock: Clock) -> Any:
    return run_due_exports(config=config, warehouse=warehouse, workspace_region="us", catalog=catalog, clock=clock)


def test_recurring_exports_run_when_due_and_load_only_new_files(
    sample: Sample, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = sample.event_files[::2], sample.event_files[1::2]
    for path in first:
        shutil.copy(path, inbox)
    config = write_config(
        tmp_path / "ctsync.yml",
        export("every6", inbox, frequency={"recurring": {"every_hours": 6}}),
        export("once", inbox, frequency={"one_time": {"day": "2026-11-12"}}),
    )
    clock = Clock()
    initial = due(config, warehouse, catalog, clock)
    assert [result.export for result in initial.results] == ["every6", "once"]
    assert [result.export_status for result in initial.results] == [ExportStatus.PENDING, ExportStatus.DONE]
    lines_first = sum(len(raw_records(path)) for path in first)
    assert initial.results[0].counts.rows_loaded == lines_first

    clock.advance(hours=5, minutes=59)
    for path in second:
        shutil.copy(path, inbox)
    early = due(config, warehouse, catalog, clock)
    assert (early.results, early.not_due) == ((), ("every6", "once"))
    assert ExportStore.open(warehouse).get("every6").status is ExportStatus.PENDING

    clock.advance(minutes=1)
    later = due(config, warehouse, catalog, clock)
    (result,) = later.results
    assert result.export == "every6"
    assert result.counts.files_loaded == len(second)
    assert result.counts.files_skipped == len(first)
    assert result.counts.rows_loaded == sum(len(raw_records(path)) for path in second)
    assert result.export_status is ExportStatus.PENDING
    runs = ExportStore.open(warehouse).runs("every6")
    assert [(r.status, r.started_at) for r in runs] == [
        (RunStatus.SUCCEEDED, END + timedelta(hours=6)),
        (RunStatus.SUCCEEDED, END),
    ]
    assert sum(tracks_by_event(warehouse, "ct_every6").values()) == sum(sample.by_event.values())


def test_an_edit_applies_from_the_next_run(small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path) -> None:
    empty_for_now = tmp_path / "other"
    shutil.copytree(small, empty_for_now)
    config = write_config(tmp_path / "ctsync.yml", export("edited", tmp_path / "missing"))
    failed = run("edited", config, warehouse, catalog, Clock())
    assert failed.status is RunStatus.FAILED
    assert "matches no file" in (failed.error or "")
    assert failed.export_status is ExportStatus.PENDING
    write_config(tmp_path / "ctsync.yml", export("edited", empty_for_now, data_type="engagement_events"))
    result = run("edited", config, warehouse, catalog, Clock(END + timedelta(hours=1)))
    assert result.ok, result.error
    assert result.data_type == "engagement_events"
    runs = ExportStore.open(warehouse).runs("edited")
    assert [r.definition["location"] for r in runs] == [str(empty_for_now), str(tmp_path / "missing")]


def test_a_forbidden_edit_blocks_that_export_only(
    small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("switch", small), export("other", small))
    assert due(config, warehouse, catalog, Clock()).ok
    write_config(
        tmp_path / "ctsync.yml",
        export("switch", small, data_type="user_profiles"),
        export("other", small),
    )
    with pytest.raises(CtsyncError, match="export 'switch': cannot switch between events and profiles"):
        run("switch", config, warehouse, catalog, Clock(END + timedelta(hours=7)))
    later = due(config, warehouse, catalog, Clock(END + timedelta(hours=7)))
    assert [result.export for result in later.results] == ["other"]
    assert len(later.problems) == 1 and "cannot switch between events and profiles" in later.problems[0]
    assert not later.ok
    assert ExportStore.open(warehouse).get("switch").data_type == "all_events"


def test_another_region_is_a_failed_run(small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("eu", small, region="eu"))
    result = run("eu", config, warehouse, catalog, Clock())
    assert result.status is RunStatus.FAILED
    assert "the source's region is 'eu' but the workspace region is 'us'" in (result.error or "")
    assert result.export_status is ExportStatus.PENDING
    (recorded,) = ExportStore.open(warehouse).runs("eu")
    assert (recorded.status, recorded.error) == (RunStatus.FAILED, result.error)


def test_a_stopped_export_never_runs_again(small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path) -> None:
    from ctsync.jobs.runner import stop_export

    config = write_config(tmp_path / "ctsync.yml", export("halt", small))
    assert stop_export("halt", config=config, warehouse=warehouse, catalog=catalog, clock=Clock()) is True
    with pytest.raises(CtsyncError, match="'halt' is STOPPED and never runs again"):
        run("halt", config, warehouse, catalog, Clock())
    later = due(config, warehouse, catalog, Clock(END + timedelta(days=3)))
    assert (later.results, later.not_due) == ((), ("halt",))


def test_an_export_missing_from_the_settings_file_does_not_run(
    small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("here", small))
    with pytest.raises(CtsyncError, match=r"no export named 'gone' in .*ctsync.yml \(exports defined: here\)"):
        run("gone", config, warehouse, catalog, Clock())


def test_an_unexpected_error_is_recorded_and_raised(
    small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("boom", small))

    def broken_loader(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("boom", config, warehouse, catalog, Clock(), loader=broken_loader)
    export_state = ExportStore.open(warehouse).get("boom")
    assert (export_state.status, export_state.last_run_status) == (ExportStatus.PENDING, RunStatus.FAILED)
    assert ExportStore.open(warehouse).runs("boom")[0].error == "KeyboardInterrupt: "


def test_a_crashed_run_is_recorded_by_the_next_run(
    small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ctsync.yml", export("crashy", small))
    script = f"""
import os
from ctsync.exports.catalog import load_event_catalog
from ctsync.jobs.runner import run_export

def crash(*args, **kwargs):
    os._exit(3)  # the process dies in the middle of the load

run_export("crashy", config={str(config)!r}, warehouse={warehouse!r}, workspace_region="us",
           catalog=load_event_catalog({str(SEED)!r}), loader=crash)
"""
    finished = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 3, finished.stderr
    store = ExportStore.open(warehouse)
    assert store.get("crashy").status is ExportStatus.RUNNING
    assert store.runs("crashy")[0].status is RunStatus.RUNNING

    result = run_export("crashy", config=config, warehouse=warehouse, workspace_region="us", catalog=catalog)
    assert result.ok, result.error
    assert result.counts.files_loaded == 12
    newest, crashed = store.runs("crashy")
    assert (newest.run_id, newest.status) == (result.run_id, RunStatus.SUCCEEDED)
    assert crashed.status is RunStatus.CRASHED
    assert f"process {crashed.runner_pid} on" in (crashed.error or "")
    assert crashed.finished_at is not None


def test_a_relative_location_is_read_from_the_settings_files_folder(
    small: Path, catalog: EventCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    shutil.copytree(small, project / "exports" / "events")
    config = write_config(project / "ctsync.yml", export("relative", "exports/events"))
    monkeypatch.chdir(tmp_path)  # not the project folder
    result = run("relative", config, str(tmp_path / "warehouse.duckdb"), catalog, Clock())
    assert result.ok, result.error
    assert result.counts.files_loaded == 12


def test_only_a_run_another_attempt_may_fix_is_retryable(
    small: Path, catalog: EventCatalog, warehouse: str, tmp_path: Path
) -> None:
    """A busy warehouse may be free next time; a file that is not a CleverTap export is refused again."""
    with_csv = tmp_path / "with-csv"
    shutil.copytree(small, with_csv)
    (with_csv / "events.csv").write_text("eventName,ts\nApp Launched,20261120120000\n", encoding="utf-8")
    config = write_config(tmp_path / "ctsync.yml", export("busy", small), export("csv", with_csv))

    def busy_loader(*args: Any, **kwargs: Any) -> Any:
        raise WarehouseBusy("another process is writing to the warehouse")

    busy = run("busy", config, warehouse, catalog, Clock(), loader=busy_loader)
    assert (busy.ok, busy.retryable) == (False, True)
    refused = run("csv", config, warehouse, catalog, Clock())
    assert (refused.ok, refused.retryable) == (False, False)
    assert refused.counts.files_loaded == 12 and refused.counts.files_failed == 1
    assert refused.error is not None and "unsupported" in refused.error and "events.csv" in refused.error
    ok = run("busy", config, warehouse, catalog, Clock())
    assert (ok.ok, ok.retryable) == (True, False)
