"""dbt on Apache Spark: the demo warehouse as date-partitioned Parquet, built with ``dbt build --target spark``.

The loader's tables of the session's DuckDB build are written as Parquet (event tables
partitioned by the UTC date of the event), registered in a local Spark catalog as external
tables, and built there by the same dbt project; memberships, trait values and the seed must
equal DuckDB's row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pytest

from tests.models.conftest import SCHEMA, BuiltSample, run_dbt

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

PARTITION = "timestamp__date"


def export_to_parquet(warehouse: Path, schema: str, lake: Path) -> dict[str, bool]:
    """Every table and view of ``schema`` as Parquet under ``lake/<table>/``: those with a ``timestamp``
    (the events) partitioned by its UTC date, the others in one file. Returns table -> partitioned."""
    exported: dict[str, bool] = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        tables = con.execute(
            "select table_name, bool_or(column_name = 'timestamp') from information_schema.columns "
            "where table_schema = ? group by 1 order by 1",
            [schema],
        ).fetchall()
        for table, has_timestamp in tables:
            folder = lake / table
            source = f'"{schema}"."{table}"'
            if has_timestamp:
                con.execute(
                    f'copy (select *, cast("timestamp" as date) as {PARTITION} from {source}) '
                    f"to '{folder}' (format parquet, partition_by ({PARTITION}))"
                )
            else:
                folder.mkdir(parents=True)
                con.execute(f"copy (select * from {source}) to '{folder / 'part-0.parquet'}' (format parquet)")
            exported[str(table)] = bool(has_timestamp)
    finally:
        con.close()
    return exported


def register_tables(spark: SparkSession, schema: str, lake: Path, tables: dict[str, bool]) -> None:
    """External Parquet tables in Spark's catalog over the exported folders (Spark reads the columns from
    the files and the partition column from the folder names), their partitions recovered."""
    spark.sql(f"create schema if not exists {schema}")
    for table, partitioned in tables.items():
        name = f"{schema}.`{table}`"
        spark.sql(f"create table {name} using parquet location '{(lake / table).as_uri()}'")
        if partitioned:
            spark.sql(f"alter table {name} recover partitions")


def differences(warehouse: Path, sql: str, spark_rows: pa.Table, limit: int = 10) -> tuple[int, list[tuple[Any, ...]]]:
    """The row count of ``sql`` on DuckDB, and rows found on one engine only (compared as multisets)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        con.register("spark_rows", spark_rows)
        count = con.execute(f"select count(*) from ({sql})").fetchall()[0][0]
        duckdb_only = con.execute(
            f"select 'duckdb only', * from (({sql}) except all (select * from spark_rows)) limit {limit}"
        ).fetchall()
        spark_only = con.execute(
            f"select 'spark only', * from ((select * from spark_rows) except all ({sql})) limit {limit}"
        ).fetchall()
        return int(count), duckdb_only + spark_only
    finally:
        con.close()


def assert_same_rows(spark: SparkSession, duck: BuiltSample, relation: str, columns: Sequence[str]) -> None:
    sql = f"select {', '.join(columns)} from {relation}"
    spark_rows = spark.sql(sql).toArrow()
    count, different = differences(duck.warehouse, sql, spark_rows)
    assert count > 0, f"{relation} is empty on DuckDB"
    assert different == [], relation
    assert spark_rows.num_rows == count, relation


@pytest.fixture(scope="module")
def spark_build(spark: SparkSession, built_sample: BuiltSample, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The session's sample, exported from its DuckDB warehouse to Parquet and built on Spark."""
    work = tmp_path_factory.mktemp("spark-build")
    lake = work / "lake" / SCHEMA
    tables = export_to_parquet(built_sample.warehouse, SCHEMA, lake)
    assert {"_loads", "tracks", "identifies", "charged", "app_launched"} <= tables.keys()
    register_tables(spark, SCHEMA, lake, tables)
    build = run_dbt(["build", "--target", "spark"], warehouse=built_sample.warehouse, work=work)
    assert build.success, build.failures()


@pytest.mark.usefixtures("spark_build")
def test_memberships_equal_duckdb_row_for_row(spark: SparkSession, built_sample: BuiltSample) -> None:
    assert_same_rows(
        spark,
        built_sample,
        "engage.engage_audience_memberships",
        [
            "user_id", "anonymous_id", "source_relation", "audience_key", "audience_name",
            "include_anonymous", "is_member", "computed_at",
        ],
    )  # fmt: skip


@pytest.mark.usefixtures("spark_build")
def test_computed_traits_equal_duckdb_row_for_row(spark: SparkSession, built_sample: BuiltSample) -> None:
    assert_same_rows(
        spark,
        built_sample,
        "engage.engage_computed_traits",
        [
            "user_id", "anonymous_id", "source_relation", "trait_key", "trait_name", "value",
            "value_type", "computed_at",
        ],
    )  # fmt: skip


@pytest.mark.usefixtures("spark_build")
def test_the_seed_loads_as_written(spark: SparkSession, built_sample: BuiltSample) -> None:
    """Descriptions with a quote (``the user's device``) and empty cells (NULL, not the text 'None')."""
    assert_same_rows(
        spark,
        built_sample,
        "analytics.clevertap_event_catalog",
        [
            "event_name", "event_key", "description", "mparticle_event_type", "is_system_event",
            "is_engagement_event",
        ],
    )  # fmt: skip
