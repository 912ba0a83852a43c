"""``load_export_files``: CleverTap event export files into Segment-style tables.

Files are loaded in batches; each batch commits in one transaction with its ``_loads``
rows, so every file is all-or-nothing. Rows are deduplicated on ``id`` (deterministic from
the event's content) against the batch and against what ``tracks`` already holds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
from psycopg2 import DatabaseError

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
    sniff_kind,
)
from ctsync.naming import qualified, quote_identifier, schema_name
from ctsync.warehouse import bookkeeping, events, profiles, tables
from ctsync.warehouse.bookkeeping import FileCounts
from ctsync.warehouse.connection import (
    WarehouseTarget,
    configure_session,
    connect_duckdb,
    parse_warehouse,
)
from ctsync.warehouse.events import IdentifierPriority, StagedFile
from ctsync.warehouse.structure import Node, discover, leaves, merge_trees
from ctsync.warehouse.tables import Column
from ctsync.warehouse.targets import DuckDBTarget, PostgresTarget, Target

DEFAULT_BATCH_BYTES = 512 * 1024 * 1024
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
    """New rows per table (event tables and ``identifies``)."""
    users_refreshed: int = 0
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
    kinds: frozenset[FileKind] | None = None
    """Which exports to load (events, profiles); files of another kind are skipped. None: both."""

    @property
    def filter_key(self) -> str:
        """What a load keeps of a file: a file loaded with another filter is read again (dedup by id)."""
        if self.events is None and self.days is None:
            return ""
        events = ",".join(sorted(self.events)) if self.events is not None else "*"
        days = f"{self.days[0]}..{self.days[1]}" if self.days is not None else "*"
        return hashlib.md5(f"{events}|{days}".encode()).hexdigest()


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
    """Load the CleverTap export files under ``paths`` (events and profiles) into the warehouse.

    ``warehouse`` is a DuckDB file or a PostgreSQL URL. ``on_start`` receives (files, bytes) found;
    ``progress`` receives increments as batches finish.
    """
    check_region(options.region, options.workspace_region)
    check_timezone(options.timezone)
    schema = schema_name(options.nickname)
    where = warehouse if isinstance(warehouse, WarehouseTarget) else parse_warehouse(warehouse)
    files = discover_files(paths)
    if on_start is not None:
        on_start(len(files), sum(f.size for f in files))
    started = time.perf_counter()
    duck, target = _open(where, schema)
    try:
        summary = _load(duck, target, files, schema, options, where, progress)
    finally:
        target.close()
        if target.kind != "duckdb":
            duck.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _open(where: WarehouseTarget, schema: str) -> tuple[duckdb.DuckDBPyConnection, Target]:
    """The DuckDB connection that stages files, and the warehouse target rows go to."""
    if where.kind == "postgres":
        target: Target = PostgresTarget(where.location)
        duck = duckdb.connect()
        configure_session(duck)
        return duck, target
    if Path(where.location).stem == schema:
        raise CtsyncError(
            f"the warehouse file {Path(where.location).name} has the same name as the schema {schema!r}, "
            "and DuckDB cannot tell the two apart: name the file differently (e.g. warehouse.duckdb)"
        )
    duck = connect_duckdb(where.location)
    return duck, DuckDBTarget(duck)


def _load(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    files: list[ExportFile],
    schema: str,
    options: LoadOptions,
    where: WarehouseTarget,
    progress: ProgressCallback | None,
) -> LoadSummary:
    summary = LoadSummary(schema=schema, warehouse=where.describe())
    bookkeeping.ensure_bookkeeping(target, schema)
    summary.interrupted_before = bookkeeping.mark_interrupted(target, schema)
    load_id = uuid.uuid4().hex
    workdir = tempfile.mkdtemp(prefix="ctsync-load-")
    try:
        for batch in _batches(files, options.batch_bytes):
            _load_batch(duck, target, batch, schema, options, load_id, workdir, summary, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _batches(files: list[ExportFile], batch_bytes: int) -> list[list[ExportFile]]:
    """Batches of about ``batch_bytes``; the chunks of one file series stay together, unless a series
    alone is more than four batches (then identical events in different batches collapse to one)."""
    batches: list[list[ExportFile]] = []
    current: list[ExportFile] = []
    size = 0
    series_size = 0
    previous_series = None
    for export_file in sorted(files, key=lambda f: (f.series, f.url)):
        estimate = export_file.size * (8 if export_file.url.endswith((".gz", ".gzip")) else 1)
        same_series = export_file.series == previous_series
        series_size = series_size + estimate if same_series else estimate
        if current and size + estimate > batch_bytes and (not same_series or series_size > 4 * batch_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(export_file)
        size += estimate
        previous_series = export_file.series
    if current:
        batches.append(current)
    return batches


@dataclass
class _Prepared:
    export_file: ExportFile
    kind: FileKind
    data: bytes
    checksum: str
    staged: StagedFile


def _prepare(batch: list[ExportFile], options: LoadOptions, workdir: str, summary: LoadSummary) -> list[_Prepared]:
    """Read each file once: checksum, kind (by name, else by content), header line, local copy."""
    prepared: list[_Prepared] = []
    seen: set[str] = set()
    for index, export_file in enumerate(batch):
        try:
            data = read_bytes(export_file)
        except CtsyncError as exc:
            summary.files.append(FileResult(export_file, "failed", error=str(exc)))
            continue
        kind = export_file.kind if export_file.kind is not FileKind.UNKNOWN else sniff_kind(data)
        if options.kinds is not None and kind not in options.kinds:
            summary.files.append(FileResult(export_file, "skipped", error=f"a {kind.value} export, not loaded here"))
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
        staged = StagedFile(index, local_path, is_gzip(data), header, export_file.series)
        prepared.append(_Prepared(export_file, kind, data, digest, staged))
    return prepared


def _load_batch(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    batch: list[ExportFile],
    schema: str,
    options: LoadOptions,
    load_id: str,
    workdir: str,
    summary: LoadSummary,
    progress: ProgressCallback | None,
) -> None:
    unchanged = bookkeeping.loaded_fingerprints(
        target, schema, [(f.url, f.fingerprint) for f in batch if f.fingerprint is not None], options.filter_key
    )
    fresh = []
    for export_file in batch:
        if (export_file.url, export_file.fingerprint) in unchanged:
            summary.files.append(FileResult(export_file, "skipped", error="already loaded (unchanged)"))
        else:
            fresh.append(export_file)
    prepared = _prepare(fresh, options, workdir, summary)
    already = bookkeeping.loaded_checksums(target, schema, [p.checksum for p in prepared], options.filter_key)
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
        target,
        schema,
        load_id,
        [
            bookkeeping.FileStart(
                item.export_file.url,
                item.export_file.name,
                item.kind.value,
                item.export_file.size,
                item.checksum,
                item.export_file.fingerprint,
            )
            for item in todo
        ],
        options.export_job,
        options.filter_key,
    )
    try:
        target.begin()
        counts: dict[int, FileCounts] = {item.staged.file_id: FileCounts() for item in todo}
        event_items = [item for item in todo if item.kind is not FileKind.PROFILES]
        profile_items = [item for item in todo if item.kind is FileKind.PROFILES]
        received_at = datetime.now(UTC).isoformat()
        if event_items:
            _stage_and_write_events(duck, target, event_items, schema, options, load_id, received_at, summary, counts)
        if profile_items:
            _stage_and_write_profiles(
                duck, target, profile_items, schema, options, load_id, received_at, summary, counts
            )
        bookkeeping.finish_files(target, schema, load_id, {item.checksum: counts[item.staged.file_id] for item in todo})
        target.commit()
    except (duckdb.Error, CtsyncError, OSError, DatabaseError) as exc:
        message = _first_line(exc)
        _record_failed_batch(target, schema, load_id, todo, message, exc)
        _drop_temp_tables(duck, quiet=True)
        for item in todo:
            summary.files.append(FileResult(item.export_file, "failed", error=message))
    else:
        _drop_temp_tables(duck)
        for item in todo:
            summary.files.append(FileResult(item.export_file, "loaded", counts[item.staged.file_id]))
    if progress is not None:
        progress(len(todo), sum(p.export_file.size for p in todo))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _record_failed_batch(
    target: Target, schema: str, load_id: str, todo: list[_Prepared], message: str, cause: BaseException
) -> None:
    """Undo the batch and mark its files ``failed`` with ``message``.

    If the warehouse cannot even record that (DuckDB invalidates a database after some internal
    errors), the load stops with one clear error: its files stay ``loading``, which the next run
    marks ``interrupted`` and loads again.
    """
    try:
        target.rollback()
        bookkeeping.finish_files(
            target, schema, load_id, {item.checksum: FileCounts() for item in todo}, status="failed", error=message
        )
    except (duckdb.Error, DatabaseError) as exc:
        raise CtsyncError(
            f"the warehouse failed while loading {len(todo)} file(s) ({message}) and could not record the "
            f"failure ({_first_line(exc)}); nothing of these files was committed, and the next load reads them again"
        ) from cause


def _drop_temp_tables(duck: duckdb.DuckDBPyConnection, *, quiet: bool = False) -> None:
    """Drop the batch's staging tables. ``quiet``: after a failure, whose error is the one reported."""
    for temp in _TEMP_TABLES:
        try:
            duck.execute(f"drop table if exists {temp}")
        except duckdb.Error:
            if not quiet:
                raise
            return


