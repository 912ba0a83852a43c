"""The parallel lake load's pieces without a cluster: how files are grouped, and what the flow refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsync.errors import CtsyncError
from ctsync.warehouse.lake.parallel import (
    begin_parallel_load,
    finish_parallel_load,
    plan_groups,
    stage_group,
)
from ctsync.warehouse.loader import LoadOptions
from tests.conftest import event, write_export
from tests.lake.conftest import lake_files
from tests.warehouse.conftest import query


def test_files_are_grouped_by_the_table_they_write(tmp_path: Path) -> None:
    """Two export runs of one event (overlapping series) go to one worker; profiles go together."""
    charged = [event("Charged", 20240312101010, {"Amount": 5}, objectId="__g1", identity="u1")]
    launched = [event("App Launched", 20240312101010, {}, objectId="__g1", identity="u1")]
    write_export(tmp_path / "1700000001-1710000000-Charged-20240312-0-0.json.gz", charged)
    write_export(tmp_path / "1700000002-1710000100-Charged-20240312-0-0.json.gz", charged)
    write_export(tmp_path / "1700000001-1710000000-App Launched-20240312-0-0.json.gz", launched)
    write_export(tmp_path / "100000000-1700000009-1710000300-3-json.gz", ['{"identity": "u1", "Name": "Ann"}'])
    groups = {group.route: len(group.paths) for group in plan_groups([str(tmp_path)])}
    assert groups == {"events:charged": 2, "events:app_launched": 1, "profiles": 1}


def test_two_workers_writing_one_table_are_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    """A file named for one event but holding another: its group writes the other event's table too."""
    lake, state = str(tmp_path / "lake"), tmp_path / "state.duckdb"
    launched = [event("App Launched", 20240312101010 + i, {}, objectId=f"__g{i}", identity=f"u{i}") for i in range(3)]
    write_export(tmp_path / "in" / "1700000001-1710000000-App Launched-20240312-0-0.json.gz", launched[:2])
    write_export(tmp_path / "in" / "1700000001-1710000000-Charged-20240312-0-0.json.gz", launched[1:])
    options = LoadOptions(nickname="Parallel")
    load = begin_parallel_load(str(state), lake, "Parallel")
    try:
        groups = plan_groups([str(tmp_path / "in")])
        staged = [stage_group(group, options, lake, load.snapshot) for group in groups]
        assert [group.tables for group in staged] == [("app_launched",), ("app_launched",)]
        with pytest.raises(CtsyncError, match="written by two workers"):
            finish_parallel_load(load, staged)
    finally:
        load.close()
    assert query(str(state), "select count(*) from parallel._loads") == [(0,)]
    assert not [relative for relative in lake_files(lake, "parallel") if not relative.startswith("_staging/")]


def test_a_parallel_load_takes_a_duckdb_state_database(tmp_path: Path) -> None:
    with pytest.raises(CtsyncError, match="DuckDB file that only the flow writes"):
        begin_parallel_load("postgresql://nobody@127.0.0.1:1/none", str(tmp_path / "lake"), "Parallel")


def test_a_worker_leaves_the_state_database_alone(tmp_path: Path) -> None:
    """A worker stages its rows and records them in its copy only: nothing is published before the flow."""
    lake, state = str(tmp_path / "lake"), tmp_path / "state.duckdb"
    write_export(
        tmp_path / "in" / "1700000001-1710000000-Charged-20240312-0-0.json.gz",
        [event("Charged", 20240312101010, {"Amount": 5}, objectId="__g1", identity="u1")],
    )
    load = begin_parallel_load(str(state), lake, "Parallel")
    try:
        (group,) = plan_groups([str(tmp_path / "in")])
        staged = stage_group(group, LoadOptions(nickname="Parallel"), lake, load.snapshot)
        assert staged.summary.total("rows_inserted") == 1 and staged.tables == ("charged",)
        assert all(relative.startswith("_staging/") for relative in lake_files(lake, "parallel"))
        assert load.state.execute("select count(*) from parallel._loads") == [(0,)]
        published = finish_parallel_load(load, [staged])
    finally:
        load.close()
    assert len(published) == 1
    assert query(str(state), "select status, rows_inserted from parallel._loads") == [("loaded", 1)]
    assert [relative.split("/")[1] for relative in lake_files(lake, "parallel")] == ["charged"]


def test_workers_reach_the_state_copy_and_stage_through_object_storage(s3_lake: str, tmp_path: Path) -> None:
    state = tmp_path / "state.duckdb"
    write_export(
        tmp_path / "in" / "1700000001-1710000000-Charged-20240312-0-0.json.gz",
        [event("Charged", 20240312101010 + i, {"Amount": i}, objectId=f"__g{i}", identity=f"u{i}") for i in range(3)],
    )
    load = begin_parallel_load(str(state), s3_lake, "Parallel")
    try:
        staged = [
            stage_group(group, LoadOptions(nickname="Parallel"), s3_lake, load.snapshot)
            for group in plan_groups([str(tmp_path / "in")])
        ]
        finish_parallel_load(load, staged)
    finally:
        load.close()
    files = lake_files(s3_lake, "parallel")
    assert files and all(relative.startswith("parallel/charged/timestamp__date=2024-03-12/") for relative in files)
    assert query(str(state), "select sum(rows_inserted) from parallel._loads") == [(3,)]
