"""``LakeTarget``: the loader's tables as date-partitioned Parquet in a lake, its bookkeeping in a state database.

The loader runs unchanged: it stages and normalises files in DuckDB and hands each table's new rows
to its target. This target splits the warehouse in two:

* the **state database** (a DuckDB file or PostgreSQL, an ordinary target) keeps ``_loads``,
  ``_rejected``, ``_lake_batches``, the sync's ``ctsync`` schema, and the lake's catalog: each lake
  table as an empty table with its columns and types, created and evolved by the loader's usual rules
  (a column appears with its first non-null value, BIGINT widens to DOUBLE, the column limit and
  overflow columns), so the lake's tables have exactly the columns and types a DuckDB load gives;
* the **lake** gets the rows: a batch's new rows of each table are written with DuckDB's
  ``COPY ... (FORMAT parquet, PARTITION_BY (timestamp__date))`` under ``_staging/``, recorded in the
  state database with the batch's ``_loads`` rows (one transaction), then moved into the tables'
  folders (:mod:`ctsync.warehouse.lake.batches`).

Ids are looked up in the lake's files (the ``id`` column of the partitions the batch's times fall in),
so loading the same files again, or an overlapping export, adds nothing. ``users`` (one row per user,
recomputed for the users a load touches) is rewritten as one file. A column widened to DOUBLE is
rewritten in the table's older files, so the files of a table never disagree on a column's type (they
may lack columns added later: readers union them by name).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ctsync.errors import CtsyncError
from ctsync.naming import quote_identifier
from ctsync.warehouse.lake.batches import Move, PendingBatch, publish, publish_pending, record_batch
from ctsync.warehouse.lake.storage import PARTITION_COLUMN, USERS_FILE, Lake, partition_day
from ctsync.warehouse.targets import Catalog, SavedView, Target

STATE_TABLES = frozenset({"_loads", "_rejected"})
"""Tables the loader writes that stay in the state database."""


@dataclass(frozen=True)
class _Written:
    """One write of a batch: its rows in a DuckDB temp table, until the batch commits."""

    table: str
    temp: str
    columns: list[tuple[str, str]]
    rows: int

    @property
    def partitioned(self) -> bool:
        return any(name == "timestamp" for name, _ in self.columns)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class LakeTarget(Target):
    """Rows to the lake, everything else to the state database ``state``."""

    kind = "lake"

    def __init__(
        self, duck: duckdb.DuckDBPyConnection, state: Target, lake: Lake, schema: str, *, stage_only: bool = False
    ) -> None:
        self.duck = duck
        self.stage_only = stage_only
        """A worker of a parallel load (:mod:`ctsync.warehouse.lake.parallel`): its one batch is staged and
        recorded in its copy of the state database, never published; the flow records and publishes it."""
        self.state = state
        self.lake = lake
        self.schema = schema
        self.published_before: list[PendingBatch] = []
        """Batches an earlier run committed and this one published when it opened the lake."""
        self._written: list[_Written] = []
        self._widened: dict[str, dict[str, str]] = {}
        self._users: tuple[str, list[tuple[str, str]]] | None = None
        self._listing: dict[str, set[str]] = {}
        self._serial = 0
        self._staged_batches = 0
        self._batch: str | None = None
        self._unpublished = False
        self._workdir = tempfile.mkdtemp(prefix="ctsync-lake-")

    # -- the state database -------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.state.execute(sql, params)

    def type_sql(self, type_: str) -> str:
        return self.state.type_sql(type_)

    def table_created(self, schema: str, table: str, columns: Sequence[str]) -> None:
        self.state.table_created(schema, table, columns)

    def alter_type(self, schema: str, table: str, column: str, type_: str, existing: Catalog) -> None:
        self.state.alter_type(schema, table, column, type_, existing)
        if table != "users":  # users is rewritten whole with every batch that touches it
            self._widened.setdefault(table, {})[column] = type_

    def dependent_views(self, schema: str, relations: Sequence[str]) -> list[SavedView]:
        return self.state.dependent_views(schema, relations)

    def drop_view(self, view: SavedView) -> None:
        self.state.drop_view(view)

    def recreate_view(self, view: SavedView) -> bool:
        return self.state.recreate_view(view)

    def json_array_length_sql(self, column_sql: str) -> str:
        return self.state.json_array_length_sql(column_sql)

    def full_match_sql(self, text_sql: str, pattern: str) -> str:
        return self.state.full_match_sql(text_sql, pattern)

    def latest_value_sql(self, column: str) -> str:
        """DuckDB's form: ``users`` is computed in DuckDB from the lake's files."""
        quoted = quote_identifier(column)
        return f'arg_max({quoted}, [epoch_us("timestamp"), epoch_us(received_at)]) filter (where {quoted} is not null)'

    # -- a batch -------------------------------------------------------------------------

    def begin(self) -> None:
        if self._unpublished:  # an earlier batch of this run could not be published: finish it first
            self._note_published(publish_pending(self.state, self.schema, self.lake))
            self._unpublished = False
        self._discard()
        self.state.begin()

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
        if table in STATE_TABLES:
            return self.state.write(duck, schema, table, columns, select_sql, params, existing, speculative)
        self._serial += 1
        temp = f"_lake_rows_{self._serial}"
        definition = ", ".join(f"{quote_identifier(name)} {type_}" for name, type_ in columns)
        duck.execute(f"create or replace temp table {temp} ({definition})")
        duck.execute(f"insert into {temp} {select_sql}", list(params) or None)
        fresh = [name for name in speculative if name not in existing.get(table, {})]
        empty: set[str] = set()
        if fresh:
            counts = duck.execute(
                "select " + ", ".join(f"count({quote_identifier(name)})" for name in fresh) + f" from {temp}"
            ).fetchall()[0]
            empty = {name for name, count in zip(fresh, counts, strict=True) if not count}
        kept = [(name, type_) for name, type_ in columns if name not in empty]
        self.ensure_table(schema, table, kept, existing)
        rows = int(duck.execute(f"select count(*) from {temp}").fetchall()[0][0])
        if rows:
            self._written.append(_Written(table, temp, kept, rows))
        else:
            duck.execute(f"drop table {temp}")
        return rows

    def json_array_total(self, schema: str, table: str, column: str, received_at: str) -> int:
        total = 0
        for written in self._written:
            if written.table == table and any(name == column for name, _ in written.columns):
                total += int(
                    self.duck.execute(
                        f"select coalesce(sum(json_array_length({quote_identifier(column)})), 0) from {written.temp}"
                    ).fetchall()[0][0]
                )
        return total

    def known_ids(
        self, duck: duckdb.DuckDBPyConnection, schema: str, tables: Sequence[str], *, time_bounded: bool = True
    ) -> None:
        """The candidates' ids already in the lake: only the ``id`` column, and for events only the
        partitions (and row groups) of the candidates' time range."""
        window: list[Any] = []
        if time_bounded and tables:
            low, high = duck.execute('select min("timestamp"), max("timestamp") from _ct_candidates').fetchall()[0]
            window = [low, high] if low is not None else []
            if not window:
                tables = []
        files = []
        for table in tables:
            for relative in sorted(self._files(table)):
                day = partition_day(relative)
                if window and day is not None and not window[0].date() <= day <= window[1].date():
                    continue
                files.append(self.lake.url(relative))
        if not files:
            duck.execute("create or replace temp table _ct_known as select null::varchar as id where false")
            return
        where = ' where "timestamp" between ? and ?' if window else ""
        duck.execute(
            f"""
            create or replace temp table _ct_known as
            select existing.id
            from (select id from read_parquet(?, union_by_name = true, hive_partitioning = false){where}) as existing
            semi join _ct_candidates using (id)
            """,
            [files, *window],
        )

    def rebuild_users(
        self, duck: duckdb.DuckDBPyConnection, schema: str, columns: Sequence[tuple[str, str]], received_at: str
    ) -> int:
        """``users`` again for the users of this batch's new ``identifies`` rows, from every ``identifies``
        row in the lake and in this batch; the other users' rows are kept. Written as one file at commit."""
        new = [written.temp for written in self._written if written.table == "identifies"]
        if not new:
            return 0
        batch_rows = " union all by name ".join(f"(select * from {temp})" for temp in new)
        duck.execute(
            "create or replace temp table _lake_touched as "
            f"select distinct user_id from ({batch_rows}) where user_id is not null"
        )
        sources, params = [batch_rows], list[Any]()
        published = [self.lake.url(relative) for relative in sorted(self._files("identifies"))]
        if published:
            sources.append("(select * from read_parquet(?, union_by_name = true, hive_partitioning = false))")
            params.append(published)
        identifies = " union all by name ".join(sources)
        present = set(duck.sql(f"select * from ({identifies})", params=params or None).columns)
        standard = {"id", "received_at", "uuid_ts"}
        latest = "".join(
            ", "
            + (self.latest_value_sql(name) if name in present else f"cast(null as {type_})")
            + f" as {quote_identifier(name)}"
            for name, type_ in columns
            if name not in standard
        )
        duck.execute(
            f"""
            create or replace temp table _lake_users_new as
            select user_id as id, max(received_at) as received_at, max(received_at) as uuid_ts{latest}
            from ({identifies})
            where user_id in (select user_id from _lake_touched)
            group by user_id
            """,
            params or None,
        )
        parts = ["(select * from _lake_users_new)"]
        users_file = f"{schema}/users/{USERS_FILE}"
        if self.lake.exists(users_file):
            parts.append(
                f"(select * from read_parquet({_literal(self.lake.url(users_file))}, hive_partitioning = false) "
                "where id not in (select user_id from _lake_touched))"
            )
        combined = " union all by name ".join(parts)
        available = set(duck.sql(f"select * from ({combined})").columns)
        select_list = ", ".join(
            (f"cast({quote_identifier(name)} as {type_})" if name in available else f"cast(null as {type_})")
            + f" as {quote_identifier(name)}"
            for name, type_ in columns
        )
        duck.execute(f"create or replace temp table _lake_users as select {select_list} from ({combined})")
        self._users = ("_lake_users", list(columns))
        return int(duck.execute("select count(*) from _lake_touched").fetchall()[0][0])

    def commit(self) -> None:
        """Stage the batch's files, record them with the batch's bookkeeping (one transaction), then
        publish them. A batch that wrote nothing commits its bookkeeping only."""
        if not self._written and self._users is None:
            self.state.commit()
            self._discard()
            return
        self._batch = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        moves = self._stage(self._batch)
        rows: dict[str, int] = {}
        for written in self._written:
            rows[written.table] = rows.get(written.table, 0) + written.rows
        record_batch(self.state, self.schema, self.lake, self._batch, moves, rows)
        self.state.commit()
        batch = PendingBatch(self._batch, moves)
        self._batch = None  # committed: its staged files are no longer this run's to discard
        self._discard()
        if self.stage_only:
            # a later batch would not see this one's rows (its ids, users): a worker stages one batch
            self._staged_batches += 1
            if self._staged_batches > 1:
                raise CtsyncError("a worker of a parallel lake load stages one batch; this share made more")
            return
        try:
            publish(self.state, self.schema, self.lake, batch)
        except (OSError, CtsyncError) as exc:
            self._unpublished = True
            raise CtsyncError(
                f"the batch is committed but its files could not all be moved into {self.lake.describe()} "
                f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}): the next "
                "`ctsync load` or `ctsync lake publish` finishes it (nothing is loaded twice)"
            ) from exc
        self._note_published([batch])

    def rollback(self) -> None:
        self.state.rollback()
        self._discard()

    def close(self) -> None:
        try:
            self._discard()
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self.state.close()

    # -- files -----------------------------------------------------------------------------

    def _files(self, table: str) -> set[str]:
        """The table's published files (relative paths), listed once per run and kept up to date."""
        if table not in self._listing:
            self._listing[table] = set(self.lake.files(f"{self.schema}/{table}"))
        return self._listing[table]

    def _note_published(self, batches: Sequence[PendingBatch]) -> None:
        for batch in batches:
            for move in batch.moves:
                table = move.final.split("/")[1]
                if table in self._listing:
                    self._listing[table].add(move.final)

    def _stage(self, batch: str) -> list[Move]:
        """Write the batch's files under ``_staging/<schema>/<batch>/`` (through a local folder for
        object storage); the moves that publish them."""
        staging = self.lake.staging(self.schema, batch)
        local = self.lake.url(staging) if self.lake.local else os.path.join(self._workdir, batch)
        Path(local).mkdir(parents=True, exist_ok=True)
        moves: list[Move] = []
        for number, written in enumerate(self._written):
            folder = f"w{number}"
            names = ", ".join(quote_identifier(name) for name, _ in written.columns)
            output = _literal(f"{local}/{folder}")
            if written.partitioned:
                self.duck.execute(
                    f"copy (select {names}, cast(timezone('UTC', \"timestamp\") as date) as {PARTITION_COLUMN} "
                    f"from {written.temp}) to {output} (format parquet, partition_by ({PARTITION_COLUMN}), "
                    f"filename_pattern 'part-{batch}-{number}-{{i}}')"
                )
            else:
                Path(local, folder).mkdir()
                self.duck.execute(
                    f"copy (select {names} from {written.temp}) to "
                    f"{_literal(f'{local}/{folder}/part-{batch}-{number}.parquet')} (format parquet)"
                )
            for path in sorted(Path(local, folder).rglob("*.parquet")):
                inner = path.relative_to(Path(local, folder)).as_posix()
                moves.append(Move(f"{staging}/{folder}/{inner}", f"{self.schema}/{written.table}/{inner}"))
        moves += self._rewrite_widened(local, staging)
        if self._users is not None:
            temp, _columns = self._users
            Path(local, "users").mkdir()
            self.duck.execute(f"copy {temp} to {_literal(f'{local}/users/{USERS_FILE}')} (format parquet)")
            moves.append(Move(f"{staging}/users/{USERS_FILE}", f"{self.schema}/users/{USERS_FILE}"))
        if not self.lake.local:
            for move in moves:
                self.lake.put(os.path.join(local, move.staged.removeprefix(staging + "/")), move.staged)
            shutil.rmtree(local, ignore_errors=True)
        return moves

    def _rewrite_widened(self, local: str, staging: str) -> list[Move]:
        """The table's published files that hold a widened column with its old type, rewritten with the new
        one under the same names (a publish replaces each file whole)."""
        moves: list[Move] = []
        for table, widened in self._widened.items():
            files = sorted(self._files(table))
            if not files:
                continue
            found = self.duck.execute(
                "select distinct file_name, name from parquet_schema(?) "
                "where name in (select unnest(?::varchar[])) and type = 'INT64'",
                [[self.lake.url(relative) for relative in files], sorted(widened)],
            ).fetchall()
            by_file: dict[str, list[str]] = {}
            for file_name, column in found:
                by_file.setdefault(self.lake.relative(str(file_name)), []).append(str(column))
            for relative, columns in sorted(by_file.items()):
                casts = ", ".join(
                    f"cast({quote_identifier(column)} as {widened[column]}) as {quote_identifier(column)}"
                    for column in sorted(columns)
                )
                name = f"r{len(moves)}.parquet"
                Path(local, "rewritten").mkdir(exist_ok=True)
                self.duck.execute(
                    f"copy (select * replace ({casts}) from read_parquet({_literal(self.lake.url(relative))}, "
                    f"hive_partitioning = false)) to {_literal(f'{local}/rewritten/{name}')} (format parquet)"
                )
                moves.append(Move(f"{staging}/rewritten/{name}", relative))
        return moves

    def _discard(self) -> None:
        """Forget the open batch: its temp tables, and staged files it did not commit."""
        for written in self._written:
            self._drop_quietly(written.temp)
        for temp in ("_lake_users", "_lake_users_new", "_lake_touched"):
            self._drop_quietly(temp)
        self._written, self._widened, self._users = [], {}, None
        if self._batch is not None:
            self.lake.remove(self.lake.staging(self.schema, self._batch))
            shutil.rmtree(os.path.join(self._workdir, self._batch), ignore_errors=True)
            self._batch = None

    def _drop_quietly(self, temp: str) -> None:
        try:
            self.duck.execute(f"drop table if exists {temp}")
        except duckdb.Error:
            pass  # after a failed batch the error that matters is the batch's own
