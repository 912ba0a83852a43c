"""``load_export_files``: CleverTap event export files into Segment-style tables.

Files are loaded in batches; each batch commits in one transaction with its ``_loads``
rows, so every file is all-or-nothing. Rows are deduplicated on ``id`` (deterministic from
the event's content) against the batch and against what ``tracks`` already holds.
"""

from __future__ import annotations

import hashlib
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
from ctsync.exports.content import FileKind
from ctsync.exports.files import ExportFile, discover_files
from ctsync.naming import schema_name
from ctsync.warehouse import bookkeeping, context, events, profiles
from ctsync.warehouse.batch_files import Outcome, PreparedFile, prepare_files, stage_events, stage_profiles
from ctsync.warehouse.bookkeeping import FileCounts
from ctsync.warehouse.connection import WarehouseTarget, configure_session, connect_duckdb, parse_warehouse
from ctsync.warehouse.events import IdentifierPriority
from ctsync.warehouse.tables import WriteResult
from ctsync.warehouse.targets import DuckDBTarget, PostgresTarget, Target
from ctsync.warehouse.tracks import event_tables_of, write_event_tables
from ctsync.warehouse.upgrade import UpgradeResult, upgrade_schema

DEFAULT_BATCH_BYTES = 96 * 1024 * 1024
"""Uncompressed bytes staged per transaction (gzip files count ~8x their size). A batch holds its staged
lines and, until it commits, the rows it inserted: its size sets the load's peak memory (see
docs/decisions.md, "Memory"); ``ctsync load --batch-mb`` sets it. A batch of half of it or more ends where the
next event's files begin, so each event table is written by as few commits as possible (a commit that
appends to a table rewrites its last, partly filled row group)."""

REGIONS = ("us", "eu")


@dataclass
class FileResult:
    file: ExportFile
    status: str
    """loaded | truncated (its gzip data is cut short: the lines before the cut loaded) | corrupt (its gzip
    data is damaged: only its intact gzip members loaded) | skipped | unsupported (not a CleverTap
    JSON-lines export) | failed (unreadable, or its batch failed)."""
    counts: FileCounts = field(default_factory=FileCounts)
    error: str | None = None


PROBLEM_STATUSES = ("failed", "unsupported", "truncated", "corrupt")
"""File outcomes that make a load fail (non-zero exit, a failed run): each needs someone to look."""


