"""Where loaded rows go: a DuckDB file, or a PostgreSQL database.

Normalising export files always happens in DuckDB (the staging tables ``_ct_*``). A target is
everything on the warehouse side: its SQL (written with ``?`` placeholders), its types, creating
and evolving tables, and writing the result of a DuckDB query into a table:

* DuckDB: the warehouse is the same connection, so a write is ``insert into … select …``.
* PostgreSQL: the query's rows go out of DuckDB as Arrow and into PostgreSQL with ``COPY``
  (bulk, not row inserts), in one transaction per batch.
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ctsync.errors import CtsyncError
from ctsync.naming import qualified, quote_identifier

Catalog = dict[str, dict[str, str]]
"""table -> column -> canonical type, for one schema."""

CANONICAL = {
    "VARCHAR": "VARCHAR",
    "TEXT": "VARCHAR",
    "CHARACTER VARYING": "VARCHAR",
    "BIGINT": "BIGINT",
    "INTEGER": "BIGINT",
    "DOUBLE": "DOUBLE",
    "DOUBLE PRECISION": "DOUBLE",
    "FLOAT": "DOUBLE",
    "REAL": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP WITH TIME ZONE",
}


def canonical_type(data_type: str) -> str:
    upper = data_type.upper()
    return CANONICAL.get(upper, upper)


@dataclass(frozen=True)
class SavedView:
    """A view's definition, kept to create it again after the tables it reads change."""

    schema: str
    name: str
    definition: str
    materialized: bool = False

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)


class Target(ABC):
    """The warehouse side of a load."""

    kind: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run warehouse SQL (``?`` placeholders); the rows it returns, if any."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def type_sql(self, type_: str) -> str:
        """The engine's spelling of a canonical type."""

    @abstractmethod
    def write(
        self,
        duck: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        select_sql: str,
        params: Sequence[Any],
        existing: Catalog,
        speculative: Sequence[str] = (),
    ) -> int:
        """Write the rows of a DuckDB query (its columns in ``columns`` order) into ``schema.table``.

        The table is created or given the columns it lacks first. A ``speculative`` column is only kept
        if some row has a value in it (a column exists only once it holds a value).
        """

    @abstractmethod
    def known_ids(
        self, duck: duckdb.DuckDBPyConnection, schema: str, tables: Sequence[str], *, time_bounded: bool = True
    ) -> None:
        """Fill the DuckDB temp table ``_ct_known(id)`` with the ids of ``_ct_candidates(id, "timestamp")``
        that ``tables`` already hold. ``time_bounded``: equal ids imply equal timestamps (events), so
        only the candidates' time range of each table needs reading."""

    @abstractmethod
    def latest_value_sql(self, column: str) -> str:
        """Aggregate: ``column``'s latest non-null value by (timestamp, received_at)."""

    def rebuild_users(
        self, duck: duckdb.DuckDBPyConnection, schema: str, columns: Sequence[tuple[str, str]], received_at: str
    ) -> int | None:
        """A target whose ``users`` cannot be updated in SQL (the lake's Parquet) refreshes the users of this
        batch's new ``identifies`` rows here, with ``columns``, and returns how many; None: the SQL refresh."""
        return None

    def json_array_total(self, schema: str, table: str, column: str, received_at: str) -> int:
        """The total length of the JSON arrays in ``column`` of the rows received at ``received_at``."""
        rows = self.execute(
            f"select coalesce(sum({self.json_array_length_sql(quote_identifier(column))}), 0) "
            f"from {qualified(schema, table)} where received_at = cast(? as timestamp with time zone)",
            [received_at],
        )
        return int(rows[0][0])

    def json_array_length_sql(self, column_sql: str) -> str:
        return f"json_array_length({column_sql})"

    def full_match_sql(self, text_sql: str, pattern: str) -> str:
        """SQL: whether all of the text ``text_sql`` matches the regular expression ``pattern``."""
        return f"regexp_full_match({text_sql}, '{pattern}')"

    def dependent_views(self, schema: str, relations: Sequence[str]) -> list[SavedView]:
        """The views that read ``relations`` of ``schema``, directly or through other views, in an order they
        can be created in. DuckDB records none (its views are bound when they are queried): nothing stops
        a table's column from changing under them."""
        return []

    def drop_view(self, view: SavedView) -> None:
        kind = "materialized view" if view.materialized else "view"
        self.execute(f"drop {kind} if exists {view.qualified} cascade")

    def recreate_view(self, view: SavedView) -> bool:
        """Create ``view`` again from its definition; False (and nothing changed) when it no longer compiles."""
        kind = "materialized view" if view.materialized else "view"
        self.execute(f"create {kind} {view.qualified} as {view.definition}")
        return True

    def columns(self, schema: str) -> Catalog:
        tables: Catalog = {}
        for table, column, data_type in self.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = ? order by table_name, ordinal_position",
            [schema],
        ):
            tables.setdefault(str(table), {})[str(column)] = canonical_type(str(data_type))
        return tables

    def ensure_table(self, schema: str, table: str, wanted: Sequence[tuple[str, str]], existing: Catalog) -> None:
        """Create the table, or add the columns it lacks (schema evolution)."""
        current = existing.get(table)
        if current is None:
            columns_sql = ", ".join(f"{quote_identifier(name)} {self.type_sql(type_)}" for name, type_ in wanted)
            self.execute(f"create table {qualified(schema, table)} ({columns_sql})")
            existing[table] = dict(wanted)
            self.table_created(schema, table, [name for name, _ in wanted])
            return
        for name, type_ in wanted:
            if name not in current:
                self.execute(
                    f"alter table {qualified(schema, table)} add column {quote_identifier(name)} {self.type_sql(type_)}"
                )
                current[name] = type_

    def table_created(self, schema: str, table: str, columns: Sequence[str]) -> None:
        """Hook after a table is created (PostgreSQL indexes ``id``)."""
        return None

    def alter_type(self, schema: str, table: str, column: str, type_: str, existing: Catalog) -> None:
        engine_type = self.type_sql(type_)
        self.execute(
            f"alter table {qualified(schema, table)} alter column {quote_identifier(column)} type {engine_type}"
            + (f" using {quote_identifier(column)}::{engine_type}" if self.kind == "postgres" else "")
        )
        existing[table][column] = type_


