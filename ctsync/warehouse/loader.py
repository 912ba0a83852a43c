"""``load_export_files``: CleverTap event export files into Segment-style tables.

Files are loaded in batches; each batch commits in one transaction with its ``_loads``
rows, so every file is all-or-nothing. Rows are deduplicated on ``id`` (deterministic from
the event's content) against the batch and against what ``tracks`` already holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import duckdb

from ctsync.errors import CtsyncError
from ctsync.exports.files import (
    ExportFile,
    FileKind,
    checksum,
    discover_files,
    first_line,
    is_gzip,
    is_header_line,
    read_bytes,
)
from ctsync.naming import property_column, qualified, quote_identifier, schema_name
from ctsync.warehouse import bookkeeping, events
from ctsync.warehouse.bookkeeping import FileCounts
from ctsync.warehouse.columns import (
    ColumnPlan,
    new_column_type,
    plan_expressions,
    variant_column,
    widened_type,
)
from ctsync.warehouse.connection import WarehouseTarget, connect_duckdb, parse_warehouse
from ctsync.warehouse.events import IdentifierPriority, StagedFile
from ctsync.warehouse.structure import Leaf, discover, leaves, text_spec

DEFAULT_BATCH_BYTES = 256 * 1024 * 1024
"""Uncompressed bytes staged per transaction (gzip files count ~8x their size)."""

REGIONS = ("us", "eu")


@dataclass
class FileResult:
    file: ExportFile
    status: str  # loaded | skipped | failed
    counts: FileCounts = field(default_factory=FileCounts)
    error: str | None = None


@dataclass
class LoadSummary:
    schema: str
    warehouse: str
    files: list[FileResult] = field(default_factory=list)
    inserted_by_event: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted_before: int = 0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def total(self, name: str) -> int:
        return sum(getattr(f.counts, name) for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


ProgressCallback = Callable[[int, int], None]
"""Called with (files done, bytes done) increments."""


@dataclass(frozen=True)
class LoadOptions:
    nickname: str
    timezone: str = "UTC"
    region: str = "us"
    workspace_region: str = "us"
    identifiers: IdentifierPriority = field(default_factory=IdentifierPriority)
    batch_bytes: int = DEFAULT_BATCH_BYTES
    export_job: str | None = None
    events: frozenset[str] | None = None
    """Event names to load (an export's data type); other valid events are skipped and counted."""
    days: tuple[date, date] | None = None
    """Inclusive range of local dates (of ``ts``) to load; other valid events are skipped and counted."""


def check_region(region: str, workspace_region: str) -> None:
    for name, value in (("--region", region), ("CTSYNC_WORKSPACE_REGION", workspace_region)):
        if value not in REGIONS:
            raise CtsyncError(f"{name} must be 'us' or 'eu', not {value!r}")
    if region != workspace_region:
        raise CtsyncError(
            f"the source's region is {region!r} but the workspace region is {workspace_region!r}: "
            "data from another region is refused (Segment would silently drop it) and nothing was "
            "loaded. Load it into a workspace of the same region (CTSYNC_WORKSPACE_REGION) or fix --region."
        )


def check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError) as exc:
        raise CtsyncError(
            f"unknown timezone {timezone!r}: use the CleverTap project's IANA timezone, e.g. Asia/Kolkata"
        ) from exc


