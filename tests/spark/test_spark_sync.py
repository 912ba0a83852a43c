"""Syncing from Spark: the engage relations of the Spark build, the sync's state in a DuckDB file or in
PostgreSQL, the same Identify calls as a sync of the DuckDB build of the same sample; after a change in
Spark, only the change. Also from the Parquet files Spark writes of them (no Spark in the sync)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ctsync.engage.run import sync_destination
from ctsync.engage.summary import SyncSummary
from tests.engage.identify_calls import identify_calls, line_count
from tests.models.conftest import PROJECT, BuiltSample
from tests.postgres import fresh_database
from tests.spark.conftest import require_spark, spark_environment

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

RELATIONS = (
    "engage_audiences",
    "engage_audience_memberships",
    "engage_traits",
    "engage_computed_traits",
    "engage_user_emails",
)


def sync(warehouse: str, out: Path, **options: Any) -> SyncSummary:
    return sync_destination("jsonl", warehouse=warehouse, environ={"CTSYNC_JSONL_PATH": str(out)}, **options)


@pytest.fixture(scope="module")
def duckdb_calls(built_sample: BuiltSample, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The Identify calls of a first sync of the DuckDB build (a copy: the sync writes its state there)."""
    folder = tmp_path_factory.mktemp("duckdb-sync")
    warehouse = folder / "warehouse.duckdb"
    shutil.copyfile(built_sample.warehouse, warehouse)
    out = folder / "identify.jsonl"
    summary = sync(str(warehouse), out)
    assert summary.status == "succeeded" and summary.sent > 1000
    return identify_calls(out)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The sync's state database: a DuckDB file that does not exist yet, or a fresh PostgreSQL database."""
    if request.param == "duckdb":
        yield str(tmp_path / "state.duckdb")
        return
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def changed_schema(spark: SparkSession) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Schema ``engage_changed`` in Spark: the engage views with one member gone from an audience and one
    trait value changed. Returns the schema, the member who left and the changed value."""
    member = spark.sql(
        "select audience_key, user_id from engage.engage_audience_memberships where user_id is not null "
        "order by audience_key, user_id limit 1"
    ).collect()[0]
    value = spark.sql(
        "select trait_key, user_id from engage.engage_computed_traits where user_id is not null "
        "order by trait_key, user_id limit 1"
    ).collect()[0]
    spark.sql("create schema engage_changed")
    for relation in ("engage_audiences", "engage_traits", "engage_user_emails"):
        spark.sql(f"create view engage_changed.{relation} as select * from engage.{relation}")
    spark.sql(
        "create view engage_changed.engage_audience_memberships as select * from engage.engage_audience_memberships "
        f"where not (audience_key = '{member.audience_key}' and user_id = '{member.user_id}')"
    )
    columns = [field.name for field in spark.table("engage.engage_computed_traits").schema.fields]
    changed = ", ".join(
        f"case when trait_key = '{value.trait_key}' and user_id = '{value.user_id}' then '\"changed\"' else value end"
        " as value"
        if column == "value"
        else column
        for column in columns
    )
    spark.sql(
        f"create view engage_changed.engage_computed_traits as select {changed} from engage.engage_computed_traits"
    )
    try:
        yield "engage_changed", member.asDict(), value.asDict()
    finally:
        spark.sql("drop schema engage_changed cascade")


def test_a_sync_from_spark_sends_the_identify_calls_of_duckdb_then_only_changes(
    spark: SparkSession,
    state: str,
    duckdb_calls: list[dict[str, Any]],
    changed_schema: tuple[str, dict[str, Any], dict[str, Any]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "identify.jsonl"

    first = sync(state, out, engage_source="spark")

    assert first.status == "succeeded" and first.engage_source == "spark (engage)"
    assert identify_calls(out) == duckdb_calls
    assert first.engage_rows["engage_audience_memberships"] == spark.table("engage.engage_audience_memberships").count()

    schema, member, value = changed_schema
    seen = line_count(out)
    second = sync(state, out, engage_source=f"spark:{schema}")

    changes = [
        (call["userId"], {key: sent for key, sent in call["traits"].items() if key != "email"})
        for call in identify_calls(out, since_line=seen)
    ]
    expected = [
        (member["user_id"], {member["audience_key"]: False}),
        (value["user_id"], {value["trait_key"]: "changed"}),
    ]
    assert sorted(changes, key=json.dumps) == sorted(expected, key=json.dumps)
    assert (second.entered, second.exited, second.traits_changed, second.sent) == (0, 1, 1, 2)

    seen = line_count(out)
    assert sync(state, out, engage_source=f"spark:{schema}").sent == 0
    assert line_count(out) == seen


def test_a_sync_from_the_parquet_files_spark_writes_sends_the_identify_calls_of_duckdb(
    spark: SparkSession, duckdb_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The relations written by Spark as docs/spark.md shows (``insert overwrite directory``), read without Spark."""
    folder = tmp_path / "engage"
    for relation in RELATIONS:
        spark.sql(
            f"insert overwrite directory '{(folder / relation).as_uri()}' using parquet select * from engage.{relation}"
        )
    out = tmp_path / "identify.jsonl"

    summary = sync(str(tmp_path / "state.duckdb"), out, engage_source=str(folder))

    assert summary.status == "succeeded" and summary.engage_source == str(folder)
    assert identify_calls(out) == duckdb_calls


def test_a_catalog_without_the_engage_relations_is_a_clear_error(tmp_path: Path) -> None:
    """``ctsync sync --engage-source spark`` in a process of its own starts Spark with the spark target's settings
    (here an empty catalog): exit 2 saying what to build, nothing sent, no state database left behind."""
    require_spark()
    state, out = tmp_path / "state.duckdb", tmp_path / "identify.jsonl"
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("CTSYNC_", "SPARK_"))},
        **spark_environment(tmp_path / "catalog"),
        "CTSYNC_JSONL_PATH": str(out),
    }
    command = [sys.executable, "-m", "ctsync.cli", "sync", "--destination", "jsonl", "--warehouse", str(state)]
    result = subprocess.run(
        [*command, "--engage-source", "spark", "--json"],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    error = json.loads(result.stdout)["error"]
    assert "Spark has no engage.engage_audiences: build the audiences and traits on Spark first" in error
    assert not out.exists() and not state.exists()