class DuckDBTarget(Target):
    """A DuckDB warehouse file: the staging connection is the warehouse connection."""

    kind = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params) if params else None).fetchall()

    def begin(self) -> None:
        self.con.begin()

    def commit(self) -> None:
        self.con.commit()

    def rollback(self) -> None:
        """Undo the open transaction. DuckDB already ended a transaction whose commit failed: then there
        is nothing to undo, and that is not a second error."""
        try:
            self.con.rollback()
        except duckdb.TransactionException as exc:
            if "no transaction is active" not in str(exc):
                raise

    def close(self) -> None:
        self.con.close()

    def type_sql(self, type_: str) -> str:
        return type_

    def write(
        self,
        duck: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        select_sql: str,
        params: Sequence[Any],
        existing: Catalog,
        speculative: Sequence[str] = (),
    ) -> int:
        fresh = [name for name in speculative if name not in existing.get(table, {})]
        self.ensure_table(schema, table, columns, existing)
        names = ", ".join(quote_identifier(name) for name, _ in columns)
        rows = self.con.execute(
            f"insert into {qualified(schema, table)} ({names}) {select_sql}", list(params) or None
        ).fetchall()
        if fresh:
            # Adding and dropping a column costs nothing in DuckDB: drop the ones that stayed empty.
            counts = self.con.execute(
                "select "
                + ", ".join(f"count({quote_identifier(name)})" for name in fresh)
                + f" from {qualified(schema, table)}"
            ).fetchall()[0]
            for name, count in zip(fresh, counts, strict=True):
                if not count:
                    self.con.execute(f"alter table {qualified(schema, table)} drop column {quote_identifier(name)}")
                    del existing[table][name]
        return int(rows[0][0])

    def known_ids(
        self, duck: duckdb.DuckDBPyConnection, schema: str, tables: Sequence[str], *, time_bounded: bool = True
    ) -> None:
        if not tables:
            duck.execute("create or replace temp table _ct_known as select null::varchar as id where false")
            return
        # Equal ids mean equal content, so an equal timestamp: read only the batch's time range.
        window = (
            ' where "timestamp" between (select low from bounds) and (select high from bounds)' if time_bounded else ""
        )
        union = " union all ".join(f"select id from {qualified(schema, table)}{window}" for table in tables)
        duck.execute(
            f"""
            create or replace temp table _ct_known as
            with bounds as (select min("timestamp") as low, max("timestamp") as high from _ct_candidates)
            select existing.id from ({union}) as existing semi join _ct_candidates using (id)
            """
        )

    def latest_value_sql(self, column: str) -> str:
        quoted = quote_identifier(column)
        return f'arg_max({quoted}, [epoch_us("timestamp"), epoch_us(received_at)]) filter (where {quoted} is not null)'


