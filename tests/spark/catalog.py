"""The sample's CleverTap tables in a Spark catalog: written as Parquet, registered as external tables.

``python -m tests.spark.catalog SCHEMA LAKE TABLES_JSON`` registers them from a child process: the
embedded Derby metastore admits one process at a time, so the tests register and build (``ctsync build
--target spark``, itself a child) before the test process opens the catalog.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PARTITION = "timestamp__date"

TUNING = {
    # A few thousand rows per query and some 200 queries per build: planning and compiling are most of
    # the time, so whole-stage code generation and adaptive re-planning cost more than they save.
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
    # A table's ~45 date folders are listed by the driver, not by a Spark job per query.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
"""Settings of every Spark the tests start (here, in dbt's child process, in the test process)."""


def java_options(root: Path) -> str:
    """The driver JVM's options: Derby's files under ``root``; no second JIT tier (C2), a serial GC."""
    return f"-Dderby.system.home={root} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def submit_args(root: Path) -> str:
    """``PYSPARK_SUBMIT_ARGS`` giving a Spark that a child process starts the tests' settings."""
    confs = " ".join(f"--conf {shlex.quote(f'{key}={value}')}" for key, value in TUNING.items())
    return f"{confs} --driver-java-options {shlex.quote(java_options(root))} pyspark-shell"


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


def session_from_environment() -> SparkSession:
    """A session on the catalog that ``CTSYNC_SPARK_*`` names, as dbt's spark target opens it."""
    from pyspark.sql import SparkSession

    metastore = os.environ["CTSYNC_SPARK_METASTORE"]
    builder = (
        SparkSession.builder.master(os.environ.get("CTSYNC_SPARK_MASTER", "local[2]"))
        .appName("ctsync-tests-catalog")
        .config("spark.sql.warehouse.dir", os.environ["CTSYNC_SPARK_WAREHOUSE"])
        .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={metastore};create=true")
    )
    for key, value in TUNING.items():
        builder = builder.config(key, value)
    session = builder.enableHiveSupport().getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def main(argv: list[str]) -> None:
    schema, lake, tables = argv
    spark = session_from_environment()
    try:
        register_tables(spark, schema, Path(lake), json.loads(tables))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
