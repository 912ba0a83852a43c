"""Creating and evolving warehouse tables, and filling typed columns from a JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ctsync.naming import property_column
from ctsync.warehouse.columns import ColumnPlan, new_column_type, plan_expressions, variant_column, widened_type
from ctsync.warehouse.structure import Leaf, ObjectReader
from ctsync.warehouse.targets import Catalog, Target, canonical_type


@dataclass(frozen=True)
class Column:
    """A column filled by a SQL expression over the source rows."""

    name: str
    type: str
    expression: str


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
    object_leaves: list[Leaf],
    base: Sequence[Column],
    optional: Sequence[Column] = (),
    existing: Catalog,
) -> int:
    """Write ``source``'s rows (a DuckDB query) into ``table``: ``base`` columns, then one per leaf of ``json_column``.

    The table is created or evolved first (new columns, BIGINT widened to DOUBLE). New columns, variant
    columns that might be needed, and the ``optional`` columns are only kept once they hold a value.
    """
    current = existing.get(table, {})
    plans = plan_columns(object_leaves, current, frozenset(column.name for column in base))
    all_leaves = [leaf for plan in plans for leaf in plan.leaves]
    reader = ObjectReader.plan(json_column, "object_values", [leaf.path for leaf in all_leaves])
    columns: list[tuple[str, str]] = [(column.name, column.type) for column in base]
    expressions = [f"{column.expression}" for column in base]
    speculative: list[str] = []
    for plan in plans:
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
    if table in existing:
        for plan in plans:
            if plan.widen_from is not None:
                target.alter_type(schema, table, plan.name, plan.type, existing)
    select_sql = (
        f"select {', '.join(expressions)} from (select *, {reader.transform_sql()} as object_values from ({source}))"
    )
    return target.write(duck, schema, table, columns, select_sql, params, existing, speculative)
