"""Registering the lake's tables in a Spark catalog (a local metastore, a Thrift server, Spark Connect,
Databricks) as external Parquet tables over their folders.

Each table is declared with the columns and types of the lake's catalog (the state database), the
partition column last, so Spark never has to infer or merge a schema from the files: a file that lacks a
column added later reads as NULL there. Then its partitions are recovered. Registering again brings the
catalog up to date: new columns are added (``alter table ... add columns``), a changed type (BIGINT
widened to DOUBLE) drops and creates the table again (external: its files stay), and new partitions
are recovered. ``tracks`` becomes a view over the event tables, as in the warehouse. Every run is
recorded in ``<schema>._lake_registrations`` of the state database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctsync.errors import CtsyncError
from ctsync.naming import qualified
from ctsync.warehouse.lake.storage import PARTITION_COLUMN, Lake
from ctsync.warehouse.targets import Catalog, Target
from ctsync.warehouse.tracks import event_tables_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_TYPES = {
    "VARCHAR": "STRING",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
}

LOADS_FILE = "loads.parquet"
"""``_loads`` as the lake has it: a copy of the state database's, made when the lake is registered. (Spark
skips files whose names start with ``_``.)"""

REGISTRATIONS_TABLE = "_lake_registrations"
REGISTRATIONS_COLUMNS = """
    registered_at timestamp with time zone not null,
    spark_table varchar not null,
    location varchar,
    action varchar not null,
    column_count bigint
"""


@dataclass(frozen=True)
class LakeTable:
    """A lake table as Spark should see it."""

    name: str
    columns: list[tuple[str, str]]
    """Data columns and their Spark types, in the catalog's order (the partition column not included)."""
    partitioned: bool
    location: str


@dataclass
class Registration:
    spark_table: str
    location: str
    action: str
    """created, columns added, recreated (a type changed), refreshed, or view."""
    columns: int
    statements: list[str] = field(default_factory=list)


def spark_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def spark_name(*parts: str) -> str:
    """``catalog.schema.table`` with each part quoted (a part given as ``main.clevertap`` is split)."""
    return ".".join(spark_identifier(piece) for part in parts for piece in part.split("."))


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def spark_type(type_: str) -> str:
    try:
        return SPARK_TYPES[type_]
    except KeyError:
        raise CtsyncError(f"a lake column has the type {type_}, which ctsync does not register in Spark") from None


def lake_location(lake: Lake) -> str:
    """The lake root as Spark names it: ``file:/...`` for a local folder, else the URL itself."""
    return Path(lake.root).as_uri() if lake.local else lake.root


@dataclass(frozen=True)
class LakeCatalog:
    tables: list[LakeTable]
    """Event tables, ``identifies``, ``users`` and the copy of ``_loads``."""
    events: list[str]
    catalog: Catalog
    """Every table's columns and types in the state database (``tracks``' included)."""

    def tracks_sql(self, spark_schema: str) -> str | None:
        return tracks_view_sql(self.catalog, self.events, spark_schema)


def lake_tables(state: Target, schema: str, location: str) -> LakeCatalog:
    """The lake's tables from the state database's catalog."""
    catalog = state.columns(schema)
    events = event_tables_of(state, schema)
    names = [*events, *(table for table in ("identifies", "users", "_loads") if table in catalog)]
    tables = [
        LakeTable(
            name,
            [(column, spark_type(type_)) for column, type_ in catalog[name].items()],
            "timestamp" in catalog[name],
            f"{location.rstrip('/')}/{schema}/{name}",
        )
        for name in names
    ]
    return LakeCatalog(tables, events, catalog)


def create_sql(table: LakeTable, name: str) -> str:
    columns = [f"{spark_identifier(column)} {type_}" for column, type_ in table.columns]
    partitioning = ""
    if table.partitioned:
        columns.append(f"{spark_identifier(PARTITION_COLUMN)} DATE")
        partitioning = f" partitioned by ({spark_identifier(PARTITION_COLUMN)})"
    return (
        f"create table if not exists {name} ({', '.join(columns)}) using parquet{partitioning} "
        f"location {_string(table.location)}"
    )