@dataclass
class LoadSummary:
    schema: str
    warehouse: str
    files: list[FileResult] = field(default_factory=list)
    inserted_by_event: dict[str, int] = field(default_factory=dict)
    """New rows per table (event tables and ``identifies``)."""
    unplaced_by_table: dict[str, int] = field(default_factory=dict)
    """Values kept in each table's ``_unplaced_values`` (no column of their own) by this load."""
    users_refreshed: int = 0
    seconds: float = 0.0
    interrupted_before: int = 0
    upgrade: UpgradeResult = field(default_factory=UpgradeResult)
    """Columns an earlier ctsync named otherwise, moved to today's names before this load."""

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def total(self, name: str) -> int:
        return sum(getattr(f.counts, name) for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def problems(self) -> list[FileResult]:
        """Files failed, refused as unsupported, or loaded only up to a break: the load did not fully succeed."""
        return [f for f in self.files if f.status in PROBLEM_STATUSES]

    @property
    def reconciles(self) -> bool:
        """Every line read is loaded, rejected or skipped, in every file."""
        return all(f.counts.reconciles() for f in self.files)

    def add_written(self, table: str, written: WriteResult) -> None:
        if written.rows:
            self.inserted_by_event[table] = self.inserted_by_event.get(table, 0) + written.rows
        if written.unplaced_values:
            self.unplaced_by_table[table] = self.unplaced_by_table.get(table, 0) + written.unplaced_values


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
    lake: str | None = None,
    progress: ProgressCallback | None = None,
    on_start: ProgressCallback | None = None,
    stage_only: bool = False,
) -> LoadSummary:
    """Load the CleverTap export files under ``paths`` (events and profiles) into the warehouse.

    ``warehouse`` is a DuckDB file or a PostgreSQL URL. With ``lake`` (a folder or an fsspec URL) the
    tables go there as Parquet and ``warehouse`` is the lake's state database (docs/lake.md).
    ``on_start`` receives (files, bytes) found; ``progress`` receives increments as batches finish.
    ``stage_only`` (with ``lake``): a parallel load's worker, which stages its batch without publishing it.
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
    described = where.describe()
    try:
        from ctsync.warehouse.lake import open_lake_target, refuse_lake_state

        if lake is not None:
            lake_target = open_lake_target(duck, target, lake, schema, stage_only=stage_only)
            target, described = lake_target, f"{lake_target.lake.describe()} (state: {described})"
        else:
            refuse_lake_state(target, schema)
        summary = _load(duck, target, files, schema, options, where, progress)
        summary.warehouse = described
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
    summary.upgrade = upgrade_schema(target, schema)
    summary.interrupted_before = bookkeeping.mark_interrupted(target, schema)
    load_id = uuid.uuid4().hex
    workdir = tempfile.mkdtemp(prefix="ctsync-load-")
    seen: set[str] = set()
    try:
        for batch in _batches(files, options.batch_bytes):
            _load_batch(duck, target, batch, schema, options, load_id, workdir, seen, summary, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _batches(files: list[ExportFile], batch_bytes: int) -> list[list[ExportFile]]:
    """Batches of at most about ``batch_bytes``; the chunks of one file series stay together, unless a
    series alone is more than four batches (then identical events in different batches collapse to one).
    A batch of half of ``batch_bytes`` or more also ends where the next event's files begin.

    Files are taken event by event (all days and export runs of one event, then the next), so each
    event table is written by as few batches as possible: a DuckDB commit that appends to a table
    rewrites the table's last, partly filled row group (up to 122,880 rows), once per batch."""
    batches: list[list[ExportFile]] = []
    current: list[ExportFile] = []
    size = 0
    series_size = 0
    previous_series = None
    previous_event = None
    for export_file in sorted(files, key=lambda f: (f.kind, f.event_name_hint or "", f.series, f.url)):
        estimate = export_file.size * (8 if export_file.url.endswith((".gz", ".gzip")) else 1)
        same_series = export_file.series == previous_series
        series_size = series_size + estimate if same_series else estimate
        full = size + estimate > batch_bytes and (not same_series or series_size > 4 * batch_bytes)
        new_event = export_file.event_name_hint != previous_event and size >= batch_bytes // 2
        if current and (full or new_event):
            batches.append(current)
            current, size = [], 0
        current.append(export_file)
        size += estimate
        previous_series = export_file.series
        previous_event = export_file.event_name_hint
    if current:
        batches.append(current)
    return batches


