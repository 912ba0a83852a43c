"""Turning a batch of CleverTap event files into Segment-layout rows, inside DuckDB.

Two ways in, one way out:

* the fast path reads whole files with DuckDB's ``read_json_objects`` (every non-blank line becomes
  one row; a line that is not JSON becomes a row of NULLs);
* a file with any line that does not validate, or that DuckDB cannot read at all, is read again line
  by line (the exact path), so each rejected line is quarantined with its number, its reason and its
  raw text, and a file whose gzip stream breaks still loads the lines before the break.

Both fill the temp table ``_ct_rows`` through the same SQL; from there, SQL computes the standard
columns, the deterministic ``id``, the context columns and the property columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ctsync.exports.content import ExactLines
from ctsync.exports.jsonl import checked_lines_sql, whole_files_sql
from ctsync.exports.records import ENTRY_TYPE, KEY_SHAPES, TOP_LEVEL_COLUMNS, canonical_events_sql
from ctsync.naming import event_table
from ctsync.warehouse.context import ContextPlan
from ctsync.warehouse.staging import StagedFile, insert_lines, read_whole_files
from ctsync.warehouse.structure import ObjectReader
from ctsync.warehouse.tables import Column
from ctsync.warehouse.targets import Target

_TOP_LEVEL_STRUCT = ", ".join(f"{name} {type_}" for name, type_ in TOP_LEVEL_COLUMNS.items())

LIBRARY_NAME = "clevertap-export"
"""``context_library_name`` of every row ctsync loads: what sent the call (Segment's SDKs name themselves
here; for ctsync's rows it is a CleverTap export, and ``context_library_version`` names which one)."""

STANDARD_COLUMNS: tuple[Column, ...] = (
    Column("id", "VARCHAR", "id"),
    Column("user_id", "VARCHAR", "user_id"),
    Column("anonymous_id", "VARCHAR", "anonymous_id"),
    Column("event", "VARCHAR", "event"),
    Column("event_text", "VARCHAR", "event_text"),
    Column("timestamp", "TIMESTAMP WITH TIME ZONE", '"timestamp"'),
    Column("original_timestamp", "TIMESTAMP WITH TIME ZONE", '"timestamp"'),
    Column("sent_at", "TIMESTAMP WITH TIME ZONE", "sent_at", optional=True),
    Column("received_at", "TIMESTAMP WITH TIME ZONE", "received_at"),
    Column("uuid_ts", "TIMESTAMP WITH TIME ZONE", "received_at"),
    Column("context_library_name", "VARCHAR", f"'{LIBRARY_NAME}'"),
    Column("context_library_version", "VARCHAR", "export_id", optional=True),
)
"""Columns every track table starts with, in Segment's names, filled by expressions over an event row.
``sent_at`` is the export run's time and ``context_library_version`` its request id, both from the file
name: a file named otherwise has neither (NULL), and a column is only created once it holds a value."""


def create_rows_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table _ct_rows (file_id integer, line_no bigint, raw varchar, "
        f"{_TOP_LEVEL_STRUCT}, ts_local timestamp, reason varchar, extras {ENTRY_TYPE}[], content_hash varchar, "
        + ", ".join(f"{shape} ubigint" for shape in KEY_SHAPES.values())
        + ")"
    )


def stage_fast(con: duckdb.DuckDBPyConnection, files: Sequence[StagedFile]) -> set[int]:
    """Read whole files with read_json_objects; a header line becomes one all-NULL row. Returns the files
    DuckDB could not read (they are read line by line)."""
    con.execute(
        "create or replace temp table _ct_files as select * from "
        "(select unnest(?) as file_id, unnest(?) as local_path, unnest(?) as header, unnest(?) as series, "
        "unnest(?::timestamp with time zone[]) as sent_at, unnest(?::varchar[]) as export_id)",
        [
            [f.file_id for f in files],
            [f.local_path for f in files],
            [f.header for f in files],
            [f.series or f.local_path for f in files],
            [f.sent_at for f in files],
            [f.export_id for f in files],
        ],
    )

    def insert(paths: list[str], compressed: bool) -> None:
        con.execute(f"insert into _ct_rows {canonical_events_sql(whole_files_sql('_ct_files', compressed))}", [paths])

    return read_whole_files(files, insert)


def dirty_files(con: duckdb.DuckDBPyConnection, rows: str = "_ct_rows", files: str = "_ct_files") -> list[int]:
    """Files whose fast-read rows do not all validate (beyond the one header row a file may have)."""
    found = con.execute(
        f"""
        select staged.file_id
        from {rows} as staged
        join {files} as files using (file_id)
        where staged.line_no is null
        group by staged.file_id, files.header
        having count(*) filter (where staged.reason is not null) <> case when files.header then 1 else 0 end
        """
    ).fetchall()
    return [int(row[0]) for row in found]


def drop_fast_header_rows(con: duckdb.DuckDBPyConnection, rows: str = "_ct_rows", files: str = "_ct_files") -> None:
    con.execute(
        f"delete from {rows} where line_no is null and reason is not null "
        f"and file_id in (select file_id from {files} where header)"
    )


def stage_exact(con: duckdb.DuckDBPyConnection, file_id: int, lines: ExactLines) -> None:
    """Stage one file line by line, with the precise reason for each line that fails."""
    con.execute("delete from _ct_rows where file_id = ?", [file_id])

    def statement(view: str) -> str:
        return f"insert into _ct_rows {canonical_events_sql(checked_lines_sql(view))}"

    insert_lines(con, lines, statement, [file_id])


@dataclass(frozen=True)
class IdentifierPriority:
    """Which profile fields become ``user_id`` (first non-empty wins) and ``anonymous_id``."""

    user_id: tuple[str, ...] = ("identity", "email", "phone")
    anonymous_id: str = "objectId"


def register_event_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Map each event name in the batch to its table name (go-snakecase, in Python)."""
    names = [
        str(row[0]) for row in con.execute("select distinct eventName from _ct_rows where reason is null").fetchall()
    ]
    mapping = {name: event_table(name) for name in names}
    con.execute(
        "create or replace temp table _ct_event_names as select * from "
        "(select unnest(?) as event_text, unnest(?) as event)",
        [list(mapping), list(mapping.values())],
    )
    return mapping


def build_keys(
    con: duckdb.DuckDBPyConnection, target: Target, *, schema: str, timezone: str, existing_tables: Sequence[str]
) -> None:
    """``_ct_keys``: for each distinct valid event of the batch, its row in ``_ct_rows`` and its keys.

    Narrow on purpose (no JSON is parsed here, nothing is copied): the event-table inserts read the
    rest from ``_ct_rows`` once. ``is_new`` is false for events the warehouse already holds (the
    target looks the batch's ids up in ``existing_tables``).
    """
    con.execute(
        """
        create or replace temp table _ct_candidates as
        with valid as (
            select staged.rowid as row_ref, staged.file_id, staged.line_no, staged.eventName, staged.ts_local,
                staged.content_hash
            from _ct_rows as staged
            where staged.reason is null
        ),
        repeated as (
            -- Most events are unique in their batch: only repeated contents need numbering.
            select content_hash from valid group by content_hash having count(*) > 1
        ),
        numbered as (
            -- Identical events in one export run's file series are distinct events (the k-th copy gets
            -- its own id); the same event in two series (overlapping exports) is one event.
            select valid.*,
                row_number() over (partition by files.series, valid.content_hash order by valid.file_id, valid.line_no)
                    as occurrence
            from valid
            join _ct_files as files using (file_id)
            where valid.content_hash in (select content_hash from repeated)
        ),
        ids as (
            select row_ref, file_id, content_hash as id, eventName, ts_local
            from valid
            where content_hash not in (select content_hash from repeated)
            union all
            select * from (
                select row_ref, file_id,
                    case when occurrence = 1 then content_hash else md5(content_hash || '#' || occurrence) end as id,
                    eventName, ts_local
                from numbered
            )
            qualify row_number() over (partition by id order by file_id) = 1
        )
        select rows.row_ref, rows.file_id, rows.id, names.event, timezone(?, rows.ts_local) as "timestamp"
        from ids as rows
        join _ct_event_names as names on names.event_text = rows.eventName
        """,
        [timezone],
    )
    target.known_ids(con, schema, existing_tables)
    con.execute(
        "create or replace temp table _ct_keys as "
        "select candidates.*, known.id is null as is_new "
        "from _ct_candidates as candidates left join _ct_known as known using (id)"
    )
    con.execute("drop table _ct_candidates")  # _ct_keys holds all of it: no second copy for the rest of the batch


def identifier_sql(priority: IdentifierPriority, profile: ObjectReader) -> tuple[str, str]:
    """``user_id`` and ``anonymous_id`` from the profile (first non-empty field wins)."""

    def field(name: str) -> str:
        return f"nullif(trim({profile.access((name,))}), '')"

    return f"coalesce({', '.join(field(name) for name in priority.user_id)})", field(priority.anonymous_id)


def event_rows_sql(
    context: ContextPlan, priority: IdentifierPriority, event_names: Sequence[str], received_at: str
) -> tuple[str, list[object]]:
    """The SELECT of one event table's new rows: keys, ids, the raw JSON, and the parsed context objects."""
    placeholders = ", ".join("?" for _ in event_names)
    user_id, anonymous_id = identifier_sql(priority, context.profile)
    sql = f"""
        select *, {user_id} as user_id, {anonymous_id} as anonymous_id
        from (
        select keys.*, rows.eventName as event_text, cast(? as timestamp with time zone) as received_at,
            files.sent_at, files.export_id,
            rows.eventProps, rows.controlGroupName, rows.profile, rows.deviceInfo, rows.sessionProps, rows.extras,
            {context.profile.transform_sql("rows.profile")} as p,
            {context.device.transform_sql("rows.deviceInfo")} as d,
            {context.session.transform_sql("rows.sessionProps")} as s
        from _ct_keys as keys
        join (select rowid as row_ref, * from _ct_rows where eventName in ({placeholders})) as rows using (row_ref)
        join _ct_files as files on files.file_id = keys.file_id
        where keys.is_new and keys.event = ?
        )
    """
    return sql, [received_at, *event_names]
