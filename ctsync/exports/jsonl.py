"""The JSON-lines reader: CleverTap's JSON-lines exports as a relation of records, one per line.

A reader yields, for the files it is given, rows of ``file_id``, ``line_no`` (NULL when the line
number is not known), ``raw`` (the line's text, NULL when not kept), ``record`` (the line as JSON,
NULL when it is not JSON) and ``reason`` (why the line cannot load, when already known: too long,
invalid JSON, not an object). :mod:`ctsync.exports.records` turns those rows into CleverTap's
canonical event record; nothing after it depends on the file format.

Two ways in: whole files, read by DuckDB's ``read_json_objects`` in one statement (fast, no line
numbers), and lines split in Python (``ctsync.exports.content.split_lines``) and registered as a
view, for a file DuckDB cannot read or that holds a line that does not validate.
"""

from __future__ import annotations

from ctsync.exports.content import MAX_LINE_BYTES

JSON_READER_OPTIONS = f"format = 'newline_delimited', ignore_errors = true, maximum_object_size = {MAX_LINE_BYTES}"
"""Options every whole-file read passes to ``read_json_objects`` (besides files and compression)."""


def whole_files_sql(files_table: str, compressed: bool) -> str:
    """SELECT of the records of the files given as the statement's parameter (a list of paths, all listed in
    ``files_table``), read whole: file_id, line_no and raw (NULL: DuckDB does not tell them), the line as
    JSON (NULL when it is not JSON), and the reason it cannot load if already known (too long)."""
    return f"""
        select files.file_id, null::bigint as line_no, null::varchar as raw, rows.json as record,
            {too_long_sql("rows.json")} as reason
        from read_json_objects(?, {JSON_READER_OPTIONS}, filename = true,
                               compression = '{"gzip" if compressed else "none"}') as rows
        join {files_table} as files on files.local_path = rows.filename
    """


def checked_lines_sql(lines: str) -> str:
    """SELECT over registered ``lines`` of one file (its id the statement's parameter): file_id, line_no, raw,
    the line as JSON (NULL when it cannot load) and the reason it cannot, if it is already known (its
    problem, invalid JSON, not an object)."""
    return f"""
        select ?::integer as file_id, line_no, raw, case when reason is null then raw::json end as record, reason
        from (
            select line_no, raw,
                case
                    when problem is not null then problem
                    when not json_valid(raw) then 'invalid JSON'
                    when json_type(raw) <> 'OBJECT' then 'a JSON ' || lower(json_type(raw)) || ', not an object'
                end as reason
            from {lines}
        )
    """


def too_long_sql(record: str) -> str:
    """SQL: the reason a line DuckDB read whole is still too long to load, else NULL (the line-by-line
    read then rejects it with its number, as it rejects a line DuckDB cannot read at all)."""
    return f"case when strlen({record}) > {MAX_LINE_BYTES} then 'longer than {MAX_LINE_BYTES:,} bytes' end"
