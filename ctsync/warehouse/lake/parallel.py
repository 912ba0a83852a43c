"""A lake load spread over workers (processes or machines): the pieces, without Prefect (flows/lake.py maps them).

The export's files are grouped by the table they write (an event's files, whatever their export run, go
to its event table; profiles go to ``identifies`` and ``users``), so **one table is written by one
worker**: the same event in two overlapping series lands in one group and is deduplicated by the
loader's own id rule, against the lake and within the group, as in a serial load.

Only the flow's process writes the state database; workers never open it:

1. :func:`begin_parallel_load` opens the state (finishing any batch an earlier load committed), then
   puts a copy of it in the lake's staging area (``_staging/<schema>/parallel-<run>/state.duckdb``), where
   every worker can read it (a shared folder or object storage);
2. each worker (:func:`stage_group`) loads its group with the one loader, on its own copy of the state and
   with ``stage_only``: its rows are written to staged Parquet files and recorded in the copy as one
   committed batch, never published. It returns what it recorded (``_loads``, ``_rejected``, its batch,
   the columns of the tables it wrote);
3. :func:`finish_parallel_load` records every worker's returns in the state database in one transaction
   (so the batches count as loaded all together or not at all), then publishes the batches. A crash after
   that commit is finished by the next load, as for a serial load's batch.

A worker that fails fails the load: nothing is recorded, and :func:`abandon_parallel_load` removes the
staged files (a killed flow's are removed by the next load). Workers' copies are thrown away.

A worker loads its group as one batch (its staged rows must be seen by no later batch), so a worker's
memory follows the largest table's files of one run; the state database is a DuckDB file (the flow's).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from ctsync.errors import CtsyncError
from ctsync.exports.files import FileKind, discover_files
from ctsync.naming import event_table, qualified, quote_identifier, schema_name
from ctsync.warehouse import bookkeeping
from ctsync.warehouse.connection import connect_duckdb, parse_warehouse
from ctsync.warehouse.lake.batches import BATCHES_TABLE, PendingBatch, publish_pending
from ctsync.warehouse.lake.state import open_lake_target
from ctsync.warehouse.lake.storage import Lake
from ctsync.warehouse.lake.target import LakeTarget
from ctsync.warehouse.loader import LoadOptions, LoadSummary, load_export_files
from ctsync.warehouse.targets import DuckDBTarget, canonical_type
from ctsync.warehouse.tracks import refresh_tracks_view
from ctsync.warehouse.upgrade import upgrade_schema

STATE_TABLES = ("_loads", "_rejected", BATCHES_TABLE, "_lake_registrations")
"""The state database's own tables: never a lake table's catalog."""
SNAPSHOT = "state.duckdb"


@dataclass(frozen=True)
class Group:
    """The files that write one table (its route): one worker's task."""

    route: str
    paths: tuple[str, ...]
    size: int


def plan_groups(paths: Sequence[str]) -> list[Group]:
    """The export's files grouped by the table they write, largest group first (so workers finish together)."""
    grouped: dict[str, list[tuple[str, int]]] = {}
    for export_file in discover_files(paths):
        grouped.setdefault(route_of(export_file.kind, export_file.event_name_hint, export_file.url), []).append(
            (export_file.url, export_file.size)
        )
    groups = [
        Group(route, tuple(url for url, _ in files), sum(size for _, size in files)) for route, files in grouped.items()
    ]
    return sorted(groups, key=lambda group: (-group.size, group.route))


def route_of(kind: FileKind, event_name_hint: str | None, url: str) -> str:
    """Events by their table (the name in the file name, as the loader names tables); profiles together;
    a file the loader will skip or refuse (no event name in its name) on its own."""
    if kind is FileKind.EVENTS and event_name_hint:
        return f"events:{event_table(event_name_hint)}"
    if kind is FileKind.PROFILES:
        return "profiles"
    return f"other:{url}"


