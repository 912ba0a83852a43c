"""Creating and evolving warehouse tables, and filling typed columns from a JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ctsync.naming import property_column, qualified, quote_identifier
from ctsync.warehouse.columns import ColumnPlan, new_column_type, plan_expressions, variant_column, widened_type
from ctsync.warehouse.structure import Leaf, text_spec

Catalog = dict[str, dict[str, str]]
"""table -> column -> type, for one schema."""


@dataclass(frozen=True)
class Column:
    """A column filled by a SQL expression over the source rows."""

    name: str
    type: str
    expression: str


def existing_columns(con: duckdb.DuckDBPyConnection, schema: str) -> Catalog:
    tables: Catalog = {}
    for table, column, data_type in con.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = ? order by table_name, ordinal_position",
        [schema],
    ).fetchall():
        tables.setdefault(table, {})[column] = data_type
    return tables


def ensure_table(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, wanted: Sequence[tuple[str, str]], existing: Catalog
) -> None:
    """Create the table, or add the columns it lacks (schema evolution)."""
    current = existing.get(table)
    if current is None:
        columns_sql = ", ".join(f"{quote_identifier(name)} {type_}" for name, type_ in wanted)
        con.execute(f"create table {qualified(schema, table)} ({columns_sql})")
        existing[table] = dict(wanted)
        return
    for name, type_ in wanted:
        if name not in current:
            con.execute(f"alter table {qualified(schema, table)} add column {quote_identifier(name)} {type_}")
            current[name] = type_


def _normal_type(data_type: str) -> str:
    upper = data_type.upper()
    return {"INTEGER": "BIGINT", "FLOAT": "DOUBLE", "REAL": "DOUBLE", "TEXT": "VARCHAR"}.get(upper, upper)


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
            existing_type = _normal_type(current[plan.name])
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


def names(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(quote_identifier(name) for name, _ in columns)


def sql_string(value: str) -> str:
    return value.replace("'", "''")


def write_object_rows(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    *,
    source: str,
    params: Sequence[object],
    json_column: str,
    object_leaves: list[Leaf],
    base: Sequence[Column],
    optional: Sequence[Column] = (),
    existing: Catalog,
) -> int:
    """Insert ``source``'s rows into ``table``: ``base`` columns, then one column per leaf of ``json_column``.

    The table is created or evolved first (new columns, BIGINT widened to DOUBLE). New columns, variant
    columns that might be needed, and the ``optional`` columns are added before the insert and dropped
    again when they stayed empty (adding and dropping a column costs nothing in DuckDB), so a column
    exists only once it holds a value.
    """
    current = existing.get(table, {})
    plans = plan_columns(object_leaves, current, frozenset(column.name for column in base))
    all_leaves = [leaf for plan in plans for leaf in plan.leaves]
    columns: list[tuple[str, str]] = [(column.name, column.type) for column in base]
    expressions = [f"{column.expression}" for column in base]
    speculative: list[str] = []
    for plan in plans:
        value, variant = plan_expressions(plan, "object_values")
        columns.append((plan.name, plan.type))
        expressions.append(value)
        if not plan.exists:
            speculative.append(plan.name)  # keys seen only in rows already loaded leave no empty column
        if variant is not None:
            name = variant_column(plan.name)
            if name not in current:
                speculative.append(name)
            columns.append((name, "VARCHAR"))
            expressions.append(variant)
    for column in optional:
        columns.append((column.name, column.type))
        expressions.append(column.expression)
        if column.name not in current:
            speculative.append(column.name)
    ensure_table(con, schema, table, columns, existing)
    for plan in plans:
        if plan.widen_from is not None:
            con.execute(
                f"alter table {qualified(schema, table)} alter column {quote_identifier(plan.name)} type {plan.type}"
            )
            existing[table][plan.name] = plan.type
    transform = f"json_transform({json_column}, '{sql_string(text_spec(all_leaves))}')" if all_leaves else "null"
    rows = con.execute(
        f"""
        insert into {qualified(schema, table)} ({names(columns)})
        select {", ".join(expressions)}
        from (select *, {transform} as object_values from ({source}))
        """,
        list(params),
    ).fetchall()
    if speculative:
        counts = con.execute(
            "select "
            + ", ".join(f"count({quote_identifier(name)})" for name in speculative)
            + f" from {qualified(schema, table)}"
        ).fetchall()[0]
        for name, count in zip(speculative, counts, strict=True):
            if not count:
                con.execute(f"alter table {qualified(schema, table)} drop column {quote_identifier(name)}")
                del existing[table][name]
    return int(rows[0][0])
