"""Bringing a warehouse an earlier ctsync loaded up to today's columns, at the start of a load.

Earlier versions kept CleverTap's device fields under CleverTap's names (``context_device_make``,
``context_device_dpi``, ``context_traits_push_token``, ...), as text, and gave ``CT Connected To WiFi``
and ``ct_connected_to_wifi`` two columns. A load now writes Segment's columns
(:data:`ctsync.warehouse.context.SPEC_FIELDS`) and one column per property
(:data:`ctsync.naming.COLUMN_SPELLINGS`), so before it writes anything the old columns are moved, in one
transaction:

* an old column whose new one does not exist is renamed, and typed when the new one is a number column
  (``dpi`` becomes the density, ``dpi / 160``);
* an old column whose new one exists is folded into it (its value fills the rows where the new column has
  none) and dropped;
* a value that the new column cannot take (text in a number column, or another value than the one the
  new column holds on that row) goes to the row's ``_unplaced_values``, with the old column named in its
  reason: nothing is lost.

``tracks`` is then rebuilt. PostgreSQL will not change a column that a view reads, so the views over the
moved tables (dbt's staging views, an analyst's own) are dropped first and created again afterwards; one
that no longer compiles (it read a column that is gone) is left out and named in the result, and
``dbt build`` creates dbt's own again. DuckDB's views are not tracked: one that reads an old name fails
until it is rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import duckdb
from psycopg2 import DatabaseError

from ctsync.errors import CtsyncError
from ctsync.naming import COLUMN_SPELLINGS, qualified, quote_identifier
from ctsync.warehouse.columns import variant_column
from ctsync.warehouse.context import SPEC_FIELDS, generic_column
from ctsync.warehouse.targets import Catalog, Target
from ctsync.warehouse.tracks import event_tables_of, refresh_tracks_view
from ctsync.warehouse.unplaced import UNPLACED_COLUMN


@dataclass(frozen=True)
class Move:
    """An old column and the column its values belong in now."""

    old: str
    new: str
    type: str | None = None
    """The new column's type when the move creates it (None: the old column's)."""
    divisor: int | None = None


CONTEXT_MOVES: tuple[Move, ...] = tuple(
    Move(generic_column(spec.source, spec.path), spec.column, spec.type, spec.divisor)
    for spec in SPEC_FIELDS
    if spec.source != "sessionProps"
    and (generic_column(spec.source, spec.path) != spec.column or spec.type != "VARCHAR")
)
"""Context columns of event tables: the column an earlier ctsync gave a spec field (text), and its column now."""

PROPERTY_MOVES: tuple[Move, ...] = tuple(
    move
    for old, new in COLUMN_SPELLINGS.items()
    for move in (Move(old, new), Move(variant_column(old), variant_column(new)))
)
"""Property columns (of event tables, ``identifies`` and ``users``) that are another spelling's column now."""

_PATTERNS = {
    "BIGINT": "0|-?[1-9][0-9]{0,17}",
    "DOUBLE": r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?",
    "BOOLEAN": "true|false",
}
"""The text of a value each type takes (what a load would type; anything else goes to ``_unplaced_values``)."""


@dataclass
class UpgradeResult:
    moved: list[str] = field(default_factory=list)
    """``table.old -> new`` for every column moved."""
    unplaced_values: int = 0
    """Values a moved column held that went to ``_unplaced_values``."""
    views_left_out: list[str] = field(default_factory=list)
    """Views over the moved tables that could not be created again (they read a column that is gone)."""


def upgrade_schema(target: Target, schema: str) -> UpgradeResult:
    """Move the columns of ``schema`` an earlier ctsync named otherwise (see the module's text); a
    warehouse with none has nothing done to it."""
    result = UpgradeResult()
    catalog = target.columns(schema)
    event_tables = event_tables_of(target, schema)
    plans = {table: _moves(catalog[table], CONTEXT_MOVES + PROPERTY_MOVES) for table in event_tables}
    for table in ("identifies", "users"):
        if table in catalog and table not in plans:
            plans[table] = _moves(catalog[table], PROPERTY_MOVES)
    plans = {table: moves for table, moves in plans.items() if moves}
    if not plans:
        return result
    target.begin()
    try:
        for table, moves in plans.items():  # renames first: PostgreSQL carries them into the views over the table
            for move in moves:
                if move.new not in catalog[table]:
                    _rename(target, schema, table, move.old, move.new, catalog)
        views = target.dependent_views(schema, [*plans, *(["tracks"] if "tracks" in catalog else [])])
        for view in reversed(views):
            target.drop_view(view)
        target.execute(f"drop view if exists {qualified(schema, 'tracks')}")
        for table, moves in plans.items():
            for move in moves:
                result.unplaced_values += _settle(target, schema, table, move, catalog)
                result.moved.append(f"{table}.{move.old} -> {move.new}")
        if event_tables:
            refresh_tracks_view(target, schema)
        for view in views:
            if (view.schema, view.name) != (schema, "tracks") and not target.recreate_view(view):
                result.views_left_out.append(f"{view.schema}.{view.name}")
        target.commit()
    except (duckdb.Error, DatabaseError) as exc:
        target.rollback()
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CtsyncError(
            f"upgrading the columns of {schema} to Segment's names failed ({text}); nothing was changed and "
            "nothing loaded. Fix the cause and load again: the upgrade runs before every load."
        ) from exc
    except BaseException:
        target.rollback()
        raise
    return result


