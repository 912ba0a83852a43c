"""``ctsync load --lake``: the warehouse's tables as date-partitioned Parquet in a lake (a folder, or S3 on a
real S3-compatible server), the bookkeeping in a state database (a DuckDB file or PostgreSQL), batches that
are published whole or finished by the next run, and loads that add nothing the second time."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.errors import CtsyncError
from ctsync.warehouse import loader
from ctsync.warehouse.lake import target as lake_target
from ctsync.warehouse.lake.jobs import lake_registration_sql
from ctsync.warehouse.lake.storage import Lake
from tests.conftest import event, write_export
from tests.lake.conftest import (
    EVOLVING_OPTIONS,
    OPTIONS,
    SCHEMA,
    assert_lake_equals_warehouse,
    lake_connection,
    lake_files,
    load_into_lake,
    read_lake,
)
from tests.postgres import fresh_database
from tests.warehouse.conftest import query


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs (the loader catches no BaseException)."""


def published(root: str, schema: str = SCHEMA) -> list[str]:
    return [relative for relative in lake_files(root, schema) if relative.startswith(f"{schema}/")]


def staged(root: str, schema: str = SCHEMA) -> list[str]:
    return [relative for relative in lake_files(root, schema) if relative.startswith("_staging/")]


def batch_statuses(state: str, schema: str = SCHEMA) -> list[str]:
    return [str(row[0]) for row in query(state, f'select status from "{schema}"._lake_batches order by committed_at')]


