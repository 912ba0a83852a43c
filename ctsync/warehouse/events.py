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

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ctsync.exports.content import ExactLines
from ctsync.naming import event_table, property_column
from ctsync.warehouse.staging import (
    StagedFile,
    checked_lines_sql,
    insert_lines,
    read_whole_files,
    whole_files_sql,
)
from ctsync.warehouse.structure import Leaf, Node, ObjectReader, discover, duplicate_key_paths, leaves
from ctsync.warehouse.tables import Column, Overflow, overflow_column
from ctsync.warehouse.targets import Target
from ctsync.warehouse.unplaced import ENTRY_TYPE, Unplaced, keys_beyond_sql

TOP_LEVEL_COLUMNS = {
    "ts": "JSON",
    "eventName": "VARCHAR",
    "profile": "JSON",
    "deviceInfo": "JSON",
    "eventProps": "JSON",
    "sessionProps": "JSON",
    "controlGroupName": "JSON",
}
"""The fields of CleverTap's event record, as they are staged (``eventName`` must be a JSON string)."""
_READ_SPEC = json.dumps(dict.fromkeys(TOP_LEVEL_COLUMNS, "JSON"))
_TOP_LEVEL_STRUCT = ", ".join(f"{name} {type_}" for name, type_ in TOP_LEVEL_COLUMNS.items())
_FIELDS = ", ".join(f'"{name}"' for name in TOP_LEVEL_COLUMNS)

STANDARD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "VARCHAR", "id"),
    ("user_id", "VARCHAR", "user_id"),
    ("anonymous_id", "VARCHAR", "anonymous_id"),
    ("event", "VARCHAR", "event"),
    ("event_text", "VARCHAR", "event_text"),
    ("timestamp", "TIMESTAMP WITH TIME ZONE", '"timestamp"'),
    ("original_timestamp", "TIMESTAMP WITH TIME ZONE", '"timestamp"'),
    ("received_at", "TIMESTAMP WITH TIME ZONE", "received_at"),
    ("uuid_ts", "TIMESTAMP WITH TIME ZONE", "received_at"),
)
"""Columns every track table starts with, in Segment's names: (name, type, expression over an event row)."""

UTM_CONTEXT = {
    "utm_source": "context_campaign_source",
    "utm_medium": "context_campaign_medium",
    "utm_campaign": "context_campaign_name",
    "utm_term": "context_campaign_term",
    "utm_content": "context_campaign_content",
}


def _not_object(column: str) -> str:
    return (
        f"({column} is not null and left(cast({column} as varchar), 1) <> '{{' and cast({column} as varchar) <> 'null')"
    )


def _ts_text() -> str:
    return "json_extract_string(ts, '$')"


# A 14-digit number as it reads from the JSON text, else the text of a JSON string ("2024...").
TS_LOCAL_SQL = (
    "case when length(cast(ts as varchar)) = 14 then try_strptime(cast(ts as varchar), '%Y%m%d%H%M%S') "
    "when regexp_full_match(coalesce(json_extract_string(ts, '$'), ''), '[0-9]{14}') "
    "then try_strptime(json_extract_string(ts, '$'), '%Y%m%d%H%M%S') end"
)


REASON_SQL = f"""
case
    when event_name_json is null and ts is null and profile is null and deviceInfo is null
         and eventProps is null and sessionProps is null and controlGroupName is null
        then 'not a CleverTap event (no eventName, ts or other event field)'
    when eventName is null and event_name_json is not null and json_type(event_name_json) <> 'NULL'
        then 'eventName must be a JSON string, got ' || left(cast(event_name_json as varchar), 40)
    when eventName is null then 'missing eventName'
    when trim(eventName) = '' then 'eventName is empty'
    when ts is null or cast(ts as varchar) = 'null' then 'missing ts'
    when ts_local is null and not regexp_full_match(coalesce({_ts_text()}, ''), '[0-9]{{14}}')
        then 'ts must be a 14-digit YYYYMMDDHHMMSS value, got ' || left(cast(ts as varchar), 40)
    when ts_local is null then 'ts ' || {_ts_text()} || ' is not a real date and time'
    when {_not_object("eventProps")} then 'eventProps is not a JSON object'
    when {_not_object("profile")} then 'profile is not a JSON object'
    when {_not_object("deviceInfo")} then 'deviceInfo is not a JSON object'
    when {_not_object("sessionProps")} then 'sessionProps is not a JSON object'
end
"""


