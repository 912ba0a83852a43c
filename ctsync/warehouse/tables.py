"""Creating and evolving warehouse tables, and filling typed columns from a JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ctsync.naming import property_column
from ctsync.warehouse.columns import ColumnPlan, new_column_type, plan_expressions, variant_column, widened_type
from ctsync.warehouse.structure import Leaf, Node, ObjectReader, duplicate_key_paths, json_path_sql, leaves
from ctsync.warehouse.targets import Catalog, Target, canonical_type
from ctsync.warehouse.unplaced import UNPLACED_COLUMN, Unplaced

MAX_TABLE_COLUMNS = 1000
"""Columns a table may have. Past it, keys that would need a new column keep their whole object in the
table's overflow column for that object (``_overflow_properties``, ``_overflow_context_traits``, ...).
Below PostgreSQL's hard limit of 1,600, and wide enough for any export seen in practice; DuckDB's
memory per insert grows with the column count."""

OVERFLOW_RESERVE = 4
"""Room kept under the limit for the overflow columns themselves (properties and three context objects)."""


def overflow_column(prefix: str) -> str:
    """``_overflow_properties`` for an event's properties, ``_overflow_context_traits`` for ``context_traits_``."""
    return "_overflow_" + (prefix.rstrip("_") or "properties")


@dataclass(frozen=True)
class Overflow:
    """Where a column's values go if the table has no room for the column: the whole JSON object
    ``json_column``, as text, in the table's column ``column``, on the rows with a value at one of ``paths``."""

    column: str
    json_column: str
    paths: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Column:
    """A column filled by a SQL expression over the source rows."""

    name: str
    type: str
    expression: str
    overflow: tuple[Overflow, ...] = ()
    """Where the column's values go when the table has no room for it (one per JSON object that fills it).
    Empty: the column is always written (standard columns)."""
    optional: bool = False
    """A standard column that may hold nothing (``sent_at`` of a file without a run time): created, like a
    property column, only once it holds a value."""


def _overflow_sql(json_column: str, paths: Sequence[tuple[str, ...]]) -> str:
    """The object's JSON text on rows with a value at one of ``paths`` (one parse for all of them)."""
    pointers = "[" + ", ".join(json_path_sql(path) for path in paths) + "]"
    found = f"list_filter(json_extract_string({json_column}, {pointers}), lambda value: value is not null)"
    return f"case when len({found}) > 0 then cast({json_column} as varchar) end"


def plan_columns(object_leaves: list[Leaf], current: dict[str, str], reserved: frozenset[str]) -> list[ColumnPlan]:
    """One plan per column; leaves that share a column name (spellings) share a plan."""
    plans: dict[str, ColumnPlan] = {}
    for leaf in object_leaves:
        name = property_column(leaf.path)
        if name in reserved:
            name = "_" + name
        plan = plans.get(name)
        if plan is None:
            plan = ColumnPlan(name=name, type="VARCHAR")
            plans[name] = plan
        plan.leaves.append(leaf)
    result = []
    for plan in plans.values():
        kinds = plan.kinds
        if plan.name in current:
            plan.exists = True
            existing_type = canonical_type(current[plan.name])
            target = widened_type(existing_type, kinds)
            if target != existing_type:
                plan.widen_from = existing_type
            plan.type = target
        else:
            type_ = new_column_type(kinds)
            if type_ is None:
                continue  # only nulls so far: Segment creates a column on its first non-null value
            plan.type = type_
        result.append(plan)
    return result