_TEMP_TABLES = (
    "_ct_rows",
    "_ct_candidates",
    "_ct_known",
    "_ct_keys",
    "_ct_profile_rows",
    "_ct_identifies",
    "_ct_files",
    "_ct_profile_files",
    "_ct_event_names",
)


def _count_and_quarantine(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    rows_table: str,
    items: list[_Prepared],
    schema: str,
    load_id: str,
    counts: dict[int, FileCounts],
    keep: tuple[str, list[object]] = ("true", []),
) -> None:
    """Per-file line counts, then the rejected lines into ``_rejected`` and the skipped ones out."""
    keep_sql, keep_params = keep
    for file_id, lines_read, valid, skipped in duck.execute(
        "select file_id, count(*), count(*) filter (where reason is null), "
        f"count(*) filter (where reason is null and not ({keep_sql})) from {rows_table} group by file_id",
        keep_params,
    ).fetchall():
        counts[file_id].lines_read = lines_read
        counts[file_id].rows_loaded = valid - skipped
        counts[file_id].rows_skipped = skipped
        counts[file_id].rows_rejected = lines_read - valid
    if any(counts[item.staged.file_id].rows_skipped for item in items):
        duck.execute(f"delete from {rows_table} where reason is null and not ({keep_sql})", keep_params)
    if any(counts[item.staged.file_id].rows_rejected for item in items):
        target.write(
            duck,
            schema,
            "_rejected",
            _REJECTED_COLUMNS,
            f"""
            select ?, files.url, rows.line_no, rows.reason, rows.raw, cast(? as timestamp with time zone)
            from {rows_table} as rows
            join (select unnest(?::integer[]) as file_id, unnest(?::varchar[]) as url) as files using (file_id)
            where rows.reason is not null
            """,
            [
                load_id,
                datetime.now(UTC).isoformat(),
                [item.staged.file_id for item in items],
                [item.export_file.url for item in items],
            ],
            target.columns(schema),
        )