class PostgresTarget(Target):
    """A PostgreSQL database, written with COPY."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        import psycopg2

        try:
            self.conn = psycopg2.connect(url)
        except psycopg2.Error as exc:
            raise CtsyncError(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
        self.conn.autocommit = True

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statement = _placeholders(sql) if params else sql
        with self.conn.cursor() as cursor:
            cursor.execute(statement, list(params) if params else None)
            return list(cursor.fetchall()) if cursor.description is not None else []

    def begin(self) -> None:
        self.conn.autocommit = False

    def commit(self) -> None:
        self.conn.commit()
        self.conn.autocommit = True

    def rollback(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.autocommit = True

    def close(self) -> None:
        self.conn.close()

    def type_sql(self, type_: str) -> str:
        return {"DOUBLE": "double precision", "VARCHAR": "varchar"}.get(type_, type_.lower())

    def table_created(self, schema: str, table: str, columns: Sequence[str]) -> None:
        if "id" in columns:  # the dedup key is looked up on every load
            self.execute(f"create index on {qualified(schema, table)} (id)")

    def write(
        self,
        duck: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        select_sql: str,
        params: Sequence[Any],
        existing: Catalog,
        speculative: Sequence[str] = (),
    ) -> int:
        data = duck.sql(select_sql, params=list(params) or None).to_arrow_table()
        data = data.rename_columns([name for name, _ in columns])
        current = existing.get(table, {})
        empty = {name for name in speculative if name not in current and data.column(name).null_count == len(data)}
        kept = [(name, type_) for name, type_ in columns if name not in empty]
        data = data.select([name for name, _ in kept])
        self.ensure_table(schema, table, kept, existing)
        if len(data) == 0:
            return 0
        self._copy(schema, table, data)
        return len(data)

    def _copy(self, schema: str, table: str, data: pa.Table) -> None:
        columns = []
        for field in data.schema:
            column = data.column(field.name)
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                column = pc.replace_substring(column, "\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
            columns.append(column)
        data = pa.table(columns, names=data.column_names)
        buffer = io.BytesIO()
        pa_csv.write_csv(data, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
        buffer.seek(0)
        names = ", ".join(quote_identifier(name) for name in data.column_names)
        with self.conn.cursor() as cursor:
            cursor.copy_expert(f"copy {qualified(schema, table)} ({names}) from stdin with (format csv)", buffer)

    def known_ids(
        self, duck: duckdb.DuckDBPyConnection, schema: str, tables: Sequence[str], *, time_bounded: bool = True
    ) -> None:
        known: list[str] = []  # indexed ids: looked up directly, time range or not
        if tables:
            candidates = duck.sql("select id from _ct_candidates").to_arrow_table()
            self.execute("create temp table if not exists _ct_candidates (id varchar primary key)")
            self.execute("truncate _ct_candidates")
            self._copy("pg_temp", "_ct_candidates", candidates)
            union = " union ".join(
                f"select candidates.id from _ct_candidates as candidates "
                f"where exists (select 1 from {qualified(schema, table)} as existing where existing.id = candidates.id)"
                for table in tables
            )
            known = [str(row[0]) for row in self.execute(union)]
        duck.execute("create or replace temp table _ct_known as select unnest(?::varchar[]) as id", [known])

    def json_array_length_sql(self, column_sql: str) -> str:
        return f"json_array_length({column_sql}::json)"

    def full_match_sql(self, text_sql: str, pattern: str) -> str:
        return f"({text_sql} ~ '^(?:{pattern})$')"

    def dependent_views(self, schema: str, relations: Sequence[str]) -> list[SavedView]:
        if not relations:
            return []
        rows = self.execute(
            """
            with recursive dependents (view_oid, depth) as (
                select rewrite.ev_class, 1
                from pg_depend as dep
                join pg_rewrite as rewrite on rewrite.oid = dep.objid
                where dep.classid = 'pg_rewrite'::regclass and dep.refclassid = 'pg_class'::regclass
                    and dep.refobjid = any(?::regclass[]) and rewrite.ev_class <> dep.refobjid
                union
                select rewrite.ev_class, dependents.depth + 1
                from dependents
                join pg_depend as dep on dep.refobjid = dependents.view_oid
                    and dep.classid = 'pg_rewrite'::regclass and dep.refclassid = 'pg_class'::regclass
                join pg_rewrite as rewrite on rewrite.oid = dep.objid
                where rewrite.ev_class <> dependents.view_oid and dependents.depth < 50
            )
            select ns.nspname, cls.relname, cls.relkind = 'm', pg_get_viewdef(cls.oid), max(dependents.depth)
            from dependents
            join pg_class as cls on cls.oid = dependents.view_oid
            join pg_namespace as ns on ns.oid = cls.relnamespace
            group by 1, 2, 3, 4
            order by 5, 1, 2
            """,
            [[qualified(schema, relation) for relation in relations]],
        )
        return [
            SavedView(str(view_schema), str(name), str(definition).strip().rstrip(";"), bool(materialized))
            for view_schema, name, materialized, definition, _depth in rows
        ]

    def recreate_view(self, view: SavedView) -> bool:
        import psycopg2

        self.execute("savepoint ctsync_view")
        try:
            super().recreate_view(view)
        except psycopg2.Error:
            self.execute("rollback to savepoint ctsync_view")
            return False
        self.execute("release savepoint ctsync_view")
        return True

    def latest_value_sql(self, column: str) -> str:
        quoted = quote_identifier(column)
        return (
            f'(array_agg({quoted} order by "timestamp" desc, received_at desc) filter (where {quoted} is not null))[1]'
        )


_PLACEHOLDER = re.compile(r"\?")


def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg2's ``%s`` (a literal ``%`` doubled)."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