def write_object_rows(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    schema: str,
    table: str,
    *,
    source: str,
    params: Sequence[object],
    json_column: str,
    object_tree: Node,
    json_pointer: str,
    base: Sequence[Column],
    optional: Sequence[Column] = (),
    unplaced: Unplaced | None = None,
    received_at: str,
    existing: Catalog,
    max_columns: int | None = None,
) -> WriteResult:
    """Write ``source``'s rows (a DuckDB query) into ``table``: ``base`` columns, then one per leaf of
    ``json_column`` (whose key tree is ``object_tree``, and which sits at ``json_pointer`` in a line).

    The table is created or evolved first (new columns, BIGINT widened to DOUBLE). New columns, variant
    columns that might be needed, and the ``optional`` columns are only kept once they hold a value.
    A table never grows past ``max_columns`` (default ``MAX_TABLE_COLUMNS``): columns it has no room for
    go to their overflow column. Values with no column of their own (``unplaced``, plus the object's
    duplicate keys and other spellings) go to ``_unplaced_values``; the rows written carry ``received_at``.
    """
    current = existing.get(table, {})
    overflow_name = overflow_column("")
    reserved = frozenset(column.name for column in base) | {overflow_name, UNPLACED_COLUMN}
    plans = plan_columns(leaves(object_tree.children), current, reserved)
    names = set(current)
    room = (MAX_TABLE_COLUMNS if max_columns is None else max_columns) - OVERFLOW_RESERVE - len(names)
    spilled: dict[tuple[str, str], list[tuple[str, ...]]] = {}  # (overflow column, JSON column) -> paths

    def fits(wanted: Sequence[str], always: bool) -> bool:
        """Whether the table has room for the columns of ``wanted`` it lacks (taking it if so)."""
        nonlocal room
        new = [name for name in wanted if name not in names]
        if not always and len(new) > room:
            return False
        names.update(new)
        room -= len(new)
        return True

    kept_base = []
    for column in base:
        if fits([column.name], always=not column.overflow):
            kept_base.append(column)
            continue
        for overflow in column.overflow:
            spilled.setdefault((overflow.column, overflow.json_column), []).extend(overflow.paths)
    admitted: list[ColumnPlan] = []
    for plan in plans:
        wanted = [plan.name, *([variant_column(plan.name)] if plan.has_variant else [])]
        if fits(wanted, always=False):
            admitted.append(plan)
        else:
            spilled.setdefault((overflow_name, json_column), []).extend(leaf.path for leaf in plan.leaves)
    reader = ObjectReader.plan(json_column, "object_values", [leaf.path for plan in admitted for leaf in plan.leaves])
    columns: list[tuple[str, str]] = [(column.name, column.type) for column in kept_base]
    expressions = [f"{column.expression}" for column in kept_base]
    # A new context column, like a new property column, is only kept once it holds a value.
    speculative: list[str] = [c.name for c in kept_base if (c.overflow or c.optional) and c.name not in current]
    for plan in admitted:
        value, variant = plan_expressions(plan, reader)
        columns.append((plan.name, plan.type))
        expressions.append(value)
        if not plan.exists:
            speculative.append(plan.name)  # keys seen only in rows already loaded leave no empty column
        if variant is not None:
            name = variant_column(plan.name)
            speculative.append(name)
            columns.append((name, "VARCHAR"))
            expressions.append(variant)
    for column in optional:
        columns.append((column.name, column.type))
        expressions.append(column.expression)
        speculative.append(column.name)
    for (name, object_column), paths in spilled.items():
        columns.append((name, "VARCHAR"))
        expressions.append(_overflow_sql(object_column, paths))
        speculative.append(name)
    gathered = _unplaced_for(json_column, json_pointer, object_tree, admitted, reader, unplaced)
    if not gathered.empty:
        columns.append((UNPLACED_COLUMN, "VARCHAR"))
        expressions.append(gathered.column_sql())
        speculative.append(UNPLACED_COLUMN)
    if table in existing:
        for plan in admitted:
            if plan.widen_from is not None:
                target.alter_type(schema, table, plan.name, plan.type, existing)
    helpers = "".join(f", {helper}" for helper in gathered.helpers)
    select_sql = (
        f"select {', '.join(expressions)} "
        f"from (select *, {reader.transform_sql()} as object_values{helpers} from ({source}))"
    )
    rows = target.write(duck, schema, table, columns, select_sql, params, existing, speculative)
    moved = 0
    if rows and UNPLACED_COLUMN in existing.get(table, {}):
        moved = target.json_array_total(schema, table, UNPLACED_COLUMN, received_at)
    return WriteResult(rows, moved)


@dataclass(frozen=True)
class WriteResult:
    rows: int
    unplaced_values: int
    """Values this write kept in ``_unplaced_values``."""


def _unplaced_for(
    json_column: str,
    json_pointer: str,
    tree: Node,
    admitted: list[ColumnPlan],
    reader: ObjectReader,
    given: Unplaced | None,
) -> Unplaced:
    """``given`` plus the object's own values that get no column: later duplicate keys, other spellings."""
    gathered = Unplaced()
    if given is not None:
        gathered.extend(given)
    for path in duplicate_key_paths(tree):
        gathered.add_duplicates(json_column, path, json_pointer)
    for plan in admitted:
        if len(plan.leaves) > 1:
            paths = [leaf.path for leaf in plan.leaves]
            gathered.add_spellings(json_column, json_pointer, paths, [reader.access(path) for path in paths], plan.name)
    return gathered
