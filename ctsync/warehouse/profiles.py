"""CleverTap profile exports into Segment's ``identifies`` and ``users`` tables, inside DuckDB.

A profile export is flat JSON lines, one user per line (``identity``, ``all_identities``,
``clevertapId``, ``device.token``, ``MSG-*`` flags, ``Name``, ``Email``, ``Phone``, ``Gender``,
``DOB``, ``Photo``, custom properties). Each record becomes one ``identifies`` row: standard
columns, then every key as a snake_case trait column (objects flattened, arrays as JSON text,
the same typing and variant rules as event properties). ``users`` holds one row per
``user_id`` with, for every trait, its latest non-null value (latest by export time, so loading
an older export after a newer one never rolls a user back), as Segment's ``users`` table does.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from ctsync.exports.content import ExactLines
from ctsync.exports.jsonl import checked_lines_sql, whole_files_sql
from ctsync.naming import qualified, quote_identifier
from ctsync.warehouse import tables
from ctsync.warehouse.events import STANDARD_COLUMNS, IdentifierPriority
from ctsync.warehouse.staging import StagedFile, insert_lines, read_whole_files
from ctsync.warehouse.structure import Node, discover, json_path_sql
from ctsync.warehouse.tables import WriteResult
from ctsync.warehouse.targets import Catalog, Target
from ctsync.warehouse.unplaced import UNPLACED_COLUMN

# Profile exports spell the identifiers their own way.
PROFILE_KEYS = {"identity": "identity", "email": "Email", "phone": "Phone", "objectId": "clevertapId"}
IDENTIFIER_KEYS = ("identity", "clevertapId", "objectId", "Email", "Phone")

STANDARD = tuple(column for column in STANDARD_COLUMNS if column.name not in ("event", "event_text"))
"""The columns of ``identifies`` that every row has: the track tables' standard columns less the event's name."""


def _identifier_list() -> str:
    return "[" + ", ".join(json_path_sql((key,)) for key in IDENTIFIER_KEYS) + "]"


REASON_SQL = f"""
case
    when record is null then 'not a JSON object'
    when left(cast(record as varchar), 1) <> '{{' then 'not a JSON object'
    when list_filter(json_extract_string(record, {_identifier_list()}), lambda x: nullif(trim(x), '') is not null) = []
        then 'no identity, clevertapId, objectId, Email or Phone'