@dataclass
class ParallelLoad:
    """The flow's side: the state database (held open, so nothing else loads this lake meanwhile) and the
    copy workers start from."""

    duck: duckdb.DuckDBPyConnection
    state: DuckDBTarget
    target: LakeTarget
    lake: Lake
    schema: str
    run: str
    snapshot: str
    """The state's copy, relative to the lake root."""

    def close(self) -> None:
        self.target.close()  # and the state database


def begin_parallel_load(warehouse: str, lake_root: str, nickname: str) -> ParallelLoad:
    where = parse_warehouse(warehouse)
    if where.kind != "duckdb":
        raise CtsyncError(
            "a parallel lake load keeps the lake's state in a DuckDB file that only the flow writes (workers "
            "get a copy): give --warehouse (CTSYNC_WAREHOUSE) a DuckDB file, or load with `ctsync load --lake`"
        )
    schema = schema_name(nickname)
    duck = connect_duckdb(where.location)
    state = DuckDBTarget(duck)
    try:
        target = open_lake_target(duck, state, lake_root, schema)  # the same lake; earlier batches published
        bookkeeping.ensure_bookkeeping(state, schema)
        upgrade_schema(state, schema)
        bookkeeping.mark_interrupted(state, schema)
        duck.execute("checkpoint")
        lake = Lake.open(lake_root)
        run = uuid.uuid4().hex[:12]
        snapshot = f"{lake.staging(schema, f'parallel-{run}')}/{SNAPSHOT}"
        lake.put(where.location, snapshot)
    except BaseException:
        state.close()
        raise
    return ParallelLoad(duck, state, target, lake, schema, run, snapshot)


@dataclass(frozen=True)
class Recorded:
    """Rows a worker recorded in one of the state's tables."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class StagedGroup:
    """What a worker returns: its load's summary, what it recorded, and the tables it wrote."""

    route: str
    summary: LoadSummary
    recorded: dict[str, Recorded]
    catalog: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """The columns (in order) of every table whose columns this worker created or changed."""
    tables: tuple[str, ...] = ()
    """Every lake table it wrote rows to or changed."""
    worker: str = ""
    """Where it ran (host:pid)."""


def stage_group(group: Group, options: LoadOptions, lake_root: str, snapshot: str) -> StagedGroup:
    """Load ``group`` on a copy of the state, staging (not publishing) its rows: a worker's task."""
    lake = Lake.open(lake_root)
    schema = schema_name(options.nickname)
    folder = tempfile.mkdtemp(prefix="ctsync-worker-")
    try:
        local = os.path.join(folder, SNAPSHOT)
        if lake.local:
            shutil.copyfile(lake.url(snapshot), local)
        else:
            lake.fs.get_file(lake.url(snapshot), local)
        catalog_before = _catalog(local, schema)
        loads_before = _load_ids(local, schema)
        summary = load_export_files(
            list(group.paths),
            replace(options, batch_bytes=sys.maxsize),  # one batch: a later one would not see its staged rows
            warehouse=local,
            lake=lake_root,
            stage_only=True,
        )
        con = duckdb.connect(local, read_only=True)
        try:
            recorded = {
                "_loads": _rows(con, schema, "_loads", "not list_contains(?, load_id)", [loads_before]),
                "_rejected": _rows(con, schema, "_rejected", "not list_contains(?, load_id)", [loads_before]),
                BATCHES_TABLE: _rows(con, schema, BATCHES_TABLE, "status = 'committed'", []),
            }
        finally:
            con.close()
        catalog = {
            table: columns for table, columns in _catalog(local, schema).items() if catalog_before.get(table) != columns
        }
        written: set[str] = set(catalog)
        batches = recorded[BATCHES_TABLE]
        if batches.rows:
            rows_by_table = batches.columns.index("rows_by_table")
            moves = batches.columns.index("moves")
            for row in batches.rows:
                written.update(json.loads(str(row[rows_by_table]) or "{}"))
                written.update(final.split("/")[1] for _staged, final in json.loads(str(row[moves])))
        worker = f"{socket.gethostname()}:{os.getpid()}"
        return StagedGroup(group.route, summary, recorded, catalog, tuple(sorted(written)), worker)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def finish_parallel_load(load: ParallelLoad, staged: Sequence[StagedGroup]) -> list[PendingBatch]:
    """Record every worker's batch and bookkeeping in the state database (one transaction), then publish
    the batches. Refused, nothing recorded, when two workers wrote the same table."""
    writers: dict[str, str] = {}
    for group in staged:
        for table in group.tables:
            if table in writers:
                raise CtsyncError(
                    f"the table {table} was written by two workers ({writers[table]} and {group.route}): their "
                    "rows were not deduplicated against each other, so none of this load was recorded. Load "
                    "these files with `ctsync load --lake`"
                )
            writers[table] = group.route
    state, schema = load.state, load.schema
    state.begin()
    try:
        existing = state.columns(schema)
        for group in staged:
            for table, columns in group.catalog.items():
                _apply_columns(state, schema, table, columns, existing.get(table))
        for group in staged:
            for table, recorded in group.recorded.items():
                if recorded.rows:
                    names = ", ".join(quote_identifier(name) for name in recorded.columns)
                    marks = ", ".join("?" for _ in recorded.columns)
                    load.duck.executemany(
                        f"insert into {qualified(schema, table)} ({names}) values ({marks})",
                        [list(row) for row in recorded.rows],
                    )
        if any(group.catalog for group in staged):
            refresh_tracks_view(state, schema)
        state.commit()
    except BaseException:
        state.rollback()
        raise
    return publish_pending(state, schema, load.lake)