CONTENT_PARTS = (
    "eventName",
    _ts_text(),
    "coalesce(cast(profile as varchar), '')",
    "coalesce(cast(eventProps as varchar), '')",
    "coalesce(cast(sessionProps as varchar), '')",
    "coalesce(cast(controlGroupName as varchar), '')",
)
"""What an event's ``id`` is a hash of (changing it would change every id already loaded)."""

KEY_SHAPES = {
    "profile": "profile_shape",
    "deviceInfo": "device_shape",
    "sessionProps": "session_shape",
    "eventProps": "props_shape",
}
"""A hash of each object's list of top-level keys, taken while the row is staged: column discovery
reads the keys of one row per distinct shape instead of parsing every row again."""

DERIVED_SQL = (
    f"case when reason is null then md5(concat_ws(chr(31), {', '.join(CONTENT_PARTS)})) end as content_hash, "
    + ", ".join(
        f"case when reason is null and {column} is not null then hash(json_keys({column})) end as {shape}"
        for column, shape in KEY_SHAPES.items()
    )
)
"""Computed from a staged row (its fields and ``reason``) in the same pass that stages it."""


def create_rows_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table _ct_rows (file_id integer, line_no bigint, raw varchar, "
        f"{_TOP_LEVEL_STRUCT}, ts_local timestamp, reason varchar, extras {ENTRY_TYPE}[], content_hash varchar, "
        + ", ".join(f"{shape} ubigint" for shape in KEY_SHAPES.values())
        + ")"
    )


def _staged_rows_sql(records: str) -> str:
    """The ``_ct_rows`` rows of ``records`` (file_id, line_no, raw, record: the line as JSON or NULL, and
    reason: why it cannot load, if already known). ``extras`` holds the top-level fields no column reads
    (unknown fields, a key named twice): see ``ctsync.warehouse.unplaced``."""
    known = list(TOP_LEVEL_COLUMNS)
    # More keys than known fields with a value: an unknown field, a repeated key (or a field set to null).
    present = " + ".join(f'(fields."{name}" is not null)::integer' for name in known)
    others = ", ".join(f'fields."{name}" as "{name}"' for name in known if name != "eventName")
    return f"""
        select *, {DERIVED_SQL}
        from (
            select file_id, line_no, raw, {_FIELDS}, ts_local, coalesce(known_reason, {REASON_SQL}) as reason, extras
            from (
                select *, {TS_LOCAL_SQL} as ts_local
                from (
                    select file_id, line_no, raw, known_reason, {others},
                        fields.eventName as event_name_json,
                        case when json_type(fields.eventName) = 'VARCHAR'
                            then json_extract_string(fields.eventName, '$') end as eventName,
                        case when len(top_keys) > {present}
                            then nullif({keys_beyond_sql("record", "top_keys", "", known)}, []) end as extras
                    from (
                        select file_id, line_no, raw, record, reason as known_reason,
                            json_transform(record, '{_READ_SPEC}') as fields, json_keys(record) as top_keys
                        from ({records})
                    )
                )
            )
        )
    """


def stage_fast(con: duckdb.DuckDBPyConnection, files: Sequence[StagedFile]) -> set[int]:
    """Read whole files with read_json_objects; a header line becomes one all-NULL row. Returns the files
    DuckDB could not read (they are read line by line)."""
    con.execute(
        "create or replace temp table _ct_files as select * from "
        "(select unnest(?) as file_id, unnest(?) as local_path, unnest(?) as header, unnest(?) as series)",
        [
            [f.file_id for f in files],
            [f.local_path for f in files],
            [f.header for f in files],
            [f.series or f.local_path for f in files],
        ],
    )

    def insert(paths: list[str], compressed: bool) -> None:
        con.execute(f"insert into _ct_rows {_staged_rows_sql(whole_files_sql('_ct_files', compressed))}", [paths])

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
        return f"insert into _ct_rows {_staged_rows_sql(checked_lines_sql(view))}"

    insert_lines(con, lines, statement, [file_id])