end
"""


def create_rows_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table _ct_profile_rows "
        "(file_id integer, line_no bigint, raw varchar, record json, reason varchar)"
    )


def _staged_rows_sql(records: str) -> str:
    """The ``_ct_profile_rows`` rows of ``records`` (file_id, line_no, raw, record, reason if known)."""
    return f"select file_id, line_no, raw, record, coalesce(reason, {REASON_SQL}) from ({records})"


def stage_fast(con: duckdb.DuckDBPyConnection, files: Sequence[StagedFile]) -> set[int]:
    """Read whole files; returns the files DuckDB could not read (they are read line by line)."""
    con.execute(
        "create or replace temp table _ct_profile_files as select * from "
        "(select unnest(?) as file_id, unnest(?) as local_path, unnest(?) as header, "
        "unnest(?::timestamp with time zone[]) as sent_at, unnest(?::varchar[]) as export_id)",
        [
            [f.file_id for f in files],
            [f.local_path for f in files],
            [f.header for f in files],
            [f.sent_at for f in files],
            [f.export_id for f in files],
        ],
    )

    def insert(paths: list[str], compressed: bool) -> None:
        con.execute(
            f"insert into _ct_profile_rows {_staged_rows_sql(whole_files_sql('_ct_profile_files', compressed))}",
            [paths],
        )

    return read_whole_files(files, insert)


def stage_exact(con: duckdb.DuckDBPyConnection, file_id: int, lines: ExactLines) -> None:
    con.execute("delete from _ct_profile_rows where file_id = ?", [file_id])

    def statement(view: str) -> str:
        return f"insert into _ct_profile_rows {_staged_rows_sql(checked_lines_sql(view))}"

    insert_lines(con, lines, statement, [file_id])


def build_identifies(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    *,
    schema: str,
    priority: IdentifierPriority,
    received_at: str,
    has_identifies: bool,
) -> None:
    """``_ct_identifies``: one row per distinct valid profile record, with ``is_new``."""

    def field(name: str) -> str:
        return f"nullif(trim(json_extract_string(record, {json_path_sql((PROFILE_KEYS.get(name, name),))})), '')"

    user_id = f"coalesce({', '.join(field(name) for name in priority.user_id)})"
    anonymous_id = field(priority.anonymous_id)
    con.execute(
        f"""
        create or replace temp table _ct_candidates as
        with hashed as (
            select rows.file_id, rows.line_no, rows.record, md5(cast(json(rows.record) as varchar)) as content_hash,
                files.sent_at, files.export_id
            from _ct_profile_rows as rows
            join _ct_profile_files as files using (file_id)
            where rows.reason is null
        ),
        numbered as (
            select *, row_number() over (partition by file_id, content_hash order by line_no) as occurrence
            from hashed
        )
        select
            file_id,
            line_no,
            case when occurrence = 1 then content_hash
                 else md5(content_hash || '#' || occurrence) end as id,
            {user_id} as user_id,
            {anonymous_id} as anonymous_id,
            coalesce(sent_at, cast(? as timestamp with time zone)) as "timestamp",
            sent_at,
            export_id,
            cast(? as timestamp with time zone) as received_at,
            record
        from numbered
        qualify row_number() over (partition by id order by file_id) = 1
        """,
        [received_at, received_at],
    )
    # The same profile in two exports has two export times: look its id up whatever the time.
    target.known_ids(con, schema, ["identifies"] if has_identifies else [], time_bounded=False)
    con.execute(
        "create or replace temp table _ct_identifies as "
        "select candidates.*, known.id is null as is_new "
        "from _ct_candidates as candidates left join _ct_known as known using (id)"
    )


def write_identifies_and_users(
    con: duckdb.DuckDBPyConnection, target: Target, schema: str, received_at: str
) -> tuple[WriteResult, int]:
    """Insert the new ``identifies`` rows and refresh the ``users`` rows they touch. Returns the write and
    the number of users refreshed."""
    existing = target.columns(schema)
    tree = discover(con, "_ct_identifies", "record", where="is_new").get(None) or Node()
    written = tables.write_object_rows(
        con,
        target,
        schema,
        "identifies",
        source="select * from _ct_identifies where is_new",
        params=[],
        json_column="record",
        object_tree=tree,
        json_pointer="",
        base=STANDARD,
        received_at=received_at,
        existing=existing,
    )
    if not written.rows:
        return written, 0
    return written, _refresh_users(con, target, schema, existing, received_at)


def _refresh_users(
    con: duckdb.DuckDBPyConnection, target: Target, schema: str, existing: Catalog, received_at: str
) -> int:
    """Recompute, from all of ``identifies``, the users whose records this load added."""
    standard = {column.name for column in STANDARD} | {UNPLACED_COLUMN}  # a record's, not a user's
    traits = [(name, type_) for name, type_ in existing["identifies"].items() if name not in standard]
    wanted = [("id", "VARCHAR"), ("received_at", "TIMESTAMP WITH TIME ZONE"), ("uuid_ts", "TIMESTAMP WITH TIME ZONE")]
    target.ensure_table(schema, "users", wanted + traits, existing)
    for name, type_ in traits:
        if existing["users"].get(name) != type_:
            target.alter_type(schema, "users", name, type_, existing)
    rebuilt = target.rebuild_users(con, schema, list(existing["users"].items()), received_at)
    if rebuilt is not None:
        return rebuilt
    users, identifies = qualified(schema, "users"), qualified(schema, "identifies")
    touched = (
        f"select distinct user_id from {identifies} "
        "where received_at = cast(? as timestamp with time zone) and user_id is not null"
    )
    latest = "".join(", " + target.latest_value_sql(name) for name, _ in traits)
    target.execute(f"delete from {users} where id in ({touched})", [received_at])
    target.execute(
        f"""
        insert into {users} ({", ".join(quote_identifier(name) for name, _ in wanted + traits)})
        select user_id, max(received_at), max(received_at){latest}
        from {identifies}
        where user_id in ({touched})
        group by user_id
        """,
        [received_at],
    )
    return int(target.execute(f"select count(*) from ({touched}) as touched", [received_at])[0][0])