def test_a_local_lake_has_the_warehouse_tables_and_a_second_load_adds_nothing(
    tmp_path: Path, sample: Path, reference: str
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    summary = load_into_lake([str(sample)], root, state)
    assert not summary.problems and summary.reconciles
    assert summary.warehouse == f"{root} (state: {state})"
    compared = assert_lake_equals_warehouse(root, state, reference)
    assert summary.inserted_by_event == {table: rows for table, rows in compared.rows.items() if table != "users"}
    assert not staged(root)
    assert batch_statuses(state) == ["published"]
    # The state database holds the catalog, not the rows.
    assert query(state, f"select count(*) from {SCHEMA}.app_launched") == [(0,)]

    files = published(root)
    again = load_into_lake([str(sample)], root, state)
    assert {result.status for result in again.files} == {"skipped"}
    assert again.inserted_by_event == {}
    assert published(root) == files
    assert batch_statuses(state) == ["published"]

    # Statements for a Spark SQL editor (Databricks), and the load history copied into the lake.
    result = CliRunner().invoke(
        app, ["lake", "register", "--nickname", "CleverTap_Prod", "--lake", root, "--warehouse", state, "--print-sql"]
    )
    assert result.exit_code == 0, result.output
    assert f"create table if not exists `{SCHEMA}`.`app_launched` (`id` STRING," in result.output
    assert f"partitioned by (`timestamp__date`) location 'file://{root}/{SCHEMA}/app_launched'" in result.output
    assert f"alter table `{SCHEMA}`.`app_launched` recover partitions;" in result.output
    assert f"create or replace view `{SCHEMA}`.`tracks` as select" in result.output
    assert_load_history_in_lake(root, state)


def assert_load_history_in_lake(root: str, state: str) -> None:
    con = lake_connection(root)
    try:
        copied = con.execute(
            "select count(*), count(distinct checksum), sum(rows_inserted), count(finished_at) "
            f"from read_parquet('{root}/{SCHEMA}/_loads/loads.parquet')"
        ).fetchall()
    finally:
        con.close()
    assert copied == query(
        state,
        f"select count(*), count(distinct checksum), sum(rows_inserted), count(finished_at) from {SCHEMA}._loads",
    )


def test_batches_that_widen_and_add_columns_give_the_warehouse_tables(
    tmp_path: Path, evolving: Path, evolving_reference: str
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    summary = load_into_lake([str(evolving)], root, state, EVOLVING_OPTIONS)
    assert not summary.problems and summary.total("rows_rejected") == 1  # quarantined in the state database
    assert len(batch_statuses(state, "evolving")) == 5  # one file a batch
    assert_lake_equals_warehouse(root, state, evolving_reference, "evolving")
    con = lake_connection(root)
    try:
        # The first batch's file was rewritten when amount became DOUBLE: no file disagrees on a type.
        types = con.execute(
            "select distinct type from parquet_schema(?) where name in ('amount', 'score')",
            [[f"{root}/{relative}" for relative in published(root, "evolving")]],
        ).fetchall()
        users = con.execute(
            f"select id, name, plan, score from {read_lake(con, root, 'evolving', 'users')} order by id"
        ).fetchall()
    finally:
        con.close()
    assert types == [("DOUBLE",)]
    assert users == [("u0", "Ann", "gold", 4.5), ("u1", None, "free", None), ("u2", "Cy", None, None)]


def test_an_s3_lake_has_the_warehouse_tables(tmp_path: Path, sample: Path, reference: str, s3_lake: str) -> None:
    state = str(tmp_path / "state.duckdb")
    summary = load_into_lake([str(sample)], s3_lake, state)
    assert not summary.problems
    assert_lake_equals_warehouse(s3_lake, state, reference)
    assert not staged(s3_lake)
    files = published(s3_lake)
    again = load_into_lake([str(sample)], s3_lake, state)
    assert again.inserted_by_event == {} and published(s3_lake) == files


@pytest.mark.parametrize("killed_at", [0, 7], ids=["before-publishing", "halfway-through-publishing"])
def test_a_load_killed_while_publishing_is_finished_by_the_next_load(
    tmp_path: Path, sample: Path, reference: str, monkeypatch: pytest.MonkeyPatch, killed_at: int
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    move = Lake.move
    calls = itertools.count()

    def killed_while_moving(self: Lake, source: str, target: str) -> None:
        if next(calls) == killed_at:
            raise Killed
        move(self, source, target)

    with monkeypatch.context() as patch:
        patch.setattr(Lake, "move", killed_while_moving)
        with pytest.raises(Killed):
            load_into_lake([str(sample)], root, state)
    # The batch committed (its files are loaded) and only part of it reached the tables.
    assert batch_statuses(state) == ["committed"]
    assert len(published(root)) == killed_at and staged(root)
    assert {row[0] for row in query(state, f"select status from {SCHEMA}._loads")} == {"loaded"}

    again = load_into_lake([str(sample)], root, state)
    assert {result.status for result in again.files} == {"skipped"}
    assert batch_statuses(state) == ["published"]
    assert not staged(root)
    assert_lake_equals_warehouse(root, state, reference)


def test_a_load_killed_before_its_batch_commits_is_loaded_again(
    tmp_path: Path, sample: Path, reference: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")

    def killed(*args: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(lake_target, "record_batch", killed)
        patch.setattr(lake_target.LakeTarget, "_discard", lambda self: None)  # a killed process cleans nothing up
        with pytest.raises(Killed):
            load_into_lake([str(sample)], root, state)
    assert staged(root) and not published(root)  # written, never recorded
    assert {row[0] for row in query(state, f"select status from {SCHEMA}._loads")} == {"loading"}

    again = load_into_lake([str(sample)], root, state)
    assert again.interrupted_before == len(again.files) and not again.problems
    assert not staged(root)
    assert_lake_equals_warehouse(root, state, reference)


def test_a_batch_that_fails_to_write_leaves_nothing_and_loads_next_time(
    tmp_path: Path, sample: Path, reference: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    stage: Callable[..., object] = lake_target.LakeTarget._stage

    def full_disk(self: lake_target.LakeTarget, batch: str) -> object:
        stage(self, batch)
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(lake_target.LakeTarget, "_stage", full_disk)
        failed = load_into_lake([str(sample)], root, state)
    assert {result.status for result in failed.files} == {"failed"}
    assert "No space left on device" in str(failed.files[0].error)
    assert not published(root) and not staged(root)
    assert query(state, f"select count(*) from {SCHEMA}._lake_batches") == [(0,)]

    again = load_into_lake([str(sample)], root, state)
    assert not again.problems
    assert_lake_equals_warehouse(root, state, reference)


def test_a_batch_that_cannot_be_published_fails_the_load_and_lake_publish_finishes_it(
    tmp_path: Path, sample: Path, reference: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    move = Lake.move
    calls = itertools.count()

    def refused(self: Lake, source: str, target: str) -> None:
        if next(calls) == 3:
            raise PermissionError(13, "Permission denied", target)
        move(self, source, target)

    with monkeypatch.context() as patch:
        patch.setattr(Lake, "move", refused)
        summary = load_into_lake([str(sample)], root, state)
    assert summary.problems and {result.status for result in summary.files} == {"failed"}
    assert "committed" in str(summary.files[0].error) and "ctsync lake publish" in str(summary.files[0].error)
    assert batch_statuses(state) == ["committed"]

    result = CliRunner().invoke(
        app, ["lake", "publish", "--nickname", "CleverTap_Prod", "--lake", root, "--warehouse", state]
    )
    assert result.exit_code == 0, result.output
    assert "published 1 batch(es)" in result.output
    assert batch_statuses(state) == ["published"]
    assert_lake_equals_warehouse(root, state, reference)


@pytest.mark.postgres
def test_bookkeeping_in_postgresql(tmp_path: Path, sample: Path, reference: str) -> None:
    root = str(tmp_path / "lake")
    with fresh_database() as state:
        summary = load_into_lake([str(sample)], root, state)
        assert not summary.problems
        assert_lake_equals_warehouse(root, state, reference)
        again = load_into_lake([str(sample)], root, state)
        assert again.inserted_by_event == {}
        assert batch_statuses(state) == ["published"]
        # Registering copies the load history into the lake (from PostgreSQL through CSV).
        statements = lake_registration_sql(state, root, "CleverTap_Prod")
        assert f"alter table `{SCHEMA}`.`_loads` recover partitions" not in statements
        assert_load_history_in_lake(root, state)


def test_a_state_database_belongs_to_one_lake_and_is_not_a_warehouse(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write_export(
        folder / "1700000001-1710000000-App-Launched-20240312-0-0.json.gz", [event("App Launched", 20240312101010)]
    )
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    loaded = CliRunner().invoke(
        app,
        ["load", str(folder), "--nickname", "CleverTap_Prod"],
        env={"CTSYNC_LAKE": root, "CTSYNC_WAREHOUSE": state, "CTSYNC_CONFIG": None},
    )
    assert loaded.exit_code == 0, loaded.output
    assert f"clevertap_prod in {root} (state: {state})" in loaded.output
    assert len(published(root)) == 1

    with pytest.raises(CtsyncError, match="records loads of clevertap_prod into the lake"):
        load_into_lake([str(folder)], str(tmp_path / "another-lake"), state)
    with pytest.raises(CtsyncError, match="state database of a lake"):
        loader.load_export_files([str(folder)], OPTIONS, warehouse=state)
    warehouse = str(tmp_path / "warehouse.duckdb")
    assert not loader.load_export_files([str(folder)], OPTIONS, warehouse=warehouse).problems
    with pytest.raises(CtsyncError, match="loaded without a lake"):
        load_into_lake([str(folder)], str(tmp_path / "lake"), warehouse)
    assert query(warehouse, "select count(*) from information_schema.tables where table_name = '_lake_batches'") == [
        (0,)
    ]
