"""The parallel lake load (flows/lake.py) on a local Dask cluster of 2 worker processes: the tables and ids
of a serial load, a rerun that adds nothing, and a failed worker that leaves nothing recorded or published."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prefect import task

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.lake.parallel import Group, StagedGroup, stage_group
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.flows.conftest import END
from tests.lake.conftest import SCHEMA, assert_lake_equals_warehouse, lake_files
from tests.warehouse.conftest import query

pytest.importorskip("prefect_dask")

import flows.lake
from flows.lake import load_lake_in_parallel

OPTIONS = LoadOptions(nickname="CleverTap_Prod", timezone="Asia/Kolkata")


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> Path:
    """The sample loaded by the serial loader into a DuckDB warehouse."""
    warehouse = tmp_path_factory.mktemp("serial") / "warehouse.duckdb"
    assert not load_export_files([str(sample_export)], OPTIONS, warehouse=str(warehouse)).problems
    return warehouse


def run(paths: list[Path], lake: str, state: Path, *, return_state: bool = False) -> object:
    return load_lake_in_parallel(
        [str(path) for path in paths],
        "CleverTap_Prod",
        lake=lake,
        warehouse=str(state),
        timezone="Asia/Kolkata",
        return_state=return_state,
    )


def loads(state: Path) -> list[tuple[object, ...]]:
    return query(str(state), f"select status, count(*), sum(rows_inserted) from {SCHEMA}._loads group by 1 order by 1")


def test_two_workers_load_the_serial_tables_and_ids_and_a_rerun_adds_nothing(
    tmp_path: Path, sample_export: Path, serial: Path
) -> None:
    lake, state = str(tmp_path / "lake"), tmp_path / "state.duckdb"
    counts = run([sample_export], lake, state)
    assert isinstance(counts, dict)
    assert counts["workers' tasks"] > counts["workers"] == 2  # tasks spread over both worker processes
    assert counts["files not loaded"] == 0
    assert counts["new rows"] == query(str(serial), f"select sum(rows_inserted) from {SCHEMA}._loads")[0][0]
    assert_lake_equals_warehouse(lake, str(state), str(serial))
    files = lake_files(lake)
    assert not [relative for relative in files if relative.startswith("_staging/")]
    recorded = loads(state)
    again = run([sample_export], lake, state)
    assert isinstance(again, dict)
    assert again["new rows"] == 0 and again["batches published"] == 0
    assert lake_files(lake) == files
    assert_lake_equals_warehouse(lake, str(state), str(serial))
    loaded = [row for row in loads(state) if row[0] == "loaded"]
    assert loaded == [row for row in recorded if row[0] == "loaded"]  # the rerun loaded no file again


@task
def stage_then_fail(group: Group, options: LoadOptions, lake: str, snapshot: str, config: str | None) -> StagedGroup:
    """A worker that stages its group, then fails (its machine lost, say)."""
    staged = stage_group(group, options, lake, snapshot)
    if group.route == "events:charged":
        raise RuntimeError("worker lost after staging")
    return staged


def test_a_failed_worker_fails_the_run_and_nothing_is_recorded_or_published(
    tmp_path: Path, sample_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, state = str(tmp_path / "lake"), tmp_path / "state.duckdb"
    run([sample_export], lake, state)
    more = tmp_path / "more"
    write_sample_export(more, events=1500, users=200, seed=5, end=END, timezone="Asia/Kolkata", days=40)
    files, recorded = lake_files(lake), loads(state)
    monkeypatch.setattr(flows.lake, "stage_group_task", stage_then_fail)
    outcome = run([more], lake, state, return_state=True)
    assert outcome.is_failed()  # type: ignore[attr-defined]
    message = str(outcome.message)  # type: ignore[attr-defined]
    assert re.search(r"\b1 of \d+ worker task\(s\) failed", message) and "worker lost after staging" in message
    assert lake_files(lake) == files  # the other workers' staged files are gone, none was published
    assert loads(state) == recorded
    monkeypatch.undo()
    counts = run([more], lake, state)  # once the cause is gone the same files load
    assert isinstance(counts, dict) and counts["new rows"] > 0