def plan_table(table: LakeTable, name: str, registered: list[tuple[str, str]] | None) -> tuple[str, list[str]]:
    """What to run for one table, given the columns Spark has for it (None: not registered)."""
    recover = [f"alter table {name} recover partitions"] if table.partitioned else []
    if registered is None:
        return "created", [create_sql(table, name), *recover]
    refresh = [*recover, f"refresh table {name}"]  # Spark caches a table's file listing
    have = {column: type_.upper() for column, type_ in registered if column != PARTITION_COLUMN}
    want = dict(table.columns)
    if all(want.get(column) == type_ for column, type_ in have.items()):
        missing = [(column, type_) for column, type_ in table.columns if column not in have]
        if not missing:
            return "refreshed", refresh
        added = ", ".join(f"{spark_identifier(column)} {type_}" for column, type_ in missing)
        return "columns added", [f"alter table {name} add columns ({added})", *refresh]
    # A type changed (or a column went): declare the table again. It is external, so its files stay.
    return "recreated", [f"drop table {name}", create_sql(table, name), *recover]


def tracks_view_sql(catalog: Catalog, event_tables: Sequence[str], spark_schema: str) -> str | None:
    """``tracks`` over the event tables, with the columns the state database's ``tracks`` view has."""
    columns = catalog.get("tracks")
    if not columns or not event_tables:
        return None
    selects = []
    for table in event_tables:
        parts = [
            spark_identifier(column)
            if column in catalog[table]
            else f"cast(null as {spark_type(type_)}) as {spark_identifier(column)}"
            for column, type_ in columns.items()
        ]
        selects.append(f"select {', '.join(parts)} from {spark_name(spark_schema, table)}")
    return f"create or replace view {spark_name(spark_schema, 'tracks')} as " + " union all ".join(selects)


def registration_sql(
    state: Target, lake: Lake, schema: str, *, spark_schema: str | None = None, location: str | None = None
) -> list[str]:
    """Every statement a first registration runs, for pasting where ctsync cannot connect (a Databricks
    SQL editor): create the schema and each table if missing, recover partitions, the ``tracks`` view."""
    target_schema = spark_schema or schema
    found = lake_tables(state, schema, location or lake_location(lake))
    statements = [f"create schema if not exists {spark_name(target_schema)}"]
    for table in found.tables:
        statements += plan_table(table, spark_name(target_schema, table.name), None)[1]
    view = found.tracks_sql(target_schema)
    return statements + ([view] if view else [])


def register_lake(
    spark: SparkSession | Callable[[], SparkSession],
    state: Target,
    lake: Lake,
    schema: str,
    *,
    spark_schema: str | None = None,
    location: str | None = None,
    on_statement: Callable[[str], None] | None = None,
) -> list[Registration]:
    """Register (or bring up to date) the lake's tables of ``schema`` in ``spark``'s catalog, under
    ``spark_schema`` (default: the same name; ``catalog.schema`` on Unity Catalog), with table folders under
    ``location`` (default: the lake root; ``s3a://...`` for Spark without an ``s3://`` filesystem).
    ``spark`` may be a function that starts a session: it is called once the lake is known to have tables."""
    target_schema = spark_schema or schema
    found = lake_tables(state, schema, location or lake_location(lake))
    if not found.events and "identifies" not in found.catalog:
        raise CtsyncError(f"the lake has no table of {schema} yet: load something first (ctsync load --lake ...)")
    session = spark() if callable(spark) else spark

    def run(sql: str) -> None:
        if on_statement is not None:
            on_statement(sql)
        session.sql(sql)

    run(f"create schema if not exists {spark_name(target_schema)}")
    done = []
    for table in found.tables:
        name = spark_name(target_schema, table.name)
        action, statements = plan_table(table, name, _registered_columns(session, name))
        for sql in statements:
            run(sql)
        done.append(Registration(name, table.location, action, len(table.columns), statements))
    view = found.tracks_sql(target_schema)
    if view is not None:
        run(view)
        columns = len(found.catalog.get("tracks", {}))
        done.append(Registration(spark_name(target_schema, "tracks"), "", "view", columns, [view]))
    _record(state, schema, done)
    return done


def _registered_columns(spark: SparkSession, name: str) -> list[tuple[str, str]] | None:
    if not spark.catalog.tableExists(name.replace("`", "")):
        return None
    return [(item.name, item.dataType.simpleString()) for item in spark.table(name).schema.fields]


def _record(state: Target, schema: str, done: Sequence[Registration]) -> None:
    state.execute(f"create table if not exists {qualified(schema, REGISTRATIONS_TABLE)} ({REGISTRATIONS_COLUMNS})")
    now = datetime.now(UTC)
    params: list[Any] = [
        now,
        [item.spark_table for item in done],
        [item.location for item in done],
        [item.action for item in done],
        [item.columns for item in done],
    ]
    state.execute(
        f"insert into {qualified(schema, REGISTRATIONS_TABLE)} "
        "(registered_at, spark_table, location, action, column_count) "
        "select ?, unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::bigint[])",
        params,
    )
