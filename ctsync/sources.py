"""The CleverTap sources a warehouse holds, found in the warehouse itself: what a build reads.

A schema is a CleverTap source when ``ctsync load`` wrote it: it has the loader's ``_loads``
table (with its ``checksum`` column). A build reads it once it holds at least one event table:
a base table other than ``tracks`` with an ``event_text`` column (the loader's own rule,
``ctsync.warehouse.tracks.event_tables_of``). The dbt project finds the same schemas when it is
run directly (``macros/staging/clevertap_schemas.sql``); ``ctsync build`` passes them in the var
``clevertap_schemas``, so a nickname is typed once, at load time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import WarehouseTarget, connect_duckdb
from ctsync.warehouse.targets import DuckDBTarget, PostgresTarget, Target

_SOURCES_SQL = """
    select loads.table_schema, count(distinct event_tables.table_name) as event_tables
    from information_schema.tables as loads
    inner join information_schema.columns as loads_columns
        on loads_columns.table_catalog = loads.table_catalog
        and loads_columns.table_schema = loads.table_schema
        and loads_columns.table_name = loads.table_name
        and loads_columns.column_name = 'checksum'
    left join (
        select tables.table_schema, tables.table_name
        from information_schema.tables as tables
        inner join information_schema.columns as columns
            on columns.table_catalog = tables.table_catalog
            and columns.table_schema = tables.table_schema
            and columns.table_name = tables.table_name
        where tables.table_catalog = current_database()
            and tables.table_type = 'BASE TABLE'
            and tables.table_name <> 'tracks'
            and columns.column_name = 'event_text'
    ) as event_tables
        on event_tables.table_schema = loads.table_schema
    where loads.table_catalog = current_database()
        and loads.table_name = '_loads'
        and loads.table_type = 'BASE TABLE'
    group by loads.table_schema
    order by loads.table_schema
"""


@dataclass(frozen=True)
class ClevertapSources:
    """The schemas ``ctsync load`` wrote, sorted by name."""

    with_events: list[str]
    """Read by the build."""
    without_events: list[str]
    """Loaded, but no event table yet (only profiles, or only refused files): not read."""


@contextmanager
def reading(where: WarehouseTarget) -> Iterator[Target]:
    """The warehouse open for reading, closed on leaving; a DuckDB file must exist (it is not created)."""
    target: Target
    if where.kind == "duckdb":
        if not os.path.isfile(where.location):
            raise CtsyncError(
                f"the warehouse {where.location} does not exist: check --warehouse or CTSYNC_WAREHOUSE "
                "(a path is relative to the current folder), or load exports into it first with "
                "`ctsync load PATH --nickname NAME`"
            )
        target = DuckDBTarget(connect_duckdb(where.location, read_only=True))
    else:
        target = PostgresTarget(where.location)
    try:
        yield target
    finally:
        target.close()


def find_clevertap_sources(target: Target) -> ClevertapSources:
    """Every schema with the loader's ``_loads`` table, split by whether it holds an event table."""
    rows = target.execute(_SOURCES_SQL)
    return ClevertapSources(
        with_events=[str(schema) for schema, tables in rows if tables],
        without_events=[str(schema) for schema, tables in rows if not tables],
    )


def require_clevertap_sources(
    sources: ClevertapSources, where: WarehouseTarget | str, *, catalog: bool = False
) -> list[str]:
    """The schemas to read; CtsyncError when there is none, saying what to load.

    ``where`` is the warehouse, or a description of a catalog ctsync does not open itself (Spark's):
    with ``catalog`` the advice is to load into the lake and register its tables there.
    """
    if sources.with_events:
        return sources.with_events
    described = where if isinstance(where, str) else where.describe()
    if sources.without_events:
        loaded = ", ".join(sources.without_events)
        raise CtsyncError(
            f"the CleverTap schema(s) {loaded} in {described} hold no event table yet (only profiles, "
            "or nothing that loaded): audiences need events. Load event exports first "
            "(`ctsync load PATH --nickname NAME`, with the same nickname and warehouse), then build again"
        )
    if catalog:
        raise CtsyncError(
            f"no CleverTap data in {described}: no schema has the _loads table `ctsync load` writes. "
            "Load exports into a lake and register its tables there (`ctsync load PATH --nickname NAME "
            "--lake ROOT`, then `ctsync lake register --nickname NAME`, docs/lake.md), or check the "
            "target's settings (the spark target's catalog is the metastore CTSYNC_SPARK_METASTORE names)"
        )
    raise CtsyncError(
        f"no CleverTap data in {described}: no schema has the _loads table `ctsync load` writes. "
        "Check --warehouse or CTSYNC_WAREHOUSE (and --target), or load exports first with "
        "`ctsync load PATH --nickname NAME`"
    )
