"""The event tables (one per event name) and the ``tracks`` view over them."""

from __future__ import annotations

import duckdb

from ctsync.exports.records import KEY_SHAPES
from ctsync.naming import qualified, quote_identifier
from ctsync.warehouse import events, tables
from ctsync.warehouse.context import ContextPlan
from ctsync.warehouse.events import IdentifierPriority
from ctsync.warehouse.structure import Node, discover, merge_trees
from ctsync.warehouse.tables import Column, WriteResult
from ctsync.warehouse.targets import Catalog, Target


def write_event_tables(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    schema: str,
    contexts: dict[str, ContextPlan],
    priority: IdentifierPriority,
    names: dict[str, str],
    received_at: str,
) -> dict[str, WriteResult]:
    """Insert the batch's new events (``_ct_keys`` rows with ``is_new``) into their tables, each with its
    own context columns (``contexts``), then refresh ``tracks``. Returns what was written per table."""
    existing = target.columns(schema)
    standard = list(events.STANDARD_COLUMNS)
    shapes = KEY_SHAPES["eventProps"]
    by_name = discover(duck, "_ct_rows", "eventProps", group="eventName", where="reason is null", shapes=shapes)
    props: dict[str, Node] = {}
    for name, root in by_name.items():
        if name is not None:
            merge_trees(props.setdefault(names[name], Node(kinds={"OBJECT"})), root)
    event_tables = [
        str(row[0]) for row in duck.execute("select distinct event from _ct_keys where is_new order by 1").fetchall()
    ]
    control_group = Column("control_group_name", "VARCHAR", "json_extract_string(controlGroupName, '$')")
    written: dict[str, WriteResult] = {}
    for table in event_tables:
        context = contexts[table]
        source, params = events.event_rows_sql(
            context, priority, sorted(name for name, event in names.items() if event == table), received_at
        )
        written[table] = tables.write_object_rows(
            duck,
            target,
            schema,
            table,
            source=source,
            params=[*params, table],
            json_column="eventProps",
            object_tree=props.get(table) or Node(kinds={"OBJECT"}),
            json_pointer="/eventProps",
            base=[*standard, *context.columns],
            optional=[control_group],
            unplaced=context.unplaced,
            received_at=received_at,
            existing=existing,
        )
    if event_tables:
        refresh_tracks_view(target, schema)
    return written


def event_tables_of(target: Target, schema: str) -> list[str]:
    """Tables the loader made for events: base tables with an ``event_text`` column."""
    rows = target.execute(
        """
        select columns.table_name
        from information_schema.columns as columns
        join information_schema.tables as tables
            on tables.table_schema = columns.table_schema and tables.table_name = columns.table_name
        where columns.table_schema = ? and columns.column_name = 'event_text'
            and tables.table_type = 'BASE TABLE' and columns.table_name <> 'tracks'
        order by 1
        """,
        [schema],
    )
    return [str(row[0]) for row in rows]


def refresh_tracks_view(target: Target, schema: str) -> None:
    """``tracks``: every event, standard and context columns only, as a view over the event tables.

    Same columns and rows as Segment's ``tracks`` table without storing every event twice. Columns
    keep their order and new ones are appended (PostgreSQL only lets a view grow at the end). Every
    standard column is there, NULL (of its type) in a table that has no value for it yet, so SQL
    written for Segment's ``tracks`` finds ``sent_at`` whatever was loaded.
    """
    existing = target.columns(schema)
    event_tables = event_tables_of(target, schema)
    columns = list(existing.get("tracks", {}))
    columns += [column.name for column in events.STANDARD_COLUMNS if column.name not in columns]
    context = sorted(
        {column for table in event_tables for column in existing[table] if column.startswith("context_")} - set(columns)
    )
    columns += context
    types = _column_types(existing, event_tables)
    selects = []
    for table in event_tables:
        parts = [
            quote_identifier(column)
            if column in existing[table]
            else f"cast(null as {target.type_sql(types.get(column, 'VARCHAR'))}) as {quote_identifier(column)}"
            for column in columns
        ]
        selects.append(f"select {', '.join(parts)} from {qualified(schema, table)}")
    target.execute(f"create or replace view {qualified(schema, 'tracks')} as " + "\nunion all\n".join(selects))


def _column_types(existing: Catalog, event_tables: list[str]) -> dict[str, str]:
    """The type of each column of ``tracks``: the standard columns' own, else the first event table's that has it."""
    types = {column.name: column.type for column in events.STANDARD_COLUMNS}
    for table in event_tables:
        for column, type_ in existing[table].items():
            types.setdefault(column, type_)
    return types