def load_export_files(
    paths: Sequence[str],
    options: LoadOptions,
    *,
    warehouse: str | WarehouseTarget = "warehouse.duckdb",
    progress: ProgressCallback | None = None,
    on_start: ProgressCallback | None = None,
) -> LoadSummary:
    """Load the event export files under ``paths`` into the warehouse.

    ``on_start`` receives (files, bytes) found; ``progress`` receives increments as batches finish.
    """
    check_region(options.region, options.workspace_region)
    check_timezone(options.timezone)
    schema = schema_name(options.nickname)
    target = warehouse if isinstance(warehouse, WarehouseTarget) else parse_warehouse(warehouse)
    files = discover_files(paths)
    if on_start is not None:
        on_start(len(files), sum(f.size for f in files))
    started = time.perf_counter()
    if target.kind != "duckdb":
        raise CtsyncError("loading into PostgreSQL is not available yet; use a DuckDB warehouse")
    con = connect_duckdb(target.location)
    try:
        summary = _load(con, files, schema, options, target, progress)
    finally:
        con.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _load(
    con: duckdb.DuckDBPyConnection,
    files: list[ExportFile],
    schema: str,
    options: LoadOptions,
    target: WarehouseTarget,
    progress: ProgressCallback | None,
) -> LoadSummary:
    summary = LoadSummary(schema=schema, warehouse=target.describe())
    bookkeeping.ensure_bookkeeping(con, schema)
    summary.interrupted_before = bookkeeping.mark_interrupted(con, schema)
    load_id = uuid.uuid4().hex
    workdir = tempfile.mkdtemp(prefix="ctsync-load-")
    try:
        for batch in _batches(files, options.batch_bytes):
            _load_batch(con, batch, schema, options, load_id, workdir, summary, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _batches(files: list[ExportFile], batch_bytes: int) -> list[list[ExportFile]]:
    batches: list[list[ExportFile]] = []
    current: list[ExportFile] = []
    size = 0
    for export_file in files:
        estimate = export_file.size * (8 if export_file.url.endswith((".gz", ".gzip")) else 1)
        if current and size + estimate > batch_bytes:
            batches.append(current)
            current, size = [], 0
        current.append(export_file)
        size += estimate
    if current:
        batches.append(current)
    return batches


@dataclass
class _Prepared:
    export_file: ExportFile
    data: bytes
    checksum: str
    staged: StagedFile


def _load_batch(
    con: duckdb.DuckDBPyConnection,
    batch: list[ExportFile],
    schema: str,
    options: LoadOptions,
    load_id: str,
    workdir: str,
    summary: LoadSummary,
    progress: ProgressCallback | None,
) -> None:
    prepared: list[_Prepared] = []
    seen: set[str] = set()
    for index, export_file in enumerate(batch):
        if export_file.kind is FileKind.PROFILES:
            summary.files.append(FileResult(export_file, "skipped", error="a profile export, not events"))
            continue
        try:
            data = read_bytes(export_file)
        except CtsyncError as exc:
            summary.files.append(FileResult(export_file, "failed", error=str(exc)))
            continue
        digest = checksum(data)
        if digest in seen:
            summary.files.append(FileResult(export_file, "skipped", error="same content as another file"))
            continue
        seen.add(digest)
        local_path = export_file.url
        if export_file.is_remote:
            local_path = os.path.join(workdir, f"{index}-{export_file.name}")
            with open(local_path, "wb") as handle:
                handle.write(data)
        header = is_header_line(first_line(data), export_file.event_name_hint)
        prepared.append(_Prepared(export_file, data, digest, StagedFile(index, local_path, is_gzip(data), header)))
    already = bookkeeping.loaded_checksums(con, schema, [p.checksum for p in prepared])
    todo = []
    for item in prepared:
        if item.checksum in already:
            summary.files.append(FileResult(item.export_file, "skipped", error="already loaded (same checksum)"))
        else:
            todo.append(item)
    if progress is not None:
        skipped = len(batch) - len(todo)
        if skipped:
            progress(skipped, sum(f.size for f in batch) - sum(p.export_file.size for p in todo))
    if not todo:
        return
    bookkeeping.start_files(
        con,
        schema,
        load_id,
        [
            bookkeeping.FileStart(
                item.export_file.url,
                item.export_file.name,
                FileKind.EVENTS.value,
                item.export_file.size,
                item.checksum,
            )
            for item in todo
        ],
        options.export_job,
    )
    try:
        con.begin()
        counts = _stage_and_write(con, todo, schema, options, load_id, summary)
        bookkeeping.finish_files(con, schema, load_id, {item.checksum: counts[item.staged.file_id] for item in todo})
        con.commit()
    except (duckdb.Error, CtsyncError, OSError) as exc:
        con.rollback()
        message = str(exc).splitlines()[0][:500]
        bookkeeping.finish_files(
            con,
            schema,
            load_id,
            {item.checksum: FileCounts() for item in todo},
            status="failed",
            error=message,
        )
        for item in todo:
            summary.files.append(FileResult(item.export_file, "failed", error=message))
    else:
        for item in todo:
            summary.files.append(FileResult(item.export_file, "loaded", counts[item.staged.file_id]))
    finally:
        con.execute("drop table if exists _ct_rows")
        con.execute("drop table if exists _ct_events")
    if progress is not None:
        progress(len(todo), sum(p.export_file.size for p in todo))


def _stage_and_write(
    con: duckdb.DuckDBPyConnection,
    todo: list[_Prepared],
    schema: str,
    options: LoadOptions,
    load_id: str,
    summary: LoadSummary,
) -> dict[int, FileCounts]:
    events.create_rows_table(con)
    events.stage_fast(con, [item.staged for item in todo])
    dirty = set(events.dirty_files(con))
    events.drop_fast_header_rows(con)
    counts: dict[int, FileCounts] = {item.staged.file_id: FileCounts() for item in todo}
    for item in todo:
        file_id = item.staged.file_id
        if file_id in dirty:
            lines = events.split_lines(item.data, item.export_file.url, item.staged.header)
            events.stage_exact(con, file_id, lines)
            counts[file_id].header_lines = lines.header_lines
        else:
            counts[file_id].header_lines = 1 if item.staged.header else 0
    by_id = {item.staged.file_id: item for item in todo}
    keep, keep_params = _keep_filter(options)
    for file_id, lines_read, valid, skipped in con.execute(
        "select file_id, count(*), count(*) filter (where reason is null), "
        f"count(*) filter (where reason is null and not ({keep})) from _ct_rows group by file_id",
        keep_params,
    ).fetchall():
        counts[file_id].lines_read = lines_read
        counts[file_id].rows_loaded = valid - skipped
        counts[file_id].rows_skipped = skipped
        counts[file_id].rows_rejected = lines_read - valid
    if any(c.rows_skipped for c in counts.values()):
        con.execute(f"delete from _ct_rows where reason is null and not ({keep})", keep_params)
    if any(c.rows_rejected for c in counts.values()):
        con.execute(
            f"""
            insert into {qualified(schema, "_rejected")}
            select ?, files.url, rows.line_no, rows.reason, rows.raw, cast(? as timestamp with time zone)
            from _ct_rows as rows
            join (select unnest(?) as file_id, unnest(?) as url) as files using (file_id)
            where rows.reason is not null
            """,
            [
                load_id,
                datetime.now(UTC).isoformat(),
                list(by_id),
                [by_id[i].export_file.url for i in by_id],
            ],
        )
    received_at = datetime.now(UTC).isoformat()
    events.register_event_names(con)
    context = events.plan_context(con, options.identifiers)
    has_tracks = bool(event_tables_of(con, schema))
    events.build_events(
        con,
        context=context,
        priority=options.identifiers,
        timezone=options.timezone,
        received_at=received_at,
        tracks=qualified(schema, "tracks") if has_tracks else None,
    )
    for file_id, inserted in con.execute(
        "select file_id, count(*) from _ct_events where is_new group by file_id"
    ).fetchall():
        counts[file_id].rows_inserted = inserted
    _write_tables(con, schema, context, summary)
    return counts


def _existing_columns(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in con.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = ? order by table_name, ordinal_position",
        [schema],
    ).fetchall():
        tables.setdefault(table, {})[column] = data_type
    return tables


def _ensure_table(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    wanted: list[tuple[str, str]],
    existing: dict[str, dict[str, str]],
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


def _write_tables(
    con: duckdb.DuckDBPyConnection, schema: str, context: events.ContextPlan, summary: LoadSummary
) -> None:
    existing = _existing_columns(con, schema)
    context_columns = [(name, "VARCHAR") for name, _ in context.columns]
    base_columns = list(events.STANDARD_COLUMNS) + context_columns
    props = discover(con, "_ct_events", "eventProps", group="event", where="is_new")
    event_tables = [
        str(row[0]) for row in con.execute("select distinct event from _ct_events where is_new order by 1").fetchall()
    ]
    for table in event_tables:
        inserted = _write_event_table(con, schema, table, leaves(props.get(table, {})), base_columns, existing)
        summary.inserted_by_event[table] = summary.inserted_by_event.get(table, 0) + inserted
    if event_tables:
        refresh_tracks_view(con, schema)


def event_tables_of(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """Tables the loader made for events: base tables with an ``event_text`` column."""
    rows = con.execute(
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
    ).fetchall()
    return [str(row[0]) for row in rows]


def refresh_tracks_view(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """``tracks``: every event, standard and context columns only, as a view over the event tables.

    Same columns and rows as Segment's ``tracks`` table without storing every event twice.
    """
    existing = _existing_columns(con, schema)
    tables = event_tables_of(con, schema)
    context: list[str] = sorted(
        {column for table in tables for column in existing[table] if column.startswith("context_")}
    )
    columns = [name for name, _ in events.STANDARD_COLUMNS] + context
    selects = []
    for table in tables:
        parts = [
            quote_identifier(column) if column in existing[table] else f"null::varchar as {quote_identifier(column)}"
            for column in columns
        ]
        selects.append(f"select {', '.join(parts)} from {qualified(schema, table)}")
    con.execute(f"create or replace view {qualified(schema, 'tracks')} as " + "\nunion all\n".join(selects))


def _write_event_table(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    prop_leaves: list[Leaf],
    base_columns: list[tuple[str, str]],
    existing: dict[str, dict[str, str]],
) -> int:
    """Insert the batch's new rows of one event into its table, evolving the table first.

    Variant columns that might be needed are added before the insert and dropped again when
    they stayed empty (adding and dropping a column costs nothing in DuckDB).
    """
    plans = _plan_columns(prop_leaves, existing.get(table, {}))
    all_leaves = [leaf for plan in plans for leaf in plan.leaves]
    columns: list[tuple[str, str]] = list(base_columns)
    expressions = [_base_select([c for c in base_columns if c[0].startswith("context_")])]
    speculative: list[str] = []
    for plan in plans:
        value, variant = plan_expressions(plan, "props")
        columns.append((plan.name, plan.type))
        expressions.append(value)
        if variant is not None:
            name = variant_column(plan.name)
            if name not in existing.get(table, {}):
                speculative.append(name)
            columns.append((name, "VARCHAR"))
            expressions.append(variant)
    columns.append(("control_group_name", "VARCHAR"))
    expressions.append("json_extract_string(controlGroupName, '$')")
    if "control_group_name" not in existing.get(table, {}):
        speculative.append("control_group_name")
    _ensure_table(con, schema, table, columns, existing)
    for plan in plans:
        if plan.widen_from is not None:
            con.execute(
                f"alter table {qualified(schema, table)} alter column {quote_identifier(plan.name)} type {plan.type}"
            )
            existing[table][plan.name] = plan.type
    spec = text_spec(all_leaves)
    props_sql = f"json_transform(eventProps, '{_sql_string(spec)}')" if all_leaves else "null"
    rows = con.execute(
        f"""
        insert into {qualified(schema, table)} ({_names(columns)})
        select {", ".join(expressions)}
        from (select *, {props_sql} as props from _ct_events where is_new and event = ?)
        """,
        [table],
    ).fetchall()
    if speculative:
        # Variant and control-group columns exist only once they hold a value.
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


def _plan_columns(prop_leaves: list[Leaf], current: dict[str, str]) -> list[ColumnPlan]:
    plans: dict[str, ColumnPlan] = {}
    for leaf in prop_leaves:
        name = property_column(leaf.path)
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


def _normal_type(data_type: str) -> str:
    upper = data_type.upper()
    return {"INTEGER": "BIGINT", "FLOAT": "DOUBLE", "REAL": "DOUBLE", "TEXT": "VARCHAR"}.get(upper, upper)


def _keep_filter(options: LoadOptions) -> tuple[str, list[object]]:
    """SQL condition (on ``_ct_rows``) for the valid events this load keeps."""
    conditions, params = ["true"], list[object]()
    if options.events is not None:
        conditions.append("eventName in (select unnest(?::varchar[]))")
        params.append(sorted(options.events))
    if options.days is not None:
        conditions.append("cast(ts_local as date) between ? and ?")
        params.extend(options.days)
    return " and ".join(conditions), params


def _base_select(context_columns: list[tuple[str, str]]) -> str:
    standard = (
        'id, user_id, anonymous_id, event, event_text, "timestamp", "timestamp" as original_timestamp, '
        "received_at, received_at as uuid_ts"
    )
    context = "".join(", " + quote_identifier(name) for name, _ in context_columns)
    return standard + context


def _names(columns: list[tuple[str, str]]) -> str:
    return ", ".join(quote_identifier(name) for name, _ in columns)


def _sql_string(value: str) -> str:
    return value.replace("'", "''")
