"""``_loads`` (one row per file per load) and ``_rejected`` (quarantined lines).

A file's ``_loads`` row is written as ``loading`` and committed before its data; the data and
the final status (``loaded``; ``truncated`` when its gzip data is cut short and the lines before
the cut loaded; ``corrupt`` when its gzip data is damaged and only its intact gzip members loaded)
then commit together. A run killed in between leaves a ``loading``
row and no data: the next run marks it ``interrupted`` and loads the file again. A file refused
as a whole gets its row straight away: ``unsupported`` (not a CleverTap JSON-lines export) or
``failed`` (it could not be read), with the reason in ``error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from ctsync.naming import qualified, quote_identifier
from ctsync.warehouse.targets import Target

DONE_STATUSES = ("loaded", "truncated", "corrupt")
"""Statuses of a file whose content is in the tables: the same content is not read again."""

LOADS_COLUMNS = """
    load_id varchar not null,
    file varchar not null,
    file_name varchar,
    kind varchar,
    size bigint,
    checksum varchar not null,
    fingerprint varchar,
    filter_key varchar,
    status varchar not null,
    export_job varchar,
    header_lines integer,
    lines_read bigint,
    rows_loaded bigint,
    rows_inserted bigint,
    rows_rejected bigint,
    rows_skipped bigint,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    error varchar
"""

REJECTED_COLUMNS = """
    load_id varchar not null,
    file varchar not null,
    line_number bigint,
    reason varchar not null,
    raw varchar,
    rejected_at timestamp with time zone