def _moves(columns: dict[str, str], candidates: tuple[Move, ...]) -> list[Move]:
    """The moves a table with ``columns`` needs: an old column present, under another name or type."""
    return [
        move
        for move in candidates
        if move.old in columns and (move.old != move.new or (move.type or columns[move.old]) != columns[move.old])
    ]


def _rename(target: Target, schema: str, table: str, old: str, new: str, catalog: Catalog) -> None:
    target.execute(
        f"alter table {qualified(schema, table)} rename column {quote_identifier(old)} to {quote_identifier(new)}"
    )
    columns = catalog[table]
    columns[new] = columns.pop(old)


def _settle(target: Target, schema: str, table: str, move: Move, catalog: Catalog) -> int:
    """After the renames: type a renamed column, or fold an old column into the existing new one. Returns
    how many values went to ``_unplaced_values``."""
    columns = catalog[table]
    relation = qualified(schema, table)
    new = quote_identifier(move.new)
    if move.old == move.new or move.old not in columns:  # renamed (or kept): the values are in place, to be typed
        type_ = move.type or columns[move.new]
        if type_ == columns[move.new] and move.divisor is None:
            return 0
        value = _converted(target, new, columns[move.new], type_, move.divisor)
        reason = f"not a {type_} value, the type of column {move.new} (column {move.old} of an earlier ctsync)"
        moved = _unplace(target, schema, table, new, f"{new} is not null and ({value}) is null", reason, catalog)
        target.execute(f"alter table {relation} alter column {new} type {target.type_sql(type_)} using {value}")
        columns[move.new] = type_
        return moved
    old = quote_identifier(move.old)
    value = _converted(target, old, columns[move.old], columns[move.new], move.divisor)
    untyped = f"not a {columns[move.new]} value, the type of column {move.new} (column {move.old} was folded into it)"
    other = f"column {move.old} was folded into {move.new}, which holds another value"
    moved = _unplace(target, schema, table, old, f"{old} is not null and ({value}) is null", untyped, catalog)
    moved += _unplace(target, schema, table, old, f"{new} is not null and ({value}) <> {new}", other, catalog)
    target.execute(f"update {relation} set {new} = {value} where {new} is null and {old} is not null")
    target.execute(f"alter table {relation} drop column {old}")
    del columns[move.old]
    return moved


def _converted(target: Target, column_sql: str, from_type: str, to_type: str, divisor: int | None) -> str:
    """SQL: the column's value as ``to_type`` (NULL when its text is not one), divided by ``divisor``."""
    if from_type == to_type:
        value = column_sql
    elif to_type == "VARCHAR":
        value = f"cast({column_sql} as varchar)"
    else:
        text = f"cast({column_sql} as varchar)"
        typed = f"cast({text} as {target.type_sql(to_type)})"
        value = f"case when {target.full_match_sql(text, _PATTERNS[to_type])} then {typed} end"
    return f"({value}) / {divisor}.0" if divisor is not None and to_type == "DOUBLE" else value


def _unplace(
    target: Target, schema: str, table: str, column_sql: str, where: str, reason: str, catalog: Catalog
) -> int:
    """Append ``column_sql``'s value, on the rows ``where`` holds, to their ``_unplaced_values`` (created
    when first needed). Returns how many values moved."""
    relation = qualified(schema, table)
    count = int(target.execute(f"select count(*) from {relation} where {where}")[0][0])
    if not count:
        return 0
    if UNPLACED_COLUMN not in catalog[table]:
        column = f"{quote_identifier(UNPLACED_COLUMN)} {target.type_sql('VARCHAR')}"
        target.execute(f"alter table {relation} add column {column}")
        catalog[table][UNPLACED_COLUMN] = "VARCHAR"
    unplaced = quote_identifier(UNPLACED_COLUMN)
    reason_json = json.dumps(reason).replace("'", "''")
    entry = f"""'{{"path":null,"value":' || cast(to_json({column_sql}) as varchar) || ',"reason":{reason_json}}}'"""
    target.execute(
        f"update {relation} set {unplaced} = case when {unplaced} is null then '[' || {entry} || ']' "
        f"else substr({unplaced}, 1, length({unplaced}) - 1) || ',' || {entry} || ']' end where {where}"
    )
    return count
