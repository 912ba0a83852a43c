"""What ``ctsync lake`` does: finish publishing a lake's batches, register its tables in Spark."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from ctsync.errors import CtsyncError
from ctsync.naming import qualified, quote_identifier, schema_name
from ctsync.warehouse.connection import configure_session, connect_duckdb, parse_warehouse
from ctsync.warehouse.lake.batches import PendingBatch
from ctsync.warehouse.lake.spark import LOADS_FILE, Registration, register_lake, registration_sql
from ctsync.warehouse.lake.state import open_lake_target
from ctsync.warehouse.lake.target import LakeTarget
from ctsync.warehouse.targets import DuckDBTarget, PostgresTarget, Target

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@contextmanager
def opened_lake(warehouse: str, lake: str, nickname: str) -> Iterator[LakeTarget]:
    """The lake with its state database, committed batches published (what every load does first)."""
    where = parse_warehouse(warehouse)
    schema = schema_name(nickname)
    duck: duckdb.DuckDBPyConnection
    state: Target
    if where.kind == "postgres":
        state = PostgresTarget(where.location)
        duck = duckdb.connect()
        configure_session(duck)
    else:
        duck = connect_duckdb(where.location)
        state = DuckDBTarget(duck)
    try:
        target = open_lake_target(duck, state, lake, schema)
    except BaseException:
        state.close()
        duck.close()
        raise
    try:
        yield target
    finally:
        target.close()
        duck.close()


def publish_load_history(target: LakeTarget) -> bool:
    """Copy ``_loads`` from the state database into the lake (``<schema>/_loads/loads.parquet``, replaced
    whole), so a Spark catalog has the load history, and dbt finds the schemas ``ctsync load`` wrote by
    their ``_loads`` table there as it does in a warehouse. False when nothing was loaded yet."""
    columns = target.state.columns(target.schema).get("_loads")
    if not columns:
        return False
    folder = tempfile.mkdtemp(prefix="ctsync-loads-")
    try:
        source = qualified(target.schema, "_loads")
        if isinstance(target.state, PostgresTarget):
            exported = os.path.join(folder, "_loads.csv")
            with open(exported, "wb") as sink, target.state.conn.cursor() as cursor:
                cursor.copy_expert(f"copy (select * from {source}) to stdout with (format csv, header)", sink)
            types = ", ".join(f"{_literal(name)}: {_literal(type_)}" for name, type_ in columns.items())
            source = f"read_csv({_literal(exported)}, header = true, allow_quoted_nulls = false, columns = {{{types}}})"
        casts = ", ".join(
            f"cast({quote_identifier(name)} as {type_}) as {quote_identifier(name)}" for name, type_ in columns.items()
        )
        written = os.path.join(folder, LOADS_FILE)
        target.duck.execute(f"copy (select {casts} from {source}) to {_literal(written)} (format parquet)")
        staged = f"{target.lake.staging(target.schema)}/{LOADS_FILE}"
        target.lake.put(written, staged)
        target.lake.move(staged, f"{target.schema}/_loads/{LOADS_FILE}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return True


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish_lake(warehouse: str, lake: str, nickname: str) -> list[PendingBatch]:
    """Move the files of every batch that committed but was not published (a load killed or cut off
    while publishing) into their tables; the batches published."""
    with opened_lake(warehouse, lake, nickname) as target:
        return target.published_before


@dataclass(frozen=True)
class SparkSettings:
    """How to reach Spark: a Spark Connect URL (``sc://...``, Databricks included), or a session in this
    process with a master, a warehouse folder and a Derby metastore (the same ones dbt's ``spark`` target
    uses, so the tables registered here are the tables dbt reads)."""

    remote: str | None = None
    master: str = "local[*]"
    warehouse_dir: str = "spark-warehouse"
    metastore: str = "metastore_db"


def spark_session(settings: SparkSettings) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise CtsyncError(
            "registering the lake in Spark needs pyspark: pip install 'ctsync[spark]' (and Java 17 or 21 for "
            "a local session), or run `ctsync lake register --print-sql` and paste the statements into Spark SQL"
        ) from None
    if settings.remote:
        return SparkSession.builder.remote(settings.remote).getOrCreate()
    return (
        SparkSession.builder.master(settings.master)
        .appName("ctsync-lake")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", settings.warehouse_dir)
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={settings.metastore};create=true",
        )
        .enableHiveSupport()
        .getOrCreate()
    )


def register_lake_tables(
    warehouse: str,
    lake: str,
    nickname: str,
    spark: SparkSession | Callable[[], SparkSession],
    *,
    spark_schema: str | None = None,
    location: str | None = None,
    on_statement: Callable[[str], None] | None = None,
) -> list[Registration]:
    """Register the lake's tables of ``nickname`` in Spark (a session, or a function that starts one once
    the lake is known to have tables)."""
    with opened_lake(warehouse, lake, nickname) as target:
        publish_load_history(target)
        return register_lake(
            spark,
            target.state,
            target.lake,
            target.schema,
            spark_schema=spark_schema,
            location=location,
            on_statement=on_statement,
        )


def lake_registration_sql(
    warehouse: str, lake: str, nickname: str, *, spark_schema: str | None = None, location: str | None = None
) -> list[str]:
    with opened_lake(warehouse, lake, nickname) as target:
        publish_load_history(target)
        return registration_sql(target.state, target.lake, target.schema, spark_schema=spark_schema, location=location)
