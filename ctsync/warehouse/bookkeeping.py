"""``_loads`` (one row per file per load) and ``_rejected`` (quarantined lines).

A file's ``_loads`` row is written as ``loading`` and committed before its data; the data and
the ``loaded`` status then commit together. A run killed in between leaves a ``loading``
row and no data: the next run marks it ``interrupted`` and loads the file again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ctsync.naming import qualified, quote_identifier
from ctsync.warehouse.targets import Target

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
        "where status = 'loaded' and coalesce(filter_key, '') = ? and checksum in (select unnest(?::varchar[]))",
        [filter_key, wanted],
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
        "where status = 'loaded' and coalesce(filter_key, '') = ? "
        "and (file, fingerprint) in (select unnest(?::varchar[]), unnest(?::varchar[]))",
        [filter_key, [file for file, _ in pairs], [fingerprint for _, fingerprint in pairs]],
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


def finish_files(
    target: Target,
    schema: str,
    load_id: str,
    results: dict[str, FileCounts],
    *,
    status: str = "loaded",
    error: str | None = None,
) -> None:
    """Set the final status and counts of files (by checksum) of this load."""
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
        set status = ?, finished_at = ?, error = ?,
            {", ".join(f"{column} = counts.{column}" for column in columns)}
        from (select unnest(?::varchar[]) as checksum, {unnests}) as counts
        where loads.load_id = ? and loads.checksum = counts.checksum and loads.status = 'loading'
        """,
        [status, datetime.now(UTC), error, checksums, *values.values(), load_id],
    )