@dataclass(frozen=True)
class IdentifierPriority:
    """Which profile fields become ``user_id`` (first non-empty wins) and ``anonymous_id``."""

    user_id: tuple[str, ...] = ("identity", "email", "phone")
    anonymous_id: str = "objectId"


@dataclass
class ContextPlan:
    """Context columns (all VARCHAR) and how the event-row query reads the objects that fill them."""

    columns: list[Column]
    """VARCHAR columns; each overflows into its object's overflow column when a table has no room."""
    profile: ObjectReader
    device: ObjectReader
    session: ObjectReader
    unplaced: Unplaced
    """The batch's values that no standard or context column holds (see ``ctsync.warehouse.unplaced``)."""


def _context_columns(
    tree: Node, reader: ObjectReader, prefix: str, unplaced: Unplaced, mapping: dict[str, str] | None = None
) -> list[Column]:
    """One column per leaf; leaves that share a column (spellings) coalesce, in discovery order, and the
    later spellings' other values, like the object's duplicate keys, go to ``unplaced``."""
    merged: dict[str, list[Leaf]] = {}
    for leaf in leaves(tree.children):
        column = (mapping or {}).get(leaf.path[0]) if len(leaf.path) == 1 else None
        merged.setdefault(column or property_column(leaf.path, prefix=prefix), []).append(leaf)
    pointer = "/" + reader.json_column
    result = []
    for column, column_leaves in merged.items():
        expressions = [f"cast({reader.access(leaf.path)} as varchar)" for leaf in column_leaves]
        expression = expressions[0] if len(expressions) == 1 else f"coalesce({', '.join(expressions)})"
        overflow = Overflow(overflow_column(prefix), reader.json_column, tuple(leaf.path for leaf in column_leaves))
        result.append(Column(column, "VARCHAR", expression, overflow))
        if len(column_leaves) > 1:
            unplaced.add_spellings(
                reader.json_column, pointer, [leaf.path for leaf in column_leaves], expressions, column
            )
    for path in duplicate_key_paths(tree):
        unplaced.add_duplicates(reader.json_column, path, pointer)
    return result


def plan_context(con: duckdb.DuckDBPyConnection, priority: IdentifierPriority) -> ContextPlan:
    where = "reason is null"

    def found(column: str) -> Node:
        return discover(con, "_ct_rows", column, where=where, shapes=KEY_SHAPES[column]).get(None) or Node()

    profile, device, session = found("profile"), found("deviceInfo"), found("sessionProps")
    # The identifier fields first: of two keys that differ only in case, they get the STRUCT.
    profile_keys = [(key,) for key in dict.fromkeys([*priority.user_id, priority.anonymous_id, "objectId", "identity"])]
    profile_paths = [leaf.path for leaf in leaves(profile.children)]
    profile_reader = ObjectReader.plan("profile", "p", [*profile_keys, *profile_paths])
    device_reader = ObjectReader.plan("deviceInfo", "d", [leaf.path for leaf in leaves(device.children)])
    session_reader = ObjectReader.plan("sessionProps", "s", [leaf.path for leaf in leaves(session.children)])
    unplaced = Unplaced()
    if con.execute("select count(*) from _ct_rows where reason is null and extras is not null").fetchall()[0][0]:
        unplaced.add_list("extras")
    columns = (
        _context_columns(profile, profile_reader, "context_traits_", unplaced)
        + _context_columns(device, device_reader, "context_device_", unplaced)
        + _context_columns(session, session_reader, "context_session_", unplaced, UTM_CONTEXT)
    )
    return ContextPlan(
        columns=columns,
        profile=profile_reader,
        device=device_reader,
        session=session_reader,
        unplaced=unplaced,
    )


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
            rows.eventProps, rows.controlGroupName, rows.profile, rows.deviceInfo, rows.sessionProps, rows.extras,
            {context.profile.transform_sql("rows.profile")} as p,
            {context.device.transform_sql("rows.deviceInfo")} as d,
            {context.session.transform_sql("rows.sessionProps")} as s
        from _ct_keys as keys
        join (select rowid as row_ref, * from _ct_rows where eventName in ({placeholders})) as rows using (row_ref)
        where keys.is_new and keys.event = ?
        )
    """
    return sql, [received_at, *event_names]