_REJECTED_COLUMNS = (
    ("load_id", "VARCHAR"),
    ("file", "VARCHAR"),
    ("line_number", "BIGINT"),
    ("reason", "VARCHAR"),
    ("raw", "VARCHAR"),
    ("rejected_at", "TIMESTAMP WITH TIME ZONE"),
)


def _reread_dirty_files(
    duck: duckdb.DuckDBPyConnection,
    todo: list[_Prepared],
    counts: dict[int, FileCounts],
    stage_exact: Callable[[duckdb.DuckDBPyConnection, int, events.ExactLines], None],
    rows: str,
    files: str,
) -> None:
    """Files with a line that did not validate are read again line by line, for exact reasons."""
    dirty = set(events.dirty_files(duck, rows, files))
    events.drop_fast_header_rows(duck, rows, files)
    for item in todo:
        file_id = item.staged.file_id
        if file_id in dirty:
            lines = events.split_lines(item.data, item.export_file.url, item.staged.header)
            stage_exact(duck, file_id, lines)
            counts[file_id].header_lines = lines.header_lines
        else:
            counts[file_id].header_lines = 1 if item.staged.header else 0


def _stage_and_write_events(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    todo: list[_Prepared],
    schema: str,
    options: LoadOptions,
    load_id: str,
    received_at: str,
    summary: LoadSummary,
    counts: dict[int, FileCounts],
) -> None:
    events.create_rows_table(duck)
    events.stage_fast(duck, [item.staged for item in todo])
    _reread_dirty_files(duck, todo, counts, events.stage_exact, "_ct_rows", "_ct_files")
    _count_and_quarantine(duck, target, "_ct_rows", todo, schema, load_id, counts, _keep_filter(options))
    names = events.register_event_names(duck)
    context = events.plan_context(duck, options.identifiers)
    existing = set(event_tables_of(target, schema))
    events.build_keys(
        duck,
        target,
        schema=schema,
        timezone=options.timezone,
        existing_tables=sorted(set(names.values()) & existing),
    )
    for file_id, inserted in duck.execute(
        "select file_id, count(*) from _ct_keys where is_new group by file_id"
    ).fetchall():
        counts[file_id].rows_inserted = inserted
    _write_tables(duck, target, schema, context, options.identifiers, names, received_at, summary)