def _load_batch(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    batch: list[ExportFile],
    schema: str,
    options: LoadOptions,
    load_id: str,
    workdir: str,
    seen: set[str],
    summary: LoadSummary,
    progress: ProgressCallback | None,
) -> None:
    """One batch: skip what is loaded already, record what is refused, stage the rest outside any
    transaction (a file DuckDB cannot read must not abort it), then write it all in one transaction."""
    unchanged = bookkeeping.loaded_fingerprints(
        target, schema, [(f.url, f.fingerprint) for f in batch if f.fingerprint is not None], options.filter_key
    )
    fresh = []
    for export_file in batch:
        if (export_file.url, export_file.fingerprint) in unchanged:
            summary.files.append(FileResult(export_file, "skipped", error="already loaded (unchanged)"))
        else:
            fresh.append(export_file)
    prepared = prepare_files(fresh, options.kinds, workdir, seen)
    _record_outcomes(target, schema, load_id, prepared.outcomes, options, summary)
    already = bookkeeping.loaded_checksums(target, schema, [p.checksum for p in prepared.files], options.filter_key)
    todo = []
    for item in prepared.files:
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
        target, schema, load_id, [_file_start(item) for item in todo], options.export_job, options.filter_key
    )
    counts: dict[int, FileCounts] = {item.staged.file_id: FileCounts() for item in todo}
    event_items = [item for item in todo if item.kind is not FileKind.PROFILES]
    profile_items = [item for item in todo if item.kind is FileKind.PROFILES]
    try:
        broken = stage_events(duck, event_items, counts) if event_items else {}
        broken |= stage_profiles(duck, profile_items, counts) if profile_items else {}
        target.begin()
        received_at = datetime.now(UTC).isoformat()
        if event_items:
            _write_events(duck, target, event_items, schema, options, load_id, received_at, summary, counts)
        if profile_items:
            _write_profiles(duck, target, profile_items, schema, options, load_id, received_at, summary, counts)
        by_checksum = {item.staged.file_id: item.checksum for item in todo}
        bookkeeping.finish_files(
            target,
            schema,
            load_id,
            {item.checksum: counts[item.staged.file_id] for item in todo},
            broken={by_checksum[file_id]: (status, _broken(reason)) for file_id, (status, reason) in broken.items()},
        )
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
            status, reason = broken.get(item.staged.file_id, ("loaded", None))
            error = _broken(reason) if reason is not None else None
            summary.files.append(FileResult(item.export_file, status, counts[item.staged.file_id], error))
    if progress is not None:
        progress(len(todo), sum(p.export_file.size for p in todo))


def _broken(reason: str) -> str:
    return f"{reason}; an intact copy of the file (another checksum) loads the rest, without repeating what loaded"


def _file_start(item: PreparedFile) -> bookkeeping.FileStart:
    export_file = item.export_file
    return bookkeeping.FileStart(
        export_file.url, export_file.name, item.kind.value, export_file.size, item.checksum, export_file.fingerprint
    )


def _record_outcomes(
    target: Target,
    schema: str,
    load_id: str,
    outcomes: list[Outcome],
    options: LoadOptions,
    summary: LoadSummary,
) -> None:
    """Files that went no further than preparation: listed in the summary; refused ones also in ``_loads``."""
    refused = []
    for outcome in outcomes:
        summary.files.append(FileResult(outcome.export_file, outcome.status, error=outcome.reason))
        if outcome.status in ("unsupported", "failed"):
            export_file = outcome.export_file
            start = bookkeeping.FileStart(
                export_file.url,
                export_file.name,
                FileKind.UNKNOWN.value,
                export_file.size,
                outcome.checksum,
                export_file.fingerprint,
            )
            refused.append((start, outcome.status, outcome.reason))
    bookkeeping.record_refused(target, schema, load_id, refused, options.export_job, options.filter_key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _record_failed_batch(
    target: Target, schema: str, load_id: str, todo: list[PreparedFile], message: str, cause: BaseException
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


def _write_events(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    todo: list[PreparedFile],
    schema: str,
    options: LoadOptions,
    load_id: str,
    received_at: str,
    summary: LoadSummary,
    counts: dict[int, FileCounts],
) -> None:
    files = {item.staged.file_id: item.export_file.url for item in todo}
    bookkeeping.count_and_quarantine(duck, target, "_ct_rows", files, schema, load_id, counts, _keep_filter(options))
    names = events.register_event_names(duck)
    contexts = context.plan_context(duck, options.identifiers, names, target.columns(schema))
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
    written = write_event_tables(duck, target, schema, contexts, options.identifiers, names, received_at)
    for table, result in written.items():
        summary.add_written(table, result)


def _write_profiles(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    todo: list[PreparedFile],
    schema: str,
    options: LoadOptions,
    load_id: str,
    received_at: str,
    summary: LoadSummary,
    counts: dict[int, FileCounts],
) -> None:
    files = {item.staged.file_id: item.export_file.url for item in todo}
    bookkeeping.count_and_quarantine(duck, target, "_ct_profile_rows", files, schema, load_id, counts)
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
    written, users = profiles.write_identifies_and_users(duck, target, schema, received_at)
    summary.add_written("identifies", written)
    summary.users_refreshed += users


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
