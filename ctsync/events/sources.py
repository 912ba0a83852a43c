"""Which warehouse tables hold events to send, and reading their rows not queued yet.

A schema laid out like Segment's warehouse (ctsync's own, or one Segment loaded) has one table
per Track event with its properties, ``tracks`` with every Track but no properties, and
``pages`` and ``screens``. Every per-event table is read; ``tracks`` only for events that have
no table of their own (so no event is read twice); ``pages`` as Page and ``screens`` as Screen.
``identifies``, ``users``, ``groups``, ``accounts``, ``aliases`` and ctsync's ``_`` tables are
not events.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ctsync.errors import CtsyncError
from ctsync.events.mapping import EventKind

NOT_EVENTS = frozenset({"identifies", "users", "groups", "accounts", "aliases"})
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")


@dataclass(frozen=True)
class EventSource:
    schema: str
    table: str
    kind: EventKind
    skip_events: tuple[str, ...] = ()
    """For ``tracks``: the events whose own table is read instead."""

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def find_sources(conn: sa.Connection, schemas: Sequence[str], tables: Sequence[str] = ()) -> list[EventSource]:
    """The event sources of ``schemas`` (every event table) and of ``tables`` (``schema.table`` each)."""
    wanted_tables = [_split(name) for name in tables]
    names = sorted({_checked(schema) for schema in schemas} | {schema for schema, _ in wanted_tables})
    if not names:
        raise CtsyncError("name the events to send: --schema SCHEMA (every event table) or --table SCHEMA.TABLE")
    columns: dict[tuple[str, str], set[str]] = {}
    query = sa.text(
        "select table_schema, table_name, column_name from information_schema.columns where table_schema in :schemas"
    ).bindparams(sa.bindparam("schemas", expanding=True))
    for schema, table, column in conn.execute(query, {"schemas": names}):
        columns.setdefault((str(schema), str(table)), set()).add(str(column).lower())
    sources: list[EventSource] = []
    for schema in sorted({_checked(s) for s in schemas}):
        sources += _schema_sources(schema, {t: c for (s, t), c in columns.items() if s == schema})
    for schema, table in wanted_tables:
        found = columns.get((schema, table))
        if found is None:
            raise CtsyncError(f"the warehouse has no table {schema}.{table}")
        kind = _kind(table, found)
        if kind is None:
            raise CtsyncError(f"{schema}.{table} is not an event table (it needs id, timestamp and event columns)")
        source = EventSource(schema, table, kind)
        if source not in sources:
            sources.append(source)
    if not sources:
        raise CtsyncError(f"no event tables in {', '.join(names)}: load events there first")
    return sources


def _schema_sources(schema: str, tables: dict[str, set[str]]) -> list[EventSource]:
    sources = []
    own_tables: list[str] = []
    for table in sorted(tables):
        kind = _kind(table, tables[table])
        if kind is None or table == "tracks":
            continue
        sources.append(EventSource(schema, table, kind))
        if kind == "track":
            own_tables.append(table)
    if "tracks" in tables and _kind("tracks", tables["tracks"]) == "track":
        sources.append(EventSource(schema, "tracks", "track", tuple(own_tables)))
    return sources


def _kind(table: str, columns: set[str]) -> EventKind | None:
    if table in NOT_EVENTS or table.startswith("_") or not {"id", "timestamp"} <= columns:
        return None
    if table == "pages":
        return "page"
    if table == "screens":
        return "screen"
    return "track" if "event" in columns or "event_text" in columns else None


def new_rows(
    conn: sa.Connection,
    source: EventSource,
    *,
    destination: str,
    outbox: str,
    since: datetime | None,
    limit: int,
) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``source`` not in ``outbox`` for ``destination`` yet, ``limit`` at a time, oldest first.

    Each chunk is read after the previous one was queued, so a row is read once."""
    where = [
        "t.id is not null",
        f"not exists (select 1 from {outbox} as o where o.destination = :destination "
        "and o.event_id = cast(t.id as varchar))",
    ]
    params: dict[str, Any] = {"destination": destination, "limit": limit}
    if since is not None:
        where.append('t."timestamp" >= :since')
        params["since"] = since
    statement = sa.text(
        f'select * from {source.schema}."{source.table}" as t where {" and ".join(where)}'
        + (" and t.event not in :skip" if source.skip_events else "")
        + ' order by t."timestamp", t.id limit :limit'
    )
    if source.skip_events:
        statement = statement.bindparams(sa.bindparam("skip", expanding=True))
        params["skip"] = list(source.skip_events)
    while True:
        rows = [dict(row) for row in conn.execute(statement, params).mappings()]
        if not rows:
            return
        yield rows
        if len(rows) < limit:
            return


def _split(name: str) -> tuple[str, str]:
    schema, dot, table = name.strip().lower().partition(".")
    if not dot:
        raise CtsyncError(f"--table takes SCHEMA.TABLE, not {name!r}")
    return _checked(schema), _checked(table)


def _checked(name: str) -> str:
    text = name.strip().lower()
    if not _IDENTIFIER.fullmatch(text):
        raise CtsyncError(f"{name!r} is not a plain SQL name (letters, digits, _)")
    return text