def _stage_and_write_profiles(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    todo: list[_Prepared],
    schema: str,
    options: LoadOptions,
    load_id: str,
    received_at: str,
    summary: LoadSummary,
    counts: dict[int, FileCounts],
) -> None:
    staged = [
        profiles.ProfileFile(
            item.staged.file_id,
            item.staged.local_path,
            item.staged.compressed,
            item.staged.header,
            _exported_at(item.export_file),
        )
        for item in todo
    ]
    profiles.create_rows_table(duck)
    profiles.stage_fast(duck, staged)
    _reread_dirty_files(duck, todo, counts, profiles.stage_exact, "_ct_profile_rows", "_ct_profile_files")
    _count_and_quarantine(duck, target, "_ct_profile_rows", todo, schema, load_id, counts)
    profiles.build_identifies(
        duck,
        target,
        schema=schema,
        priority=options.identifiers,
        received_at=received_at,
        has_identifies="identifies" in target.columns(schema),
    )
    for file_id, inserted in duck.execute(
        "select file_id, count(*) from _ct_identifies where is_new group by file_id"
    ).fetchall():
        counts[file_id].rows_inserted = inserted
    identifies, users = profiles.write_identifies_and_users(duck, target, schema, received_at)
    if identifies:
        summary.inserted_by_event["identifies"] = summary.inserted_by_event.get("identifies", 0) + identifies
        summary.users_refreshed += users


def _exported_at(export_file: ExportFile) -> str | None:
    """CleverTap's run timestamp from the file name (epoch seconds), as ISO-8601."""
    if export_file.run_ts is None:
        return None
    try:
        return datetime.fromtimestamp(int(export_file.run_ts), UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None


def _write_tables(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    schema: str,
    context: events.ContextPlan,
    priority: IdentifierPriority,
    names: dict[str, str],
    received_at: str,
    summary: LoadSummary,
) -> None:
    existing = target.columns(schema)
    base = [
        *(Column(name, type_, expression) for name, type_, expression in events.STANDARD_COLUMNS),
        *context.columns,
    ]
    shapes = events.KEY_SHAPES["eventProps"]
    by_name = discover(duck, "_ct_rows", "eventProps", group="eventName", where="reason is null", shapes=shapes)
    props: dict[str, dict[str, Node]] = {}
    for name, tree in by_name.items():
        if name is not None:
            merge_trees(props.setdefault(names[name], {}), tree)
    event_tables = [
        str(row[0]) for row in duck.execute("select distinct event from _ct_keys where is_new order by 1").fetchall()
    ]
    control_group = Column("control_group_name", "VARCHAR", "json_extract_string(controlGroupName, '$')")
    for table in event_tables:
        source, params = events.event_rows_sql(
            context, priority, sorted(name for name, event in names.items() if event == table), received_at
        )
        inserted = tables.write_object_rows(
            duck,
            target,
            schema,
            table,
            source=source,
            params=[*params, table],
            json_column="eventProps",
            object_leaves=leaves(props.get(table, {})),
            base=base,
            optional=[control_group],
            existing=existing,
        )
        summary.inserted_by_event[table] = summary.inserted_by_event.get(table, 0) + inserted
    if event_tables:
        refresh_tracks_view(target, schema)


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
    keep their order and new ones are appended (PostgreSQL only lets a view grow at the end).
    """
    existing = target.columns(schema)
    event_tables = event_tables_of(target, schema)
    standard = [name for name, _, _ in events.STANDARD_COLUMNS]
    columns = list(existing.get("tracks", {})) or list(standard)
    context = sorted(
        {column for table in event_tables for column in existing[table] if column.startswith("context_")} - set(columns)
    )
    columns += context
    selects = []
    for table in event_tables:
        parts = [
            quote_identifier(column) if column in existing[table] else f"null::varchar as {quote_identifier(column)}"
            for column in columns
        ]
        selects.append(f"select {', '.join(parts)} from {qualified(schema, table)}")
    target.execute(f"create or replace view {qualified(schema, 'tracks')} as " + "\nunion all\n".join(selects))


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
