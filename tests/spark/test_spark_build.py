"""dbt on Apache Spark: the demo warehouse as date-partitioned Parquet, built with ``ctsync build --target spark``.

The loader's tables of the session's DuckDB build are written as Parquet (event tables
partitioned by the UTC date of the event), registered in a local Spark catalog as external
tables, and built there by the same dbt project (``dbt build --target spark`` through ctsync's
build, tests/spark/conftest.py); memberships, trait values and the seed must equal DuckDB's row
for row, and the build reports the sources it read and the sizes DuckDB's build recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pytest

from tests.models.conftest import SCHEMA, BuiltSample, query
from tests.spark.conftest import SparkCatalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark


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


def test_ctsync_build_reports_the_sources_and_the_sizes_of_duckdb(
    spark_catalog: SparkCatalog, built_sample: BuiltSample
) -> None:
    build = spark_catalog.build
    assert build.sources == [SCHEMA]
    assert build.counts.get("model success", 0) > 20 and build.counts.get("unit_test pass", 0) > 0
    latest = (
        "select computation_class, computation_key, size from engage.audience_size_history "
        "where built_at = (select max(built_at) from engage.audience_size_history)"
    )
    rows = query(built_sample.warehouse, latest)
    audiences = {str(key): int(str(size)) for kind, key, size in rows if kind == "audience"}
    traits = {str(key): int(str(size)) for kind, key, size in rows if kind == "trait"}
    assert audiences and build.audience_sizes == audiences
    assert traits and build.trait_sizes == traits
    assert any("looked up in its catalog" in line for line in spark_catalog.log)
    seconds = spark_catalog.seconds
    print(f"Spark: registered in {seconds['register']:.1f} s, built in {seconds['build']:.1f} s")