def abandon_parallel_load(load: ParallelLoad) -> None:
    """Remove what the workers staged (nothing of it was recorded) and the state's copy."""
    publish_pending(load.state, load.schema, load.lake)


def _apply_columns(
    state: DuckDBTarget, schema: str, table: str, columns: list[tuple[str, str]], have: dict[str, str] | None
) -> None:
    """Give the state's catalog table the worker's columns: created, or columns added (in the worker's
    order, at the end, as the worker added them) and widened."""
    if have is None:
        definition = ", ".join(f"{quote_identifier(name)} {type_}" for name, type_ in columns)
        state.execute(f"create table {qualified(schema, table)} ({definition})")
        return
    for name, type_ in columns:
        if name not in have:
            state.execute(f"alter table {qualified(schema, table)} add column {quote_identifier(name)} {type_}")
        elif canonical_type(have[name]) != canonical_type(type_):
            state.execute(f"alter table {qualified(schema, table)} alter {quote_identifier(name)} type {type_}")


def _catalog(database: str, schema: str) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect(database, read_only=True)
    try:
        rows = con.execute(
            """
            select columns.table_name, columns.column_name, columns.data_type
            from information_schema.columns as columns
            join information_schema.tables as tables
                on tables.table_schema = columns.table_schema and tables.table_name = columns.table_name
            where columns.table_schema = ? and tables.table_type = 'BASE TABLE'
                and columns.table_name <> all(?)
            order by columns.table_name, columns.ordinal_position
            """,
            [schema, list(STATE_TABLES)],
        ).fetchall()
    finally:
        con.close()
    catalog: dict[str, list[tuple[str, str]]] = {}
    for table, column, type_ in rows:
        catalog.setdefault(str(table), []).append((str(column), str(type_)))
    return catalog


def _load_ids(database: str, schema: str) -> list[str]:
    con = duckdb.connect(database, read_only=True)
    try:
        rows = con.execute(f"select distinct load_id from {qualified(schema, '_loads')}").fetchall()
        return [str(row[0]) for row in rows]
    finally:
        con.close()


def _rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, where: str, params: list[Any]) -> Recorded:
    cursor = con.execute(f"select * from {qualified(schema, table)} where {where}", params or None)
    columns = [str(column[0]) for column in cursor.description or ()]
    return Recorded(columns, [tuple(row) for row in cursor.fetchall()])