"""


@dataclass
class FileCounts:
    header_lines: int = 0
    lines_read: int = 0
    rows_loaded: int = 0
    rows_inserted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0

    def reconciles(self) -> bool:
        return self.lines_read == self.rows_loaded + self.rows_rejected + self.rows_skipped


def ensure_bookkeeping(target: Target, schema: str) -> None:
    """Create the bookkeeping tables, or add the columns a newer ctsync keeps."""
    target.execute(f"create schema if not exists {quote_identifier(schema)}")
    for table, columns in (("_loads", LOADS_COLUMNS), ("_rejected", REJECTED_COLUMNS)):
        target.execute(f"create table if not exists {qualified(schema, table)} ({columns})")
        present = target.columns(schema).get(table, {})
        for definition in columns.strip().split(",\n"):
            name, type_ = definition.split()[:2]
            if name not in present:
                target.execute(f"alter table {qualified(schema, table)} add column {name} {type_}")


def loaded_checksums(target: Target, schema: str, checksums: Iterable[str], filter_key: str) -> set[str]:
    """Checksums already loaded with the same filter (a file loaded for other days must be read again)."""
    wanted = sorted(set(checksums))
    if not wanted:
        return set()
    rows = target.execute(
        f"select distinct checksum from {qualified(schema, '_loads')} "
        "where status in (select unnest(?::varchar[])) and coalesce(filter_key, '') = ? "
        "and checksum in (select unnest(?::varchar[]))",
        [list(DONE_STATUSES), filter_key, wanted],
    )
    return {str(row[0]) for row in rows}


def loaded_fingerprints(
    target: Target, schema: str, files: Iterable[tuple[str, str]], filter_key: str
) -> set[tuple[str, str]]:
    """Which (file, fingerprint) pairs were loaded already with the same filter: no need to read them again."""
    pairs = sorted(set(files))
    if not pairs:
        return set()
    rows = target.execute(
        f"select distinct file, fingerprint from {qualified(schema, '_loads')} "
        "where status in (select unnest(?::varchar[])) and coalesce(filter_key, '') = ? "
        "and (file, fingerprint) in (select unnest(?::varchar[]), unnest(?::varchar[]))",
        [list(DONE_STATUSES), filter_key, [file for file, _ in pairs], [fingerprint for _, fingerprint in pairs]],
    )
    return {(str(file), str(fingerprint)) for file, fingerprint in rows}


def mark_interrupted(target: Target, schema: str) -> int:
    """Close out ``loading`` rows left by a run that was killed; returns how many."""
    rows = target.execute(
        f"update {qualified(schema, '_loads')} set status = 'interrupted', finished_at = ?, "
        "error = 'the loading process stopped before this file committed; it loads again' "
        "where status = 'loading' returning file",
        [datetime.now(UTC)],
    )
    return len(rows)


@dataclass(frozen=True)
class FileStart:
    file: str
    file_name: str
    kind: str
    size: int
    checksum: str
    fingerprint: str | None


def start_files(
    target: Target,
    schema: str,
    load_id: str,
    files: list[FileStart],
    export_job: str | None,
    filter_key: str = "",
) -> None:
    """Record files as ``loading`` (one statement; committed before their data)."""
    target.execute(
        f"""
        insert into {qualified(schema, "_loads")}
            (load_id, file, file_name, kind, size, checksum, fingerprint, filter_key, status, export_job, started_at)
        select ?, unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::bigint[]),
            unnest(?::varchar[]), unnest(?::varchar[]), ?, 'loading', ?, ?
        """,
        [
            load_id,
            [f.file for f in files],
            [f.file_name for f in files],
            [f.kind for f in files],
            [f.size for f in files],
            [f.checksum for f in files],
            [f.fingerprint for f in files],
            filter_key,
            export_job,
            datetime.now(UTC),
        ],
    )


def record_refused(
    target: Target,
    schema: str,
    load_id: str,
    files: Sequence[tuple[FileStart, str, str]],
    export_job: str | None,
    filter_key: str = "",
) -> None:
    """Record files refused as a whole, each with its final status and reason: (file, status, reason)."""
    if not files:
        return
    now = datetime.now(UTC)
    target.execute(
        f"""
        insert into {qualified(schema, "_loads")} (load_id, file, file_name, kind, size, checksum, fingerprint,
            filter_key, status, export_job, started_at, finished_at, error)
        select ?, unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::varchar[]), unnest(?::bigint[]),
            unnest(?::varchar[]), unnest(?::varchar[]), ?, unnest(?::varchar[]), ?, ?, ?, unnest(?::varchar[])
        """,
        [
            load_id,
            [f.file for f, _, _ in files],
            [f.file_name for f, _, _ in files],
            [f.kind for f, _, _ in files],
            [f.size for f, _, _ in files],
            [f.checksum for f, _, _ in files],
            [f.fingerprint for f, _, _ in files],
            filter_key,
            [status for _, status, _ in files],
            export_job,
            now,
            now,
            [reason for _, _, reason in files],
        ],
    )


def finish_files(
    target: Target,
    schema: str,
    load_id: str,
    results: dict[str, FileCounts],
    *,
    status: str = "loaded",
    error: str | None = None,
    broken: dict[str, tuple[str, str]] | None = None,
) -> None:
    """Set the final status and counts of files (by checksum) of this load. ``broken``: files whose gzip
    data breaks (checksum -> their status and reason), which end with that status and reason instead."""
    outcomes = {checksum: (status, error) for checksum in results} | (broken or {})
    checksums = list(results)
    columns = (
        "header_lines",
        "lines_read",
        "rows_loaded",
        "rows_inserted",
        "rows_rejected",
        "rows_skipped",
    )
    values = {column: [getattr(results[c], column) for c in checksums] for column in columns}
    unnests = ", ".join(f"unnest(?::bigint[]) as {column}" for column in columns)
    target.execute(
        f"""
        update {qualified(schema, "_loads")} as loads
        set status = counts.status, finished_at = ?, error = counts.error,
            {", ".join(f"{column} = counts.{column}" for column in columns)}
        from (
            select unnest(?::varchar[]) as checksum, unnest(?::varchar[]) as status, unnest(?::varchar[]) as error,
                {unnests}
        ) as counts
        where loads.load_id = ? and loads.checksum = counts.checksum and loads.status = 'loading'
        """,
        [
            datetime.now(UTC),
            checksums,
            [outcomes[c][0] for c in checksums],
            [outcomes[c][1] for c in checksums],
            *values.values(),
            load_id,
        ],
    )


REJECTED_WRITE_COLUMNS = (
    ("load_id", "VARCHAR"),
    ("file", "VARCHAR"),
    ("line_number", "BIGINT"),
    ("reason", "VARCHAR"),
    ("raw", "VARCHAR"),
    ("rejected_at", "TIMESTAMP WITH TIME ZONE"),
)


def count_and_quarantine(
    duck: duckdb.DuckDBPyConnection,
    target: Target,
    rows_table: str,
    files: dict[int, str],
    schema: str,
    load_id: str,
    counts: dict[int, FileCounts],
    keep: tuple[str, list[object]] = ("true", []),
) -> None:
    """Per-file line counts of a staged table (``files``: file id -> file), then the rejected lines into
    ``_rejected`` and the valid lines this load does not keep (``keep``) out of the staged table."""
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
    if any(counts[file_id].rows_skipped for file_id in files):
        duck.execute(f"delete from {rows_table} where reason is null and not ({keep_sql})", keep_params)
    if any(counts[file_id].rows_rejected for file_id in files):
        target.write(
            duck,
            schema,
            "_rejected",
            REJECTED_WRITE_COLUMNS,
            f"""
            select ?, files.url, rows.line_no, rows.reason, rows.raw, cast(? as timestamp with time zone)
            from {rows_table} as rows
            join (select unnest(?::integer[]) as file_id, unnest(?::varchar[]) as url) as files using (file_id)
            where rows.reason is not null
            """,
            [load_id, datetime.now(UTC).isoformat(), list(files), list(files.values())],
            target.columns(schema),
        )
