"""CleverTap's event record, whatever file it came in: the canonical relation every reader feeds.

A reader (:mod:`ctsync.exports.jsonl`) yields one row per line: ``file_id``, ``line_no``, ``raw``,
``record`` (JSON) and ``reason``. :func:`canonical_events_sql` turns those rows into the fields of
CleverTap's event record (``eventName`` as text, ``ts``, ``profile``, ``deviceInfo``,
``eventProps``, ``sessionProps``, ``controlGroupName`` as JSON), the local time of ``ts``, the
reason a record cannot load, the values outside the record's fields (``extras``), and the content
hash its ``id`` is made from. Everything after it (ids, dedup, quarantine, columns, writing) is
the warehouse's, and the same for every format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

TOP_LEVEL_COLUMNS = {
    "ts": "JSON",
    "eventName": "VARCHAR",
    "profile": "JSON",
    "deviceInfo": "JSON",
    "eventProps": "JSON",
    "sessionProps": "JSON",
    "controlGroupName": "JSON",
}
"""The fields of CleverTap's event record, as the canonical relation holds them (``eventName`` must be a
JSON string)."""
_READ_SPEC = json.dumps(dict.fromkeys(TOP_LEVEL_COLUMNS, "JSON"))
FIELDS = ", ".join(f'"{name}"' for name in TOP_LEVEL_COLUMNS)
"""The record's fields as a SELECT list."""

ENTRY_TYPE = "STRUCT(path VARCHAR, value JSON, reason VARCHAR)"
"""One value no column holds: where it is in the line, the value, and why (``_unplaced_values``)."""


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def pointer_segment_sql(key_sql: str) -> str:
    """SQL: one key as a JSON Pointer segment (``~`` and ``/`` escaped), with its leading ``/``."""
    return f"'/' || replace(replace({key_sql}, '~', '~0'), '/', '~1')"


def keys_beyond_sql(object_sql: str, keys_sql: str, base_pointer: str, known: Sequence[str] | None = None) -> str:
    """SQL list of the entries for the keys of a JSON object that no column reads: every occurrence of a
    key after its first, and, with ``known``, keys outside it. ``keys_sql`` is a column holding
    ``json_keys`` of the object (a column, not an expression: a lambda re-evaluates expressions per element)."""
    outside = ""
    reason = "'duplicate key'"
    if known is not None:
        listed = "[" + ", ".join(sql_literal(name) for name in known) + "]"
        outside = f"not list_contains({listed}, e[1]) or "
        reason = f"case when list_contains({listed}, e[1]) then 'duplicate key' else 'not a field of the record' end"
    path = f"{sql_literal(base_pointer)} || {pointer_segment_sql('e[1]')}"
    return (
        "list_transform(list_filter("
        f"list_zip({keys_sql}, json_extract({object_sql}, '$.*'), range(1, len({keys_sql}) + 1)), "
        f"lambda e: {outside}list_position({keys_sql}, e[1]) < e[3]), "
        f"lambda e: {{'path': {path}, 'value': e[2], 'reason': {reason}}}::{ENTRY_TYPE})"
    )


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

CONTENT_HASH_SQL = f"md5(concat_ws(chr(31), {', '.join(CONTENT_PARTS)}))"
"""The content hash of a valid record: its ``id`` unless the same content repeats in its file series."""

KEY_SHAPES = {
    "profile": "profile_shape",
    "deviceInfo": "device_shape",
    "sessionProps": "session_shape",
    "eventProps": "props_shape",
}
"""A hash of each object's list of top-level keys, taken as the record is read: column discovery reads
the keys of one row per distinct shape instead of parsing every row again."""


def _fields_sql(records: str) -> str:
    """The record's fields (and the reader's columns) of each row of ``records``."""
    known = list(TOP_LEVEL_COLUMNS)
    others = ", ".join(f'fields."{name}" as "{name}"' for name in known if name != "eventName")
    return f"""
        select file_id, line_no, raw, record, known_reason, {others},
            fields.eventName as event_name_json,
            case when json_type(fields.eventName) = 'VARCHAR'
                then json_extract_string(fields.eventName, '$') end as eventName
        from (
            select file_id, line_no, raw, record, reason as known_reason,
                json_transform(record, '{_READ_SPEC}') as fields
            from ({records})
        )
    """


def canonical_events_sql(records: str) -> str:
    """The canonical relation of ``records`` (a reader's rows): file_id, line_no, raw, the record's fields,
    ``ts_local``, ``reason`` (NULL: the record loads), ``extras`` (the top-level values outside the
    record's fields: unknown fields, a key named twice), and for valid rows ``content_hash`` and the key
    shape of each object (:data:`KEY_SHAPES`)."""
    known = list(TOP_LEVEL_COLUMNS)
    # More keys than known fields with a value: an unknown field, a repeated key (or a field set to null).
    present = " + ".join(f'("{name}" is not null)::integer' for name in known if name != "eventName")
    present += " + (event_name_json is not null)::integer"
    shapes = ", ".join(
        f"case when reason is null and {column} is not null then hash(json_keys({column})) end as {shape}"
        for column, shape in KEY_SHAPES.items()
    )
    return f"""
        select *, case when reason is null then {CONTENT_HASH_SQL} end as content_hash, {shapes}
        from (
            select file_id, line_no, raw, {FIELDS}, ts_local, coalesce(known_reason, {REASON_SQL}) as reason,
                case when len(top_keys) > {present}
                    then nullif({keys_beyond_sql("record", "top_keys", "", known)}, []) end as extras
            from (
                select *, {TS_LOCAL_SQL} as ts_local, json_keys(record) as top_keys
                from ({_fields_sql(records)})
            )
        )
    """
